package integration

// Scenarios on a kernel that hands its IMA list over itself (issue 18):
// the harness builds it from Debian unstable's linux-source package with
// CONFIG_IMA_KEXEC=y (qemu.IMAKexecKernel, scripts/build-kernel.sh). On
// such a kernel gokexec -a picks kexec_file_load, the kernel reserves a
// hand-over buffer at load time (the list then plus half a page here:
// CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB=0) and writes its own kexec_load and
// kexec_execute markers.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// fileKexecPolicy is the base policy plus what the kernel measures around
// kexec_file_load: the image, the initramfs, the command line, and its own
// markers (critical data, label ima_kexec).
const fileKexecPolicy = basePolicy + `measure func=KEXEC_KERNEL_CHECK
measure func=KEXEC_INITRAMFS_CHECK
measure func=KEXEC_CMDLINE
measure func=CRITICAL_DATA label=ima_kexec
`

// newFileKexecGuest is newGuest booting the self-built CONFIG_IMA_KEXEC
// kernel, which is also the kexec target (/boot/vmlinuz-2).
func newFileKexecGuest(t *testing.T, name string, extraPkgs ...string) (*guest, *qemu.BuiltKernel) {
	t.Helper()
	g := newGuestNamed(t, name, extraPkgs...)
	k, err := qemu.IMAKexecKernel(g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k.Config["CONFIG_IMA_KEXEC"] != "y" || k.Config["CONFIG_KEXEC_FILE"] != "y" {
		t.Fatalf("%s: CONFIG_IMA_KEXEC=%q CONFIG_KEXEC_FILE=%q", k.Path, k.Config["CONFIG_IMA_KEXEC"], k.Config["CONFIG_KEXEC_FILE"])
	}
	g.k1, g.k2 = k.Path, k.Path
	// Two boots under software emulation on a shared CI machine: the
	// outgrow scenario's gokexec half took 3m20s once with the CPU busy.
	g.timeout = 10 * time.Minute
	g.files["/boot/vmlinuz-2"] = k.Path
	for _, p := range extraPkgs {
		g.files["/bin/"+p[strings.LastIndex(p, "/")+1:]] = g.bins[p]
	}
	return g, k
}

// kernelMarker is a decoded kexec_load/kexec_execute entry.
type kernelMarker struct {
	index int
	name  string
	m     ima.Marker
}

// decodedMarkers returns every marker of es with its decoded payload; a
// marker whose payload does not decode fails the test.
func decodedMarkers(t *testing.T, es []ima.Entry) []kernelMarker {
	t.Helper()
	var out []kernelMarker
	tl := ima.BuildTimeline(es, binary.LittleEndian)
	for _, b := range tl.Boots {
		for _, m := range b.Markers {
			if !m.Decoded {
				t.Fatalf("marker %s at %d: payload %q does not decode", m.Name, m.Index, m.Payload)
			}
			out = append(out, kernelMarker{index: m.Index, name: m.Name, m: m})
		}
	}
	return out
}

// checkKernelMarker checks what makes a marker the kernel's: PCR 10, and a
// count and size that describe exactly the entries before it (the kernel
// reads both just before it measures the marker; its size counts the
// 24-byte kexec buffer header too).
func checkKernelMarker(t *testing.T, es []ima.Entry, km kernelMarker) {
	t.Helper()
	if km.m.PCR != 10 {
		t.Fatalf("%s at %d in PCR %d", km.name, km.index, km.m.PCR)
	}
	if km.m.Count != uint64(km.index) {
		t.Fatalf("%s at %d says ima_runtime_measurements_count=%d", km.name, km.index, km.m.Count)
	}
	// The kernel's size is that of a hand-over buffer holding those
	// entries: the 24-byte ima_kexec_hdr included.
	if size := uint64(ima.KexecHeaderSize + len(ima.AppendList(nil, es[:km.index], binary.LittleEndian))); km.m.ListSize != size {
		t.Fatalf("%s at %d says ima_binary_runtime_size=%d; the %d entries before it take %d bytes with the header", km.name, km.index, km.m.ListSize, km.index, size)
	}
}

// secondBoot returns the index of the second boot_aggregate.
func secondBoot(t *testing.T, es []ima.Entry) int {
	t.Helper()
	n := 0
	for i := range es {
		if isBootAggregate(es[i]) {
			if n++; n == 2 {
				return i
			}
		}
	}
	t.Fatalf("list of %d entries has %d boot_aggregate", len(es), n)
	return -1
}

// filePlan is what the kexec_file_load scenarios read from gokexec -l
// --dry-run --json.
type filePlan struct {
	Syscall  string `json:"syscall"`
	Decision struct {
		Reason string `json:"reason"`
		Facts  struct {
			HandsOver bool `json:"kernel_hands_over"`
		} `json:"facts"`
	} `json:"decision"`
}

// dryRunPlan decodes the plan that load plus --dry-run printed in boot.
func dryRunPlan(t *testing.T, res *qemu.Result, boot int, load []string) filePlan {
	t.Helper()
	dry, ok := cmdOutput(res, boot, strings.Join(load, " ")+" --dry-run")
	if !ok {
		t.Fatal("no dry-run record")
	}
	// The output holds warnings (stderr) besides the plan (stdout).
	start := bytes.IndexByte(dry.Output, '{')
	if start < 0 {
		t.Fatalf("dry run printed no plan:\n%s", dry.Output)
	}
	var pl filePlan
	if err := json.NewDecoder(bytes.NewReader(dry.Output[start:])).Decode(&pl); err != nil {
		t.Fatalf("dry run: %v\n%s", err, dry.Output)
	}
	return pl
}

// checkKernelHandover checks the part of a list that the kernel handed
// over itself (kexec_file_load with IMA_KEXEC) at the end of the boot whose
// entries begin at index from (0 for the first boot; the length of the
// previous boot's list for a later one): the late files read under lateDir
// between -l and -e are all before the next boot's boot_aggregate, and
// every marker in that part decodes and is the kernel's
// (checkKernelMarker). It returns those markers, split by name too, and the
// index of the next boot's boot_aggregate.
func checkKernelHandover(t *testing.T, es []ima.Entry, from int, lateDir string, late int) (ms, loads, execs []kernelMarker, next int) {
	t.Helper()
	next = -1
	for i := from + 1; i < len(es); i++ {
		if isBootAggregate(es[i]) {
			next = i
			break
		}
	}
	if next < 0 {
		t.Fatalf("list of %d entries: no boot_aggregate after entry %d", len(es), from)
	}
	n := 0
	for i := from; i < next; i++ {
		if strings.HasPrefix(es[i].EventName(binary.LittleEndian), lateDir) {
			n++
		}
	}
	if n != late {
		t.Fatalf("the restored list holds %d of the %d files read under %s after -l", n, late, lateDir)
	}
	for _, m := range decodedMarkers(t, es) {
		if m.index < from || m.index >= next {
			continue
		}
		checkKernelMarker(t, es, m)
		ms = append(ms, m)
		if m.name == ima.MarkerKexecLoad {
			loads = append(loads, m)
		} else {
			execs = append(execs, m)
		}
	}
	return ms, loads, execs, next
}

func cmdOutput(res *qemu.Result, boot int, argv0 string) (proto.Record, bool) {
	for _, c := range res.Find(boot, proto.TypeCmd, "") {
		if len(c.Argv) > 0 && strings.Join(c.Argv, " ") == argv0 || len(c.Argv) > 0 && strings.HasPrefix(strings.Join(c.Argv, " "), argv0+" ") {
			return c, true
		}
	}
	return proto.Record{}, false
}

// TestFileKexecHandsOver (issue 18, 2a): gokexec -l picks kexec_file_load
// by itself on this kernel; -e reboots; the second kernel restored the
// whole list with the kernel's own kexec_load/kexec_execute markers, it
// replays to the TPM, and imalog in the guest reads the markers with the
// rule it applies to gokexec's and says consistent.
func TestFileKexecHandsOver(t *testing.T) {
	g, k := newFileKexecGuest(t, "", "./cmd/imalog")
	load := []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: append(append([]string(nil), load...), "--dry-run", "--json"), ExpectExit: intp(0)},
			{Run: load, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 300, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{Run: []string{"/bin/imalog", "verify", "/sys/kernel/security/ima/binary_runtime_measurements", "--tpm"}},
		}},
	}}
	res := g.run(g.k1, sc)

	pl := dryRunPlan(t, res, 1, load)
	if pl.Syscall != "kexec_file_load" || !pl.Decision.Facts.HandsOver {
		t.Fatalf("auto on a CONFIG_IMA_KEXEC kernel chose %s (kernel_hands_over %v): %s", pl.Syscall, pl.Decision.Facts.HandsOver, pl.Decision.Reason)
	}

	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "boot 2")
	ms, loads, execs, b2 := checkKernelHandover(t, list2, 0, "/tmp/late/", 5)
	// -l and the refresh at -e each made the kernel measure a kexec_load.
	if len(loads) != 2 || len(execs) != 1 || execs[0].index != b2-1 || loads[1].index > execs[0].index {
		t.Fatalf("markers load %v execute %v, second boot at %d", loads, execs, b2)
	}
	if execs[0].m.SegmentSize != loads[1].m.SegmentSize {
		t.Fatalf("kexec_execute names a %d-byte segment, the last kexec_load %d", execs[0].m.SegmentSize, loads[1].m.SegmentSize)
	}
	tl := ima.BuildTimeline(list2, binary.LittleEndian)
	if tl.Verdict != ima.VerdictSoftReboots || tl.Boots[0].Exit != "soft-reboot" {
		t.Fatalf("timeline %s: %s", tl.Verdict, tl.Reason)
	}
	c, ok := cmdOutput(res, 2, "/bin/imalog verify")
	if !ok || c.Exit != 0 || !bytes.Contains(c.Output, []byte("verdict: consistent")) || !bytes.Contains(c.Output, []byte("soft-reboots")) {
		t.Fatalf("imalog verify --tpm in the second kernel: exit %d\n%s", c.Exit, c.Output)
	}
	evmctlAgrees(t, res, 2, "sha1", "sha256")
	t.Logf("kernel %s %s (config %s): boot 2 %s; kernel markers %s; imalog:\n%s", k.SourcePackage, k.SourceVersion, k.ConfigDigest,
		describe(list2), markerSummary(ms), lastLines(string(c.Output), 4))
}

