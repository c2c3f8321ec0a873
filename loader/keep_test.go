package loader

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// keepFiles writes a kernel and a large initrd for KeepImage.
func keepFiles(t *testing.T) (kernel, initrd string, kb, ib []byte) {
	t.Helper()
	dir := t.TempDir()
	kb = testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	ib = bytes.Repeat([]byte("initrd-bytes"), 1<<20) // 12 MiB
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for p, b := range map[string][]byte{kernel: kb, initrd: ib} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernel, initrd, kb, ib
}

// dotFiles lists the temporary files left in a state directory.
func dotFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var dots []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			dots = append(dots, e.Name())
		}
	}
	return dots
}

// Issue 24 (-c -l at 1.15x kexec-tools' kexec -c -l): the command line
// read each input into its own memory and, once loaded, wrote it again
// into the state directory — two copies of 43 MB, and 43 MB of fresh
// memory faulted in, where kexec-tools reads once. KeepImage copies each
// input into the state directory in the kernel and loads from that file
// mapped: the process allocates next to nothing for the inputs, Save moves
// the files into place instead of writing them, and what Read finds is
// the inputs' bytes, trusted by identity.
func TestKeepImageCopiesOnce(t *testing.T) {
	kernel, initrd, kb, ib := keepFiles(t)
	sd := StateDir(filepath.Join(t.TempDir(), "run", "gokexec"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img, release, err := sd.KeepImage(kernel, initrd, "", "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	h := newFake(t, []byte{})
	l, err := Load(context.Background(), h, img, Options{Arch: "amd64", Mode: plan.ModeLoad, NoIMA: true})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(ib))/2 {
		t.Errorf("KeepImage and Load allocated %d bytes for a %d-byte initrd; want the inputs used from their mapped files", n, len(ib))
	}
	if img.Kernel.Path != kernel || img.Initrd.Path != initrd {
		t.Errorf("paths %q %q; want the source files", img.Kernel.Path, img.Initrd.Path)
	}
	if dots := dotFiles(t, string(sd)); len(dots) != 2 {
		t.Fatalf("temporary files before Save: %v; want the kernel's and the initrd's", dots)
	}
	s := l.State()
	if err := sd.Save(s); err != nil {
		t.Fatal(err)
	}
	if dots := dotFiles(t, string(sd)); len(dots) != 0 {
		t.Fatalf("temporary files left after Save: %v", dots)
	}
	// Moved, not written: the file is the one the load used.
	st, err := os.Stat(filepath.Join(string(sd), initrdFile))
	if err != nil {
		t.Fatal(err)
	}
	if id := s.KeptFiles[initrdFile]; id.Size != int64(len(ib)) || id.Ino != st.Sys().(*syscall.Stat_t).Ino {
		t.Fatalf("recorded %+v for the kept initrd; want its size %d and inode %d", id, len(ib), st.Sys().(*syscall.Stat_t).Ino)
	}
	// A second Save (after a finalize in the same process) leaves the files alone.
	if err := sd.Save(l.State()); err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(filepath.Join(string(sd), initrdFile))
	if err != nil || !os.SameFile(st, st2) {
		t.Fatalf("a second Save replaced the kept initrd (%v)", err)
	}
	hashed := countDigests(t)
	r, err := sd.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Kernel, kb) || !bytes.Equal(r.Initrd, ib) || len(hashed) != 0 {
		t.Fatalf("read back: kernel equal %v, initrd equal %v, hashed %v; want both equal, none hashed",
			bytes.Equal(r.Kernel, kb), bytes.Equal(r.Initrd, ib), hashed)
	}
}

// A kept image whose load fails, or that is refused while it is copied,
// leaves nothing in the state directory.
func TestKeepImageReleases(t *testing.T) {
	kernel, initrd, _, _ := keepFiles(t)
	sd := StateDir(filepath.Join(t.TempDir(), "gokexec"))

	img, release, err := sd.KeepImage(kernel, initrd, "", "")
	if err != nil {
		t.Fatal(err)
	}
	h := newFake(t, []byte{})
	if _, err := Load(context.Background(), h, img, Options{Arch: "amd64", Mode: plan.ModeLoad, NoIMA: true, MemMax: 4096}); err == nil {
		t.Fatal("a load below 4 KiB succeeded")
	}
	release()
	if dots := dotFiles(t, string(sd)); len(dots) != 0 {
		t.Fatalf("left after a failed load: %v", dots)
	}

	// Refused while copying: not a regular file, and too large.
	if _, _, err := sd.KeepImage(kernel, filepath.Dir(initrd), "", ""); !errors.Is(err, plan.ErrInput) || !errors.Is(err, kexec.ErrNotRegular) {
		t.Fatalf("a directory as initrd: %v; want ErrInput and ErrNotRegular", err)
	}
	if dots := dotFiles(t, string(sd)); len(dots) != 0 {
		t.Fatalf("left after a refused initrd: %v", dots)
	}
	f, err := os.OpenFile(initrd, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(kexec.MaxKernelBytes + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := sd.KeepImage(initrd, "", "", ""); !errors.Is(err, kexec.ErrTooLarge) {
		t.Fatalf("a kernel over the bound: %v; want ErrTooLarge", err)
	}
	if dots := dotFiles(t, string(sd)); len(dots) != 0 {
		t.Fatalf("left after a refused kernel: %v", dots)
	}
}
