package kexec

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none [integrity] confidentiality\n": "integrity",
		"none integrity [confidentiality]":   "confidentiality",
		"garbage":                            "",
	} {
		if got := parseLockdown(in); got != want {
			t.Errorf("parseLockdown(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSystab(t *testing.T) {
	if got := parseSystab("SMBIOS3=0x7f8e8000\nACPI=0x7fbfa000\nACPI20=0x7fbfa014\n"); got != 0x7fbfa014 {
		t.Fatalf("ACPI20 preferred: %#x", got)
	}
	if got := parseSystab("ACPI=0xf5a10\n"); got != 0xf5a10 {
		t.Fatalf("ACPI: %#x", got)
	}
	if got := parseSystab("SMBIOS=0x1\n"); got != 0 {
		t.Fatalf("none: %#x", got)
	}
}

func TestExplain(t *testing.T) {
	cases := []struct {
		op       string
		errno    unix.Errno
		lockdown string
		want     string
		lock     bool
	}{
		{"kexec_load", unix.EPERM, "integrity", "lockdown (integrity) forbids kexec_load", true},
		{"kexec_file_load", unix.EPERM, "confidentiality", "signed by a trusted key", false},
		{"kexec_file_load", unix.EKEYREJECTED, "none", "signature was rejected", false},
		{"kexec_file_load", unix.ENOKEY, "none", "does not trust", false},
		{"kexec_file_load", unix.EBADMSG, "none", "malformed", false},
		{"kexec_file_load", unix.ENOEXEC, "none", "image format", false},
		{"kexec_load", unix.EBUSY, "none", "concurrently", false},
		{"kexec_load", unix.ENOMEM, "none", "memory", false},
		{"kexec_load", unix.EINVAL, "none", "rejected the arguments", false},
		{"kexec_load", unix.E2BIG, "none", "too many segments", false},
		{"kexec_load", unix.ENOSYS, "none", "CONFIG_KEXEC", false},
	}
	for _, c := range cases {
		err := Explain(c.op, c.errno, c.lockdown, "mem 0x1000")
		if !errors.Is(err, c.errno) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "mem 0x1000") {
			t.Errorf("%s %v: %v", c.op, c.errno, err)
		}
		if errors.Is(err, ErrLockdown) != c.lock {
			t.Errorf("%s %v: ErrLockdown = %v", c.op, c.errno, !c.lock)
		}
		var ke *Error
		if !errors.As(err, &ke) || ke.Op != c.op {
			t.Errorf("%s %v: not a *Error", c.op, c.errno)
		}
	}
	// EPERM without lockdown names the capability or the sysctl.
	err := Explain("kexec_load", unix.EPERM, "none", "")
	if !strings.Contains(err.Error(), "CAP_SYS_BOOT") && !strings.Contains(err.Error(), "kexec_load_disabled") && !strings.Contains(err.Error(), "refused by the kernel") {
		t.Errorf("EPERM: %v", err)
	}
}

func TestReadMemoryMapFromFiles(t *testing.T) {
	m, src, err := ReadMemoryMap("../segment/testdata/sysfs-memmap-devhost")
	if err != nil || src != "../segment/testdata/sysfs-memmap-devhost" || len(m.RAM()) != 3 {
		t.Fatalf("sysfs dir: %v %s %v", m, src, err)
	}
	m, _, err = ReadMemoryMap("../segment/testdata/iomem-devhost.txt")
	if err != nil || len(m.RAM()) != 3 {
		t.Fatalf("iomem file: %v %v", m, err)
	}
	if _, _, err := ReadMemoryMap("/nonexistent/memmap"); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/memmap") {
		t.Fatalf("missing: %v", err)
	}
}

func TestReadIMAListOverride(t *testing.T) {
	b, p, err := ReadIMAList("../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements")
	if err != nil || len(b) == 0 || !strings.HasSuffix(p, "binary_runtime_measurements") {
		t.Fatalf("%d bytes from %s: %v", len(b), p, err)
	}
	if _, _, err := ReadIMAList("/nonexistent/list"); err == nil || errors.Is(err, ErrNoIMA) {
		t.Fatalf("an explicit missing file must be an error, not 'no IMA': %v", err)
	}
}

func TestSealedMemfd(t *testing.T) {
	f, err := SealedMemfd("test", []byte("kernel bytes"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("a sealed memfd accepted a write")
	}
	b := make([]byte, 64)
	n, _ := f.ReadAt(b, 0)
	if string(b[:n]) != "kernel bytes" {
		t.Fatalf("content %q", b[:n])
	}
}
