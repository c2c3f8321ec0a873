package loader

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/plan"
)

// An arm64 EFI zboot image given to kexec_file_load reaches the kernel as
// the Image it carries (the kernel's arm64 loader reads raw Images only),
// through a sealed memfd; the plan still names and hashes the file the user
// gave.
func TestFileLoadUnpacksARM64Zboot(t *testing.T) {
	hdr, err := os.ReadFile("../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	img := append(append([]byte(nil), hdr...), bytes.Repeat([]byte{0x5a}, 8192)...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(img)
	zw.Close()
	const off = 4096
	z := make([]byte, off)
	copy(z, "MZ\x00\x00zimg")
	binary.LittleEndian.PutUint32(z[8:], off)
	binary.LittleEndian.PutUint32(z[12:], uint32(gz.Len()))
	copy(z[0x18:], "gzip")
	z = append(z, gz.Bytes()...)
	k := filepath.Join(t.TempDir(), "vmlinuz.efi")
	if err := os.WriteFile(k, z, 0o644); err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{boot: "b1", noMemmap: true}
	fi, err := FileImage(k, "", "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Arch: "arm64", Mode: plan.ModeFile, NoIMA: true}
	p, r, _, err := prepare(h, fi, &o, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kernel.SHA256 != plan.Digest(z) || p.Kernel.Path != k {
		t.Fatalf("plan kernel %+v, want the zboot file", p.Kernel)
	}
	if err := execute(h, p, r, false); err != nil {
		t.Fatal(err)
	}
	if len(h.fileLoads) != 1 || !bytes.Equal(h.fileLoads[0][0], img) {
		t.Fatalf("kexec_file_load read %d bytes, not the %d-byte Image inside the zboot file", len(h.fileLoads[0][0]), len(img))
	}
	if h.fileFDs[0].Name() == k {
		t.Fatal("the kernel was handed the zboot file itself")
	}
}
