package integration

import (
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestARM64FileKexec boots the imakexec-arm64 test kernel (IMA_KEXEC on:
// it hands its own list over at kexec_file_load, through /chosen) with a
// device tree and lets gokexec load the same kernel's EFI zboot image (a
// zstd payload): gokexec -a picks kexec_file_load, hands the kernel the
// unpacked Image through a sealed memfd (the kernel's loader takes raw
// Images only), and -e refreshes the load. The second kernel's list holds
// the first boot's entries, the kernel's own kexec_load and kexec_execute
// markers, two boot_aggregates, and replays to the TPM's PCRs.
func TestARM64FileKexec(t *testing.T) {
	g := newARM64Guest(t)
	g.files["/boot/vmlinuz.efi"] = arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz.efi")
	next := qemu.DefaultAppend("arm64") + " gkt.step=2"
	load := []string{"/bin/gokexec", "-l", "/boot/vmlinuz.efi", "--initrd", "/run/next.cpio", "--append", next}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{Report: []string{"boot", "pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: append(append([]string(nil), load...), "--dry-run", "--json"), ExpectExit: intp(0)},
			{Run: load, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 600, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{File: "/sys/firmware/fdt"},
		}},
	}}
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz"), Timeout: 20 * time.Minute})
	if res.Boots() != 2 {
		t.Fatalf("%d boots", res.Boots())
	}
	if pl := dryRunPlan(t, res, 1, load); pl.Syscall != "kexec_file_load" || !pl.Decision.Facts.HandsOver {
		t.Fatalf("auto on an IMA_KEXEC kernel chose %s (kernel_hands_over %v): %s", pl.Syscall, pl.Decision.Facts.HandsOver, pl.Decision.Reason)
	}
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	for i := range list1 {
		if list1[i].TemplateDigest != list2[i].TemplateDigest {
			t.Fatalf("entry %d differs after the hand-over", i)
		}
	}
	if countBootAggregates(list2) != 2 {
		t.Fatalf("boot 2: %s", describe(list2))
	}
	ms, loads, execs, b2 := checkKernelHandover(t, list2, "/tmp/late/", 5)
	// -l and the refresh at -e each made the kernel measure a kexec_load;
	// the kexec_execute is the last entry before the second boot.
	if len(loads) != 2 || len(execs) != 1 || execs[0].index != b2-1 || loads[1].index > execs[0].index {
		t.Fatalf("kernel markers %s, second boot at %d", markerSummary(ms), b2)
	}
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256", "sha384"), "boot 2")
	evmctlAgrees(t, res, 2, "sha1", "sha256")
	t.Logf("zstd zboot through kexec_file_load: boot 2 %s; markers %s", describe(list2), markerSummary(ms))
}
