package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
	"github.com/gokexec/gokexec/vmlinux"
)

// TestHandoverELFVmlinux61: issue 25 item 5 — gokexec refused an x86_64 ELF
// vmlinux (kexec-tools' elf-x86_64, kdump-config's --args-linux case) as
// "not a bzImage". Debian 6.1 boots, kexec-tools loads (and unloads) the
// vmlinux extracted from that same kernel's bzImage as a side-by-side
// oracle, gokexec loads it with --args-linux and execs it; the second
// kernel, entered at the vmlinux's e_entry, must hold the first boot's list
// with both markers and replay (the host-side hand-over check).
func TestHandoverELFVmlinux61(t *testing.T) {
	g := newGuest(t)
	vml := testkernel.Vmlinux(t, g.k1)
	g.files["/boot/vmlinux-2"] = vml
	g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 20},
			{Report: []string{"pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/sbin/kexec", "-l", "-t", "elf-x86_64", "--args-linux", "/boot/vmlinux-2", "--initrd=/run/next.cpio",
				"--append=" + nextAppend("2")}, ExpectExit: intp(0)},
			{Run: []string{"/sbin/kexec", "-u"}, ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-d", "-l", "-t", "elf-x86_64", "--args-linux", "/boot/vmlinux-2", "--initrd", "/run/next.cpio",
				"--append", nextAppend("2"), "--ima-extra", "64K"}, ExpectExit: intp(0)},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
		}},
	}}
	res := g.run(g.k1, sc)
	if res.Boots() != 2 {
		t.Fatalf("%d boots reported, want 2: the vmlinux did not boot", res.Boots())
	}
	requireELFSegments(t, res, vml)
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	pcrs2 := pcrValues(t, res.PCRs(2), "sha1", "sha256")
	checkHandover(t, g, res, list1, list2, pcrs2)
	requireHandover(t, res, 64<<10)
	t.Logf("boot 1: %s; boot 2: %s", describe(list1), describe(list2))
}

// requireELFSegments checks that the guest's gokexec -l loaded the vmlinux
// through the ELF path: its report lists every PT_LOAD at its p_paddr.
func requireELFSegments(t *testing.T, res *qemu.Result, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmlinux.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if len(c.Argv) > 2 && c.Argv[0] == "/bin/gokexec" && c.Argv[2] == "-l" {
			out = string(c.Output)
		}
	}
	if out == "" {
		t.Fatal("boot 1 reports no gokexec -l output")
	}
	for i, s := range k.Segments {
		mem, bufsz := fmt.Sprintf("mem %#012x ", s.Phys), fmt.Sprintf("bufsz %#10x", len(s.Data))
		found := false
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "segment kernel") && strings.Contains(l, mem) && strings.HasSuffix(l, bufsz) {
				found = true
			}
		}
		if !found {
			t.Fatalf("gokexec -l did not load PT_LOAD %d at p_paddr %#x (%d bytes):\n%s", i, s.Phys, len(s.Data), out)
		}
	}
}
