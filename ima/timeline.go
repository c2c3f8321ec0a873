package ima

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
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
	Payload     string `json:"payload"` // at most MaxMarkerPayload bytes of it
	Truncated   bool   `json:"payload_truncated,omitempty"`
	Decoded     bool   `json:"decoded"` // payload had the three expected keys
	SegmentSize uint64 `json:"kexec_segment_size"`
	ListSize    uint64 `json:"ima_binary_runtime_size"`
	Count       uint64 `json:"ima_runtime_measurements_count"`
}

// Bounds of a timeline, so that its memory and its printed size do not
// grow with the list: the first KeepFirstBoots and the last
// KeepLastBoots boots, and the first KeepProblemBoots of the others that
// end in events-lost or unmarked, are kept whole; the others are counted
// (Timeline.BootCount, Exits). A boot keeps its first KeepMarkers
// markers and the last kexec_load and kexec_execute (MarkerCount says
// how many it had); a payload keeps its first MaxMarkerPayload bytes.
const (
	KeepFirstBoots   = 8
	KeepLastBoots    = 8
	KeepProblemBoots = 64
	KeepMarkers      = 6
	MaxMarkerPayload = 256
	// MaxTimelineBoots bounds the boots a timeline (and a checkpoint) holds.
	MaxTimelineBoots = KeepFirstBoots + KeepProblemBoots + KeepLastBoots + 1
)

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
	Number        int      `json:"number"` // 1 for the list's first boot
	Start         int      `json:"start"`  // index of the boot_aggregate (or 0)
	End           int      `json:"end"`    // index after the last entry
	BootAggregate bool     `json:"boot_aggregate"`
	Violations    int      `json:"violations"`
	Markers       []Marker `json:"markers,omitempty"`
	MarkerCount   int      `json:"marker_count,omitempty"` // markers in the boot (Markers keeps some)
	// AggregateAlgo and AggregateMatch: the boot_aggregate's digest
	// algorithm and whether it matches the quoted firmware PCRs
	// (bootaggregate.go); empty when not compared.
	AggregateAlgo  string `json:"boot_aggregate_algo,omitempty"`
	AggregateMatch string `json:"boot_aggregate_match,omitempty"`
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

