package integration

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// The UEFI scenarios boot the first kernel under OVMF (QEMU -kernel: OVMF
// starts it through its EFI stub, which installs the firmware's TPM event
// log as a configuration table) and hand over with gokexec or kexec-tools.

const (
	biosLog = "/sys/kernel/security/tpm0/binary_bios_measurements"
	// efiProbe mounts efivarfs and prints one EFI variable OVMF always has
	// (PlatformLang: 4 bytes of attributes, then "en-US" or similar), so a
	// kernel that can call GetVariable shows it and one without EFI runtime
	// services says so.
	efiProbe = `insmod /lib/modules/$(uname -r)/efivarfs.ko 2>/dev/null
if [ -d /sys/firmware/efi ]; then echo "efi-dir: yes"; else echo "efi-dir: no"; fi
if mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null; then echo "efivarfs: mounted"; else echo "efivarfs: not mounted"; fi
v=$(ls /sys/firmware/efi/efivars 2>/dev/null | grep '^PlatformLang-' | head -n1)
if [ -n "$v" ]; then echo "variable: $v"; echo "value: $(tail -c +5 /sys/firmware/efi/efivars/$v | tr -d '\000')"; else echo "variable: none"; fi
echo "variables: $(ls /sys/firmware/efi/efivars 2>/dev/null | wc -l)"
if [ -e ` + biosLog + ` ]; then echo "event-log: $(wc -c < ` + biosLog + `) bytes"; else echo "event-log: none"; fi
dmesg | grep -E 'efi: EFI v|Secure boot|KASLR|efi: .*TPMEventLog|No EFI environment' | head -n 20
`
)

// efiFacts is what efiProbe printed in one boot.
type efiFacts struct {
	EFIDir, Efivarfs bool
	Variable, Value  string
	Variables        int
	EventLog         int // bytes, -1 none
	DmesgEFI         string
	Raw              string
}

var (
	efiLine = regexp.MustCompile(`efi: EFI v[0-9.]+ by [^\n]*`)
	kvLine  = regexp.MustCompile(`(?m)^([a-z-]+): (.*)$`)
)

func parseEFIFacts(out string) efiFacts {
	f := efiFacts{EventLog: -1, Raw: out}
	for _, m := range kvLine.FindAllStringSubmatch(out, -1) {
		switch m[1] {
		case "efi-dir":
			f.EFIDir = m[2] == "yes"
		case "efivarfs":
			f.Efivarfs = m[2] == "mounted"
		case "variable":
			f.Variable = m[2]
		case "value":
			f.Value = m[2]
		case "variables":
			f.Variables, _ = strconv.Atoi(strings.TrimSpace(m[2]))
		case "event-log":
			if n, err := strconv.Atoi(strings.TrimSuffix(m[2], " bytes")); err == nil {
				f.EventLog = n
			}
		}
	}
	f.DmesgEFI = efiLine.FindString(out)
	return f
}

func (f efiFacts) String() string {
	ev := "none"
	if f.EventLog >= 0 {
		ev = fmt.Sprintf("%d bytes", f.EventLog)
	}
	boot := "non-EFI"
	if f.DmesgEFI != "" {
		boot = strings.TrimPrefix(f.DmesgEFI, "efi: ")
	}
	return fmt.Sprintf("boot %s; efivarfs %v, %d variables, PlatformLang %q; event log %s", boot, f.Efivarfs, f.Variables, f.Value, ev)
}

// uefiGuest is a guest with busybox (for the probes) and, for both test
// kernels, the efivarfs module (Debian builds it as a module) unless the
// kernel has efivarfs built in.
func uefiGuest(t *testing.T, name string) *guest {
	g := newGuestNamed(t, name)
	g.hostBin["/bin/busybox"] = "/bin/busybox"
	for _, k := range []string{g.k1, g.k2} {
		if rel, ko := efivarfsModule(t, k); ko != "" {
			g.files["/lib/modules/"+rel+"/efivarfs.ko"] = ko
		}
	}
	return g
}

