// Package segment models physical memory for a kexec load: the firmware
// memory map, the RAM that segments may occupy, top-down placement with
// alignment and bounds, and the rules the kernel enforces on a segment list.
//
// Invariants:
//   - The package is pure: it never reads the host. Memory maps are parsed
//     from readers or fs.FS values handed in by the caller.
//   - Addresses and sizes are uint64 physical values; every range is
//     half-open [Start, End) and every sum is checked for overflow.
//   - Page size is a parameter, never read from the host.
//   - Placement is deterministic: the same map, reservations and requests
//     always give the same addresses.
package segment

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Range is a half-open physical range [Start, End).
type Range struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// Size returns End-Start (0 for an empty or inverted range).
func (r Range) Size() uint64 {
	if r.End <= r.Start {
		return 0
	}
	return r.End - r.Start
}

// Overlaps reports whether r and o share at least one byte.
func (r Range) Overlaps(o Range) bool { return r.Start < o.End && o.Start < r.End }

// Contains reports whether o lies entirely inside r.
func (r Range) Contains(o Range) bool { return o.Start >= r.Start && o.End <= r.End }

func (r Range) String() string { return fmt.Sprintf("[%#x-%#x)", r.Start, r.End) }

// Type is an E820 memory type, the vocabulary of /sys/firmware/memmap and of
// x86 boot params; other architectures use TypeRAM and TypeReserved only.
type Type uint32

// E820 types (arch/x86/include/uapi/asm/e820.h and the kernel's e820 naming).
const (
	TypeRAM          Type = 1
	TypeReserved     Type = 2
	TypeACPI         Type = 3
	TypeNVS          Type = 4
	TypeUnusable     Type = 5
	TypePMEM         Type = 7
	TypePRAM         Type = 12
	TypeSoftReserved Type = 0xefffffff
)

var typeNames = map[Type]string{
	TypeRAM:          "System RAM",
	TypeReserved:     "Reserved",
	TypeACPI:         "ACPI Tables",
	TypeNVS:          "ACPI Non-volatile Storage",
	TypeUnusable:     "Unusable memory",
	TypePMEM:         "Persistent Memory",
	TypePRAM:         "Persistent Memory (legacy)",
	TypeSoftReserved: "Soft Reserved",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// TypeFromName maps the names the kernel prints in /sys/firmware/memmap/*/type
// and /proc/iomem to E820 types. Unknown names are reserved memory: a loader
// must never place anything in memory it does not understand.
func TypeFromName(name string) Type {
	for t, n := range typeNames {
		if n == name {
			return t
		}
	}
	switch name {
	case "RAM buffer":
		return TypeReserved
	case "Persistent Memory (legacy)":
		return TypePRAM
	}
	return TypeReserved
}

// Region is one entry of a memory map.
type Region struct {
	Range
	Type Type `json:"type"`
}

// Map is a physical memory map, sorted by start address.
type Map []Region

// Normalize sorts the map and merges adjacent or overlapping entries of the
// same type. Overlapping entries of different types are an error: the map
// would be ambiguous about what memory is.
func (m Map) Normalize() (Map, error) {
	out := make(Map, 0, len(m))
	for _, r := range m {
		if r.Size() == 0 {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].End < out[j].End
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if r.Start <= last.End && r.Type == last.Type {
				if r.End > last.End {
					last.End = r.End
				}
				continue
			}
			if r.Start < last.End {
				return nil, fmt.Errorf("%w: %v %v overlaps %v %v", ErrBadMap, r.Range, r.Type, last.Range, last.Type)
			}
		}
		merged = append(merged, r)
	}
	return merged, nil
}

// RAM returns the ranges of usable RAM, sorted.
func (m Map) RAM() []Range {
	var out []Range
	for _, r := range m {
		if r.Type == TypeRAM {
			out = append(out, r.Range)
		}
	}
	return out
}

