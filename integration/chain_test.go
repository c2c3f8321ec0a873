package integration

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
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

// c. Three kernels in a row: 6.1 -> 6.12 -> 6.1.
func TestHandoverThreeKernels(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-a"] = g.k1
	g.files["/boot/vmlinuz-b"] = g.k2
	res := g.run(g.k1, chain{targets: []string{"/boot/vmlinuz-b", "/boot/vmlinuz-a"}, measure: 10, report: true}.scenario())
	last := checkChain(t, g, res, 2)
	t.Logf("A %s -> B %s -> C %s: %s", res.BootInfo(1).Release, res.BootInfo(2).Release, res.BootInfo(3).Release, describe(last))
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
