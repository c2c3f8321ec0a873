package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
)

// kexecToolsOptions are the long options kexec-tools 2.0.x accepts on
// x86_64 and arm64: KEXEC_OPTIONS (kexec/kexec.h), KEXEC_ALL_OPTIONS of
// kexec/arch/i386/include/arch/options.h (x86_64's options.h is a link to
// it) and KEXEC_ARCH_OPTIONS of kexec/arch/arm64/include/arch/options.h
// (horms/kexec-tools at 29898e1), with whether each takes a value.
var kexecToolsOptions = map[string]bool{
	"help": false, "version": false, "force": false, "no-checks": false, "no-ifdown": false, "no-sync": false,
	"load": false, "unload": false, "exec": false, "exec-live-update": false, "load-preserve-context": false,
	"load-jump-back-helper": false, "load-live-update": false, "entry": true, "type": true, "load-panic": false,
	"mem-min": true, "mem-max": true, "reuseinitrd": false, "kexec-file-syscall": false, "kexec-syscall": false,
	"kexec-syscall-auto": false, "debug": false, "status": false, "print-ckr-size": false, "hotplug": false,
	"no-cma": false, "force-dtb": false,
	// x86 (i386/x86_64)
	"reset-vga": false, "serial": true, "serial-baud": true, "console-vga": false, "console-serial": false,
	"elf32-core-headers": false, "elf64-core-headers": false, "pass-memmap-cmdline": false, "noefi": false,
	"reuse-video-type": false, "command-line": true, "append": true, "reuse-cmdline": false, "initrd": true,
	"ramdisk": true, "args-elf": false, "args-linux": false, "args-none": false, "module": true, "real-mode": false,
	"entry-32bit": false, "dtb": true,
}

// kexecToolsShort is KEXEC_OPT_STR "h?vdfixyluet:pscaS" without '?'.
const kexecToolsShort = "hvdfixyluet:pscaS"

