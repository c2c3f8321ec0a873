// Package tpm reads and extends TPM 2.0 PCRs for gokexec's finalize step,
// through go-tpm's tpm2 commands over a go-tpm transport.
//
// Invariants:
//   - Only three commands are ever sent: TPM2_GetCapability(TPM_CAP_PCRS),
//     TPM2_PCR_Read and TPM2_PCR_Extend; nothing that changes any other
//     state. PCR_Extend uses the empty password authorization, which is what
//     PCRs 0-23 accept on a PC Client TPM.
//   - A bank is "active" when its allocation selects at least one PCR.
//     Banks whose algorithm has no crypto.Hash counterpart here (SM3, SHA-3)
//     are skipped by ActiveBanks, ReadPCRs and Extend unless Strict is set,
//     in which case those calls fail with ErrUnknownBank naming the
//     algorithm, so a caller never silently leaves a bank behind.
//   - ReadPCRs returns values from a single pcrUpdateCounter epoch: it reads
//     in as many TPM2_PCR_Read rounds as the TPM needs (a TPM returns at most
//     eight digests per response) and starts over when the counter moves
//     between rounds; after a bounded number of attempts it fails with
//     ErrPCRsChanging rather than mixing values from different moments.
//   - Extend never sends a partial command: every active (known) bank must
//     have a digest of exactly its size, or nothing is extended. Digests for
//     banks that are not allocated are ignored.
//   - Every returned digest is a fresh copy; errors wrap with %w.
//   - Responses are untrusted input: go-tpm unmarshals them; an answer that
//     does not fit what was asked (an unrequested bank or PCR, a digest of
//     the wrong size, more PCRs than digests, a bank listed twice) is ErrBadResponse, never a
//     panic. A non-zero response code is an error matching ErrTPM (and
//     go-tpm's tpm2.TPMRC with errors.As); TPM_RC_RETRY is retried by
//     go-tpm's transport.
//
// Only Open touches the host (it opens a device node); everything else talks
// through the transport given to New, so tests drive a real swtpm over its
// TCP data channel. Source (source.go) is package loader's TPM seam on this
// machine.
package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"syscall"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrMissingBank: Extend was not given a digest for an active bank.
	ErrMissingBank = errors.New("tpm: no digest for active PCR bank")
	// ErrDigestSize: a digest's length does not match its bank's hash size.
	ErrDigestSize = errors.New("tpm: digest size does not match bank")
	// ErrUnknownBank: the TPM has an active bank whose algorithm this package
	// cannot map to a crypto.Hash (only reported when Strict is set).
	ErrUnknownBank = errors.New("tpm: active PCR bank with unsupported algorithm")
	// ErrPCRIndex: a PCR index is outside the TPM's PCR selection.
	ErrPCRIndex = errors.New("tpm: PCR index out of range")
	// ErrPCRsChanging: PCRs kept being extended while they were read.
	ErrPCRsChanging = errors.New("tpm: PCR values changed during read")
	// ErrBadResponse: the TPM answered with something inconsistent.
	ErrBadResponse = errors.New("tpm: malformed TPM response")
	// ErrNoDevice: no TPM device node could be opened.
	ErrNoDevice = errors.New("tpm: cannot open TPM device")
	// ErrTPM: the TPM answered a command with an error response code (or
	// the transport failed); errors.As finds go-tpm's tpm2.TPMRC when the
	// TPM answered.
	ErrTPM = errors.New("tpm: command failed")
)

// conn is the transport a TPM talks through (go-tpm's).
type conn = transport.TPMCloser

// commandError wraps a command's failure.
func commandError(cmd string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrTPM, cmd, err)
}

// MaxPCR is the highest PCR index accepted (PC Client TPMs have 24 PCRs).
const MaxPCR = 23

// readAttempts bounds how often ReadPCRs restarts when pcrUpdateCounter moves.
const readAttempts = 8

// TPM is a connection to one TPM. It is not safe for concurrent use.
type TPM struct {
	t conn
	// Strict makes active banks with an unknown algorithm an error
	// (ErrUnknownBank) instead of being skipped.
	Strict bool
}

