package segment

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

func FuzzParseIomem(f *testing.F) {
	if b, err := os.ReadFile("testdata/iomem-devhost.txt"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("00100000-bfffffff : System RAM\n"))
	if b, err := os.ReadFile("testdata/iomem-aavmf-arm64"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseIomem(bytes.NewReader(b))
		if err != nil {
			return
		}
		// The usable view refuses only with ErrBadMap (a malformed nested
		// reserved line, which the top-level view skips), and its RAM lies
		// inside the top-level RAM.
		if u, err := ParseIomemUsable(bytes.NewReader(b)); err != nil {
			if !errors.Is(err, ErrBadMap) {
				t.Fatalf("ParseIomemUsable: %v", err)
			}
		} else if len(Subtract(u.RAM(), m.RAM())) != 0 {
			t.Fatalf("usable RAM %v outside RAM %v", u.RAM(), m.RAM())
		}
		for i, r := range m {
			if r.End <= r.Start || (i > 0 && r.Start < m[i-1].End) {
				t.Fatalf("unsorted or empty entry %d: %v", i, m)
			}
		}
		a, err := NewAllocator(m.RAM(), 4096)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := a.Place(Request{Name: "x", Size: 8192}); err == nil {
			segs := []Segment{{Name: "x", Mem: r.Start, Memsz: r.Size()}}
			if err := Validate(segs, m.RAM(), 4096); err != nil {
				t.Fatalf("placed segment fails validation: %v", err)
			}
		}
	})
}

func FuzzParseCrashRegions(f *testing.F) {
	f.Add([]byte(iomemCrash))
	f.Add([]byte("  2b000000-3affffff : Crash kernel\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseCrashRegions(bytes.NewReader(b))
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.End <= r.Start || (i > 0 && r.Start < rs[i-1].End) {
				t.Fatalf("bad region %d: %v", i, rs)
			}
		}
		rest := Subtract([]Range{{0, 1 << 40}}, rs)
		for _, x := range rest {
			for _, r := range rs {
				if x.Overlaps(r) {
					t.Fatalf("Subtract left %v overlapping %v", x, r)
				}
			}
		}
	})
}
