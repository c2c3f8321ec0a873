package integration

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
	"github.com/gokexec/gokexec/segment"
)

// vmcoreHead is how much of the crash kernel's /proc/vmcore comes back:
// the ELF header, the program headers and the merged notes.
const vmcoreHead = 64 << 10

// crashAppend is what Debian's kdump-tools appends to a crash kernel's
// command line (KDUMP_CMDLINE_APPEND), after the harness's own.
const crashAppend = "reset_devices nr_cpus=1 irqpoll nousb"

var crashLine = regexp.MustCompile(`(?m)^\s+([0-9a-f]+)-([0-9a-f]+) : Crash kernel$`)

// crashScenario: boot 1 (crashkernel=256M) loads a crash kernel with load
// (argv up to the kernel image), checks -S -p, and panics; boot 2 is the
// crash kernel, which reads /proc/vmcore and writes a dump of it.
func crashScenario(load []string) *proto.Scenario {
	// kdump-config's form: kexec -p [-s] --command-line="..." --initrd=FILE KERNEL.
	argv := append(append([]string(nil), load...), "--command-line="+nextAppend("2")+" "+crashAppend,
		"--initrd=/run/crash.cpio", "/boot/vmlinuz")
	return &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: []proto.Action{
			{File: "/proc/iomem"},
			{RepackInitrd: "/run/crash.cpio"},
			// Load, unload (kdump-config unload: kexec [-s] -p -u), load
			// again; kexec-tools' -S: exit 1 when a crash kernel is loaded.
			{Run: argv, ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-S", "-p"}, ExpectExit: intp(1)},
			{Run: append(append([]string(nil), load...), "-u"), ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-S"}, ExpectExit: intp(0)},
			{Run: argv, ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-S", "-p"}, ExpectExit: intp(1)},
			{File: "/sys/kernel/kexec_crash_loaded"},
			{Exec: []string{"/bin/busybox", "sh", "-c", "echo c > /proc/sysrq-trigger"}},
		}},
		"2": {DeadlineSec: 400, Actions: []proto.Action{
			{Report: []string{"boot"}},
			{File: "/proc/vmcore", Limit: vmcoreHead},
			{Run: []string{"/bin/busybox", "stat", "-c", "%s", "/proc/vmcore"}, ExpectExit: intp(0)},
			{Run: []string{"/usr/bin/readelf", "-W", "-h", "-l", "/proc/vmcore"}, ExpectExit: intp(0)},
			{Run: []string{"/usr/bin/makedumpfile", "--dump-dmesg", "/proc/vmcore", "/tmp/dmesg.txt"}, ExpectExit: intp(0)},
			{File: "/tmp/dmesg.txt"},
			{Run: []string{"/usr/bin/makedumpfile", "-c", "-d", "31", "/proc/vmcore", "/tmp/dump"}, ExpectExit: intp(0)},
			{Run: []string{"/bin/busybox", "stat", "-c", "%s", "/tmp/dump"}, ExpectExit: intp(0)},
		}},
	}}
}

// crashResult is what one crash scenario measured.
type crashResult struct {
	vmcoreBytes, dumpBytes int64
	panicToInit            time.Duration // host: last record before the panic to the crash kernel's first
	loads                  int
}