// Errors returned by this package; match them with errors.Is.
var (
	ErrBadMap     = errors.New("invalid memory map")
	ErrNoRoom     = errors.New("no room in RAM")
	ErrBadSegment = errors.New("invalid segment")
	ErrOverflow   = errors.New("address arithmetic overflows")
)

// AlignUp rounds v up to a multiple of a (a power of two). ok is false on overflow.
func AlignUp(v, a uint64) (uint64, bool) {
	if a <= 1 {
		return v, true
	}
	r := v + (a - 1)
	if r < v {
		return 0, false
	}
	return r &^ (a - 1), true
}

// AlignDown rounds v down to a multiple of a (a power of two).
func AlignDown(v, a uint64) uint64 {
	if a <= 1 {
		return v
	}
	return v &^ (a - 1)
}

func isPow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

// Request describes memory wanted from an Allocator.
type Request struct {
	Name  string
	Size  uint64 // bytes; rounded up to the page size
	Align uint64 // power of two; at least the page size
	Min   uint64 // lowest acceptable start
	Max   uint64 // highest acceptable end (exclusive); 0 means no limit
	// Fixed, when set, demands exactly this start address.
	Fixed    bool
	FixedAt  uint64
	BottomUp bool // place as low as possible instead of as high as possible
}

// Allocator hands out non-overlapping page-aligned ranges of RAM.
type Allocator struct {
	page uint64
	free []Range // sorted, disjoint, page-aligned
}

// NewAllocator starts from the RAM ranges of m, trimmed to page boundaries.
func NewAllocator(ram []Range, pageSize uint64) (*Allocator, error) {
	if !isPow2(pageSize) {
		return nil, fmt.Errorf("%w: page size %d is not a power of two", ErrBadMap, pageSize)
	}
	a := &Allocator{page: pageSize}
	for _, r := range ram {
		s, ok := AlignUp(r.Start, pageSize)
		if !ok {
			continue
		}
		e := AlignDown(r.End, pageSize)
		if e > s {
			a.free = append(a.free, Range{s, e})
		}
	}
	sort.Slice(a.free, func(i, j int) bool { return a.free[i].Start < a.free[j].Start })
	return a, nil
}

// PageSize returns the allocator's page size.
func (a *Allocator) PageSize() uint64 { return a.page }

// Free returns a copy of the ranges still free.
func (a *Allocator) Free() []Range { return append([]Range(nil), a.free...) }

// Reserve removes r (rounded out to pages) from the free ranges, so nothing
// is placed there.
func (a *Allocator) Reserve(r Range) {
	s := AlignDown(r.Start, a.page)
	e, ok := AlignUp(r.End, a.page)
	if !ok {
		e = math.MaxUint64
	}
	var out []Range
	for _, f := range a.free {
		if !f.Overlaps(Range{s, e}) {
			out = append(out, f)
			continue
		}
		if f.Start < s {
			out = append(out, Range{f.Start, s})
		}
		if e < f.End {
			out = append(out, Range{e, f.End})
		}
	}
	a.free = out
}

