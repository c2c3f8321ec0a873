package integration

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// dropinCrash is the crash load of kdump-tools' kdump-config (kexec -p
// --elf64-core-headers --command-line=... --initrd=... KERNEL), with the
// abbreviation --comm= that getopt_long accepts.
func dropinCrash(kexec string) []string {
	return []string{kexec, "-p", "--elf64-core-headers", "--comm=" + crashAppend, "--initrd=/run/next.cpio", "/boot/vmlinuz"}
}

// dropinScenario: boot 1 (crashkernel=256M) runs gokexec installed as
// /sbin/kexec the way kdump-tools, kdumpctl, systemd and admins call
// kexec-tools (rows of docs/parity.md): arms, disarms and re-arms kdump
// with both syscalls, loads and unloads systemctl kexec's form, checks that dry runs of -u, -p -u and -e change nothing on
// the real kernel, loads the next kernel with --reuse-cmdline (so it keeps
// crashkernel=) through "-e -l K" (the last action wins: a load only),
// and boots it with "kexec -e". Boot 2 reports its command line, crash
// reservation, list and PCRs, and arms kdump again.
func dropinScenario() *proto.Scenario {
	const k = "/sbin/kexec"
	loaded := func(flag string, want int) proto.Action {
		return proto.Action{Run: []string{k, "-S", flag}, ExpectExit: intp(want)}
	}
	return &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{k, "--print-ckr-size"}, ExpectExit: intp(0)},
			{Run: dropinCrash(k), ExpectExit: intp(0)},
			loaded("-p", 1),
			// kdumpctl's stop and load under Secure Boot (kexec_file_load),
			// kdump-config's stop, then kdump-config's load again.
			{Run: []string{k, "-s", "-p", "-u"}, ExpectExit: intp(0)},
			loaded("-p", 0),
			{Run: []string{k, "-s", "-p", "--command-line=" + crashAppend, "--initrd=/run/next.cpio", "/boot/vmlinuz"}, ExpectExit: intp(0)},
			loaded("-p", 1),
			{Run: []string{k, "-p", "-u"}, ExpectExit: intp(0)},
			loaded("-p", 0),
			{Run: dropinCrash(k), ExpectExit: intp(0)},
			loaded("-p", 1),
			// systemctl kexec's load (systemd 252 load_kexec_kernel), then -u.
			{Run: []string{k, "--load", "/boot/vmlinuz", "--append", "console=ttyS0 gkt.step=9", "--initrd", "/run/next.cpio"}, ExpectExit: intp(0)},
			loaded("-l", 1),
			{Run: []string{k, "-u"}, ExpectExit: intp(0)},
			loaded("-l", 0),
			// Dry runs act on nothing, on a real kernel.
			{Run: []string{k, "-p", "-u", "--dry-run"}, ExpectExit: intp(0)},
			loaded("-p", 1),
			{Run: []string{k, "-e", "-l", "/boot/vmlinuz", "--initrd=/run/next.cpio", "--reuse-cmdline", "--append=gkt.step=2"}, ExpectExit: intp(0)},
			loaded("-l", 1),
			{Run: []string{k, "-u", "--dry-run"}, ExpectExit: intp(0)},
			loaded("-l", 1),
			{Run: []string{k, "-e", "--dry-run"}, ExpectExit: intp(0)},
			{Run: []string{k, "--finalize", "--dry-run"}, ExpectExit: intp(0)},
			{Report: []string{"pcrs", "list"}},
			{Exec: []string{k, "-e"}},
		}},
		"2": {DeadlineSec: 300, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{File: "/proc/iomem"},
			{File: "/sys/kernel/kexec_crash_size"},
			{Run: []string{k, "--print-ckr-size"}, ExpectExit: intp(0)},
			{RepackInitrd: "/run/next.cpio"}, // /run is a fresh tmpfs
			{Run: dropinCrash(k), ExpectExit: intp(0)},
			loaded("-p", 1),
		}},
	}}
}

var crashSizeLine = regexp.MustCompile(`^\d+$`)

// TestDropinKdumpAfterSoftReboot: issue 25 items 2 and 7 in a guest. With
// gokexec installed as kexec, a soft reboot loaded with --reuse-cmdline
// keeps crashkernel= (kexec-tools drops it only for -p), so the next
// kernel reserves crash memory again and kdump re-arms there; the IMA list
// is handed over along the way; and --dry-run of -u, -p -u, -e and
// --finalize leaves the real kernel's images as they were.
func TestDropinKdumpAfterSoftReboot(t *testing.T) {
	g := newGuest(t)
	g.appendExtra = "crashkernel=256M"
	g.files["/boot/vmlinuz"] = g.k1
	g.files["/sbin/kexec"] = g.bins["./cmd/gokexec"]
	g.timeout = 10 * time.Minute
	res := g.run(g.k1, dropinScenario())
	if res.Boots() != 2 {
		t.Fatalf("%d boots reported, want 2 (serial log in %s)", res.Boots(), g.art)
	}

	// Boot 1: the crash reservation, as --print-ckr-size tells it.
	ckr := cmdOut(res, 1, "--print-ckr-size")
	if len(ckr) != 1 || strings.TrimSpace(string(ckr[0].Output)) != strconv.Itoa(256<<20) {
		t.Fatalf("boot 1 --print-ckr-size: %+v", ckr)
	}
	for _, c := range cmdOut(res, 1, "--dry-run") {
		if !strings.Contains(string(c.Output), "dry run") {
			t.Errorf("%v did not say it was a dry run: %q", c.Argv, c.Output)
		}
	}

	// Boot 2: the command line kept crashkernel= and the new step, the
	// kernel reserved crash memory again, and kdump was armed there.
	cl := res.BootInfo(2).Cmdline
	if !strings.Contains(cl, "crashkernel=256M") || !strings.Contains(cl, "gkt.step=2") || strings.Contains(cl, "BOOT_IMAGE=") {
		t.Fatalf("boot 2 command line %q: want crashkernel=256M kept and gkt.step=2 appended", cl)
	}
	f := res.Find(2, proto.TypeFile, "/sys/kernel/kexec_crash_size")
	if len(f) == 0 || !crashSizeLine.MatchString(strings.TrimSpace(string(f[0].Data))) {
		t.Fatalf("boot 2 kexec_crash_size: %v", f)
	}
	if n, _ := strconv.ParseUint(strings.TrimSpace(string(f[0].Data)), 10, 64); n == 0 {
		t.Fatal("boot 2 reserved no crash memory (kexec_crash_size 0)")
	}
	if iomem := res.Find(2, proto.TypeFile, "/proc/iomem"); len(iomem) == 0 || crashLine.Find(iomem[0].Data) == nil {
		t.Fatal("boot 2 /proc/iomem has no Crash kernel region")
	}
	if c := cmdOut(res, 2, "--print-ckr-size"); len(c) != 1 || strings.TrimSpace(string(c[0].Output)) != strconv.Itoa(256<<20) {
		t.Fatalf("boot 2 --print-ckr-size: %+v", c)
	}

	// And the IMA list came along.
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	checkHandover(t, g, res, list1, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"))
	t.Logf("boot 2 command line %q; boot 1: %s; boot 2: %s", cl, describe(list1), describe(list2))
}
