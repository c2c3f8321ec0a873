package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/dtctest"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// chain describes a scenario of consecutive gokexec hand-overs.
type chain struct {
	targets  []string // guest kernel path loaded by hop i (len = number of hops)
	measure  int      // files measured in each boot before its hop
	report   bool     // report pcrs+list in every boot, not only the last
	first    int      // files measured in the first boot (default: measure)
	imaExtra string
}

func (c chain) scenario() *proto.Scenario {
	sc := &proto.Scenario{Steps: map[string]proto.Step{}}
	extra := c.imaExtra
	if extra == "" {
		extra = "64K"
	}
	for i, target := range c.targets {
		n := c.measure
		if i == 0 && c.first > 0 {
			n = c.first
		}
		acts := []proto.Action{{Policy: basePolicy}}
		if n > 0 {
			acts = append(acts, proto.Action{MeasureFiles: n, Dir: fmt.Sprintf("/tmp/m%d", i+1)})
		}
		if c.report || i == 0 {
			acts = append(acts, proto.Action{Report: []string{"pcrs", "list"}})
		}
		acts = append(acts,
			proto.Action{File: "/proc/iomem"},
			proto.Action{RepackInitrd: "/run/next.cpio"},
			proto.Action{Run: []string{"/bin/gokexec", "-l", target, "--initrd", "/run/next.cpio",
				"--append", nextAppend(strconv.Itoa(i + 2)), "--ima-extra", extra}, ExpectExit: intp(0)},
			proto.Action{Exec: []string{"/bin/gokexec", "-e"}},
		)
		sc.Steps[strconv.Itoa(i+1)] = proto.Step{DeadlineSec: 300, Actions: acts}
	}
	sc.Steps[strconv.Itoa(len(c.targets)+1)] = proto.Step{Actions: []proto.Action{
		{Report: []string{"boot", "pcrs", "list"}},
		{File: "/proc/iomem"},
	}}
	return sc
}

var kernelCode = regexp.MustCompile(`(?m)^\s+([0-9a-f]+)-[0-9a-f]+ : Kernel code$`)

// kernelAddrs returns each boot's physical "Kernel code" start from /proc/iomem.
func kernelAddrs(res *qemu.Result) []string {
	var out []string
	for b := 1; b <= res.Boots(); b++ {
		for _, f := range res.Find(b, proto.TypeFile, "/proc/iomem") {
			if m := kernelCode.FindSubmatch(f.Data); m != nil {
				out = append(out, string(m[1]))
			}
		}
	}
	return out
}

// checkChain verifies a finished chain with the one hand-over check
// (requireHandover: every hop's markers and payloads, every reported list a
// byte prefix of the next, an independent replay of every boot that
// reported, evmctl on the last report), then replays the last list with
// ima in sha1, sha256 and sha384. extra is the chain's --ima-extra.
func checkChain(t *testing.T, g *guest, res *qemu.Result, hops int) []ima.Entry {
	t.Helper()
	if got := res.Boots(); got != hops+1 {
		t.Fatalf("%d boots reported, want %d", got, hops+1)
	}
	return checkChainExtra(t, res, hops, 64<<10)
}

func checkChainExtra(t *testing.T, res *qemu.Result, hops int, extra uint64) []ima.Entry {
	t.Helper()
	if got := res.Boots(); got != hops+1 {
		t.Fatalf("%d boots reported, want %d", got, hops+1)
	}
	last := requireHandover(t, res, extra)
	// sha384 included: Debian 6.1 extends it SHA-1-padded, 6.12 with
	// sha384, so a chain across both needs a method per boot.
	requireReplays(t, last, pcrValues(t, res.PCRs(hops+1), "sha1", "sha256", "sha384"), "last boot")
	return last
}

// b. 6.1 -> 6.12.
func TestHandover61to612(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k2
	res := g.run(g.k1, chain{targets: []string{"/boot/vmlinuz-2"}, measure: 20, report: true}.scenario())
	last := checkChain(t, g, res, 1)
	if rel := res.BootInfo(2).Release; rel == res.BootInfo(1).Release {
		t.Fatalf("both boots ran %s; the second kernel should differ (GOKEXEC_TEST_KERNEL2)", rel)
	}
	t.Logf("%s -> %s: %s", res.BootInfo(1).Release, res.BootInfo(2).Release, describe(last))
}

