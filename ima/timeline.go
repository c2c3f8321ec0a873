package ima

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Event names the timeline recognizes.
const (
	BootAggregate     = "boot_aggregate"
	BootAggregateLate = "boot_aggregate_late"
	MarkerKexecLoad   = "kexec_load"
	MarkerKexecExec   = "kexec_execute"
)

var (
	bootAggregateB = []byte(BootAggregate)
	kexecB         = []byte("kexec_")
)

// Marker is a decoded kexec_load or kexec_execute event.
type Marker struct {
	Index       int    `json:"index"`
	PCR         uint32 `json:"pcr"`
	Name        string `json:"name"`
	Payload     string `json:"payload"`
	Decoded     bool   `json:"decoded"` // payload had the three expected keys
	SegmentSize uint64 `json:"kexec_segment_size"`
	ListSize    uint64 `json:"ima_binary_runtime_size"`
	Count       uint64 `json:"ima_runtime_measurements_count"`
}

// ParseMarkerPayload decodes "kexec_segment_size=N;ima_binary_runtime_size=N;
// ima_runtime_measurements_count=N;".
func ParseMarkerPayload(p string) (seg, size, count uint64, err error) {
	seen := 0
	for kv := range strings.SplitSeq(strings.TrimSuffix(p, ";"), ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return 0, 0, 0, fmt.Errorf("%w: marker item %q has no '='", ErrMalformed, kv)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%w: marker item %q: %v", ErrMalformed, kv, err)
		}
		switch k {
		case "kexec_segment_size":
			seg = n
		case "ima_binary_runtime_size":
			size = n
		case "ima_runtime_measurements_count":
			count = n
		default:
			continue
		}
		seen++
	}
	if seen != 3 {
		return 0, 0, 0, fmt.Errorf("%w: marker payload %q lacks a key", ErrMalformed, p)
	}
	return seg, size, count, nil
}

// Boot is the run of entries from one boot_aggregate to the next.
type Boot struct {
	Start         int      `json:"start"` // index of the boot_aggregate (or 0)
	End           int      `json:"end"`   // index after the last entry
	BootAggregate bool     `json:"boot_aggregate"`
	Violations    int      `json:"violations"`
	Markers       []Marker `json:"markers,omitempty"`
	// Exit says how this boot ended: "running" for the last boot,
	// "soft-reboot" (kexec_load then kexec_execute), "events-lost"
	// (kexec_load without a following kexec_execute), or "unmarked"
	// (another boot follows without any kexec_load).
	Exit string `json:"exit"`
}

// Verdict summarizes the timeline (DESIGN §4).
type Verdict string

const (
	VerdictEmpty       Verdict = "empty"
	VerdictColdBoot    Verdict = "cold-boot"     // one boot, no hand-over
	VerdictSoftReboots Verdict = "soft-reboots"  // every hand-over marked load+execute
	VerdictEventsLost  Verdict = "events-lost"   // a kexec_load without kexec_execute: cold boot needed
	VerdictUnmarked    Verdict = "unmarked-boot" // a later boot without kexec_load markers
)

