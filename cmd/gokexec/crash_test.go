package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// crashHost writes a captured host tree of a 1 GiB guest booted with
// crashkernel=256M: iomem with the reservation, one CPU's crash notes and
// vmcoreinfo (no /proc/kcore: the plan warns about the page offset).
func crashHost(t *testing.T, crash bool) string {
	t.Helper()
	root := t.TempDir()
	iomem, err := os.ReadFile(memmap)
	if err != nil {
		t.Fatal(err)
	}
	s := string(iomem)
	if crash {
		s = strings.Replace(s, "  20eb1000-213fffff : Kernel bss\n", "  20eb1000-213fffff : Kernel bss\n  2e000000-3dffffff : Crash kernel\n", 1)
	}
	files := map[string]string{
		"proc/iomem": s,
		"sys/devices/system/cpu/cpu0/crash_notes":      "3fc1d000\n",
		"sys/devices/system/cpu/cpu0/crash_notes_size": "368\n",
		"sys/kernel/vmcoreinfo":                        "0x0000000002c2a000 1024\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func initrdFile(t *testing.T, size int) string {
	p := filepath.Join(t.TempDir(), "initrd.img")
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCrashDryRun: -p --dry-run --json plans a crash kernel against a
// captured host, with the options Debian's kdump-tools passes to kexec -p
// (kdump-config: kexec -p [-s] --command-line="..." --initrd=FILE KERNEL).
func TestCrashDryRun(t *testing.T) {
	k, host, rd := kernelFile(t), crashHost(t, true), initrdFile(t, 8<<20)
	region := segment.Range{Start: 0x2e000000, End: 0x3e000000}
	cmdline := "console=ttyS0 root=/dev/vda1 reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll nousb"
	for _, sys := range []string{"-c", "-s", ""} {
		args := []string{"-p", "--command-line=" + cmdline, "--initrd=" + rd, k, "--host", host, "--dry-run", "--json"}
		if sys != "" {
			args = append([]string{sys}, args...)
		}
		code, out, errs := runCLI(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		var p plan.Plan
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if p.Crash == nil || len(p.Crash.Regions) != 1 || p.Crash.Regions[0] != region || p.IMA != nil {
			t.Fatalf("%s: crash plan %+v, IMA %+v", sys, p.Crash, p.IMA)
		}
		want := plan.SyscallKexecFileLoad
		if sys == "-c" {
			want = plan.SyscallKexecLoad
		}
		if p.Syscall != want {
			t.Fatalf("%q: syscall %s, want %s", sys, p.Syscall, want)
		}
		if want == plan.SyscallKexecFileLoad {
			continue
		}
		if !strings.HasPrefix(p.Cmdline, cmdline+" elfcorehdr=0x") || p.Crash.ElfCoreHdr == 0 || p.Crash.CPUNotes != 1 {
			t.Fatalf("kexec_load crash plan: cmdline %q, crash %+v", p.Cmdline, p.Crash)
		}
		for _, s := range p.Segments {
			if !region.Contains(segment.Range{Start: s.Mem, End: s.Mem + s.Memsz}) {
				t.Fatalf("segment %s at %#x outside the crash region", s.Name, s.Mem)
			}
		}
		if !strings.Contains(out, `"elfcorehdr"`) || !strings.Contains(out, `"memmap"`) || len(p.Warnings) == 0 {
			t.Fatalf("JSON lacks the crash details or the page offset warning:\n%s", out)
		}
	}
}

func TestCrashBadInputs(t *testing.T) {
	k, rd := kernelFile(t), initrdFile(t, 1<<20)
	notReloc := filepath.Join(t.TempDir(), "vmlinuz-fixed")
	b, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	b[0x234] = 0
	if err := os.WriteFile(notReloc, b, 0o644); err != nil {
		t.Fatal(err)
	}
	big := initrdFile(t, 300<<20)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-p", k, "--initrd", rd, "--host", crashHost(t, false), "--dry-run"}, 1, "no crash kernel region"},
		{[]string{"-c", "-p", k, "--initrd", rd, "--host", crashHost(t, false), "--dry-run"}, 1, "crashkernel="},
		{[]string{"-p", notReloc, "--host", crashHost(t, true), "--dry-run"}, 1, "not relocatable"},
		{[]string{"-c", "-p", k, "--initrd", big, "--host", crashHost(t, true), "--dry-run"}, 1, "does not fit"},
		{[]string{"-p", "-u", "--reuse-cmdline"}, 2, "loads none"},
		{[]string{"-p", k, "--elf32-core-headers"}, 2, "ELF64"},
		{[]string{"-p"}, 2, "kernel image"},
	} {
		code, _, errs := runCLI(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}

// TestCaptureCrash: capture-host keeps what a crash plan reads (notes,
// vmcoreinfo, /proc/kcore's headers), so a -c -p dry run against the
// capture is the captured machine's plan, page offset included.
func TestCaptureCrash(t *testing.T) {
	src := crashHost(t, true)
	kcore, err := elfcore.Build(&elfcore.Header{Machine: elfcore.MachineX86,
		CPUNotes: []elfcore.Note{{Addr: 1 << 20, Size: 4}}, VMCoreInfo: elfcore.Note{Addr: 2 << 20, Size: 4},
		KernelText: &elfcore.Load{Phys: 0x1ec00000, Virt: 0xffffffffa0000000, Size: 0x2000000},
		PageOffset: 0xffff9e0000000000, RAM: []segment.Range{{Start: 0x100000, End: 0x3ffcf000}}})
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{"proc/kcore": kcore, "sys/devices/system/cpu/online": []byte("0\n")} {
		if err := os.WriteFile(filepath.Join(src, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "capture")
	if code, _, errs := runCLI("--host", src, "capture-host", dst); code != 0 {
		t.Fatalf("capture-host: exit %d: %s", code, errs)
	}
	code, out, errs := runCLI("-c", "-p", kernelFile(t), "--host", dst, "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Crash == nil || p.Crash.PageOffset != 0xffff9e0000000000 || p.Crash.CPUNotes != 1 || len(p.Warnings) != 0 {
		t.Fatalf("crash plan from the capture: %+v, warnings %v", p.Crash, p.Warnings)
	}
}