// DefaultDevices are tried in order by Open("").
var DefaultDevices = []string{"/dev/tpmrm0", "/dev/tpm0"}

// Open opens the TPM character device at path; "" tries /dev/tpmrm0 (the
// kernel's resource manager) and then /dev/tpm0.
func Open(path string) (*TPM, error) {
	paths := []string{path}
	if path == "" {
		paths = DefaultDevices
	}
	var errs []error
	for _, p := range paths {
		// Opened blocking on purpose: os.OpenFile would put the descriptor
		// in O_NONBLOCK mode for the runtime poller, and the kernel then
		// runs TPM commands asynchronously, answering a read that comes
		// before the response with 0 bytes (which reads as EOF). Blocking,
		// write runs the command and read returns the whole response.
		fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
		if err == nil {
			return New(os.NewFile(uintptr(fd), p)), nil
		}
		errs = append(errs, &os.PathError{Op: "open", Path: p, Err: err})
	}
	return nil, fmt.Errorf("%w: %w", ErrNoDevice, errors.Join(errs...))
}

// New wraps an open TPM byte stream (a device node, swtpm's TCP data
// channel, ...) in go-tpm's transport, which writes a command and reads
// its response in one read. Close closes rw. A device node must be in
// blocking mode (as Open opens it): in O_NONBLOCK mode the kernel answers
// early reads with nothing.
func New(rw io.ReadWriteCloser) *TPM {
	return &TPM{t: transport.FromReadWriteCloser(rw)}
}

// NewTransport talks to a TPM through a go-tpm transport; Close closes it.
func NewTransport(t transport.TPMCloser) *TPM {
	return &TPM{t: t}
}

// Close closes the underlying stream.
func (t *TPM) Close() error { return t.t.Close() }

// algToHash maps the TPM algorithms this package knows to crypto.Hash.
var algToHash = map[tpm2.TPMIAlgHash]crypto.Hash{
	tpm2.TPMAlgSHA1:   crypto.SHA1,
	tpm2.TPMAlgSHA256: crypto.SHA256,
	tpm2.TPMAlgSHA384: crypto.SHA384,
	tpm2.TPMAlgSHA512: crypto.SHA512,
}

// pcrSelection is one bank's selection bitmap.
type pcrSelection struct {
	alg  tpm2.TPMIAlgHash
	bits []byte
}

// getCapabilityPCRs asks for the PCR allocation (TPM_CAP_PCRS).
func (t *TPM) getCapabilityPCRs() ([]pcrSelection, error) {
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, Property: 0, PropertyCount: 1}.Execute(t.t)
	if err != nil {
		return nil, commandError("TPM2_GetCapability(TPM_CAP_PCRS)", err)
	}
	sel, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	out := make([]pcrSelection, 0, len(sel.PCRSelections))
	for i, s := range sel.PCRSelections {
		// A TPM lists each bank of its allocation once; a second entry
		// for one algorithm would make that bank count twice.
		for _, prev := range out[:i] {
			if prev.alg == s.Hash {
				return nil, fmt.Errorf("%w: TPM_CAP_PCRS lists bank 0x%04x twice", ErrBadResponse, uint16(s.Hash))
			}
		}
		out = append(out, pcrSelection{alg: s.Hash, bits: append([]byte(nil), s.PCRSelect...)})
	}
	return out, nil
}

// bank is one allocated PCR bank as the TPM reports it.
type bank struct {
	alg    tpm2.TPMIAlgHash
	hash   crypto.Hash // 0 when unknown
	alloc  []byte      // allocation bitmap (PCR i is bit i%8 of byte i/8)
	active bool
}

// banks asks the TPM for its PCR allocation (TPM2_GetCapability, TPM_CAP_PCRS).
func (t *TPM) banks() ([]bank, error) {
	sels, err := t.getCapabilityPCRs()
	if err != nil {
		return nil, err
	}
	var out []bank
	for _, s := range sels {
		b := bank{alg: s.alg, alloc: s.bits}
		for _, x := range s.bits {
			if x != 0 {
				b.active = true
			}
		}
		b.hash = algToHash[s.alg]
		out = append(out, b)
	}
	return out, nil
}