// TestEveryKexecToolsOptionIsAccepted: finding "options real configurations
// carry are refused (exit 2)". Every option parses; the table says what
// gokexec does with it, and a refusal names a reason.
func TestEveryKexecToolsOptionIsAccepted(t *testing.T) {
	for name, hasArg := range kexecToolsOptions {
		o, err := lookupLong(name)
		if err != nil || o.long != name {
			t.Errorf("--%s: %v", name, err)
			continue
		}
		if (o.arg != "") != hasArg || !o.kexec {
			t.Errorf("--%s: value %q kexec %v; kexec-tools: value %v", name, o.arg, o.kexec, hasArg)
		}
		if o.class != classDo && o.reason == "" {
			t.Errorf("--%s: ignored or refused without a reason", name)
		}
		if o.class == classDo && o.set == nil {
			t.Errorf("--%s: implemented but sets nothing", name)
		}
	}
	for i := 0; i < len(kexecToolsShort); i++ {
		b := kexecToolsShort[i]
		if b == ':' {
			continue
		}
		o := lookupShort(b)
		if o == nil || (o.arg != "") != (i+1 < len(kexecToolsShort) && kexecToolsShort[i+1] == ':') {
			t.Errorf("-%c: %+v", b, o)
		}
	}
	// The ones the issue names, with their outcome.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-p", "--elf64-core-headers", "-u"}, -1, ""},
		{[]string{"-S", "--reset-vga", "--console-serial", "--console-vga", "--serial=ttyS0", "--serial-baud=115200", "--reuse-video-type", "--pass-memmap-cmdline", "--hotplug", "--no-cma", "--force-dtb"}, -1, "--reset-vga ignored"},
		{[]string{"--load-preserve-context", "-l", "k"}, 2, "KEXEC_PRESERVE_CONTEXT"},
		{[]string{"--real-mode", "-l", "k"}, 2, "real mode"},
		{[]string{"--entry=0x1000", "-e"}, 2, "entry point"},
	} {
		code, _, errs := runCLI(tc.args...)
		if tc.code >= 0 && code != tc.code || !strings.Contains(errs, tc.msg) || strings.Contains(errs, "unrecognized") {
			t.Errorf("gokexec %v: exit %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}

// TestUniquePrefixes: finding "GNU-style unique prefixes (--comm=)". A
// prefix that names one kexec-tools option names it in gokexec too, even
// where gokexec's own options share the prefix; an ambiguous one is an
// error listing the candidates.
func TestUniquePrefixes(t *testing.T) {
	for name := range kexecToolsOptions {
		for n := 1; n <= len(name); n++ {
			pre := name[:n]
			matches := 0
			exact := false
			for other := range kexecToolsOptions {
				if strings.HasPrefix(other, pre) {
					matches++
				}
				exact = exact || other == pre
			}
			if matches != 1 && !exact {
				continue
			}
			if o, err := lookupLong(pre); err != nil || o.long != name && !exact {
				t.Errorf("--%s: %v, want --%s", pre, err, name)
			}
		}
	}
	c := newCLI()
	if _, err := parseArgs(c, []string{"--comm=quiet", "--ini", "/i", "--load", "k"}); err != nil || c.appendStr != "quiet" || c.initrd != "/i" {
		t.Fatalf("--comm= --ini: %v %+v", err, c)
	}
	for _, bad := range []struct{ arg, msg string }{
		{"--re", "ambiguous; possibilities: --real-mode --reset-vga --reuse-cmdline --reuse-video-type --reuseinitrd"},
		{"--load=1", "doesn't allow an argument"},
		{"--append", "requires an argument"},
		{"-q", "invalid option -- 'q'"},
		{"-t", "requires an argument"},
	} {
		if _, err := parseArgs(newCLI(), []string{bad.arg}); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: %v, want %q", bad.arg, err, bad.msg)
		}
	}
	// Short options cluster, and a value may be attached.
	c = newCLI()
	if pos, err := parseArgs(c, []string{"-lctbzImage", "k", "--", "-e"}); err != nil || c.typ != "bzImage" || c.syscall != "load" || strings.Join(pos, " ") != "k -e" {
		t.Fatalf("-lctbzImage k -- -e: %v %v %+v", pos, err, c)
	}
}

func actionOf(t *testing.T, args ...string) (Action, error) {
	t.Helper()
	c := newCLI()
	pos, err := parseArgs(c, args)
	if err != nil {
		return Action{}, err
	}
	return c.action(pos)
}

// TestLastActionWins: finding "kexec-tools takes the last of
// -l/-e/-u/-p/-f; gokexec makes -e -l K load and reboot". The outcomes
// follow kexec-tools' main() switch by switch.
func TestLastActionWins(t *testing.T) {
	for _, tc := range []struct {
		args string
		want string
	}{
		{"K", "load K, shutdown"},
		{"-l K", "load K"},
		{"-e -l K", "load K"},
		{"-l K -e", "sync, exec"},
		{"-l -f K", "load K, sync, exec"},
		{"-f -l K", "load K"},
		{"-f -y K", "load K, exec"},
		{"-e", "sync, exec"},
		{"-u", "unload"},
		{"-u -l K", "unload, load K"},
		{"-u -e", "unload, sync, exec"},
		{"-p K", "load crash K"},
		{"-p -u", "unload crash"},
		{"-u -p K", "unload crash, load crash K"},
		{"-p -l K", "load crash K"},
		{"-l -p K", "load crash K"},
		{"-p -e", "sync, exec"},
		{"-S", "status crash"},
		{"-S -l", "status"},
		{"-S -p", "status crash"},
		{"-S -d", "status"},
		{"-l K -S", "status"},
		{"--finalize", "finalize"},
		{"--finalize -e", "sync, exec"},
		{"-e --finalize", "finalize"},
		{"--print-ckr-size -l K", "print-ckr-size"},
	} {
		a, err := actionOf(t, strings.Fields(tc.args)...)
		if err != nil || a.String() != tc.want {
			t.Errorf("gokexec %s: %q %v, want %q", tc.args, a, err, tc.want)
		}
	}
	for _, tc := range []struct{ args, msg string }{
		{"", "nothing to do"},
		{"-l", "-l needs a kernel"},
		{"-f", "-f needs a kernel"},
		{"-p", "-p needs a kernel"},
		{"-e --initrd /i", "--initrd applies to a kernel being loaded"},
		{"-u --command-line x", "--command-line applies"},
		{"-l K L", "one kernel image expected"},
	} {
		if _, err := actionOf(t, strings.Fields(tc.args)...); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("gokexec %s: %v, want %q", tc.args, err, tc.msg)
		}
	}
}

// TestLastAppendWins: finding "gokexec joins --command-line=A --append=B
// into A B". The last one is the command line; --reuse-cmdline puts the
// running one first, as kexec-tools' concat_cmdline.
func TestLastAppendWins(t *testing.T) {
	k := kernelFile(t)
	defer func(f func() (string, error)) { readCmdline = f }(readCmdline)
	readCmdline = func() (string, error) { return "BOOT_IMAGE=/vmlinuz root=/dev/vda1 crashkernel=256M quiet", nil }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--command-line=A", "--append=B"}, "B"},
		{[]string{"--append=B", "--command-line=A"}, "A"},
		{[]string{"--append=B", "--reuse-cmdline"}, "root=/dev/vda1 crashkernel=256M quiet B"},
	} {
		args := append([]string{"-l", k, "--dry-run", "--json", "--memmap", memmap, "--no-ima", "--arch", "amd64"}, tc.args...)
		code, out, errs := runCLI(args...)
		var p plan.Plan
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Cmdline != tc.want {
			t.Errorf("%v: exit %d %s: cmdline %q, want %q", tc.args, code, errs, p.Cmdline, tc.want)
		}
	}
}