func markerSummary(ms []kernelMarker) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%s@%d(segment %d, list %d bytes, %d entries) ", m.name, m.index, m.m.SegmentSize, m.m.ListSize, m.m.Count)
	}
	return strings.TrimSpace(b.String())
}

// grownFiles is how many files are read between -l and -e in
// TestFileKexecOutgrowsKernelBuffer: some 300 KB of list, far beyond the
// half page the kernel reserves beyond the list at load time.
const grownFiles = 3000

// outgrow runs one half of TestFileKexecOutgrowsKernelBuffer: load with
// load, read grownFiles files, report the list, exec with exec. It
// returns the list of boot 1 (as reported just before the exec) and of
// boot 2.
func outgrow(t *testing.T, load, exec []string) (*qemu.Result, []ima.Entry, []ima.Entry) {
	t.Helper()
	g, _ := newFileKexecGuest(t, "", "./cmd/imalog")
	g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: load, ExpectExit: intp(0)},
			{MeasureFiles: grownFiles, Dir: "/tmp/grow"},
			{Report: []string{"list"}},
			{Exec: exec},
		}},
		"2": {DeadlineSec: 300, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{Run: []string{"/bin/imalog", "verify", "/sys/kernel/security/ima/binary_runtime_measurements", "--tpm"}},
		}},
	}}
	res := g.run(g.k1, sc)
	return res, parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1"),
		parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
}

