package kexec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const ovmfTree = "../plan/testdata/host-qemu-q35-ovmf-1g-linux-image-6.1.0-57-cloud-amd64"

// copyTree copies the captured OVMF host into a directory of the test's.
func copyTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "host")
	if err := os.CopyFS(dir, os.DirFS(ovmfTree)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// within fails the test when fn does not return in time (a blocking open).
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s hangs", what)
	}
}

// Finding "a --host tree can hang": FIFOs where the planner reads
// fw_vendor, boot_params, kallsyms and kcore are refused as not regular,
// at once.
func TestCapturedTreeFIFOsRefused(t *testing.T) {
	dir := copyTree(t)
	for _, rel := range []string{"sys/firmware/efi/fw_vendor", "sys/kernel/boot_params/data", "proc/kallsyms", "proc/kcore", "sys/kernel/security/ima/binary_runtime_measurements"} {
		p := filepath.Join(dir, rel)
		os.Remove(p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &Captured{Root: dir}
	within(t, "Firmware", func() {
		if _, err := c.Firmware("amd64"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("firmware with FIFOs: %v", err)
		}
	})
	within(t, "Kallsyms", func() {
		if _, err := c.Kallsyms(); !errors.Is(err, ErrNotRegular) {
			t.Errorf("kallsyms FIFO: %v", err)
		}
	})
	within(t, "IMAList", func() {
		if _, err := c.IMAList(); !errors.Is(err, ErrNotRegular) {
			t.Errorf("IMA list FIFO: %v", err)
		}
	})
	within(t, "CrashFacts", func() {
		// No crash notes in this capture: the error is about those; kcore
		// is never opened blocking.
		_, _ = c.CrashFacts(true)
		if _, _, err := readKcoreIn(c.tree()); !errors.Is(err, ErrNotRegular) {
			t.Errorf("kcore FIFO: %v", err)
		}
	})
	within(t, "CaptureKallsyms", func() {
		if _, err := CaptureKallsyms(dir); !errors.Is(err, ErrNotRegular) {
			t.Errorf("capture of a kallsyms FIFO: %v", err)
		}
	})
}

// Finding "a --host tree can escape": a symbolic link out of the tree is
// refused, and nothing of its target appears in the error.
func TestCapturedTreeSymlinksConfined(t *testing.T) {
	dir := copyTree(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("SECRET-FIRST-LINE 0-fff : System RAM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := func(rel, target string) {
		p := filepath.Join(dir, rel)
		os.RemoveAll(p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	link("sys/firmware/memmap", filepath.Dir(secret))
	link("proc/iomem", secret)
	link("sys/kernel/security/ima/binary_runtime_measurements", secret)
	link("sys/kernel/security/lockdown", "../../../../"+filepath.Base(filepath.Dir(secret))+"/secret")
	link("proc/kallsyms", "/proc/kallsyms")
	c := &Captured{Root: dir}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrEscapes) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s through a link out of the tree: %v", what, err)
		}
	}
	_, err := c.MemoryMap("amd64")
	check("memory map", err)
	_, err = c.IMAList()
	check("IMA list", err)
	_, err = c.Kallsyms()
	check("kallsyms", err)
	if l := c.Lockdown(); l != "" {
		t.Errorf("lockdown read through a link out of the tree: %q", l)
	}
	// A link that stays inside the tree is followed.
	link("proc/iomem", "iomem.real")
	if err := os.WriteFile(filepath.Join(dir, "proc/iomem.real"), []byte("00001000-3fffffff : System RAM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "sys/firmware/memmap"))
	if m, err := c.MemoryMap("amd64"); err != nil || len(m) != 1 {
		t.Errorf("link inside the tree: %v %v", m, err)
	}
}