// TestReuseCmdlineKeepsCrashkernelForLoad: finding "--reuse-cmdline drops
// crashkernel= for an ordinary -l". kexec-tools' get_command_line drops it
// only when kexec_flags has KEXEC_ON_CRASH.
func TestReuseCmdlineKeepsCrashkernelForLoad(t *testing.T) {
	const cl = "BOOT_IMAGE=/boot/vmlinuz-6.1 root=/dev/vda1 crashkernel=384M-:128M console=ttyS0"
	if got := stripKexecParams(cl, false); got != "root=/dev/vda1 crashkernel=384M-:128M console=ttyS0" {
		t.Errorf("-l: %q", got)
	}
	if got := stripKexecParams(cl, true); got != "root=/dev/vda1 console=ttyS0" {
		t.Errorf("-p: %q", got)
	}
	// Through the command line: the crash plan leaves it out, the normal
	// one keeps it.
	k := kernelFile(t)
	defer func(f func() (string, error)) { readCmdline = f }(readCmdline)
	readCmdline = func() (string, error) { return cl, nil }
	code, out, errs := runCLI("-l", k, "--reuse-cmdline", "--dry-run", "--json", "--memmap", memmap, "--no-ima", "--arch", "amd64")
	var p plan.Plan
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || !strings.Contains(p.Cmdline, "crashkernel=384M-:128M") {
		t.Fatalf("-l --reuse-cmdline: exit %d %s: %q", code, errs, p.Cmdline)
	}
	code, out, errs = runCLI("-p", k, "--reuse-cmdline", "--dry-run", "--json", "--host", crashHost(t, true), "-s")
	p = plan.Plan{}
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || strings.Contains(p.Cmdline, "crashkernel=") || !strings.Contains(p.Cmdline, "root=/dev/vda1") {
		t.Fatalf("-p --reuse-cmdline: exit %d %s: %q", code, errs, p.Cmdline)
	}
}

// TestSizesAcceptBinaryUnits: finding "--ima-extra 64KB/64KiB are refused
// without listing the accepted forms".
func TestSizesAcceptBinaryUnits(t *testing.T) {
	for in, want := range map[string]uint64{"64K": 64 << 10, "64KB": 64 << 10, "64KiB": 64 << 10, "64kib": 64 << 10, "1M": 1 << 20, "1MB": 1 << 20, "1MiB": 1 << 20, "2G": 2 << 30, "2GB": 2 << 30, "2GiB": 2 << 30, "0x1000": 4096, "4096": 4096} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	code, _, errs := runCLI("-l", kernelFile(t), "--ima-extra", "64kB2", "--dry-run")
	if code != 2 || !strings.Contains(errs, "K, KB, KiB, M, MB, MiB, G, GB or GiB") {
		t.Fatalf("exit %d %q", code, errs)
	}
}

// TestTypeValidatedLikeKexecTools: item 5, -t/--type.
func TestTypeValidatedLikeKexecTools(t *testing.T) {
	k := kernelFile(t)
	base := []string{"-l", k, "--dry-run", "--memmap", memmap, "--no-ima", "--arch", "amd64"}
	for _, tc := range []struct {
		typ  string
		code int
		msg  string
	}{
		{"bzImage", 0, ""},
		{"bzImage64", 0, ""},
		{"elf-x86_64", 2, "wrong file type, " + k + " is a bzImage"},
		{"Image", 2, "unsupported kernel type on amd64"},
		{"multiboot-x86", 2, "does not load this kind"},
	} {
		code, _, errs := runCLI(append(base, "-t", tc.typ)...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("-t %s: exit %d %q", tc.typ, code, errs)
		}
	}
	if code, _, errs := runCLI(append(base, "--type=bzImage", "--args-linux")...); code != 0 {
		t.Errorf("--args-linux: exit %d %q", code, errs)
	}
}

// TestPrintCkrSize: --print-ckr-size from the crash regions.
func TestPrintCkrSize(t *testing.T) {
	code, out, errs := runCLI("--print-ckr-size", "--host", crashHost(t, true))
	if code != 0 || strings.TrimSpace(out) != fmt.Sprint(0x3dffffff-0x2e000000+1) {
		t.Fatalf("exit %d %q %q", code, out, errs)
	}
	if code, out, _ := runCLI("--print-ckr-size", "--host", crashHost(t, false)); code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("no reservation: exit %d %q", code, out)
	}
}

