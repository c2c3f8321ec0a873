package loader

import (
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/plan"
)

// The IMA hand-over rule, the one place that sizes it (DESIGN §4): load
// and finalize, on every architecture, call handover; plan.Build only
// checks that the buffer fits the segment it is given.
//
// The segment holds the 24-byte header, the list and the entries still to
// come (the loader's own, each marker at its largest), plus the caller's
// headroom, rounded up to the plan's page size. A finalize keeps the
// layout of the load while everything fits in it, and grows it by the
// same rule when not; nothing is ever dropped.

// handoverIn is what the hand-over is computed from.
type handoverIn struct {
	base      []ima.Entry // the list so far
	baseBytes uint64      // its encoded size
	ours      []ima.Entry // the loader's measurements (no markers)
	load      bool        // add a kexec_load marker before ours
	exec      bool        // add a kexec_execute marker after ours
	pcr       uint32
	extra     uint64 // headroom
	segment   uint64 // the current segment's size; 0: none yet
	page      uint64
}

// handoverOut is the hand-over: the loader's entries with their markers
// and the segment they land in.
type handoverOut struct {
	ours     []ima.Entry
	segment  uint64
	relayout bool // the segment had to grow
}

// handover applies the rule.
func handover(h handoverIn) (handoverOut, error) {
	reserve := listSize(h.ours)
	if h.load {
		reserve += uint64(maxMarkerSize(MarkerLoad))
	}
	if h.exec {
		reserve += uint64(maxMarkerSize(MarkerExecute))
	}
	need := uint64(ima.KexecHeaderSize) + h.baseBytes + reserve
	if need < h.baseBytes {
		return handoverOut{}, fmt.Errorf("%w: a list of %d bytes overflows", plan.ErrIMAList, h.baseBytes)
	}
	out := handoverOut{segment: h.segment}
	var err error
	if out.segment, out.relayout, err = segmentFor(need, h.extra, h.segment, h.page); err != nil {
		return handoverOut{}, err
	}
	es := append([]ima.Entry(nil), h.ours...)
	if h.load {
		es = append([]ima.Entry{marker(h.pcr, MarkerLoad, out.segment, h.baseBytes, uint64(len(h.base)))}, es...)
	}
	if h.exec {
		es = append(es, marker(h.pcr, MarkerExecute, out.segment, h.baseBytes+listSize(es), uint64(len(h.base)+len(es))))
	}
	out.ours = es
	return out, nil
}

// segmentFor is the segment for a buffer of need bytes (header included):
// the current one while it fits, else need plus headroom in whole pages.
func segmentFor(need, extra, current, page uint64) (uint64, bool, error) {
	if current != 0 && need <= current {
		return current, false, nil
	}
	n, err := plan.IMASegmentSize(need, extra, 0, page)
	return n, current != 0, err
}

// marker builds a kexec_load/kexec_execute ima-buf entry describing the
// list of listBytes bytes and count entries that precedes it, with
// ima_binary_runtime_size as the kernel's ima_get_binary_runtime_size
// gives it: the list and the hand-over header.
func marker(pcr uint32, name string, segSize, listBytes, count uint64) ima.Entry {
	return ima.NewBufEntry(pcr, name, []byte(ima.KexecMarkerPayload(segSize, listBytes+markerHeader, count)), entryHash)
}

// markerHeader is what ima_binary_runtime_size counts besides the list.
const markerHeader = ima.KexecHeaderSize

// maxMarkerSize bounds the encoded size of any marker entry.
func maxMarkerSize(name string) int {
	const big = ^uint64(0) - markerHeader
	e := marker(0, name, big, big, big)
	return e.EncodedSize()
}

// listSize is the encoded size of entries.
func listSize(es []ima.Entry) uint64 {
	var n uint64
	for i := range es {
		n += uint64(es[i].EncodedSize())
	}
	return n
}
