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
	f.Add(packZboot(f, debImage(f), ZbootGzip))
	f.Add(packZboot(f, debImage(f), ZbootZstd))
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

// FuzzZboot feeds arbitrary bytes to the zboot unpacker (it must never
// panic nor return more than its limit) and checks the round trip: an
// Image packed into a zboot image with either compression unpacks to the
// same bytes, and ParseImage agrees with the direct parse of those bytes.
func FuzzZboot(f *testing.F) {
	img := debImage(f)
	f.Add(packZboot(f, img, ZbootGzip), false)
	f.Add(packZboot(f, img, ZbootZstd), true)
	f.Add(img, false)
	f.Add(packZboot(f, img, "lz4"), false)
	f.Add(img, true)
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte, useZstd bool) {
		if raw, _, err := unpackZboot(b, limit); err == nil && len(raw) > limit {
			t.Fatalf("unpacked %d bytes, limit %d", len(raw), limit)
		}
		comp := ZbootGzip
		if useZstd {
			comp = ZbootZstd
		}
		raw, z, err := unpackZboot(packZboot(t, b, comp), limit)
		if len(b) == 0 {
			return // an empty gzip stream still has bytes, an empty zstd frame too: nothing to compare
		}
		if err != nil {
			t.Fatalf("%s round trip: %v", comp, err)
		}
		if z.Compression != comp || !bytes.Equal(raw, b) {
			t.Fatalf("%s round trip changed the payload", comp)
		}
		// The payload of a zboot image is a raw Image: compare with the
		// direct parse of raw inputs (a nested Image.gz or zboot image is
		// refused inside zboot).
		direct, derr := parseImage(b, limit)
		if derr == nil && direct.Compression != "" {
			return
		}
		viaZ, zerr := parseImage(packZboot(t, b, comp), limit)
		if (derr == nil) != (zerr == nil) {
			t.Fatalf("direct parse: %v; through zboot: %v", derr, zerr)
		}
		if derr == nil && (direct.ImageSize != viaZ.ImageSize || direct.TextOffset != viaZ.TextOffset || direct.Flags != viaZ.Flags || !bytes.Equal(direct.Kernel, viaZ.Kernel)) {
			t.Fatal("zboot parse disagrees with the direct parse")
		}
	})
}
