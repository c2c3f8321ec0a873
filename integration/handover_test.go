package integration

import (
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu/proto"
)

// handoverScenario: boot 1 measures files, reports, loads the target kernel
// with gokexec and execs it; boot 2 reports its list and PCRs.
func handoverScenario(extra string) *proto.Scenario {
	return &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 20},
			{Report: []string{"pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-d", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio",
				"--append", nextAppend("2"), "--ima-extra", "64K"}, ExpectExit: intp(0)},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
		}},
	}}
}

// checkHandover asserts the second boot's list is the first boot's list
// (as handed over) followed by exactly one new boot_aggregate, and that it
// replays to the TPM in the sha1 and sha256 banks.
func checkHandover(t *testing.T, g *guest, res interface {
	Boots() int
}, list1, list2 []ima.Entry, pcrs2 ima.PCRValues) {
	t.Helper()
	if n := countBootAggregates(list1); n != 1 {
		t.Fatalf("boot 1 list: %d boot_aggregate entries, want 1", n)
	}
	if len(list2) < len(list1)+1 {
		t.Fatalf("boot 2 list has %d entries, boot 1 had %d: the list was not carried over", len(list2), len(list1))
	}
	for i := range list1 {
		a, b := list1[i], list2[i]
		if a.PCR != b.PCR || a.TemplateDigest != b.TemplateDigest || a.TemplateName != b.TemplateName || string(a.TemplateData) != string(b.TemplateData) {
			t.Fatalf("entry %d differs after the hand-over: %+v vs %+v", i, a.TemplateName, b.TemplateName)
		}
	}
	if n := countBootAggregates(list2); n != 2 {
		t.Fatalf("boot 2 list: %s, want 2 boot_aggregate", describe(list2))
	}
	if !isBootAggregate(list2[len(list2)-1]) {
		t.Fatalf("boot 2 list does not end with the new kernel's boot_aggregate")
	}
	requireReplays(t, list2, pcrs2, "boot 2")
}

func TestHandover61to61(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	res := g.run(g.k1, handoverScenario(""))
	if res.Boots() != 2 {
		t.Fatalf("%d boots reported, want 2", res.Boots())
	}
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	pcrs2 := pcrValues(t, res.PCRs(2), "sha1", "sha256")
	checkHandover(t, g, res, list1, list2, pcrs2)
	requireHandover(t, res, 64<<10)
	t.Logf("boot 1: %s; boot 2: %s", describe(list1), describe(list2))
}