// Timeline is the boot/kexec structure of a list, bounded (see
// KeepFirstBoots): Boots holds the kept boots in order, BootCount and
// Exits count all of them.
type Timeline struct {
	Entries      int            `json:"entries"`
	BootCount    int            `json:"boot_count"`
	BootsOmitted int            `json:"boots_omitted,omitempty"`
	Exits        map[string]int `json:"exits,omitempty"` // boots per exit
	// AggregateMismatches counts boots whose boot_aggregate does not
	// match the quoted firmware PCRs (all boots, kept or not).
	AggregateMismatches int     `json:"boot_aggregate_mismatches,omitempty"`
	Boots               []Boot  `json:"boots"`
	Verdict             Verdict `json:"verdict"`
	Reason              string  `json:"reason"`
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
// may feed just those. Its memory is bounded (see KeepFirstBoots).
type TimelineBuilder struct {
	kept     []Boot // closed boots kept: the first, and problem ones
	ring     []Boot // the last closed boots not kept (at most KeepLastBoots)
	open     *Boot  // the current boot
	count    int    // boots so far
	problems int    // problem boots kept after the first ones
	exits    map[string]int
	order    binary.ByteOrder
	expect   map[string][]byte // boot_aggregates the firmware PCRs give, per algorithm
	aggBad   int               // boots whose boot_aggregate mismatches
}

// SetFirmware gives the quoted values whose PCRs 0-9 each later
// boot_aggregate is compared with.
func (tb *TimelineBuilder) SetFirmware(quoted PCRValues) { tb.expect = expectedAggregates(quoted) }

func NewTimelineBuilder(order binary.ByteOrder) *TimelineBuilder {
	return &TimelineBuilder{order: endianOf(order).byteOrder(), exits: map[string]int{}}
}

// exitOf says how a closed boot ended.
func exitOf(b *Boot) string {
	lastLoad, lastExec := -1, -1
	for _, m := range b.Markers {
		if m.Name == MarkerKexecLoad {
			lastLoad = max(lastLoad, m.Index)
		} else {
			lastExec = max(lastExec, m.Index)
		}
	}
	switch {
	case lastLoad >= 0 && lastExec > lastLoad:
		return "soft-reboot"
	case lastLoad >= 0:
		return "events-lost"
	}
	return "unmarked"
}

func problemExit(e string) bool { return e == "events-lost" || e == "unmarked" }

// closeOpen ends the open boot at entry i and files it.
func (tb *TimelineBuilder) closeOpen(i int) {
	b := *tb.open
	tb.open = nil
	b.End = i
	b.Exit = exitOf(&b)
	tb.exits[b.Exit]++
	tb.file(b)
}

// file keeps a closed boot or puts it in the ring of the last ones.
func (tb *TimelineBuilder) file(b Boot) {
	switch {
	case b.Number <= KeepFirstBoots:
		tb.kept = append(tb.kept, b)
	case (problemExit(b.Exit) || b.AggregateMatch == AggregateMismatch) && tb.problems < KeepProblemBoots:
		tb.problems++
		tb.kept = append(tb.kept, b)
	default:
		if len(tb.ring) == KeepLastBoots {
			tb.ring = append(tb.ring[:0], tb.ring[1:]...)
		}
		tb.ring = append(tb.ring, b)
	}
}

func (tb *TimelineBuilder) Add(i int, e *Entry) {
	name := ""
	if timelineCandidate(e) {
		name = e.EventName(tb.order)
	}
	if name == BootAggregate || name == BootAggregateLate {
		if tb.open != nil {
			tb.closeOpen(i)
		}
		tb.count++
		tb.open = &Boot{Number: tb.count, Start: i, BootAggregate: true}
		if tb.expect != nil {
			tb.open.AggregateAlgo, tb.open.AggregateMatch = aggregateMatch(e, endianOf(tb.order), tb.expect)
			if tb.open.AggregateMatch == AggregateMismatch {
				tb.aggBad++
			}
		}
	} else if tb.open == nil {
		tb.count++
		tb.open = &Boot{Number: tb.count, Start: 0}
	}
	b := tb.open
	if e.Violation() {
		b.Violations++
	}
	if (name == MarkerKexecLoad || name == MarkerKexecExec) && e.TemplateName == "ima-buf" {
		m := Marker{Index: i, PCR: e.PCR, Name: name}
		if d, err := e.Decode(tb.order); err == nil {
			p := d.Buf
			if s, l, c, err := ParseMarkerPayload(string(p)); err == nil {
				m.SegmentSize, m.ListSize, m.Count, m.Decoded = s, l, c, true
			}
			if len(p) > MaxMarkerPayload {
				p, m.Truncated = p[:MaxMarkerPayload], true
			}
			m.Payload = string(p)
		}
		addMarker(b, m)
	}
}

// addMarker keeps the first KeepMarkers markers of a boot, then only the
// last kexec_load and the last kexec_execute after them (all a boot's
// exit depends on).
func addMarker(b *Boot, m Marker) {
	b.MarkerCount++
	if len(b.Markers) < KeepMarkers {
		b.Markers = append(b.Markers, m)
		return
	}
	for k := KeepMarkers; k < len(b.Markers); k++ {
		if b.Markers[k].Name == m.Name {
			b.Markers = append(b.Markers[:k], b.Markers[k+1:]...)
			break
		}
	}
	b.Markers = append(b.Markers, m)
}

// state returns every boot the builder holds, in order: closed ones with
// their exits, the open one last (Exit "").
func (tb *TimelineBuilder) state() []Boot {
	out := make([]Boot, 0, len(tb.kept)+len(tb.ring)+1)
	out = append(out, tb.kept...)
	out = append(out, tb.ring...)
	if tb.open != nil {
		out = append(out, *tb.open)
	}
	slices.SortFunc(out, func(a, b Boot) int { return a.Number - b.Number })
	for i := range out {
		out[i].Markers = slices.Clone(out[i].Markers)
	}
	return out
}

// restoreState sets the builder to what state returned, with count boots
// so far and exits counted.
func (tb *TimelineBuilder) restoreState(boots []Boot, count int, exits map[string]int, aggBad int) {
	tb.kept, tb.ring, tb.open, tb.problems = nil, nil, nil, 0
	tb.count, tb.aggBad = count, aggBad
	tb.exits = maps.Clone(exits)
	if tb.exits == nil {
		tb.exits = map[string]int{}
	}
	for i, b := range boots {
		b.Markers = slices.Clone(b.Markers)
		if i == len(boots)-1 && b.Exit == "" {
			tb.open = &b
			continue
		}
		tb.file(b)
	}
}

// Finish classifies the boots of a list of n entries.
func (tb *TimelineBuilder) Finish(n int) Timeline {
	tl := Timeline{Entries: n, BootCount: tb.count, Exits: maps.Clone(tb.exits), Boots: tb.state(), AggregateMismatches: tb.aggBad}
	if len(tl.Boots) > 0 && tl.Boots[len(tl.Boots)-1].Exit == "" {
		last := &tl.Boots[len(tl.Boots)-1]
		last.End, last.Exit = n, "running"
		tl.Exits["running"]++
	}
	tl.BootsOmitted = tl.BootCount - len(tl.Boots)
	tl.Verdict = VerdictEmpty
	tl.Reason = "the list is empty"
	if len(tl.Boots) == 0 {
		tl.Exits = nil
		return tl
	}
	tl.Verdict, tl.Reason = VerdictColdBoot, "one boot, no hand-over"
	var lost, unmarked *Boot
	for i := range tl.Boots {
		b := &tl.Boots[i]
		if b.Exit == "events-lost" && lost == nil {
			lost = b
		}
		if b.Exit == "unmarked" && unmarked == nil {
			unmarked = b
		}
	}
	switch {
	case lost != nil:
		tl.Verdict = VerdictEventsLost
		tl.Reason = fmt.Sprintf("boot %d (entries %d-%d) has kexec_load without a later kexec_execute: events between them were not carried over, the list cannot match the PCRs; a cold boot is needed",
			lost.Number, lost.Start, lost.End-1)
	case unmarked != nil:
		tl.Verdict = VerdictUnmarked
		tl.Reason = fmt.Sprintf("boot %d ends in another boot_aggregate without a kexec_load marker; only the PCR check can tell whether the hand-over was complete", unmarked.Number)
	case tl.BootCount > 1:
		tl.Verdict = VerdictSoftReboots
		tl.Reason = fmt.Sprintf("%d soft reboots, each marked by kexec_load and kexec_execute", tl.BootCount-1)
	}
	return tl
}