// TestFileKexecOutgrowsKernelBuffer (issue 18, 2b): thousands of entries
// arrive between the load and the exec. kexec-tools (kexec -s -l, then
// kexec -e) boots into the buffer the kernel sized at load: the second
// kernel's list ends short of the first's, without the kexec_execute
// marker, and the verdict is "cold boot needed". gokexec -e loads again
// right before the reboot: nothing is lost and the list replays.
func TestFileKexecOutgrowsKernelBuffer(t *testing.T) {
	args := []string{"/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}

	t.Run("kexec-tools", func(t *testing.T) {
		res, before, after := outgrow(t, append([]string{"/sbin/kexec", "-s", "-l"}, args...), []string{"/sbin/kexec", "-e"})
		outgrownKexecTools(t, res, before, after)
	})
	t.Run("gokexec", func(t *testing.T) {
		res, before, after := outgrow(t, append([]string{"/bin/gokexec", "-l"}, args...), []string{"/bin/gokexec", "-d", "-e"})
		outgrownGokexec(t, res, before, after)
	})
}

// outgrownKexecTools checks the kexec-tools half of
// TestFileKexecOutgrowsKernelBuffer.
func outgrownKexecTools(t *testing.T, res *qemu.Result, before, after []ima.Entry) {
	b2 := secondBoot(t, after)
	ms := decodedMarkers(t, after)
	if len(ms) != 1 || ms[0].name != ima.MarkerKexecLoad {
		t.Fatalf("kexec-tools: markers %s; want only the kernel's kexec_load of -l", markerSummary(ms))
	}
	checkKernelMarker(t, after, ms[0])
	if b2 >= len(before) {
		t.Fatalf("kexec-tools: the second kernel restored %d entries of the %d the first had before the reboot", b2, len(before))
	}
	for i := 0; i < b2; i++ {
		if !bytes.Equal(after[i].TemplateData, before[i].TemplateData) {
			t.Fatalf("kexec-tools: restored entry %d differs from the first kernel's", i)
		}
	}
	tl := ima.BuildTimeline(after, binary.LittleEndian)
	if tl.Verdict != ima.VerdictEventsLost {
		t.Fatalf("kexec-tools: timeline %s (%s), want %s", tl.Verdict, tl.Reason, ima.VerdictEventsLost)
	}
	if r := ima.Verify(after, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{}); r.Consistent {
		t.Fatal("kexec-tools: the truncated list replays")
	}
	c, _ := cmdOutput(res, 2, "/bin/imalog verify")
	if c.Exit != 1 || !bytes.Contains(c.Output, []byte("cold boot")) {
		t.Fatalf("kexec-tools: imalog verify --tpm: exit %d\n%s", c.Exit, c.Output)
	}
	t.Logf("kexec-tools: first kernel had %d entries before kexec -e; the second restored %d (lost %d and kexec_execute); %s; imalog: %s",
		len(before), b2, len(before)-b2, markerSummary(ms), lastLines(string(c.Output), 1))

}

// outgrownGokexec checks the gokexec half (with the refresh at -e).
func outgrownGokexec(t *testing.T, res *qemu.Result, before, after []ima.Entry) {
	b2 := secondBoot(t, after)
	requireReplays(t, after, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "gokexec boot 2")
	for i := range before {
		if !bytes.Equal(after[i].TemplateData, before[i].TemplateData) {
			t.Fatalf("gokexec: restored entry %d differs from the first kernel's", i)
		}
	}
	ms := decodedMarkers(t, after)
	if len(ms) != 3 || ms[0].name != ima.MarkerKexecLoad || ms[1].name != ima.MarkerKexecLoad || ms[2].name != ima.MarkerKexecExec || ms[2].index != b2-1 {
		t.Fatalf("gokexec: markers %s, second boot at %d; want the kexec_load of -l, of the refresh, then kexec_execute", markerSummary(ms), b2)
	}
	for _, m := range ms {
		checkKernelMarker(t, after, m)
	}
	if ms[1].m.SegmentSize <= ms[0].m.SegmentSize || ms[1].m.SegmentSize < ms[1].m.ListSize {
		t.Fatalf("gokexec: the refresh reserved %d bytes for a %d-byte list (-l reserved %d)", ms[1].m.SegmentSize, ms[1].m.ListSize, ms[0].m.SegmentSize)
	}
	tl := ima.BuildTimeline(after, binary.LittleEndian)
	if tl.Verdict != ima.VerdictSoftReboots {
		t.Fatalf("gokexec: timeline %s (%s)", tl.Verdict, tl.Reason)
	}
	c, _ := cmdOutput(res, 2, "/bin/imalog verify")
	if c.Exit != 0 || !bytes.Contains(c.Output, []byte("verdict: consistent")) {
		t.Fatalf("gokexec: imalog verify --tpm: exit %d\n%s", c.Exit, c.Output)
	}
	t.Logf("gokexec: first kernel had %d entries before -e; the second restored %d (those, -e's own reads, the refresh's kexec_load and kexec_execute); %s; imalog: %s",
		len(before), b2, markerSummary(ms), lastLines(string(c.Output), 1))
}

// TestFileKexecForcedKexecLoad (issue 18, 2c): -c on this kernel. The
// kernel measures its own kexec_execute in its reboot notifier, after any
// snapshot gokexec could hand over with kexec_load, so gokexec refuses the
// kexec_load hand-over (loader.ErrKernelMeasuresExec): nothing is loaded,
// nothing is measured. Following the advice (-s) then hands over
// consistently.
func TestFileKexecForcedKexecLoad(t *testing.T) {
	g, _ := newFileKexecGuest(t, "", "./cmd/imalog")
	args := []string{"/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Report: []string{"list"}},
			{Run: append([]string{"/bin/gokexec", "-c", "-l"}, args...)},
			{File: "/sys/kernel/kexec_loaded"},
			{Report: []string{"pcrs", "list"}},
			{Run: append([]string{"/bin/gokexec", "-s", "-l"}, args...), ExpectExit: intp(0)},
			{Exec: []string{"/bin/gokexec", "-e"}},
		}},
		"2": {DeadlineSec: 300, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{Run: []string{"/bin/imalog", "verify", "/sys/kernel/security/ima/binary_runtime_measurements", "--tpm"}},
		}},
	}}
	res := g.run(g.k1, sc)
	c, ok := cmdOutput(res, 1, "/bin/gokexec -c -l")
	if !ok || c.Exit == 0 || !bytes.Contains(c.Output, []byte("kexec_execute")) || !bytes.Contains(c.Output, []byte("one entry short")) {
		t.Fatalf("-c -l on a kernel that measures at kexec: exit %d\n%s", c.Exit, c.Output)
	}
	f := res.Find(1, proto.TypeFile, "/sys/kernel/kexec_loaded")
	if len(f) != 1 || strings.TrimSpace(string(f[0].Data)) != "0" {
		t.Fatalf("after the refused -c -l: %d kexec_loaded reports %+v", len(f), f)
	}
	lists := res.Find(1, proto.TypeList, "binary_runtime_measurements")
	if len(lists) != 2 {
		t.Fatalf("%d list reports in boot 1", len(lists))
	}
	pre, post := parseList(t, lists[0].Data, "before -c"), parseList(t, lists[1].Data, "after -c")
	// gokexec read the kernel and initrd (the policy measures what root
	// reads); nothing else may have been measured: no kexec_load marker,
	// no kexec-cmdline, no loader entry.
	if len(post) < len(pre) {
		t.Fatalf("the list shrank: %d entries, then %d", len(pre), len(post))
	}
	for _, e := range post[len(pre):] {
		if n := e.EventName(binary.LittleEndian); e.TemplateName != "ima-sig" || n != "/boot/vmlinuz-2" && n != "/run/next.cpio" {
			t.Fatalf("the refused -c -l added %s %q", e.TemplateName, n)
		}
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "boot 2")
	tl := ima.BuildTimeline(list2, binary.LittleEndian)
	if tl.Verdict != ima.VerdictSoftReboots {
		t.Fatalf("after -s: timeline %s (%s)", tl.Verdict, tl.Reason)
	}
	v, _ := cmdOutput(res, 2, "/bin/imalog verify")
	if v.Exit != 0 {
		t.Fatalf("imalog verify --tpm: exit %d\n%s", v.Exit, v.Output)
	}
	t.Logf("-c -l refused (exit %d): %s\nthen -s: boot 2 %s, %s", c.Exit, strings.TrimSpace(string(c.Output)), describe(list2), markerSummary(decodedMarkers(t, list2)))
}