// Place finds room for req, reserves it and returns its range.
func (a *Allocator) Place(req Request) (Range, error) {
	size, ok := AlignUp(req.Size, a.page)
	if !ok || size == 0 {
		return Range{}, fmt.Errorf("%w: %s: size %#x", ErrBadSegment, req.Name, req.Size)
	}
	align := req.Align
	if align < a.page {
		align = a.page
	}
	if !isPow2(align) {
		return Range{}, fmt.Errorf("%w: %s: alignment %#x is not a power of two", ErrBadSegment, req.Name, req.Align)
	}
	max := req.Max
	if max == 0 {
		max = math.MaxUint64
	}
	if req.Fixed {
		end := req.FixedAt + size
		if end < req.FixedAt {
			return Range{}, fmt.Errorf("%w: %s at %#x size %#x", ErrOverflow, req.Name, req.FixedAt, size)
		}
		want := Range{req.FixedAt, end}
		for _, f := range a.free {
			if f.Contains(want) {
				a.Reserve(want)
				return want, nil
			}
		}
		return Range{}, fmt.Errorf("%w: %s needs %v, which is not free RAM", ErrNoRoom, req.Name, want)
	}
	try := func(f Range) (Range, bool) {
		lo, hi := f.Start, f.End
		if lo < req.Min {
			lo = req.Min
		}
		if hi > max {
			hi = max
		}
		if hi <= lo || hi-lo < size {
			return Range{}, false
		}
		if req.BottomUp {
			s, ok := AlignUp(lo, align)
			if !ok || s > hi || hi-s < size {
				return Range{}, false
			}
			return Range{s, s + size}, true
		}
		s := AlignDown(hi-size, align)
		if s < lo {
			return Range{}, false
		}
		return Range{s, s + size}, true
	}
	if req.BottomUp {
		for _, f := range a.free {
			if r, ok := try(f); ok {
				a.Reserve(r)
				return r, nil
			}
		}
	} else {
		for i := len(a.free) - 1; i >= 0; i-- {
			if r, ok := try(a.free[i]); ok {
				a.Reserve(r)
				return r, nil
			}
		}
	}
	return Range{}, fmt.Errorf("%w: %s needs %#x bytes aligned to %#x within [%#x, %#x)", ErrNoRoom, req.Name, size, align, req.Min, max)
}

// MaxSegments is the kernel's KEXEC_SEGMENT_MAX.
const MaxSegments = 16

// Segment is one kexec segment: Buf is copied to [Mem, Mem+Memsz) and the
// rest of that range is zeroed by the kernel.
type Segment struct {
	Name  string
	Buf   []byte
	Mem   uint64
	Memsz uint64
}

// Validate checks a segment list against every rule kexec_load enforces
// (kernel/kexec_core.c sanity_check_segment_list) and the RAM it must lie in:
// at most MaxSegments, page-aligned mem and memsz, len(Buf) <= Memsz, no
// overlap, no wrap-around, every segment inside one RAM range.
func Validate(segs []Segment, ram []Range, pageSize uint64) error {
	if len(segs) == 0 {
		return fmt.Errorf("%w: no segments", ErrBadSegment)
	}
	if len(segs) > MaxSegments {
		return fmt.Errorf("%w: %d segments, the kernel accepts at most %d", ErrBadSegment, len(segs), MaxSegments)
	}
	for i, s := range segs {
		end := s.Mem + s.Memsz
		switch {
		case s.Mem%pageSize != 0 || s.Memsz%pageSize != 0:
			return fmt.Errorf("%w: %s: mem %#x memsz %#x not aligned to page size %#x", ErrBadSegment, s.Name, s.Mem, s.Memsz, pageSize)
		case s.Memsz == 0:
			return fmt.Errorf("%w: %s: empty", ErrBadSegment, s.Name)
		case uint64(len(s.Buf)) > s.Memsz:
			return fmt.Errorf("%w: %s: bufsz %#x > memsz %#x", ErrBadSegment, s.Name, len(s.Buf), s.Memsz)
		case end < s.Mem:
			return fmt.Errorf("%w: %s: mem %#x + memsz %#x wraps", ErrOverflow, s.Name, s.Mem, s.Memsz)
		}
		r := Range{s.Mem, end}
		inRAM := false
		for _, m := range ram {
			if m.Contains(r) {
				inRAM = true
				break
			}
		}
		if !inRAM {
			return fmt.Errorf("%w: %s: %v is not inside one RAM range", ErrBadSegment, s.Name, r)
		}
		for _, o := range segs[:i] {
			if r.Overlaps(Range{o.Mem, o.Mem + o.Memsz}) {
				return fmt.Errorf("%w: %s %v overlaps %s [%#x-%#x)", ErrBadSegment, s.Name, r, o.Name, o.Mem, o.Mem+o.Memsz)
			}
		}
	}
	return nil
}
