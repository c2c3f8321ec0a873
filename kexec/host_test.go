package kexec

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// OpenFileInput hands the kernel the file only while it holds the bytes
// that were read and appraisal is off; otherwise a sealed memfd of them.
func TestOpenFileInput(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vmlinuz")
	data := bytes.Repeat([]byte("kernel"), 1000)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	read := func(in FileInput) (string, []byte) {
		t.Helper()
		f, err := OpenFileInput(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
		if err != nil {
			t.Fatal(err)
		}
		if f.Name() != p {
			seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
			want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
			if err != nil || seals&want != want {
				t.Fatalf("memfd seals %#x %v", seals, err)
			}
		}
		return f.Name(), b
	}
	if name, b := read(FileInput{Name: "vmlinuz", Data: data, Path: p}); name != p || !bytes.Equal(b, data) {
		t.Fatalf("unchanged file: got %s", name)
	}
	if name, b := read(FileInput{Name: "vmlinuz", Data: data, Path: p, Sealed: true}); name == p || !bytes.Equal(b, data) {
		t.Fatalf("sealed: got %s", name)
	}
	os.WriteFile(p, append(data, 'x'), 0o644)
	if name, b := read(FileInput{Name: "vmlinuz", Data: data, Path: p}); name == p || !bytes.Equal(b, data) {
		t.Fatalf("changed file: got %s", name)
	}
	os.Remove(p)
	if name, b := read(FileInput{Name: "vmlinuz", Data: data, Path: p}); name == p || !bytes.Equal(b, data) {
		t.Fatalf("removed file: got %s", name)
	}
}

// securityfs is told from the directory it is mounted on by the file
// system's magic: a plain directory (an initramfs's empty
// /sys/kernel/security before init mounts it) is not securityfs.
func TestSecurityfsMountedByMagic(t *testing.T) {
	if securityfsMounted(t.TempDir()) {
		t.Fatal("a temporary directory taken for securityfs")
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/kernel/security", &st) == nil && st.Type == securityfsMagic {
		if !securityfsMounted("/sys/kernel/security") {
			t.Fatal("this host's securityfs not recognised")
		}
	} else {
		t.Log("this host has no securityfs at /sys/kernel/security")
	}
	if !fsSupported("proc") || fsSupported("no-such-fs") {
		t.Fatal("/proc/filesystems not read")
	}
}
