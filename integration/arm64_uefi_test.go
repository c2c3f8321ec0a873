package integration

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestARM64UEFI boots the restore-arm64 test kernel's EFI zboot image
// through AAVMF (UEFI, ACPI: QEMU's virt then gives the kernel no device
// tree of its own, only what the EFI stub writes into /chosen) and hands
// over with gokexec's kexec_load, then once more into Debian's stock arm64
// kernel. It shows:
//   - boot 1's tree is the EFI stub's: /chosen with linux,uefi-system-table
//     and the memory-map properties, no /memory node;
//   - the second kernel booted with that tree rewritten (the linux,uefi-*
//     properties kept, bootargs and the IMA buffer added), kept EFI
//     runtime services (the kernel enables them in both boots) and the
//     configuration tables (/sys/firmware/efi/systab names ACPI 2.0),
//     found the TPM through ACPI (the TPM2 table; PCRs read), and restored
//     the list: two boot_aggregates, both markers, replaying to the PCRs;
//   - gokexec warns at -l that Debian's kernel (no KEXEC_FILE) cannot
//     restore the list, and that kernel still boots, with a list of its
//     own.
func TestARM64UEFI(t *testing.T) {
	if os.Getenv("GOKEXEC_ARM64_UEFI") == "" {
		// Known red, kept out of the suite until fixed (issue 26 stays open):
		// booted through AAVMF with ACPI, the tinyconfig test kernel
		// registers no ttyAMA0 (the PL011 is not found from the ACPI
		// tables), so the guest agent has no console and init dies.
		t.Skip("arm64 UEFI+ACPI: the test kernel finds no PL011 console under ACPI (issue 26 open); GOKEXEC_ARM64_UEFI=1 runs it")
	}
	g := newARM64Guest(t)
	g.files["/boot/Image"] = arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz")
	deb, err := qemu.Kernel(qemu.Deb61ARM64)
	if err != nil {
		t.Fatal(err)
	}
	g.files["/boot/deb-Image"] = deb
	const verbose = " loglevel=7"
	s1 := arm64Hop(1, "/boot/Image", verbose)
	s1.Actions = append(s1.Actions[:4], append([]proto.Action{{File: "/proc/iomem"}}, s1.Actions[4:]...)...)
	s2 := arm64Hop(2, "/boot/deb-Image", "")
	s2.Actions = append(s2.Actions[:4], append([]proto.Action{
		{File: "/sys/firmware/efi/systab"},
		{File: "/sys/firmware/acpi/tables/TPM2"},
	}, s2.Actions[4:]...)...)
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": s1, "2": s2, "3": {DeadlineSec: 600, Actions: []proto.Action{
		{Report: []string{"boot", "list"}},
	}}}}
	// Reset: AAVMF resets the machine once on a fresh variable store
	// (seen: QEMU exited 9 s after the firmware banner under -no-reboot,
	// before the kernel started).
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz.efi"), Firmware: qemu.FirmwareUEFI,
		Append: strings.TrimSpace(verbose), Timeout: 30 * time.Minute, Reset: true})
	if res.Boots() != 3 {
		t.Fatalf("%d boots, want 3", res.Boots())
	}

	// Boot 1: the EFI stub's tree.
	t1 := parseDTB(t, res.Find(1, proto.TypeFile, "/sys/firmware/fdt"))
	c1, ok := t1.Lookup("/chosen")
	if !ok {
		t.Fatal("boot 1: no /chosen")
	}
	uefi := []string{"linux,uefi-system-table", "linux,uefi-mmap-start", "linux,uefi-mmap-size", "linux,uefi-mmap-desc-size", "linux,uefi-mmap-desc-ver"}
	for _, p := range uefi {
		if _, ok := c1.Property(p); !ok {
			t.Fatalf("boot 1: the EFI stub's /chosen lacks %s", p)
		}
	}
	if _, ok := t1.Lookup("/memory"); ok {
		t.Fatal("boot 1: a /memory node under UEFI")
	}

	// Boot 2: the rewritten tree, EFI and ACPI kept, the list restored.
	g1 := parseDTB(t, res.Find(2, proto.TypeFile, "/sys/firmware/fdt"))
	c2, _ := g1.Lookup("/chosen")
	for _, p := range uefi {
		a, _ := c1.Property(p)
		b, ok := c2.Property(p)
		if !ok || !bytes.Equal(a, b) {
			t.Fatalf("boot 2: %s %x, boot 1 had %x", p, b, a)
		}
	}
	if len(res.Find(2, proto.TypeFile, "/sys/firmware/acpi/tables/TPM2")) != 1 {
		t.Fatal("boot 2: no ACPI TPM2 table")
	}
	if st := res.Find(2, proto.TypeFile, "/sys/firmware/efi/systab"); len(st) != 1 || !bytes.Contains(st[0].Data, []byte("ACPI20=0x")) {
		t.Fatal("boot 2: /sys/firmware/efi/systab names no ACPI 2.0 table")
	}
	serial, err := os.ReadFile(res.Serial)
	if err != nil {
		t.Fatal(err)
	}
	// Boots 1 and 2 are the test kernel at loglevel 7; Debian's (boot 3)
	// is quiet.
	if n := bytes.Count(serial, []byte("Remapping and enabling EFI services.")); n < 2 {
		t.Fatalf("EFI runtime services enabled in %d boots, want 2", n)
	}
	if bytes.Contains(serial, []byte("runtime services will not be available")) {
		t.Fatal("a kernel lost EFI runtime services")
	}
	if len(res.PCRs(2)["sha256"]) != 24 {
		t.Fatal("boot 2 read no PCRs: the TPM was not found through ACPI")
	}
	list2 := checkARM64Chain(t, g, res, 1, 2)
	if n := countBootAggregates(list2); n != 2 {
		t.Fatalf("boot 2: %s", describe(list2))
	}

	// Boot 3: Debian's kernel; gokexec said it cannot restore.
	c, ok := cmdOutput(res, 2, "/bin/gokexec")
	if !ok || !bytes.Contains(c.Output, []byte("cannot restore the IMA list")) {
		t.Fatalf("gokexec -l of Debian's kernel did not warn that it cannot restore:\n%s", c.Output)
	}
	if rel := res.BootInfo(3).Release; rel == res.BootInfo(2).Release {
		t.Fatalf("boot 3 ran %s again, want Debian's kernel", rel)
	}
	list3 := parseList(t, res.List(3, "binary_runtime_measurements"), "boot 3")
	if countBootAggregates(list3) != 1 || len(list3) >= len(list2) {
		t.Fatalf("boot 3 (Debian, no restore side): %s; boot 2 had %d entries", describe(list3), len(list2))
	}
	t.Logf("UEFI+ACPI: boot 2 restored %s; Debian %s booted with its own list (%s), as gokexec warned",
		describe(list2), res.BootInfo(3).Release, describe(list3))
}
