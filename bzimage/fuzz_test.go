package bzimage

import (
	"testing"

	"github.com/gokexec/gokexec/segment"
)

func FuzzParse(f *testing.F) {
	for _, n := range fixtures {
		b := fixture(f, n)
		f.Add(b[:20480+4096])
	}
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := Parse(b)
		if err != nil {
			return
		}
		if im.MemSize() < uint64(len(im.ProtectedMode)) {
			t.Fatal("MemSize below the image size")
		}
		m := segment.Map{{Range: segment.Range{Start: 0x100000, End: 0x4000_0000}, Type: segment.TypeRAM}}
		buf, _, err := BuildParams(im, 0x10_0000, &Params{E820: m, Cmdline: "console=ttyS0"})
		if err == nil {
			if _, err := SetupDataAt(buf, 0x10_0000); err != nil {
				t.Fatal(err)
			}
		}
		if im.Xloadflags&XLFEFIKexec != 0 {
			p := &Params{E820: m, Cmdline: "console=ttyS0", EFI: &EFI{LoaderSignature: "EL64", Systab: 0x3f8ee018,
				MemdescSize: 40, MemdescVersion: 1, Memmap: make([]byte, 80)}}
			buf, pl, err := BuildParamsEFI(im, 0x10_0000, p)
			if err == nil {
				nodes, err := SetupDataAt(buf, 0x10_0000)
				if err != nil || len(nodes) == 0 || nodes[len(nodes)-1].Type != SetupEFI {
					t.Fatalf("EFI chain %+v: %v", nodes, err)
				}
				if pl.MemmapAddr+80 > 0x10_0000+uint64(len(buf)) {
					t.Fatal("EFI memory map outside the block")
				}
			}
		}
	})
}