// activeKnown returns the active banks, checking unknown ones per t.Strict.
func (t *TPM) activeKnown() ([]bank, error) {
	all, err := t.banks()
	if err != nil {
		return nil, err
	}
	var out []bank
	for _, b := range all {
		if !b.active {
			continue
		}
		if b.hash == 0 {
			if t.Strict {
				return nil, fmt.Errorf("%w: algorithm 0x%04x", ErrUnknownBank, b.alg)
			}
			continue
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].hash < out[j].hash })
	return out, nil
}

// ActiveBanks returns the hash algorithms of the banks that have at least one
// PCR allocated, in crypto.Hash order.
func (t *TPM) ActiveBanks() ([]crypto.Hash, error) {
	bs, err := t.activeKnown()
	if err != nil {
		return nil, err
	}
	out := make([]crypto.Hash, len(bs))
	for i, b := range bs {
		out[i] = b.hash
	}
	return out, nil
}

// UnknownBanks returns the TPM algorithm IDs of active banks that this
// package cannot hash for (and so skips unless Strict is set).
func (t *TPM) UnknownBanks() ([]tpm2.TPMIAlgHash, error) {
	all, err := t.banks()
	if err != nil {
		return nil, err
	}
	var out []tpm2.TPMIAlgHash
	for _, b := range all {
		if b.active && b.hash == 0 {
			out = append(out, b.alg)
		}
	}
	return out, nil
}

func selectBits(pcrs []uint32, size int) []byte {
	bm := make([]byte, size)
	for _, p := range pcrs {
		bm[p/8] |= 1 << (p % 8)
	}
	return bm
}

