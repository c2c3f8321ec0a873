package segment

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// CrashKernelName is the name /proc/iomem gives the memory reserved with
// crashkernel= (the high and the ",low" reservation alike).
const CrashKernelName = "Crash kernel"

// ErrNoCrashRegion says the running kernel reserved no memory for a crash
// kernel (booted without crashkernel=, or the reservation failed).
var ErrNoCrashRegion = errors.New("no crash kernel region reserved (boot with crashkernel=SIZE)")

// maxCrashRegions bounds the reservations a parser accepts: x86 has at most
// two (crashkernel= and crashkernel=,low), other architectures no more.
const maxCrashRegions = 8

// ParseCrashRegions returns the "Crash kernel" ranges of an /proc/iomem
// listing, at any nesting depth (they sit under a System RAM entry), sorted
// by address. No such entry is ErrNoCrashRegion; an entry with all-zero
// addresses (the file read without privilege) is ErrBadMap.
func ParseCrashRegions(r io.Reader) ([]Range, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var out []Range
	line := 0
	for sc.Scan() {
		line++
		if line > 4*maxMapEntries {
			return nil, fmt.Errorf("%w: iomem has more than %d lines", ErrBadMap, 4*maxMapEntries)
		}
		rng, name, ok := strings.Cut(sc.Text(), " : ")
		if !ok || strings.TrimSpace(name) != CrashKernelName {
			continue
		}
		ss, es, ok := strings.Cut(strings.TrimSpace(rng), "-")
		if !ok {
			return nil, fmt.Errorf("%w: iomem line %d: %q is not start-end", ErrBadMap, line, rng)
		}
		start, err1 := strconv.ParseUint(ss, 16, 64)
		last, err2 := strconv.ParseUint(es, 16, 64)
		switch {
		case err1 != nil || err2 != nil || last < start:
			return nil, fmt.Errorf("%w: iomem line %d: bad range %q", ErrBadMap, line, rng)
		case start == 0 && last == 0:
			return nil, fmt.Errorf("%w: iomem shows the crash kernel region at address 0 (read it as root)", ErrBadMap)
		case last == ^uint64(0):
			return nil, fmt.Errorf("%w: iomem line %d: crash region ends at the top of the address space", ErrBadMap, line)
		}
		if len(out) >= maxCrashRegions {
			return nil, fmt.Errorf("%w: more than %d crash kernel regions", ErrBadMap, maxCrashRegions)
		}
		out = append(out, Range{start, last + 1})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: iomem: %w", ErrBadMap, err)
	}
	if len(out) == 0 {
		return nil, ErrNoCrashRegion
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	for i := 1; i < len(out); i++ {
		if out[i].Start < out[i-1].End {
			return nil, fmt.Errorf("%w: crash regions %v and %v overlap", ErrBadMap, out[i-1], out[i])
		}
	}
	return out, nil
}

// Subtract returns the parts of ranges that lie outside every range of
// cut, sorted and without empty pieces. Neither input needs to be sorted.
func Subtract(ranges, cut []Range) []Range {
	cur := make([]Range, 0, len(ranges))
	for _, r := range ranges {
		if r.Size() > 0 {
			cur = append(cur, r)
		}
	}
	for _, c := range cut {
		if c.Size() == 0 {
			continue
		}
		next := cur[:0:0]
		for _, r := range cur {
			if !r.Overlaps(c) {
				next = append(next, r)
				continue
			}
			if r.Start < c.Start {
				next = append(next, Range{r.Start, c.Start})
			}
			if c.End < r.End {
				next = append(next, Range{c.End, r.End})
			}
		}
		cur = next
	}
	sort.Slice(cur, func(i, j int) bool { return cur[i].Start < cur[j].Start })
	return cur
}

// Intersect returns the parts of ranges that lie inside window, sorted.
func Intersect(ranges []Range, window Range) []Range {
	var out []Range
	for _, r := range ranges {
		s, e := r.Start, r.End
		if s < window.Start {
			s = window.Start
		}
		if e > window.End {
			e = window.End
		}
		if e > s {
			out = append(out, Range{s, e})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}
