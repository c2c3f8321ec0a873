package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// TPM 2.0 constants (TPM 2.0 Library, Part 2).
const (
	tagNoSessions uint16 = 0x8001 // TPM_ST_NO_SESSIONS
	tagSessions   uint16 = 0x8002 // TPM_ST_SESSIONS

	ccPCRExtend     uint32 = 0x00000182 // TPM_CC_PCR_Extend
	ccGetCapability uint32 = 0x0000017A // TPM_CC_GetCapability
	ccPCRRead       uint32 = 0x0000017E // TPM_CC_PCR_Read

	capPCRs   uint32 = 0x00000005 // TPM_CAP_PCRS
	rsPW      uint32 = 0x40000009 // TPM_RS_PW, the password authorization session
	hdrSize          = 10         // tag(2) size(4) code(4)
	maxReply         = 1 << 16    // no TPM response is anywhere near this
	maxBanks         = 16         // bound on TPML_PCR_SELECTION / TPML_DIGEST counts
	maxSelect        = 32         // bound on sizeofSelect (256 PCRs)

	algSHA1   uint16 = 0x0004
	algSHA256 uint16 = 0x000B
	algSHA384 uint16 = 0x000C
	algSHA512 uint16 = 0x000D

	// Response codes a caller should simply send again (Part 2, 6.6.3).
	rcRetry   uint32 = 0x922 // TPM_RC_RETRY
	rcYielded uint32 = 0x908 // TPM_RC_YIELDED
	rcTesting uint32 = 0x90A // TPM_RC_TESTING
)

// retryTries bounds the tries of a command the TPM answers with one of the
// warnings above; the back-off starts at 1 ms and doubles (about 1 s in all).
const retryTries = 11

// ResponseError is a TPM's non-zero response code to a command. It matches
// ErrTPM with errors.Is.
type ResponseError struct {
	Command uint32 // TPM_CC
	Code    uint32 // TPM_RC
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("tpm: command 0x%03x failed: response code 0x%03x", e.Command, e.Code)
}

// Is makes a ResponseError match ErrTPM.
func (e *ResponseError) Is(target error) bool { return target == ErrTPM }

// conn carries one command to the TPM and returns its whole response.
type conn interface {
	Send(cmd []byte) ([]byte, error)
	Close() error
}

// stream is a conn over a byte stream. A TPM character device answers a
// read with the whole response; a socket may deliver it in pieces, so Send
// keeps reading until the header's size has arrived.
type stream struct{ rw io.ReadWriteCloser }

func (s *stream) Send(cmd []byte) ([]byte, error) {
	if _, err := s.rw.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpm: write command: %w", err)
	}
	buf := make([]byte, 4096)
	n := 0
	for {
		if n >= hdrSize {
			want := int(binary.BigEndian.Uint32(buf[2:6]))
			if want < hdrSize || want > maxReply {
				return nil, fmt.Errorf("%w: response size %d", ErrBadResponse, want)
			}
			if n >= want {
				if n > want {
					return nil, fmt.Errorf("%w: %d bytes after a %d-byte response", ErrBadResponse, n-want, want)
				}
				return buf[:n], nil
			}
			if want > len(buf) {
				buf = append(buf, make([]byte, want-len(buf))...)
			}
		}
		m, err := s.rw.Read(buf[n:])
		n += m
		if err != nil && !(errors.Is(err, io.EOF) && m > 0) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("tpm: read response: %w", err)
		}
	}
}

func (s *stream) Close() error { return s.rw.Close() }

// command builds a command: header with size patched in, then body.
func command(tag uint16, cc uint32, body []byte) []byte {
	b := make([]byte, hdrSize, hdrSize+len(body))
	binary.BigEndian.PutUint16(b[0:], tag)
	binary.BigEndian.PutUint32(b[2:], uint32(hdrSize+len(body)))
	binary.BigEndian.PutUint32(b[6:], cc)
	return append(b, body...)
}

// run sends a command and returns the response after its header. It retries
// the TPM's "try again" warnings with a bounded back-off and turns any other
// non-zero response code into a *ResponseError.
func (t *TPM) run(tag uint16, cc uint32, body []byte) ([]byte, error) {
	cmd := command(tag, cc, body)
	delay := time.Millisecond
	for try := 0; ; try++ {
		rsp, err := t.t.Send(cmd)
		if err != nil {
			return nil, err
		}
		if len(rsp) < hdrSize || int(binary.BigEndian.Uint32(rsp[2:6])) != len(rsp) {
			return nil, fmt.Errorf("%w: command 0x%03x: %d-byte response", ErrBadResponse, cc, len(rsp))
		}
		rc := binary.BigEndian.Uint32(rsp[6:10])
		switch {
		case rc == 0:
			return rsp[hdrSize:], nil
		case (rc == rcRetry || rc == rcYielded || rc == rcTesting) && try+1 < retryTries:
			time.Sleep(delay)
			delay *= 2
			continue
		}
		return nil, &ResponseError{Command: cc, Code: rc}
	}
}