// ReadPCRs reads the given PCRs from every active bank. The result maps bank
// → PCR index → value. All values come from one pcrUpdateCounter epoch. A
// PCR that a bank does not allocate (partial allocations are rare; PC
// Client TPMs allocate all 24) is absent from that bank's map.
func (t *TPM) ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error) {
	for _, p := range pcrs {
		if p > MaxPCR {
			return nil, fmt.Errorf("%w: %d (max %d)", ErrPCRIndex, p, MaxPCR)
		}
	}
	bs, err := t.activeKnown()
	if err != nil {
		return nil, err
	}
	if len(pcrs) == 0 || len(bs) == 0 {
		out := make(map[crypto.Hash]map[uint32][]byte, len(bs))
		for _, b := range bs {
			out[b.hash] = map[uint32][]byte{}
		}
		return out, nil
	}
	for attempt := 0; attempt < readAttempts; attempt++ {
		out, again, err := t.readOnce(bs, pcrs)
		if err != nil {
			return nil, err
		}
		if !again {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: pcrUpdateCounter moved in %d attempts", ErrPCRsChanging, readAttempts)
}

// readOnce reads all requested PCRs in as many rounds as needed. again is
// true when pcrUpdateCounter changed between rounds.
func (t *TPM) readOnce(bs []bank, pcrs []uint32) (out map[crypto.Hash]map[uint32][]byte, again bool, err error) {
	// remaining[alg] is the selection bitmap still to read.
	size := 3 // 24 PCRs
	remaining := make(map[tpm2.TPMIAlgHash][]byte, len(bs))
	hashOf := make(map[tpm2.TPMIAlgHash]crypto.Hash, len(bs))
	out = make(map[crypto.Hash]map[uint32][]byte, len(bs))
	for _, b := range bs {
		want := selectBits(pcrs, size)
		for i := range want {
			if i < len(b.alloc) {
				want[i] &= b.alloc[i]
			} else {
				want[i] = 0
			}
		}
		remaining[b.alg] = want
		hashOf[b.alg] = b.hash
		out[b.hash] = make(map[uint32][]byte, len(pcrs))
	}
	var counter uint32
	first := true
	// Each round reads at least one digest, so len(bs)*24 rounds bound it.
	for round := 0; round <= len(bs)*(MaxPCR+1); round++ {
		var sel tpm2.TPMLPCRSelection
		for _, b := range bs {
			if !allZero(remaining[b.alg]) {
				sel.PCRSelections = append(sel.PCRSelections, tpm2.TPMSPCRSelection{Hash: b.alg, PCRSelect: append([]byte(nil), remaining[b.alg]...)})
			}
		}
		if len(sel.PCRSelections) == 0 {
			return out, false, nil
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t.t)
		if err != nil {
			return nil, false, commandError("TPM2_PCR_Read", err)
		}
		if first {
			counter, first = rsp.PCRUpdateCounter, false
		} else if rsp.PCRUpdateCounter != counter {
			return nil, true, nil
		}
		vals := rsp.PCRValues.Digests
		n := 0
		// Digests come in selection order: banks in pcrSelectionOut order,
		// PCRs ascending within a bank.
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			h, ok := hashOf[s.Hash]
			if !ok {
				return nil, false, fmt.Errorf("%w: PCR_Read returned unrequested bank 0x%04x", ErrBadResponse, uint16(s.Hash))
			}
			for i := 0; i < 8*len(s.PCRSelect); i++ {
				if s.PCRSelect[i/8]&(1<<(i%8)) == 0 {
					continue
				}
				rem := remaining[s.Hash]
				if i/8 >= len(rem) || rem[i/8]&(1<<(i%8)) == 0 {
					return nil, false, fmt.Errorf("%w: PCR_Read returned unrequested PCR %d", ErrBadResponse, i)
				}
				if n >= len(vals) {
					return nil, false, fmt.Errorf("%w: PCR_Read selection has more PCRs than digests", ErrBadResponse)
				}
				d := append([]byte(nil), vals[n].Buffer...)
				n++
				if len(d) != h.Size() {
					return nil, false, fmt.Errorf("%w: PCR %d of %v has %d bytes", ErrBadResponse, i, h, len(d))
				}
				out[h][uint32(i)] = d
				rem[i/8] &^= 1 << (i % 8)
			}
		}
		if n != len(vals) {
			return nil, false, fmt.Errorf("%w: PCR_Read returned %d digests for %d selected PCRs", ErrBadResponse, len(vals), n)
		}
		if n == 0 {
			// Requested PCRs exist in no returned selection: the TPM does
			// not implement them.
			return nil, false, fmt.Errorf("%w: TPM returned no value for the requested PCRs", ErrPCRIndex)
		}
	}
	return nil, false, fmt.Errorf("%w: PCR_Read made no progress", ErrBadResponse)
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Extend runs TPM2_PCR_Extend on pcr with one digest per active bank. Every
// active bank must be present with a digest of its hash size, otherwise
// nothing is sent. Digests for banks the TPM has not allocated are ignored
// (the TPM would ignore them too), so callers may compute every bank they
// know.
func (t *TPM) Extend(pcr uint32, digests map[crypto.Hash][]byte) error {
	if pcr > MaxPCR {
		return fmt.Errorf("%w: %d (max %d)", ErrPCRIndex, pcr, MaxPCR)
	}
	bs, err := t.activeKnown()
	if err != nil {
		return err
	}
	var vals tpm2.TPMLDigestValues
	for _, b := range bs {
		d, ok := digests[b.hash]
		if !ok {
			return fmt.Errorf("%w: %v (PCR %d)", ErrMissingBank, b.hash, pcr)
		}
		if len(d) != b.hash.Size() {
			return fmt.Errorf("%w: %v digest has %d bytes, want %d", ErrDigestSize, b.hash, len(d), b.hash.Size())
		}
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: b.alg, Digest: append([]byte(nil), d...)})
	}
	_, err = tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)}, Digests: vals}.Execute(t.t)
	if err != nil {
		return commandError(fmt.Sprintf("TPM2_PCR_Extend(%d)", pcr), err)
	}
	return nil
}
