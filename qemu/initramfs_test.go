package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The archive is checked with GNU cpio, an independent reader.
func TestInitramfsGNUCpio(t *testing.T) {
	dir := t.TempDir()
	ir := NewInitramfs()
	host := filepath.Join(dir, "h")
	if err := os.WriteFile(host, []byte("from host\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := ir.AddFile("/etc/h", host); err != nil {
		t.Fatal(err)
	}
	if err := ir.AddBytes("a/b/c.txt", []byte("bytes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ir.AddSymlink("/bin/sh", "busybox"); err != nil {
		t.Fatal(err)
	}
	if err := ir.AddHostBinary("/sbin/kexec", "/sbin/kexec"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"/", "..", "/../"} {
		if err := ir.AddBytes(bad, nil, 0o644); err == nil {
			t.Errorf("AddBytes(%q) accepted", bad)
		}
	}
	if err := ir.AddFile("/x", dir); err == nil {
		t.Error("AddFile of a directory accepted")
	}
	out := filepath.Join(dir, "i.cpio")
	if err := ir.WriteTo(out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := exec.Command("cpio", "-itv", "--quiet")
	c.Stdin = f
	listing, err := c.Output()
	if err != nil {
		t.Fatalf("GNU cpio cannot read the archive: %v (Debian package cpio)", err)
	}
	entries := map[string]string{} // name -> ls-style line
	for _, l := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
		fs := strings.Fields(l)
		name := fs[len(fs)-1]
		if i := strings.Index(l, " -> "); i >= 0 {
			name = strings.Fields(l[:i])[len(strings.Fields(l[:i]))-1]
		}
		entries[name] = l
	}
	libs, err := sharedLibs("/sbin/kexec")
	if err != nil || len(libs) < 2 {
		t.Fatalf("ldd /sbin/kexec: %v %v (want libc and the loader)", libs, err)
	}
	want := map[string]string{
		"dev/console": "crw-------", "proc": "drwxr-xr-x", "tmp": "drwxr-xr-x",
		"etc/h": "-rwxr-x---", "a/b": "drwxr-xr-x", "a/b/c.txt": "-rw-------",
		"bin/sh": "lrwxrwxrwx", "sbin/kexec": "-rwxr-xr-x",
	}
	for _, l := range libs {
		want[strings.TrimPrefix(l, "/")] = "-rw" // libs keep their host modes
	}
	for name, mode := range want {
		l, ok := entries[name]
		if !ok {
			t.Errorf("%s missing from the archive:\n%s", name, listing)
			continue
		}
		if !strings.HasPrefix(l, mode) {
			t.Errorf("%s: %q, want mode %s", name, l, mode)
		}
	}
	if !strings.Contains(entries["bin/sh"], "-> busybox") {
		t.Errorf("symlink target: %q", entries["bin/sh"])
	}
	if !strings.Contains(entries["dev/console"], " 5,") {
		t.Errorf("dev/console is not char 5,1: %q", entries["dev/console"])
	}
	// Contents survive.
	x := exec.Command("cpio", "-i", "--quiet", "--to-stdout", "a/b/c.txt")
	f.Seek(0, 0)
	x.Stdin = f
	if b, err := x.Output(); err != nil || string(b) != "bytes\n" {
		t.Errorf("a/b/c.txt: %q %v", b, err)
	}
}
