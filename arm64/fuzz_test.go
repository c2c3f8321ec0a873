package arm64

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"testing"
)

// FuzzParseImage checks that ParseImage never panics and that whatever it
// accepts satisfies the header rules it promises.
func FuzzParseImage(f *testing.F) {
	hdr := readFile(f, "testdata/deb61-arm64-Image-header.bin")
	f.Add(hdr)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(hdr)
	zw.Close()
	f.Add(gz.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := parseImage(b, 1<<20)
		if err != nil {
			return
		}
		if len(im.Kernel) < HeaderSize || binary.LittleEndian.Uint32(im.Kernel[0x38:]) != Magic {
			t.Fatal("accepted an input without the Image magic")
		}
		if im.ImageSize == 0 || im.BigEndian() || uint64(len(im.Kernel)) > im.ImageSize || im.TextOffset%4096 != 0 {
			t.Fatalf("accepted a header it must refuse: %+v", im)
		}
		if im.Compression == "" && !bytes.Equal(im.Kernel, b) {
			t.Fatal("raw Image not returned verbatim")
		}
		if p, err := im.Placement(); err == nil {
			if _, err := im.LoadAddress(0); err == nil && p.Size < im.ImageSize {
				t.Fatal("placement smaller than image_size")
			}
		}
	})
}