// Timeline is the boot/kexec structure of a list.
type Timeline struct {
	Entries int     `json:"entries"`
	Boots   []Boot  `json:"boots"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
}

// BuildTimeline splits entries of a list in the given byte order at
// boot_aggregate events and classifies how each boot ended. A kexec_load
// between two boot_aggregates means a soft reboot; without a kexec_execute
// after the last kexec_load, events were lost and only a cold boot
// restores consistency.
func BuildTimeline(entries []Entry, order binary.ByteOrder) Timeline {
	tb := NewTimelineBuilder(order)
	for i := range entries {
		tb.Add(i, &entries[i])
	}
	return tb.Finish(len(entries))
}

// timelineCandidate reports whether e can carry one of the four event names
// the timeline looks for (a cheap test that spares the field walk).
// Both names contain '_' ("boot_aggregate" at 4, "kexec_" at 5), so only
// the places of that byte are checked; this equals
// Contains(boot_aggregate) || Contains(kexec_).
func timelineCandidate(e *Entry) bool {
	d := e.TemplateData
	for k := 0; ; k++ {
		i := bytes.IndexByte(d[k:], '_')
		if i < 0 {
			return false
		}
		k += i
		if k >= 4 && bytes.HasPrefix(d[k-4:], bootAggregateB) || k >= 5 && bytes.HasPrefix(d[k-5:], kexecB) {
			return true
		}
	}
}

// nameCandidate is timelineCandidate for an entry parsed with template t
// (nil: unknown), which looks only at the event name: the first n-ng or n
// field, as EventName finds it, must start with "boot_aggregate" or
// "kexec_". The entry's fields must have passed checkFields.
func nameCandidate(e *Entry, t *Template, order endian) bool {
	if t == nil || t.Legacy() {
		return timelineCandidate(e)
	}
	d, off := e.TemplateData, 0
	for _, f := range t.Fields {
		l := int(order.Uint32(d[off:]))
		if f == FieldNNG || f == FieldN {
			name := d[off+4 : off+4+l]
			return bytes.HasPrefix(name, bootAggregateB) || bytes.HasPrefix(name, kexecB)
		}
		off += 4 + l
	}
	return false
}

// TimelineBuilder builds a Timeline from entries fed in list order (Add,
// then Finish). Only entry 0, violations and entries whose event name
// starts with "boot_aggregate" or "kexec_" change the result, so a caller
// may feed just those.
type TimelineBuilder struct {
	tl    Timeline
	cur   int
	order binary.ByteOrder
}

func NewTimelineBuilder(order binary.ByteOrder) *TimelineBuilder {
	return &TimelineBuilder{cur: -1, order: endianOf(order).byteOrder()}
}

func (tb *TimelineBuilder) Add(i int, e *Entry) {
	tl := &tb.tl
	name := ""
	if timelineCandidate(e) {
		name = e.EventName(tb.order)
	}
	if name == BootAggregate || name == BootAggregateLate {
		if tb.cur >= 0 {
			tl.Boots[tb.cur].End = i
		}
		tl.Boots = append(tl.Boots, Boot{Start: i, BootAggregate: true})
		tb.cur++
	} else if tb.cur < 0 {
		tl.Boots = append(tl.Boots, Boot{Start: 0})
		tb.cur = 0
	}
	b := &tl.Boots[tb.cur]
	if e.Violation() {
		b.Violations++
	}
	if (name == MarkerKexecLoad || name == MarkerKexecExec) && e.TemplateName == "ima-buf" {
		m := Marker{Index: i, PCR: e.PCR, Name: name}
		if d, err := e.Decode(tb.order); err == nil {
			m.Payload = string(d.Buf)
			if s, l, c, err := ParseMarkerPayload(m.Payload); err == nil {
				m.SegmentSize, m.ListSize, m.Count, m.Decoded = s, l, c, true
			}
		}
		b.Markers = append(b.Markers, m)
	}
}

// Finish classifies the boots of a list of n entries.
func (tb *TimelineBuilder) Finish(n int) Timeline {
	tl := tb.tl
	tl.Entries = n
	if tb.cur >= 0 {
		tl.Boots[tb.cur].End = n
	}
	tl.Verdict = VerdictEmpty
	tl.Reason = "the list is empty"
	if len(tl.Boots) == 0 {
		return tl
	}
	tl.Verdict, tl.Reason = VerdictColdBoot, "one boot, no hand-over"
	lost, unmarked := -1, -1
	for i := range tl.Boots {
		b := &tl.Boots[i]
		lastLoad, lastExec := -1, -1
		for _, m := range b.Markers {
			if m.Name == MarkerKexecLoad {
				lastLoad = m.Index
			} else {
				lastExec = m.Index
			}
		}
		switch {
		case i == len(tl.Boots)-1:
			b.Exit = "running"
		case lastLoad >= 0 && lastExec > lastLoad:
			b.Exit = "soft-reboot"
		case lastLoad >= 0:
			b.Exit = "events-lost"
			if lost < 0 {
				lost = i
			}
		default:
			b.Exit = "unmarked"
			if unmarked < 0 {
				unmarked = i
			}
		}
	}
	switch {
	case lost >= 0:
		tl.Verdict = VerdictEventsLost
		tl.Reason = fmt.Sprintf("boot %d (entries %d-%d) has kexec_load without a later kexec_execute: events between them were not carried over, the list cannot match the PCRs; a cold boot is needed",
			lost+1, tl.Boots[lost].Start, tl.Boots[lost].End-1)
	case unmarked >= 0:
		tl.Verdict = VerdictUnmarked
		tl.Reason = fmt.Sprintf("boot %d ends in another boot_aggregate without a kexec_load marker; only the PCR check can tell whether the hand-over was complete", unmarked+1)
	case len(tl.Boots) > 1:
		tl.Verdict = VerdictSoftReboots
		tl.Reason = fmt.Sprintf("%d soft reboots, each marked by kexec_load and kexec_execute", len(tl.Boots)-1)
	}
	return tl
}