// runCrash boots a guest with crashkernel=256M, loads a crash kernel with
// load, panics it and checks what the crash kernel saw.
func runCrash(t *testing.T, name, fw string, gokexec bool, load []string) crashResult {
	t.Helper()
	g := newGuest(t)
	g.appendExtra = "crashkernel=256M"
	g.files["/boot/vmlinuz"] = g.k1
	g.hostBin["/bin/busybox"] = "/bin/busybox"
	g.hostBin["/usr/bin/readelf"] = "/usr/bin/readelf"
	g.hostBin["/usr/bin/makedumpfile"] = "/usr/bin/makedumpfile"
	if gokexec {
		// Installed as kexec, as kdump-tools calls it.
		g.files["/sbin/kexec"] = g.bins["./cmd/gokexec"]
	} else {
		g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	}
	g.timeout = 10 * time.Minute
	res := g.runFW(g.k1, crashScenario(load), fw, 1, 1024)
	if res.Boots() != 2 {
		t.Fatalf("%d boots reported, want 2 (the crash kernel did not come up; serial log %s)", res.Boots(), res.Serial)
	}
	if !strings.Contains(res.BootInfo(2).Cmdline, "elfcorehdr=") {
		t.Fatalf("crash kernel command line %q has no elfcorehdr=", res.BootInfo(2).Cmdline)
	}

	// The crash region boot 1 reserved.
	iomem := res.Find(1, proto.TypeFile, "/proc/iomem")
	if len(iomem) == 0 {
		t.Fatal("no /proc/iomem from boot 1")
	}
	m := crashLine.FindSubmatch(iomem[0].Data)
	if m == nil {
		t.Fatalf("boot 1 reserved no crash kernel region:\n%s", iomem[0].Data)
	}
	start, _ := strconv.ParseUint(string(m[1]), 16, 64)
	last, _ := strconv.ParseUint(string(m[2]), 16, 64)
	region := segment.Range{Start: start, End: last + 1}
	if region.Size() != 256<<20 {
		t.Fatalf("crash region %v is not 256 MiB", region)
	}
	if f := res.Find(1, proto.TypeFile, "/sys/kernel/kexec_crash_loaded"); len(f) == 0 || strings.TrimSpace(string(f[0].Data)) != "1" {
		t.Fatalf("kexec_crash_loaded after the load: %v", f)
	}

	// The head of /proc/vmcore: an ELF core whose PT_LOADs dump RAM but
	// not the crash region, checked with debug/elf and readelf.
	vf := res.Find(2, proto.TypeFile, "/proc/vmcore")
	if len(vf) == 0 || len(vf[0].Data) < 4096 {
		t.Fatalf("no /proc/vmcore head from the crash kernel")
	}
	head := vf[0].Data
	headPath := filepath.Join(g.art, "vmcore-head")
	writeFile(t, headPath, head)
	f, err := elf.NewFile(bytes.NewReader(head))
	if err != nil {
		t.Fatalf("vmcore-head: %v", err)
	}
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		t.Fatalf("vmcore: type %v machine %v class %v", f.Type, f.Machine, f.Class)
	}
	var r crashResult
	var dumped uint64
	notes := 0
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_NOTE:
			notes++
		case elf.PT_LOAD:
			r.loads++
			pr := segment.Range{Start: p.Paddr, End: p.Paddr + p.Memsz}
			if pr.Overlaps(region) {
				t.Errorf("vmcore PT_LOAD %v dumps the crash region %v", pr, region)
			}
			if p.Vaddr < 0xffffffff80000000 {
				dumped += p.Memsz
			}
		}
	}
	if notes != 1 || r.loads < 2 {
		t.Fatalf("vmcore: %d PT_NOTE (want the one merged note), %d PT_LOAD", notes, r.loads)
	}
	if dumped < 600<<20 {
		t.Fatalf("vmcore dumps %d MiB of RAM; a 1 GiB guest less 256 MiB should give ~760", dumped>>20)
	}
	if out, err := exec.Command("readelf", "-W", "-h", "-l", headPath).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("CORE (Core file)")) {
		t.Fatalf("readelf on vmcore-head: %v\n%s", err, out)
	}
	cmd := func(argv0 string, arg string) proto.Record {
		for _, rec := range res.Find(2, proto.TypeCmd, "") {
			if rec.Argv[0] == argv0 && rec.Argv[len(rec.Argv)-1] == arg {
				return rec
			}
		}
		t.Fatalf("no %s ... %s in the crash kernel", argv0, arg)
		return proto.Record{}
	}
	if out := cmd("/usr/bin/readelf", "/proc/vmcore").Output; !bytes.Contains(out, []byte("CORE (Core file)")) || !bytes.Contains(out, []byte("NOTE")) {
		t.Fatalf("readelf in the crash kernel:\n%s", out)
	}
	r.vmcoreBytes, _ = strconv.ParseInt(strings.TrimSpace(string(cmd("/bin/busybox", "/proc/vmcore").Output)), 10, 64)
	r.dumpBytes, _ = strconv.ParseInt(strings.TrimSpace(string(cmd("/bin/busybox", "/tmp/dump").Output)), 10, 64)
	if r.vmcoreBytes < int64(dumped) || r.dumpBytes <= 0 {
		t.Fatalf("vmcore %d bytes (PT_LOADs %d), dump %d bytes", r.vmcoreBytes, dumped, r.dumpBytes)
	}
	// makedumpfile read the crashed kernel's log through VMCOREINFO and
	// the direct map: the panic is in it.
	dm := res.Find(2, proto.TypeFile, "/tmp/dmesg.txt")
	if len(dm) == 0 || !bytes.Contains(dm[0].Data, []byte("sysrq")) {
		t.Fatalf("makedumpfile --dump-dmesg did not find the sysrq panic in the crashed kernel's log")
	}
	writeFile(t, filepath.Join(g.art, "crashed-dmesg.txt"), dm[0].Data)

	var lastBoot1, firstBoot2 time.Duration
	for i, rec := range res.Records {
		if rec.Boot == 1 {
			lastBoot1 = res.Arrived[i]
		}
		if rec.Boot == 2 && firstBoot2 == 0 {
			firstBoot2 = res.Arrived[i]
		}
	}
	r.panicToInit = firstBoot2 - lastBoot1
	t.Logf("%s: crash region %v; vmcore %d bytes (%d PT_LOAD), makedumpfile -c -d 31 dump %d bytes; panic to the crash kernel's init %v; %s",
		name, region, r.vmcoreBytes, r.loads, r.dumpBytes, r.panicToInit.Round(10*time.Millisecond), res.Accel)
	writeFile(t, filepath.Join(g.art, "crash-result.txt"), []byte(fmt.Sprintf("vmcore_bytes %d\nptload %d\ndump_bytes %d\npanic_to_init_ms %d\naccel %s\n",
		r.vmcoreBytes, r.loads, r.dumpBytes, r.panicToInit.Milliseconds(), res.Accel)))
	return r
}

// TestCrashDump: gokexec -p with each syscall, installed as /sbin/kexec and
// called as Debian's kdump-config calls it, loads a crash kernel that a
// panic boots; its /proc/vmcore is a valid ELF core that makedumpfile
// dumps. kexec-tools' kexec -p runs beside it, with each syscall.
func TestCrashDump(t *testing.T) {
	skipShort(t)
	for _, tc := range []struct {
		name    string
		fw      string
		gokexec bool
		sys     string
	}{
		{"gokexec-kexec_load", "bios", true, "-c"},
		{"gokexec-kexec_file_load", "bios", true, "-s"},
		{"kexec-tools-kexec_load", "bios", false, "-c"},
		{"kexec-tools-kexec_file_load", "bios", false, "-s"},
		// Under OVMF the crash kernel gokexec builds boots as non-EFI and
		// finds ACPI through boot_params.acpi_rsdp_addr.
		{"gokexec-kexec_load-ovmf", "uefi", true, "-c"},
	} {
		t.Run(tc.name, func(t *testing.T) { runCrash(t, tc.name, tc.fw, tc.gokexec, []string{"/sbin/kexec", "-p", tc.sys}) })
	}
}
