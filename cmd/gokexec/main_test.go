package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/plan"
)

func kernelFile(t *testing.T) string { return testkernel.File(t, testkernel.Deb61) }

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const memmap = "../../plan/testdata/iomem-qemu-q35-1g-deb61.txt"
const imaList = "../../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements"

func TestDryRunJSON(t *testing.T) {
	k := kernelFile(t)
	code, out, errs := runCLI("-l", k, "--append", "console=ttyS0", "--dry-run", "--json", "--memmap", memmap, "--ima-log", imaList, "--ima-extra", "128K", "--arch", "amd64")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p.Arch != "amd64" || p.Syscall != "kexec_load" || p.IMA == nil || p.IMA.Headroom < 128<<10 || p.BootParams == nil || len(p.BootParams.SetupData) != 2 || p.Entry == 0 {
		t.Fatalf("plan %+v", p)
	}
	for _, key := range []string{`"segments"`, `"mem"`, `"memsz"`, `"bufsz"`, `"sha256"`, `"list_bytes"`, `"entries"`, `"headroom"`, `"setup_data"`, `"type"`, `"addr"`, `"len"`, `"decision"`} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	// The same inputs give the same plan.
	_, out2, _ := runCLI("-l", k, "--append", "console=ttyS0", "--dry-run", "--json", "--memmap", memmap, "--ima-log", imaList, "--ima-extra", "128K", "--arch", "amd64")
	if out != out2 {
		t.Fatal("dry-run plans differ between two runs")
	}
}

func TestUsageErrors(t *testing.T) {
	k := kernelFile(t)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--bogus"}, 2, "unrecognized option '--bogus'"},
		{[]string{"-l"}, 2, "needs a kernel"},
		{[]string{"--initrd"}, 2, "requires an argument"},
		{[]string{}, 2, "nothing to do"},
		{[]string{"-l", k, "extra"}, 2, "one kernel image"},
		{[]string{"-l", k, "--co=x"}, 2, "ambiguous; possibilities: --command-line --console-serial --console-vga"},
		{[]string{"-l", k, "--ima-extra", "lots", "--dry-run"}, 2, "--ima-extra"},
		{[]string{"-l", k, "--mem-min", "0x2000000", "--mem-max", "0x1000000", "--dry-run"}, 2, "--mem-min"},
		{[]string{"-l", k, "--arch", "mips", "--dry-run"}, 2, "--arch"},
		{[]string{"-l", k, "--ima-pcr", "24", "--dry-run"}, 2, "--ima-pcr"},
		{[]string{"-l", "/nonexistent/vmlinuz", "--dry-run"}, 1, "no such file"},
		{[]string{"-l", "main.go", "--dry-run", "--memmap", memmap, "--no-ima"}, 1, "not a bzImage"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("gokexec %v: exit %d, stderr %q; want exit %d and one line containing %q", c.args, code, errs, c.code, c.msg)
		}
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	code, out, _ := runCLI("--help")
	if code != 0 {
		t.Fatal(code)
	}
	for _, o := range []string{"-l, --load", "-e, --exec", "-u, --unload", "-f, --force", "-x, --no-ifdown", "-y, --no-sync",
		"-s, --kexec-file-syscall", "-c, --kexec-syscall", "-a, --kexec-syscall-auto", "-S, --status", "-d, --debug",
		"-i, --no-checks", "--append", "--command-line", "--reuse-cmdline", "--initrd", "--ramdisk", "--dtb", "--mem-min",
		"--mem-max", "-v, --version", "-h, --help", "--ima-extra", "--no-ima", "--dry-run", "--json", "--memmap", "--ima-log", "--arch", "--finalize", "--appraise", "--key", "--allowlist", "--ima-pcr"} {
		if !strings.Contains(out, o) {
			t.Errorf("--help lacks %q", o)
		}
	}
	if code, out, _ := runCLI("--version"); code != 0 || !strings.HasPrefix(out, "gokexec ") {
		t.Fatalf("--version: %d %q", code, out)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"64K": 64 << 10, "1M": 1 << 20, "0x1000": 4096, "2g": 2 << 30, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "K", "-1", "99999999999999999999", "17179869184G"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestDryRunARM64(t *testing.T) {
	hdr, err := os.ReadFile("../../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := filepath.Join(dir, "Image")
	os.WriteFile(k, append(hdr, make([]byte, 1<<20)...), 0o644)
	dtb := filepath.Join(dir, "board.dtb")
	b, err := os.ReadFile("../../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dtb, b, 0o644)
	out := filepath.Join(dir, "next.dtb")
	code, stdout, errs := runCLI("-l", k, "--arch", "arm64", "--dtb", dtb, "--dry-run", "--json", "--ima-log", imaList, "--append", "console=ttyAMA0", "--dtb-out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.Arch != "arm64" || p.DTB == nil || p.IMA == nil || p.Decision == nil || !p.Decision.Facts.CrossArch {
		t.Fatalf("plan %+v", p)
	}
	written, err := os.ReadFile(out)
	if err != nil || len(written) != int(p.DTB.Size) || !bytes.Contains(written, []byte("linux,ima-kexec-buffer")) {
		t.Fatalf("--dtb-out wrote %d bytes (plan says %d): %v", len(written), p.DTB.Size, err)
	}
	if code, _, errs := runCLI("-l", k, "--dtb", dtb, "--dry-run", "--dtb-out", out, "--arch", "amd64", "--memmap", memmap); code == 0 {
		t.Fatalf("an arm64 Image planned for amd64: %s", errs)
	}
}
