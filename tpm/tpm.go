// Package tpm reads and extends TPM 2.0 PCRs for gokexec's finalize step,
// speaking the TPM 2.0 command protocol (TPM 2.0 Library, Part 3) itself.
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
//   - Responses are untrusted input: a response whose header size disagrees
//     with the bytes received, or whose fields run past its end or exceed
//     the structure bounds, is ErrBadResponse, never a panic. A non-zero
//     response code is a *ResponseError (errors.Is ErrTPM), except the
//     TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING warnings, which are
//     retried a bounded number of times.
//
// Only Open touches the host (it opens a device node); everything else talks
// through the io.ReadWriteCloser given to New, so tests drive a real swtpm over
// its TCP data channel.
//
// The three commands are marshalled by hand (wire.go) rather than through
// go-tpm: go-tpm's tpm2 package, which also links its legacy/tpm2 and
// tpmutil packages, adds about 360 KB to the static gokexec binary, about
// 8% of it, and pushed it past the size target of DESIGN.md section 7; the
// commands used here are fixed-format and small. The tests check the codec
// against go-tpm's (a test-only dependency) on a real swtpm.
package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"syscall"
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
	// ErrTPM: the TPM answered a command with an error response code; the
	// error is also a *ResponseError.
	ErrTPM = errors.New("tpm: command failed")
)

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

// New wraps an open TPM byte stream (a device node, swtpm's TCP data channel,
// ...). Close closes rw. A device node must be in blocking mode (as Open
// opens it): in O_NONBLOCK mode the kernel answers early reads with nothing.
func New(rw io.ReadWriteCloser) *TPM {
	return &TPM{t: &stream{rw: rw}}
}

// Close closes the underlying stream.
func (t *TPM) Close() error { return t.t.Close() }

// algToHash maps the TPM algorithms this package knows to crypto.Hash.
var algToHash = map[uint16]crypto.Hash{
	algSHA1:   crypto.SHA1,
	algSHA256: crypto.SHA256,
	algSHA384: crypto.SHA384,
	algSHA512: crypto.SHA512,
}

// bank is one allocated PCR bank as the TPM reports it.
type bank struct {
	alg    uint16
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
func (t *TPM) UnknownBanks() ([]uint16, error) {
	all, err := t.banks()
	if err != nil {
		return nil, err
	}
	var out []uint16
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
	remaining := make(map[uint16][]byte, len(bs))
	hashOf := make(map[uint16]crypto.Hash, len(bs))
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
		var sel []pcrSelection
		for _, b := range bs {
			if !allZero(remaining[b.alg]) {
				sel = append(sel, pcrSelection{alg: b.alg, bits: append([]byte(nil), remaining[b.alg]...)})
			}
		}
		if len(sel) == 0 {
			return out, false, nil
		}
		rsp, err := t.pcrRead(sel)
		if err != nil {
			return nil, false, err
		}
		if first {
			counter, first = rsp.counter, false
		} else if rsp.counter != counter {
			return nil, true, nil
		}
		vals := rsp.digests
		n := 0
		// Digests come in selection order: banks in pcrSelectionOut order,
		// PCRs ascending within a bank.
		for _, s := range rsp.sel {
			h, ok := hashOf[s.alg]
			if !ok {
				return nil, false, fmt.Errorf("%w: PCR_Read returned unrequested bank 0x%04x", ErrBadResponse, s.alg)
			}
			for i := 0; i < 8*len(s.bits); i++ {
				if s.bits[i/8]&(1<<(i%8)) == 0 {
					continue
				}
				rem := remaining[s.alg]
				if i/8 >= len(rem) || rem[i/8]&(1<<(i%8)) == 0 {
					return nil, false, fmt.Errorf("%w: PCR_Read returned unrequested PCR %d", ErrBadResponse, i)
				}
				if n >= len(vals) {
					return nil, false, fmt.Errorf("%w: PCR_Read selection has more PCRs than digests", ErrBadResponse)
				}
				d := vals[n]
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
	var vals []taggedDigest
	for _, b := range bs {
		d, ok := digests[b.hash]
		if !ok {
			return fmt.Errorf("%w: %v (PCR %d)", ErrMissingBank, b.hash, pcr)
		}
		if len(d) != b.hash.Size() {
			return fmt.Errorf("%w: %v digest has %d bytes, want %d", ErrDigestSize, b.hash, len(d), b.hash.Size())
		}
		vals = append(vals, taggedDigest{alg: b.alg, digest: d})
	}
	return t.pcrExtend(pcr, vals)
}