var efivarfsMu sync.Mutex

// efivarfsModule returns a kernel's release and its efivarfs.ko ("" when the
// kernel's configuration beside it says efivarfs is built in). The module
// comes from the modules tree beside the kernel (a bare vmlinuz from an
// unpacked package: lib/modules/<release>/) or, for the kernels
// scripts/setup.sh fetched, from their Debian package (qemu.FindModule). A
// kernel with neither, and no configuration saying CONFIG_EFIVAR_FS=y,
// cannot run a UEFI scenario: the test is skipped with one line saying why.
func efivarfsModule(t *testing.T, kernel string) (string, string) {
	t.Helper()
	// Scenarios run in parallel and share the cache: one extraction at a time.
	efivarfsMu.Lock()
	defer efivarfsMu.Unlock()
	rel, err := qemu.KernelRelease(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := qemu.KernelConfigValue(kernel, rel, "EFIVAR_FS"); v == "y" {
		return rel, ""
	}
	ko, err := qemu.FindModule(kernel, rel, "fs/efivarfs/efivarfs.ko")
	if errors.Is(err, qemu.ErrNoModule) {
		t.Skipf("%s: the UEFI scenarios need efivarfs, and this kernel has no efivarfs.ko beside it (lib/modules/%s) nor a configuration saying CONFIG_EFIVAR_FS=y", kernel, rel)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rel, ko
}

// runFW is guest.run with a firmware and machine size, and the busybox
// applets the EFI probe uses.
func (g *guest) runFW(k string, sc *proto.Scenario, fw string, cpus, memMiB int) *qemu.Result {
	g.t.Helper()
	links := []string{"sh", "mount", "mkdir", "ls", "grep", "head", "tail", "tr", "wc", "dmesg", "cat", "insmod", "uname"}
	what := fmt.Sprintf("firmware %s, %d vCPU, %d MiB; ", fw, max(cpus, 1), memMiB)
	return g.boot(k, sc, links, qemu.VM{Firmware: fw, CPUs: cpus, MemMiB: memMiB}, what)
}

// probeActions reports the EFI facts, the firmware event log and the PCRs.
func probeActions() []proto.Action {
	return []proto.Action{
		{Run: []string{"/bin/busybox", "sh", "-c", efiProbe}, ExpectExit: intp(0)},
		{Run: []string{"/bin/busybox", "sh", "-c", "cat " + biosLog + " > /tmp/bios.bin 2>/dev/null || : > /tmp/bios.bin"}, ExpectExit: intp(0)},
		{File: "/tmp/bios.bin"},
		{File: "/proc/iomem"},
	}
}

// facts returns boot n's probe output.
func facts(t *testing.T, res *qemu.Result, n int) efiFacts {
	t.Helper()
	for _, rec := range res.Find(n, proto.TypeCmd, "") {
		if len(rec.Argv) == 4 && rec.Argv[3] == efiProbe {
			return parseEFIFacts(string(rec.Output))
		}
	}
	t.Fatalf("boot %d: no EFI probe output", n)
	return efiFacts{}
}

// biosMeasurements returns boot n's firmware event log and keeps it as
// boot-N/binary_bios_measurements.
func biosMeasurements(t *testing.T, g *guest, res *qemu.Result, n int) []byte {
	t.Helper()
	f := res.Find(n, proto.TypeFile, "/tmp/bios.bin")
	if len(f) == 0 {
		t.Fatalf("boot %d: no event log record", n)
	}
	dir := filepath.Join(g.art, fmt.Sprintf("boot-%d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "binary_bios_measurements"), f[0].Data)
	return f[0].Data
}

// replayEventLog checks with go-attestation that the firmware event log
// replays to PCRs 0-7 in every bank the log and the PCR report share.
func replayEventLog(t *testing.T, raw []byte, rep map[string][]string, what string) []string {
	t.Helper()
	el, err := attest.ParseEventLog(raw)
	if err != nil {
		t.Fatalf("%s: event log: %v", what, err)
	}
	names := map[attest.HashAlg]struct {
		bank string
		h    crypto.Hash
	}{attest.HashSHA1: {"sha1", crypto.SHA1}, attest.HashSHA256: {"sha256", crypto.SHA256}, attest.HashAlg(0x0c): {"sha384", crypto.SHA384}}
	var banks []string
	for _, a := range el.Algs {
		n, ok := names[a]
		if !ok {
			continue
		}
		vals, ok := rep[n.bank]
		if !ok {
			continue
		}
		var pcrs []attest.PCR
		for i := 0; i < 8; i++ {
			d, err := hex.DecodeString(vals[i])
			if err != nil {
				t.Fatal(err)
			}
			pcrs = append(pcrs, attest.PCR{Index: i, Digest: d, DigestAlg: n.h})
		}
		if _, err := el.Verify(pcrs); err != nil {
			t.Fatalf("%s: event log does not replay to PCRs 0-7 in %s: %v", what, n.bank, err)
		}
		banks = append(banks, n.bank)
	}
	if len(banks) == 0 {
		t.Fatalf("%s: event log banks %v, none in the PCR report", what, el.Algs)
	}
	return banks
}

// uefiHandover is the 6.1 -> 6.12 scenario under OVMF; load holds the
// actions that load the next kernel and boot it.
func uefiHandover(load []proto.Action) *proto.Scenario {
	acts := []proto.Action{{Policy: basePolicy}, {MeasureFiles: 10, Dir: "/tmp/m1"}}
	acts = append(acts, probeActions()...)
	acts = append(acts,
		proto.Action{Report: []string{"pcrs", "list"}},
		// A capture of this host for off-target planning (--host).
		proto.Action{Run: []string{"/bin/gokexec", "capture-host", "/tmp/host"}, ExpectExit: intp(0)},
		proto.Action{Run: []string{"/bin/busybox", "tar", "-cf", "/tmp/host.tar", "-C", "/tmp/host", "."}, ExpectExit: intp(0)},
		proto.Action{File: "/tmp/host.tar"},
		proto.Action{RepackInitrd: "/run/next.cpio"},
	)
	acts = append(acts, load...)
	step2 := append([]proto.Action{{Report: []string{"boot", "pcrs", "list"}}}, probeActions()...)
	return &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: acts},
		"2": {Actions: step2},
	}}
}

func gokexecLoad(target string, extra ...string) []proto.Action {
	args := append([]string{"/bin/gokexec", "-l", target, "--initrd", "/run/next.cpio", "--append", nextAppend("2")}, extra...)
	dry := append(append([]string(nil), args...), "--dry-run", "--json")
	return []proto.Action{
		{Run: dry, ExpectExit: intp(0)},
		{Run: args, ExpectExit: intp(0)},
		{Exec: []string{"/bin/gokexec", "-e"}},
	}
}

// planJSON returns the boot's dry-run plan.
func planJSON(t *testing.T, res *qemu.Result, n int) map[string]any {
	t.Helper()
	for _, rec := range res.Find(n, proto.TypeCmd, "") {
		if len(rec.Argv) > 2 && rec.Argv[0] == "/bin/gokexec" && rec.Argv[len(rec.Argv)-1] == "--json" {
			i := bytes.IndexByte(rec.Output, '{')
			if i < 0 {
				break
			}
			var p map[string]any
			if err := json.NewDecoder(bytes.NewReader(rec.Output[i:])).Decode(&p); err != nil {
				t.Fatalf("plan JSON: %v\n%s", err, rec.Output)
			}
			return p
		}
	}
	t.Fatalf("boot %d: no dry-run plan", n)
	return nil
}

// TestUEFIHandover61to612: under OVMF, gokexec hands the EFI state over with
// the IMA list: the second kernel is an EFI boot, reads an EFI variable, has
// the first kernel's firmware event log byte for byte, and both the event
// log (PCRs 0-7, every bank) and the IMA list (PCR 10) replay to the TPM.
func TestUEFIHandover61to612(t *testing.T) {
	g := uefiGuest(t, "")
	g.files["/boot/vmlinuz-2"] = g.k2
	start := time.Now()
	res := g.runFW(g.k1, uefiHandover(gokexecLoad("/boot/vmlinuz-2")), qemu.FirmwareUEFI, 1, 1024)
	wall := time.Since(start)
	f1, f2 := facts(t, res, 1), facts(t, res, 2)
	t.Logf("boot 1 (%s): %s", res.BootInfo(1).Release, f1)
	t.Logf("boot 2 (%s): %s", res.BootInfo(2).Release, f2)
	if f1.DmesgEFI == "" || f1.Value == "" || f1.EventLog <= 0 {
		t.Fatalf("the first boot is not a full EFI boot under OVMF: %s\n%s", f1, f1.Raw)
	}
	p := planJSON(t, res, 1)
	bp := p["boot_params"].(map[string]any)
	e, ok := bp["efi"].(map[string]any)
	if !ok {
		t.Fatalf("plan has no boot_params.efi: warnings %v", p["warnings"])
	}
	for _, k := range []string{"systab", "memmap", "memmap_size", "memdesc_size", "memdesc_version"} {
		if v, ok := e[k].(float64); !ok || v == 0 {
			t.Errorf("boot_params.efi.%s = %v", k, e[k])
		}
	}
	hasEFINode := false
	for _, n := range bp["setup_data"].([]any) {
		if n.(map[string]any)["type"].(float64) == 4 {
			hasEFINode = true
		}
	}
	if !hasEFINode {
		t.Errorf("no SETUP_EFI node in %v", bp["setup_data"])
	}
	if f2.DmesgEFI == "" {
		t.Fatalf("the second kernel is not an EFI boot:\n%s", f2.Raw)
	}
	if f2.Value == "" || f2.Value != f1.Value {
		t.Fatalf("the second kernel reads PlatformLang %q through efivarfs, the first %q", f2.Value, f1.Value)
	}
	ev1, ev2 := biosMeasurements(t, g, res, 1), biosMeasurements(t, g, res, 2)
	if len(ev1) == 0 || !bytes.Equal(ev1, ev2) {
		t.Fatalf("firmware event log: boot 1 %d bytes, boot 2 %d bytes, identical %v", len(ev1), len(ev2), bytes.Equal(ev1, ev2))
	}
	if !strings.Contains(serialBoot(t, g, 2), "efifb: framebuffer at") {
		t.Errorf("the second kernel did not keep the EFI framebuffer (screen_info)")
	}
	banks := replayEventLog(t, ev2, res.PCRs(2), "boot 2")
	replayEventLog(t, ev1, res.PCRs(1), "boot 1")
	last := checkChain(t, g, res, 1)
	sb := regexp.MustCompile(`secureboot: [^\r\n]*`).FindString(serialBoot(t, g, 2))
	t.Logf("UEFI %s -> %s: event log %d bytes replays to PCRs 0-7 in %v; IMA %s; kernel code at %v; %q; wall %v", res.BootInfo(1).Release, res.BootInfo(2).Release,
		len(ev2), banks, describe(last), kernelAddrs(res), sb, wall.Round(100*time.Millisecond))
}

// TestUEFINoEFI: --noefi under OVMF. The second kernel boots as non-EFI and
// says so; the IMA list still arrives and replays.
func TestUEFINoEFI(t *testing.T) {
	g := uefiGuest(t, "")
	g.files["/boot/vmlinuz-2"] = g.k2
	res := g.runFW(g.k1, uefiHandover(gokexecLoad("/boot/vmlinuz-2", "--noefi")), qemu.FirmwareUEFI, 1, 1024)
	f1, f2 := facts(t, res, 1), facts(t, res, 2)
	t.Logf("boot 1 (%s): %s", res.BootInfo(1).Release, f1)
	t.Logf("boot 2 (%s): %s", res.BootInfo(2).Release, f2)
	p := planJSON(t, res, 1)
	if e := p["boot_params"].(map[string]any)["efi"]; e != nil {
		t.Fatalf("--noefi plan hands EFI state over: %v", e)
	}
	if f1.DmesgEFI == "" {
		t.Fatalf("first boot not EFI:\n%s", f1.Raw)
	}
	if f2.DmesgEFI != "" || f2.EFIDir || f2.Variables != 0 || f2.EventLog >= 0 {
		t.Fatalf("second kernel under --noefi: %s\n%s", f2, f2.Raw)
	}
	// A non-EFI 6.12 prints no "efi:" lines at all; screen_info still
	// carries the GOP framebuffer, so the console stays on the screen.
	if strings.Contains(serialBoot(t, g, 2), "efi: EFI v") {
		t.Errorf("the second kernel's console says it is an EFI boot")
	}
	if !strings.Contains(serialBoot(t, g, 2), "efifb: framebuffer at") {
		t.Errorf("the second kernel did not keep the framebuffer (screen_info)")
	}
	last := checkChain(t, g, res, 1)
	t.Logf("--noefi: second kernel non-EFI (%s); IMA %s", f2, describe(last))
}

// serialBoot returns the console text of boot n (split at "Linux version").
func serialBoot(t *testing.T, g *guest, n int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(g.art, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "] Linux version ")
	if n >= len(parts) {
		return ""
	}
	return parts[n]
}

// TestUEFIKexecTools: the same guest with Debian's kexec-tools, kexec_load
// (kexec -c -l) and kexec_file_load (kexec -s -l), then kexec -e, for the
// side-by-side table in the closing note. It asserts only that the
// second kernel boots; what it sees is logged.
func TestUEFIKexecTools(t *testing.T) {
	for _, mode := range []string{"-c", "-s"} {
		t.Run(mode, func(t *testing.T) {
			g := uefiGuest(t, "kexec"+mode)
			g.files["/boot/vmlinuz-2"] = g.k2
			g.hostBin["/sbin/kexec"] = "/sbin/kexec"
			load := []proto.Action{
				{Run: []string{"/sbin/kexec", mode, "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}, ExpectExit: intp(0)},
				{Exec: []string{"/sbin/kexec", "-e"}},
			}
			res := g.runFW(g.k1, uefiHandover(load), qemu.FirmwareUEFI, 1, 1024)
			f1, f2 := facts(t, res, 1), facts(t, res, 2)
			t.Logf("boot 1 (%s): %s", res.BootInfo(1).Release, f1)
			t.Logf("boot 2 (%s): %s", res.BootInfo(2).Release, f2)
			ev1, ev2 := biosMeasurements(t, g, res, 1), biosMeasurements(t, g, res, 2)
			es := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
			sb := regexp.MustCompile(`secureboot: [^\r\n]*`).FindString(serialBoot(t, g, 2))
			t.Logf("kexec-tools %s: second kernel %s; event log identical %v; IMA list %s (carried: %v); kernel code at %v; %q",
				mode, f2, len(ev1) > 0 && bytes.Equal(ev1, ev2), describe(es), countBootAggregates(es) == 2, kernelAddrs(res), sb)
			if f2.DmesgEFI == "" {
				t.Errorf("kexec-tools' second kernel is not an EFI boot:\n%s", f2.Raw)
			}
		})
	}
}

// TestUEFIKASLRChain: 10 gokexec hand-overs under OVMF (6.1 first, then
// 6.12 each time), every one with the EFI state and the IMA list: the last
// kernel is still an EFI boot with the firmware's event log, and its list
// holds every boot and replays.
func TestUEFIKASLRChain(t *testing.T) {
	const hops = 10
	g := uefiGuest(t, "")
	g.files["/boot/vmlinuz-2"] = g.k2
	g.timeout = 20 * time.Minute // 6.5 min on an idle host; a shared, loaded host runs 2-3x slower
	var targets []string
	for i := 0; i < hops; i++ {
		targets = append(targets, "/boot/vmlinuz-2")
	}
	sc := chain{targets: targets, measure: 3}.scenario()
	first := sc.Steps["1"]
	first.Actions = append(probeActions(), first.Actions...)
	sc.Steps["1"] = first
	lastStep := strconv.Itoa(hops + 1)
	last := sc.Steps[lastStep]
	last.Actions = append(last.Actions, probeActions()...)
	sc.Steps[lastStep] = last
	res := g.runFW(g.k1, sc, qemu.FirmwareUEFI, 1, 1024)
	f1, fN := facts(t, res, 1), facts(t, res, hops+1)
	if fN.DmesgEFI == "" || fN.Value != f1.Value {
		t.Fatalf("boot %d: %s", hops+1, fN)
	}
	ev1, evN := biosMeasurements(t, g, res, 1), biosMeasurements(t, g, res, hops+1)
	if len(ev1) == 0 || !bytes.Equal(ev1, evN) {
		t.Fatalf("event log changed over %d hand-overs (%d -> %d bytes)", hops, len(ev1), len(evN))
	}
	replayEventLog(t, evN, res.PCRs(hops+1), fmt.Sprintf("boot %d", hops+1))
	es := checkChain(t, g, res, hops)
	// Physical KASLR in the kexec'd kernels: it chooses only among the EFI
	// map's conventional descriptors, which the plan adds for the RAM.
	// One address per boot (a boot may report /proc/iomem more than once).
	var addrs []string
	for n := 1; n <= hops+1; n++ {
		f := res.Find(n, proto.TypeFile, "/proc/iomem")
		if len(f) == 0 {
			continue
		}
		if m := kernelCode.FindSubmatch(f[len(f)-1].Data); m != nil {
			addrs = append(addrs, string(m[1]))
		}
	}
	distinct := map[string]bool{}
	for _, a := range addrs[min(1, len(addrs)):] {
		distinct[a] = true
	}
	if len(addrs) != hops+1 || len(distinct) < 2 {
		t.Fatalf("kernel code at %v: physical KASLR did not move the kexec'd kernels", addrs)
	}
	t.Logf("%d hand-overs under OVMF: last boot %s; kernel code at %v (%d distinct after kexec); IMA %s", hops, fN, addrs, len(distinct), describe(es))
}

// TestBigGuest: 2 vCPUs and 6 GiB (RAM above 4 GiB, and OVMF's holes under
// UEFI) with each firmware: the hand-over is intact and consistent.
func TestBigGuest(t *testing.T) {
	for _, fw := range []string{qemu.FirmwareUEFI, qemu.FirmwareBIOS} {
		t.Run(fw, func(t *testing.T) {
			g := uefiGuest(t, fw)
			g.files["/boot/vmlinuz-2"] = g.k2
			res := g.runFW(g.k1, uefiHandover(gokexecLoad("/boot/vmlinuz-2")), fw, 2, 6144)
			f2 := facts(t, res, 2)
			if fw == qemu.FirmwareUEFI && (f2.DmesgEFI == "" || f2.EventLog <= 0) {
				t.Fatalf("second kernel: %s", f2)
			}
			if fw == qemu.FirmwareUEFI {
				replayEventLog(t, biosMeasurements(t, g, res, 2), res.PCRs(2), "boot 2")
			}
			es := checkChain(t, g, res, 1)
			t.Logf("%s, 2 vCPU, 6 GiB: second kernel %s; IMA %s", fw, f2, describe(es))
		})
	}
}