// TestHelpIsTheOptionTable: the help's option lines come from optTable
// alone, in the shape packaging/genman parses ("  -x, --long ARG  desc",
// continuation lines indented past six spaces), and say what gokexec does.
func TestHelpIsTheOptionTable(t *testing.T) {
	code, out, _ := runCLI("--help")
	if code != 0 {
		t.Fatal(code)
	}
	line := regexp.MustCompile(`^  (-[A-Za-z], |    )--([a-z0-9-]+)( [A-Z]+)?(  +(\S.*))?$`)
	seen := map[string]bool{}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		o, err := lookupLong(m[2])
		if err != nil || o.long != m[2] || strings.TrimSpace(m[3]) != o.arg {
			t.Errorf("help line %q does not match the table (%v)", l, err)
			continue
		}
		if m[5] == "" && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "      ") || strings.TrimSpace(lines[i+1]) == "") {
			t.Errorf("help line %q has no description", l)
		}
		seen[m[2]] = true
	}
	for _, o := range optTable {
		if !seen[o.long] {
			t.Errorf("--help lacks --%s", o.long)
		}
	}
	for _, s := range []string{"gokexec never brings network interfaces down", "without an orderly shutdown", "The last of --append and --command-line wins", "systemctl kexec", "differs from kexec-tools on purpose"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), s) {
			t.Errorf("--help does not say %q", s)
		}
	}
}

// TestVersionNamesTheCommit: --version prints the version and, when the
// binary was built from a VCS checkout, the commit.
func TestVersionNamesTheCommit(t *testing.T) {
	code, out, _ := runCLI("--version")
	if code != 0 || !strings.HasPrefix(out, "gokexec ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	if v := versionLine(); v != strings.TrimSpace(out) {
		t.Fatalf("%q != %q", v, out)
	}
}

// TestRunAsRoot: finding "a non-root user gets 'IMA list: permission
// denied' instead of 'run as root'".
func TestRunAsRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	perm := fmt.Errorf("IMA list: %w", &fs.PathError{Op: "open", Path: "/sys/kernel/security/ima/binary_runtime_measurements", Err: fs.ErrPermission})
	geteuid = func() int { return 1000 }
	if got := withAdvice(perm).Error(); !strings.HasSuffix(got, "(run as root)") {
		t.Errorf("non-root: %q", got)
	}
	if got := withAdvice(fmt.Errorf("IMA list: %w", loader.ErrPrivilege)).Error(); !strings.HasSuffix(got, "(run as root)") {
		t.Errorf("loader.ErrPrivilege: %q", got)
	}
	if got := withAdvice(errors.New("other")).Error(); got != "other" {
		t.Errorf("not a permission error: %q", got)
	}
	geteuid = func() int { return 0 }
	if got := withAdvice(perm).Error(); strings.Contains(got, "run as root") {
		t.Errorf("root: %q", got)
	}
	// Through the command line: a machine whose IMA list only root reads
	// (the fake host answers as kexec.System does for EACCES), a non-root
	// user.
	geteuid = func() int { return 1000 }
	m := newFakeMachine(t)
	m.h.ListErr = fmt.Errorf("%w: open /sys/kernel/security/ima/binary_runtime_measurements: %w", loader.ErrPrivilege, fs.ErrPermission)
	code, _, errs := m.run("-l", kernelFile(t))
	if code != 1 || !strings.Contains(errs, "run as root") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("exit %d %q", code, errs)
	}
}

// TestTypeELF: -t elf-x86_64 and vmlinux (arm64) take an ELF64 image
// (kdump-config's vmlinux with --args-linux), and refuse a bzImage type
// for it.
func TestTypeELF(t *testing.T) {
	f := filepath.Join(t.TempDir(), "vmlinux")
	hdr := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 57)...)
	if err := os.WriteFile(f, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arch, typ, msg string }{
		{"amd64", "elf-x86_64", ""},
		{"arm64", "vmlinux", ""},
		{"amd64", "bzImage", "is an elf64"},
		{"arm64", "Image", "is an elf64"},
		{"arm64", "elf-x86_64", "unsupported kernel type on arm64"},
	} {
		c := newCLI()
		c.typ, c.arch = tc.typ, tc.arch
		err := c.checkType(f)
		if tc.msg == "" && err != nil || tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s -t %s: %v, want %q", tc.arch, tc.typ, err, tc.msg)
		}
	}
}