// c. Three kernels in a row: Debian 6.1 -> 6.12 -> the self-built 7.2
// with CONFIG_OF (ofKernel), every hop gokexec's kexec_load hand-over. The
// last hop also proves --dtb on x86 (issue 24, Must have 4): see
// checkSetupDTB. That kernel takes its predecessor's list from the tree's
// /chosen/linux,ima-kexec-buffer (CONFIG_OF_FLATTREE compiles x86's
// SETUP_IMA reader out), so the hop check over all three boots also proves
// that gokexec writes it there.
func TestHandoverThreeKernels(t *testing.T) {
	g := newGuest(t)
	k := ofKernel(t, g)
	dtb := compileDTS(t, g.art, "testdata/setup-dtb.dts")
	g.files["/boot/vmlinuz-b"] = g.k2
	g.files["/boot/vmlinuz-c"] = k.Path
	g.files["/boot/setup.dtb"] = dtb
	sc := chain{targets: []string{"/boot/vmlinuz-b", "/boot/vmlinuz-c"}, measure: 10, report: true}.scenario()
	withSetupDTB(t, sc, "2", "/boot/setup.dtb")
	res := g.run(g.k1, sc)
	last := checkChain(t, g, res, 2)
	checkSetupDTB(t, res, last, dtb, "/boot/setup.dtb")
	t.Logf("A %s -> B %s -> C %s (config %s): %s", res.BootInfo(1).Release, res.BootInfo(2).Release, res.BootInfo(3).Release, k.ConfigDigest, describe(last))
}

// ofAMD64 is the harness cache name of the self-built x86 kernel with
// CONFIG_OF (scripts/build-kernel.sh --variant of).
const ofAMD64 = "of-amd64"

// ofKernel returns that kernel, building it (or linking the cached build)
// when the harness cache lacks it, and checks that it has device tree
// support.
func ofKernel(t *testing.T, g *guest) *qemu.BuiltKernel {
	t.Helper()
	k, err := qemu.LoadBuiltKernel(ofAMD64)
	if err != nil {
		root, rerr := qemu.RepoRoot()
		if rerr != nil {
			t.Fatal(rerr)
		}
		out, berr := exec.CommandContext(g.ctx, "bash", filepath.Join(root, "scripts", "build-kernel.sh"), "--variant", "of").CombinedOutput()
		if berr != nil {
			t.Fatalf("scripts/build-kernel.sh --variant of: %v\n%s", berr, lastLines(string(out), 30))
		}
		if k, err = qemu.LoadBuiltKernel(ofAMD64); err != nil {
			t.Fatal(err)
		}
	}
	if k.Config["CONFIG_OF"] != "y" || k.Config["CONFIG_OF_EARLY_FLATTREE"] != "y" || k.Config["CONFIG_IMA"] != "y" {
		t.Fatalf("%s (config %s): CONFIG_OF=%q CONFIG_OF_EARLY_FLATTREE=%q CONFIG_IMA=%q", k.Path, k.ConfigDigest,
			k.Config["CONFIG_OF"], k.Config["CONFIG_OF_EARLY_FLATTREE"], k.Config["CONFIG_IMA"])
	}
	return k
}

