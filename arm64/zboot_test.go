package arm64

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// packZboot wraps payload-to-be img in a zboot header laid out as
// zboot-header.S lays it out: "MZ", "zimg", payload offset and size, the
// compression type at 0x18, LINUX_PE_MAGIC at 0x38; the payload at a 4 KiB
// offset and, for non-gzip types, the decompressed size after it.
func packZboot(t testing.TB, img []byte, comp string) []byte {
	t.Helper()
	var payload []byte
	switch comp {
	case ZbootGzip:
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
		zw.Write(img)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		payload = b.Bytes()
	case ZbootZstd, ZbootZstd22:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		payload = enc.EncodeAll(img, nil)
		enc.Close()
	default:
		payload = append([]byte(nil), img...)
	}
	const off = 4096
	b := make([]byte, off, off+len(payload)+4)
	copy(b, "MZ\x00\x00zimg")
	le := binary.LittleEndian
	le.PutUint32(b[8:], off)
	le.PutUint32(b[12:], uint32(len(payload)))
	copy(b[0x18:0x38], comp)
	le.PutUint32(b[0x38:], zbootMagic)
	le.PutUint32(b[0x3c:], 0x40)
	b = append(b, payload...)
	if comp != ZbootGzip {
		b = le.AppendUint32(b, uint32(len(img)))
	}
	return b
}

// debImage is Debian's arm64 Image header followed by filler: a raw Image
// ParseImage accepts.
func debImage(t testing.TB) []byte {
	return append(readFile(t, "testdata/deb61-arm64-Image-header.bin"), bytes.Repeat([]byte{0x5a}, 8192)...)
}

func TestZbootUnpacks(t *testing.T) {
	img := debImage(t)
	direct, err := ParseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, comp := range []string{ZbootGzip, ZbootZstd, ZbootZstd22} {
		t.Run(comp, func(t *testing.T) {
			z := packZboot(t, img, comp)
			im, err := ParseImage(z)
			if err != nil {
				t.Fatal(err)
			}
			if im.Compression != "zboot-"+comp {
				t.Errorf("Compression %q", im.Compression)
			}
			if !bytes.Equal(im.Kernel, img) {
				t.Fatal("unpacked Image differs from the packed one")
			}
			if im.ImageSize != direct.ImageSize || im.TextOffset != direct.TextOffset || im.Flags != direct.Flags ||
				im.Code0 != direct.Code0 || im.Code1 != direct.Code1 || im.PEOffset != direct.PEOffset {
				t.Fatalf("header from zboot %+v, direct %+v", *im, *direct)
			}
		})
	}
}

// An unsupported compression type is named in the error; so are the
// header's other defects.
func TestZbootBadInputs(t *testing.T) {
	img := debImage(t)
	gz := packZboot(t, img, ZbootGzip)
	zs := packZboot(t, img, ZbootZstd)
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	le := binary.LittleEndian
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
		says string
	}{
		{"lz4", packZboot(t, img, "lz4"), ErrZbootCompression, `"lz4"`},
		{"xzkern", packZboot(t, img, "xzkern"), ErrZbootCompression, `"xzkern"`},
		{"empty-type", mod(gz, func(b []byte) []byte { clear(b[0x18:0x38]); return b }), ErrZbootCompression, `""`},
		{"unterminated-type", mod(gz, func(b []byte) []byte { copy(b[0x18:0x38], bytes.Repeat([]byte("z"), 32)); return b }), ErrZboot, "NUL"},
		{"header-only", gz[:0x20], ErrZboot, "shorter"},
		{"truncated-payload", gz[:len(gz)-10], ErrZboot, "beyond"},
		{"payload-in-header", mod(gz, func(b []byte) []byte { le.PutUint32(b[8:], 0x10); return b }), ErrZboot, "inside the header"},
		{"size-overflow", mod(gz, func(b []byte) []byte { le.PutUint32(b[8:], 0xffffff00); le.PutUint32(b[12:], 0xffff); return b }), ErrZboot, "beyond"},
		{"empty-payload", mod(gz, func(b []byte) []byte { le.PutUint32(b[12:], 0); return b }), ErrZboot, "empty"},
		{"zstd-no-trailer", zs[:len(zs)-4], ErrZboot, "trailing"},
		{"zstd-wrong-trailer", mod(zs, func(b []byte) []byte { le.PutUint32(b[len(b)-4:], 7); return b }), ErrZboot, "says 7"},
		{"gzip-corrupt", mod(gz, func(b []byte) []byte { clear(b[4096+10 : 4096+40]); return b }), ErrNotImage, "gunzip"},
		{"zstd-corrupt", mod(zs, func(b []byte) []byte { clear(b[4096 : 4096+4]); return b }), ErrZboot, "zstd"},
		{"payload-not-image", packZboot(t, []byte("not a kernel at all, just some bytes to compress"), ZbootGzip), ErrNotImage, "zboot payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseImage(tc.in)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.err, tc.says)
			}
		})
	}
}

