package loader

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/kexec"
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
	h := newFake(t, nil)
	fi, err := FileImage(k, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Load(context.Background(), h, fi, Options{Arch: "arm64", Mode: plan.ModeFile, NoIMA: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := l.Plan(); p.Kernel.SHA256 != plan.Digest(z) || p.Kernel.Path != k {
		t.Fatalf("plan kernel %+v, want the zboot file", p.Kernel)
	}
	if len(h.FileLoads) != 1 || !bytes.Equal(h.FileLoads[0].Kernel.Data, img) {
		t.Fatalf("kexec_file_load got %d loads, not the %d-byte Image inside the zboot file", len(h.FileLoads), len(img))
	}
	f, err := kexec.OpenFileInput(h.FileLoads[0].Kernel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if !bytes.Equal(got, img) || f.Name() == k {
		t.Fatalf("the kernel reads %s (%d bytes), not a memfd with the Image", f.Name(), len(got))
	}
}