// compileDTS compiles a device tree source with dtc into dir.
func compileDTS(t *testing.T, dir, src string) string {
	t.Helper()
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".dts")+".dtb")
	if err := os.WriteFile(out, dtctest.Compile(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// withSetupDTB edits step's gokexec -l of a chain scenario to pass --dtb
// path, after a dry run of it (--json) and a kexec_file_load of it (-s),
// which must be refused before anything is loaded; the next boot reports
// the tree the kernel found.
func withSetupDTB(t *testing.T, sc *proto.Scenario, step, path string) {
	t.Helper()
	st := sc.Steps[step]
	var acts []proto.Action
	found := false
	for _, a := range st.Actions {
		if len(a.Run) > 1 && a.Run[0] == "/bin/gokexec" && a.Run[1] == "-l" {
			found = true
			load := append(append([]string(nil), a.Run...), "--dtb", path)
			file := append([]string{"/bin/gokexec", "-s"}, load[1:]...)
			acts = append(acts,
				proto.Action{Run: append(append([]string(nil), load...), "--dry-run", "--json"), ExpectExit: intp(0)},
				proto.Action{Run: file},
				proto.Action{File: "/sys/kernel/kexec_loaded"},
			)
			a.Run = load
		}
		acts = append(acts, a)
	}
	if !found {
		t.Fatalf("step %s has no gokexec -l", step)
	}
	st.Actions = acts
	sc.Steps[step] = st
	next := strconv.Itoa(mustAtoi(t, step) + 1)
	nst := sc.Steps[next]
	nst.Actions = append(nst.Actions,
		proto.Action{File: "/sys/firmware/fdt"},
		proto.Action{File: "/sys/firmware/devicetree/base/gokexec/proof"},
	)
	sc.Steps[next] = nst
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkSetupDTB checks the --dtb hop of TestHandoverThreeKernels (boot 2
// to boot 3): the dry run planned kexec_load with the tree in a SETUP_DTB
// node and as the plan's dtb_input; gokexec -s refused the tree
// (kexec_file_load cannot pass one on x86) and loaded nothing; the third
// kernel shows at /sys/firmware/fdt the tree given plus the IMA pointer
// in /chosen, and the tree's node under /sys/firmware/devicetree/base;
// and in the last list
// gokexec's measurements of each hop (between its kexec_load and
// kexec_execute markers) name the tree, with its SHA-256, in the --dtb hop
// only.
func checkSetupDTB(t *testing.T, res *qemu.Result, last []ima.Entry, dtbPath, guestPath string) {
	t.Helper()
	dtb, err := os.ReadFile(dtbPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(dtb)
	dry, ok := cmdOutput(res, 2, "/bin/gokexec -l")
	if !ok || dry.Exit != 0 || !strings.Contains(strings.Join(dry.Argv, " "), "--dry-run") {
		t.Fatalf("boot 2: no dry run of the --dtb load (%+v)", dry)
	}
	start := bytes.IndexByte(dry.Output, '{')
	var p plan.Plan
	if start < 0 {
		t.Fatalf("dry run printed no plan:\n%s", dry.Output)
	}
	if err := json.NewDecoder(bytes.NewReader(dry.Output[start:])).Decode(&p); err != nil {
		t.Fatalf("dry run: %v\n%s", err, dry.Output)
	}
	nodes := 0
	if p.BootParams != nil {
		for _, sd := range p.BootParams.SetupData {
			if sd.Type == bzimage.SetupDTB && sd.Len > uint32(len(dtb)) {
				nodes++
			}
		}
	}
	if p.Syscall != plan.SyscallKexecLoad || nodes != 1 || p.DTBInput == nil || p.DTBInput.Path != guestPath || p.DTBInput.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("dry run with --dtb: %s, %d SETUP_DTB nodes beyond the tree's %d bytes (the IMA pointer added), dtb_input %+v", p.Syscall, nodes, len(dtb), p.DTBInput)
	}
	fl, ok := cmdOutput(res, 2, "/bin/gokexec -s -l")
	if !ok || fl.Exit == 0 || !bytes.Contains(fl.Output, []byte("device tree")) || !bytes.Contains(fl.Output, []byte("kexec_file_load")) {
		t.Fatalf("boot 2: gokexec -s --dtb: exit %d\n%s", fl.Exit, fl.Output)
	}
	if f := res.Find(2, proto.TypeFile, "/sys/kernel/kexec_loaded"); len(f) != 1 || strings.TrimSpace(string(f[0].Data)) != "0" {
		t.Fatalf("after the refused -s --dtb: kexec_loaded %+v", f)
	}
	fdt := res.Find(3, proto.TypeFile, "/sys/firmware/fdt")
	if len(fdt) != 1 {
		t.Fatalf("boot 3: %d reports of /sys/firmware/fdt", len(fdt))
	}
	// dtc (the external oracle) reads the third kernel's tree as the one
	// given plus /chosen/linux,ima-kexec-buffer (the kernel made the file
	// only because the tree's CRC matched the one it unflattened).
	lines := func(b []byte) []string { return strings.Split(strings.TrimSpace(dtctest.Source(t, b)), "\n") }
	got, want := lines(fdt[0].Data), lines(dtb)
	var rest []string
	pointer := ""
	for _, l := range got {
		if strings.HasPrefix(strings.TrimSpace(l), "linux,ima-kexec-buffer = <") {
			pointer = strings.TrimSpace(l)
			continue
		}
		rest = append(rest, l)
	}
	if pointer == "" || strings.Join(rest, "\n") != strings.Join(want, "\n") {
		t.Fatalf("boot 3: /sys/firmware/fdt (%d bytes) is not the tree given (%d bytes) plus linux,ima-kexec-buffer:\n%s", len(fdt[0].Data), len(dtb), strings.Join(got, "\n"))
	}
	proof := res.Find(3, proto.TypeFile, "/sys/firmware/devicetree/base/gokexec/proof")
	if len(proof) != 1 || string(proof[0].Data) != "passed by gokexec --dtb as SETUP_DTB\x00" {
		t.Fatalf("boot 3: the tree's node: %+v", proof)
	}
	// gokexec's measurements, hop by hop.
	ms := decodedMarkers(t, last)
	var hops [][]string
	dtbEntries := 0
	for i := 0; i+1 < len(ms); i++ {
		if ms[i].name != ima.MarkerKexecLoad || ms[i+1].name != ima.MarkerKexecExec {
			continue
		}
		var names []string
		for j := ms[i].index + 1; j < ms[i+1].index; j++ {
			names = append(names, last[j].EventName(binary.LittleEndian))
			if d, err := last[j].Decode(binary.LittleEndian); err == nil && bytes.Equal(d.Digest, sum[:]) {
				dtbEntries++
			}
		}
		hops = append(hops, names)
	}
	wantHops := [][]string{
		{"/boot/vmlinuz-b", "/run/next.cpio", "kexec-cmdline"},
		{"/boot/vmlinuz-c", "/run/next.cpio", guestPath, "kexec-cmdline"},
	}
	if fmt.Sprint(hops) != fmt.Sprint(wantHops) || dtbEntries != 1 {
		t.Fatalf("gokexec's measurements per hop %q (%d of the tree's digest), want %q", hops, dtbEntries, wantHops)
	}
	t.Logf("--dtb: boot 3's /sys/firmware/fdt is the %d-byte tree given plus %q; its node read; -s refused: %s", len(dtb), pointer, lastLines(string(fl.Output), 1))
}

// d. KASLR: a chain of hand-overs with KASLR on; every one must arrive intact.
func TestHandoverKASLRChain(t *testing.T) {
	const hops = 20
	g := newGuest(t)
	g.timeout = 20 * time.Minute
	g.files["/boot/vmlinuz-2"] = g.k1
	targets := make([]string, hops)
	for i := range targets {
		targets[i] = "/boot/vmlinuz-2"
	}
	res := g.run(g.k1, chain{targets: targets, measure: 3}.scenario())
	for b := 1; b <= res.Boots(); b++ {
		if info := res.BootInfo(b); info != nil && regexp.MustCompile(`\bnokaslr\b`).MatchString(info.Cmdline) {
			t.Fatalf("boot %d ran with nokaslr", b)
		}
	}
	last := checkChain(t, g, res, hops)
	addrs := kernelAddrs(res)
	distinct := map[string]bool{}
	for _, a := range addrs {
		distinct[a] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("kernel physical addresses %v: KASLR did not move the kernel", addrs)
	}
	t.Logf("KASLR chain: %d hand-overs intact, %d distinct physical kernel addresses over %d boots; final list %s", hops, len(distinct), len(addrs), describe(last))
}

// f. A list of at least 5,000 entries survives the hand-over.
func TestHandoverLargeList(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	res := g.run(g.k1, chain{targets: []string{"/boot/vmlinuz-2"}, first: 5000, imaExtra: "256K"}.scenario())
	last := checkChainExtra(t, res, 1, 256<<10)
	if len(last) < 5000 {
		t.Fatalf("final list has %d entries, want >= 5000", len(last))
	}
	t.Logf("large list: %s", describe(last))
}

// e. Contrast: kexec-tools drops the list; the same guest with gokexec keeps it.
func TestContrastKexecTools(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 20},
			{Report: []string{"pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/sbin/kexec", "-c", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}, ExpectExit: intp(0)},
			{Exec: []string{"/sbin/kexec", "-e"}},
		}},
		"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list"}}}},
	}}
	res := g.run(g.k1, sc)
	if res.Boots() != 2 {
		t.Fatalf("%d boots reported, want 2", res.Boots())
	}
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	pcrs2 := pcrValues(t, res.PCRs(2), "sha1", "sha256")
	toolsResult := ima.Verify(list2, binary.LittleEndian, pcrs2, ima.VerifyOptions{})
	if countBootAggregates(list2) != 1 || len(list2) >= len(list1) {
		t.Fatalf("kexec-tools: boot 2 list %s; expected the list to be lost (only the new boot_aggregate)", describe(list2))
	}
	if toolsResult.Consistent {
		t.Fatalf("kexec-tools: boot 2 list replays to the PCRs; expected the lost list to make attestation fail")
	}

	// The same guest and kernel with gokexec.
	g2 := newGuestNamed(t, "gokexec")
	g2.files["/boot/vmlinuz-2"] = g2.k1
	res2 := g2.run(g2.k1, handoverScenario(""))
	l2 := requireHandover(t, res2, 64<<10)
	goResult := ima.Verify(l2, binary.LittleEndian, pcrValues(t, res2.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{})
	if !goResult.Consistent || goResult.Prefix != len(l2) {
		t.Fatalf("gokexec: boot 2 list does not replay (prefix %d of %d)", goResult.Prefix, len(l2))
	}
	t.Logf("kexec-tools: boot 2 has %s, consistent=%v (prefix %d); gokexec: boot 2 has %s, consistent=%v",
		describe(list2), toolsResult.Consistent, toolsResult.Prefix, describe(l2), goResult.Consistent)
}