// A payload that expands beyond the limit is refused without holding more
// than the limit (the reproducer: 64 MiB of zeros under a 1 MiB limit).
func TestZbootBomb(t *testing.T) {
	big := make([]byte, 64<<20)
	copy(big, debImage(t))
	for _, comp := range []string{ZbootGzip, ZbootZstd} {
		z := packZboot(t, big, comp)
		if len(z) > 1<<20 {
			t.Fatalf("%s: the bomb is %d bytes", comp, len(z))
		}
		_, err := parseImage(z, 1<<20)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: %v, want ErrTooLarge", comp, err)
		}
	}
}

// TestZbootFromBuild unpacks the zboot images of the arm64 test kernels
// (scripts/build-kernel-arm64.sh: gzip for restore-arm64, zstd for
// imakexec-arm64), their Image.gz and their vmlinux, and compares each with
// the Image the same build wrote (the zboot payload is that Image padded
// with zeros to its image_size).
func TestZbootFromBuild(t *testing.T) {
	for name, comp := range map[string]string{"restore-arm64": ZbootGzip, "imakexec-arm64": ZbootZstd} {
		t.Run(name, func(t *testing.T) {
			dir := os.Getenv("GOKEXEC_CACHE")
			if dir == "" {
				dir = filepath.Join("..", "build", "cache")
			}
			dir = filepath.Join(dir, "kernels", name)
			z, err := os.ReadFile(filepath.Join(dir, "vmlinuz.efi"))
			if err != nil && testing.Short() {
				t.Skipf("%v (built by scripts/build-kernel-arm64.sh, part of the test command)", err)
			}
			if err != nil {
				t.Fatalf("%v (run scripts/build-kernel-arm64.sh)", err)
			}
			want := readFile(t, filepath.Join(dir, "vmlinuz"))
			h, err := ParseZboot(z)
			if err != nil {
				t.Fatal(err)
			}
			if h.Compression != comp {
				t.Fatalf("compression %q, want %q", h.Compression, comp)
			}
			im, err := ParseImage(z)
			if err != nil {
				t.Fatal(err)
			}
			// Makefile.zboot compresses the Image zero-padded to its
			// image_size (copy_and_pad), so the payload is the Image and
			// then zeros up to image_size.
			if uint64(len(im.Kernel)) != im.ImageSize || !bytes.HasPrefix(im.Kernel, want) || bytes.ContainsFunc(im.Kernel[len(want):], func(r rune) bool { return r != 0 }) {
				t.Fatalf("unpacked %d bytes are not the build's %d-byte Image padded with zeros to image_size %#x", len(im.Kernel), len(want), im.ImageSize)
			}
			gz, err := os.ReadFile(filepath.Join(dir, "Image.gz"))
			if err != nil {
				t.Fatal(err)
			}
			im2, err := ParseImage(gz)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(im2.Kernel, want) || im2.Compression != "gzip" {
				t.Fatal("Image.gz does not unpack to the Image")
			}
			elfb, err := os.ReadFile(filepath.Join(dir, "vmlinux"))
			if err != nil {
				t.Fatal(err)
			}
			im3, err := ParseImage(elfb)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(im3.Kernel, want) || im3.Compression != "elf" {
				t.Fatal("vmlinux does not flatten to the Image")
			}
			t.Logf("%s: %d-byte zboot (%s payload %d bytes at %#x) -> %d-byte Image, image_size %#x",
				name, len(z), h.Compression, h.PayloadSize, h.PayloadOffset, len(im.Kernel), im.ImageSize)
		})
	}
}

// Debian's arm64 kernel (no KEXEC_FILE) never reads
// /chosen/linux,ima-kexec-buffer; the restore-arm64 test kernel does.
func TestReadsIMABuffer(t *testing.T) {
	im, err := ParseImage(cacheKernel(t, "deb61-arm64"))
	if err != nil {
		t.Fatal(err)
	}
	if im.ReadsIMABuffer() {
		t.Fatal("Debian's arm64 kernel claims to read linux,ima-kexec-buffer")
	}
	dir := os.Getenv("GOKEXEC_CACHE")
	if dir == "" {
		dir = filepath.Join("..", "build", "cache")
	}
	b, err := os.ReadFile(filepath.Join(dir, "kernels", "restore-arm64", "vmlinuz.efi"))
	if err != nil && testing.Short() {
		t.Skipf("%v (built by scripts/build-kernel-arm64.sh)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	im, err = ParseImage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !im.ReadsIMABuffer() {
		t.Fatal("the restore-arm64 kernel (KEXEC_FILE) does not name linux,ima-kexec-buffer")
	}
}
