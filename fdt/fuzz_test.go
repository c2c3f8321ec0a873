package fdt

import (
	"bytes"
	"testing"
)

// FuzzParse checks that Parse never panics, that whatever it accepts
// serializes to a blob it accepts again and that serializes identically,
// and that a canonical version-17 blob comes back byte for byte.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"dtc-board.dtb", "dtc-cells32.dtb", "dtc-uefi-nomem.dtb", "dtc-board-Hboth-symbols.dtb"} {
		f.Add(readGolden(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Parse(b)
		if err != nil {
			return
		}
		m1, err := tr.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed tree: %v", err)
		}
		tr2, err := Parse(m1)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(b))): %v", err)
		}
		m2, err := tr2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m1, m2) {
			t.Fatal("second round trip differs")
		}
		h := tr.Header
		if h.Version == Version && h.LastCompVersion == LastCompVersion && tr.layout.valid &&
			!bytes.Equal(m1, b[:h.TotalSize]) {
			t.Fatal("canonical v17 blob does not round-trip byte for byte")
		}
		// Queries must not panic either.
		_, _ = tr.MemoryRanges()
		_, _ = tr.ReservedRanges()
	})
}
