package loader

import (
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/plan"
)

// Marker names, the same the kernel (6.16+) uses for its own critical-data
// events, so one verifier rule serves both.
const (
	MarkerLoad    = "kexec_load"
	MarkerExecute = "kexec_execute"
	// CmdlineEvent names the command line's ima-buf entry, as the kernel's
	// KEXEC_CMDLINE hook does.
	CmdlineEvent = "kexec-cmdline"
)

// DefaultPCR is where IMA (and gokexec) extends measurements.
const DefaultPCR = 10

// entryHash is the digest algorithm of the loader's own entries' d-ng fields.
const entryHash = crypto.SHA256

// marker builds a kexec_load/kexec_execute ima-buf entry. listSize and count
// describe the binary list that precedes the marker (without the hand-over
// header).
func marker(pcr uint32, name string, segSize, listSize, count uint64) ima.Entry {
	return ima.NewBufEntry(pcr, name, []byte(ima.KexecMarkerPayload(segSize, listSize, count)), entryHash)
}

// maxMarkerSize bounds the encoded size of any marker entry.
func maxMarkerSize(name string) int {
	const big = ^uint64(0)
	e := marker(0, name, big, big, big)
	return e.EncodedSize()
}

// measurements returns the entries describing what a plan loads: one per
// input file (kernel, initrd, the DTB the plan started from; ima-ng, or
// ima-sig when a signature was appraised) and the command line as an
// ima-buf entry.
func measurements(p *plan.Plan, pcr uint32, sigs map[string][]byte) ([]ima.Entry, error) {
	var out []ima.Entry
	files := []*plan.Input{&p.Kernel}
	if p.Initrd != nil {
		files = append(files, p.Initrd)
	}
	if p.DTBInput != nil {
		files = append(files, p.DTBInput)
	}
	for _, in := range files {
		d, err := hex.DecodeString(in.SHA256)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("measure %s: bad recorded digest %q", in.Path, in.SHA256)
		}
		tmpl := "ima-ng"
		sig := sigs[in.Path]
		if sig != nil {
			// The d-ng digest is sha256: carry only a signature made over
			// a sha256 digest, so the entry is self-consistent.
			if ps, err := appraise.ParseSignature(sig); err == nil {
				if h, err := ps.Hash(); err == nil && h == entryHash {
					tmpl = "ima-sig"
				}
			}
			if tmpl != "ima-sig" {
				sig = nil
			}
		}
		e, err := ima.NewFileEntry(pcr, tmpl, in.Path, d, entryHash, sig)
		if err != nil {
			return nil, fmt.Errorf("measure %s: %w", in.Path, err)
		}
		out = append(out, e)
	}
	out = append(out, ima.NewBufEntry(pcr, CmdlineEvent, []byte(p.Cmdline), entryHash))
	return out, nil
}

// listSize is the encoded size of entries.
func listSize(es []ima.Entry) uint64 {
	var n uint64
	for i := range es {
		n += uint64(es[i].EncodedSize())
	}
	return n
}

// withLoadMarker returns in with the kexec_load marker appended to the
// list snapshot taken at load time (in itself is left alone). The marker
// is not extended into the TPM at load: the running system stays
// attestable until finalize, which records everything. A hand-over that
// is executed without finalize (another tool's -e) thus carries a
// kexec_load without a kexec_execute, which a verifier reads as "events
// were lost: cold boot needed".
func withLoadMarker(in *plan.Inputs, pcr uint32) (*plan.Inputs, error) {
	if in.IMAList == nil {
		return in, nil
	}
	es, err := ima.ParseList(in.IMAList, binary.LittleEndian)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plan.ErrIMAList, err)
	}
	need := uint64(ima.KexecHeaderSize+len(in.IMAList)) + uint64(maxMarkerSize(MarkerLoad))
	size, err := plan.IMASegmentSize(need, in.IMAExtra, 0, in.PageSize)
	if err != nil {
		return nil, err
	}
	m := marker(pcr, MarkerLoad, size, uint64(len(in.IMAList)), uint64(len(es)))
	out := *in
	out.IMAList = ima.AppendList(append([]byte(nil), in.IMAList...), []ima.Entry{m}, binary.LittleEndian)
	out.IMAMinSegment = size
	return &out, nil
}

// countCmdlines counts the kexec-cmdline entries of a binary list.
func countCmdlines(raw []byte) (int, error) {
	es, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range es {
		if es[i].TemplateName != "ima-buf" {
			continue
		}
		if d, err := es[i].Decode(binary.LittleEndian); err == nil && d.Name == CmdlineEvent {
			n++
		}
	}
	return n, nil
}