// reader decodes big-endian TPM structures; the first short read sets err
// and every later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: field of %d bytes, %d left", ErrBadResponse, n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// pcrSelection is a TPMS_PCR_SELECTION.
type pcrSelection struct {
	alg  uint16
	bits []byte
}

// taggedDigest is a TPMT_HA.
type taggedDigest struct {
	alg    uint16
	digest []byte
}

// selections decodes a TPML_PCR_SELECTION, copying the bitmaps.
func (r *reader) selections() []pcrSelection {
	n := r.u32()
	if r.err == nil && n > maxBanks {
		r.err = fmt.Errorf("%w: %d PCR selections", ErrBadResponse, n)
	}
	var out []pcrSelection
	for i := uint32(0); i < n && r.err == nil; i++ {
		alg := r.u16()
		size := int(r.u8())
		if r.err == nil && size > maxSelect {
			r.err = fmt.Errorf("%w: PCR selection of %d bytes", ErrBadResponse, size)
		}
		bits := r.take(size)
		out = append(out, pcrSelection{alg: alg, bits: append([]byte{}, bits...)})
	}
	return out
}

func appendSelections(b []byte, sels []pcrSelection) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(sels)))
	for _, s := range sels {
		b = binary.BigEndian.AppendUint16(b, s.alg)
		b = append(b, uint8(len(s.bits)))
		b = append(b, s.bits...)
	}
	return b
}

// getCapabilityPCRs runs TPM2_GetCapability(TPM_CAP_PCRS, 0, 1) and returns
// the PCR allocation.
func (t *TPM) getCapabilityPCRs() ([]pcrSelection, error) {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, capPCRs)
	body = binary.BigEndian.AppendUint32(body, 0) // property
	body = binary.BigEndian.AppendUint32(body, 1) // propertyCount
	rsp, err := t.run(tagNoSessions, ccGetCapability, body)
	if err != nil {
		return nil, fmt.Errorf("tpm: GetCapability(PCRS): %w", err)
	}
	r := &reader{b: rsp}
	r.u8() // moreData: all banks fit one TPML_PCR_SELECTION
	if c := r.u32(); r.err == nil && c != capPCRs {
		return nil, fmt.Errorf("%w: GetCapability(PCRS) answered capability %d", ErrBadResponse, c)
	}
	sels := r.selections()
	if r.err != nil {
		return nil, fmt.Errorf("GetCapability(PCRS): %w", r.err)
	}
	return sels, nil
}

// pcrReadResponse is TPM2_PCR_Read's answer.
type pcrReadResponse struct {
	counter uint32
	sel     []pcrSelection
	digests [][]byte // fresh copies
}

func (t *TPM) pcrRead(sel []pcrSelection) (*pcrReadResponse, error) {
	rsp, err := t.run(tagNoSessions, ccPCRRead, appendSelections(nil, sel))
	if err != nil {
		return nil, fmt.Errorf("tpm: PCR_Read: %w", err)
	}
	r := &reader{b: rsp}
	out := &pcrReadResponse{counter: r.u32(), sel: r.selections()}
	n := r.u32()
	if r.err == nil && n > maxBanks*8 {
		r.err = fmt.Errorf("%w: %d digests", ErrBadResponse, n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		d := r.take(int(r.u16()))
		out.digests = append(out.digests, append([]byte{}, d...))
	}
	if r.err != nil {
		return nil, fmt.Errorf("PCR_Read: %w", r.err)
	}
	return out, nil
}

// pcrExtend runs TPM2_PCR_Extend with the empty password session.
func (t *TPM) pcrExtend(pcr uint32, vals []taggedDigest) error {
	var body []byte
	body = binary.BigEndian.AppendUint32(body, pcr) // pcrHandle
	// Authorization area: TPMS_AUTH_COMMAND{TPM_RS_PW, empty nonce,
	// attributes 0, empty password}.
	body = binary.BigEndian.AppendUint32(body, 4+2+1+2)
	body = binary.BigEndian.AppendUint32(body, rsPW)
	body = binary.BigEndian.AppendUint16(body, 0)
	body = append(body, 0)
	body = binary.BigEndian.AppendUint16(body, 0)
	// TPML_DIGEST_VALUES.
	body = binary.BigEndian.AppendUint32(body, uint32(len(vals)))
	for _, v := range vals {
		body = binary.BigEndian.AppendUint16(body, v.alg)
		body = append(body, v.digest...)
	}
	if _, err := t.run(tagSessions, ccPCRExtend, body); err != nil {
		return fmt.Errorf("tpm: PCR_Extend(%d): %w", pcr, err)
	}
	return nil
}
