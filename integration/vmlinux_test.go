package integration

import (
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/qemu/proto"
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
	g.files["/boot/vmlinux-2"] = testkernel.Vmlinux(t, g.k1)
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
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	pcrs2 := pcrValues(t, res.PCRs(2), "sha1", "sha256")
	checkHandover(t, g, res, list1, list2, pcrs2)
	requireHandover(t, res, 64<<10)
	t.Logf("boot 1: %s; boot 2: %s", describe(list1), describe(list2))
}
