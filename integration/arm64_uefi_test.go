package integration

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// uefiProps are the properties the EFI stub writes into /chosen; a kexec
// must pass them on unchanged or the next kernel loses EFI runtime
// services and the memory map.
var uefiProps = []string{"linux,uefi-system-table", "linux,uefi-mmap-start", "linux,uefi-mmap-size", "linux,uefi-mmap-desc-size", "linux,uefi-mmap-desc-ver"}

// TestARM64UEFI boots the restore-arm64 test kernel's EFI zboot image
// through AAVMF, on QEMU virt with ACPI (a UEFI server) and with a device
// tree (acpi=off: a UEFI board), and hands over with gokexec's kexec_load.
// Both show that the tree gokexec rewrites is the one the EFI stub made
// (its /chosen linux,uefi-* properties passed on unchanged, bootargs and
// the IMA buffer with its /memreserve/ added), that the second kernel
// keeps EFI runtime services and the memory map (no firmware table
// overwritten: gokexec places nothing over a reserved range of System
// RAM), and finds the TPM. They differ in the restore:
//
//   - ACPI: arm64 Linux unflattens the device tree only when it boots
//     without ACPI, so the second kernel never reads
//     linux,ima-kexec-buffer and starts a new list (which no longer
//     replays to the TPM); gokexec said so at -l. The TPM is found
//     through ACPI (MSFT0101, the TPM2 table), the console too (ARMH0011);
//     a further gokexec -e refuses to reboot on the broken chain.
//   - device tree: the second kernel restores the list (two boot_aggregate
//     entries, both markers, replaying to the PCRs); then gokexec loads
//     Debian's stock arm64 kernel (no KEXEC_FILE, no restore side),
//     warning at -l that it cannot restore, and that kernel still boots
//     with a list of its own.
func TestARM64UEFI(t *testing.T) {
	t.Run("ACPI", testARM64UEFIACPI)
	t.Run("DT", testARM64UEFIDT)
}

// uefiChain is one UEFI guest run: boot 1 through AAVMF, loglevel 7 so
// that the kernel's EFI and device lines reach the serial log.
func uefiChain(t *testing.T, g *arm64Guest, sc *proto.Scenario, extra ...string) (*qemu.Result, []byte) {
	t.Helper()
	// Reset: AAVMF resets the machine once on a fresh variable store
	// (seen: QEMU exited 9 s after the firmware banner under -no-reboot,
	// before the kernel started).
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz.efi"), Firmware: qemu.FirmwareUEFI,
		Append: "loglevel=7", Timeout: 15 * time.Minute, Reset: true, ExtraArgs: extra})
	serial, err := os.ReadFile(res.Serial)
	if err != nil {
		t.Fatal(err)
	}
	return res, serial
}

// checkUEFIHandover checks boots 1 and 2 of a UEFI guest: boot 1's tree is
// the EFI stub's (linux,uefi-* in /chosen), boot 2 booted with
// it rewritten (the linux,uefi-* values unchanged, the IMA buffer and its
// /memreserve/), both kernels enabled EFI runtime services, none read a
// damaged memory attributes table, and boot 2 read the PCRs. It returns
// the two trees.
func checkUEFIHandover(t *testing.T, res *qemu.Result, serial []byte) (t1, t2 *fdt.Tree) {
	t.Helper()
	if res.Boots() < 2 {
		t.Fatalf("%d boots", res.Boots())
	}
	t1 = parseDTB(t, res.Find(1, proto.TypeFile, "/sys/firmware/fdt"))
	c1, ok := t1.Lookup("/chosen")
	if !ok {
		t.Fatal("boot 1: no /chosen")
	}
	for _, p := range uefiProps {
		if _, ok := c1.Property(p); !ok {
			t.Fatalf("boot 1: the EFI stub's /chosen lacks %s", p)
		}
	}
	t2 = parseDTB(t, res.Find(2, proto.TypeFile, "/sys/firmware/fdt"))
	c2, ok := t2.Lookup("/chosen")
	if !ok {
		t.Fatal("boot 2: no /chosen")
	}
	for _, p := range uefiProps {
		a, _ := c1.Property(p)
		b, ok := c2.Property(p)
		if !ok || !bytes.Equal(a, b) {
			t.Fatalf("boot 2: %s %x, boot 1 had %x", p, b, a)
		}
	}
	prop, ok := c2.Property("linux,ima-kexec-buffer")
	rs, err := fdt.DecodeRanges(2, 2, prop)
	if !ok || err != nil || len(rs) != 1 {
		t.Fatalf("boot 2: no linux,ima-kexec-buffer in the tree it booted with (%v)", err)
	}
	reserved := false
	for _, r := range t2.Reservations {
		reserved = reserved || r == rs[0]
	}
	if !reserved {
		t.Fatalf("boot 2: no /memreserve/ for the IMA buffer %v", rs[0])
	}
	if n := bytes.Count(serial, []byte("Remapping and enabling EFI services.")); n < 2 {
		t.Fatalf("EFI runtime services enabled in %d boots, want 2", n)
	}
	for _, bad := range []string{"runtime services will not be available", "Unexpected EFI Memory Attributes", "Kernel panic"} {
		if bytes.Contains(serial, []byte(bad)) {
			t.Fatalf("serial log says %q", bad)
		}
	}
	if st := res.Find(2, proto.TypeFile, "/sys/firmware/efi/systab"); len(st) != 1 || !bytes.Contains(st[0].Data, []byte("SMBIOS3=0x")) {
		t.Fatal("boot 2: /sys/firmware/efi/systab does not name the firmware's configuration tables")
	}
	if len(res.PCRs(2)["sha256"]) != 24 {
		t.Fatal("boot 2 read no PCRs: no TPM")
	}
	return t1, t2
}

// uefiHop is arm64Hop with the EFI system table reported after the tree.
func uefiHop(step int, target, more string) proto.Step {
	s := arm64Hop(step, target, more)
	s.Actions = append(s.Actions[:4], append([]proto.Action{{File: "/sys/firmware/efi/systab"}}, s.Actions[4:]...)...)
	return s
}

func testARM64UEFIACPI(t *testing.T) {
	g := newARM64Guest(t)
	g.files["/boot/Image"] = arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz")
	// Boot 2 reports, then loads again and tries to reboot: gokexec -e must
	// refuse, since the list it would hand over no longer replays.
	s2 := lastStep()
	s2.Actions = append(s2.Actions,
		proto.Action{File: "/sys/firmware/efi/systab"},
		proto.Action{File: "/sys/firmware/acpi/tables/TPM2"},
		proto.Action{RepackInitrd: "/run/next.cpio"},
		proto.Action{Run: []string{"/bin/gokexec", "-l", "/boot/Image", "--initrd", "/run/next.cpio", "--append", qemu.DefaultAppend("arm64") + " gkt.step=3"}, ExpectExit: intp(0)},
		proto.Action{Run: []string{"/bin/gokexec", "-e"}})
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": uefiHop(1, "/boot/Image", " loglevel=7"), "2": s2}}
	res, serial := uefiChain(t, g, sc)
	if res.Boots() != 2 {
		t.Fatalf("%d boots, want 2", res.Boots())
	}
	t1, _ := checkUEFIHandover(t, res, serial)
	if len(t1.Root().Children()) != 1 {
		t.Fatalf("boot 1: the tree has %d nodes at the root; under ACPI the EFI stub makes one with /chosen only", len(t1.Root().Children()))
	}
	// ACPI found the console and the TPM in both kernels.
	for _, want := range []string{"ARMH0011:00: ttyAMA0", "tpm_tis MSFT0101:00: 2.0 TPM"} {
		if n := bytes.Count(serial, []byte(want)); n != 2 {
			t.Fatalf("serial log has %q %d times, want once per boot", want, n)
		}
	}
	if len(res.Find(2, proto.TypeFile, "/sys/firmware/acpi/tables/TPM2")) != 1 {
		t.Fatal("boot 2: no ACPI TPM2 table")
	}
	if st := res.Find(2, proto.TypeFile, "/sys/firmware/efi/systab"); !bytes.Contains(st[0].Data, []byte("ACPI20=0x")) {
		t.Fatal("boot 2: /sys/firmware/efi/systab names no ACPI 2.0 table")
	}
	// gokexec said at -l that the list would not be restored ...
	c, ok := cmdOutput(res, 1, "/bin/gokexec -d -l")
	if !ok || c.Exit != 0 || !bytes.Contains(c.Output, []byte("boots with ACPI")) {
		t.Fatalf("gokexec -l under ACPI did not warn that the next kernel will not restore:\n%s", c.Output)
	}
	// ... and it was not: boot 2's list is its own, and no longer
	// replays to the TPM, which still holds boot 1's extends.
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	if countBootAggregates(list2) != 1 {
		t.Fatalf("boot 2 under ACPI: %s after boot 1's %s: restored after all? (then drop the plan's warning)", describe(list2), describe(list1))
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{}); r.Consistent {
		t.Fatal("boot 2's fresh list replays to PCRs that hold boot 1's extends")
	}
	if e, ok := cmdOutput(res, 2, "/bin/gokexec -e"); !ok || e.Exit == 0 || !bytes.Contains(e.Output, []byte("does not reproduce the TPM's PCRs")) {
		t.Fatalf("gokexec -e on the lost chain: exit %d\n%s", e.Exit, e.Output)
	}
	warning, _, _ := strings.Cut(string(c.Output[bytes.Index(c.Output, []byte("warning")):]), "\n")
	t.Logf("UEFI+ACPI: console and TPM through ACPI, EFI runtime services and memory map kept; gokexec warned at -l (%s); boot 2 started its own list (%s) after boot 1's %s",
		warning, describe(list2), describe(list1))
}

func testARM64UEFIDT(t *testing.T) {
	g := newARM64Guest(t)
	g.files["/boot/Image"] = arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz")
	deb, err := qemu.Kernel(qemu.Deb61ARM64)
	if err != nil {
		t.Fatal(err)
	}
	g.files["/boot/deb-Image"] = deb
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": uefiHop(1, "/boot/Image", " loglevel=7"),
		"2": uefiHop(2, "/boot/deb-Image", ""),
		"3": {DeadlineSec: 600, Actions: []proto.Action{{Report: []string{"boot", "list"}}}},
	}}
	res, serial := uefiChain(t, g, sc, "-machine", "acpi=off")
	if res.Boots() != 3 {
		t.Fatalf("%d boots, want 3", res.Boots())
	}
	t1, _ := checkUEFIHandover(t, res, serial)
	if _, ok := t1.Lookup("/cpus"); !ok {
		t.Fatal("boot 1: acpi=off, yet the firmware passed no device tree")
	}
	if bytes.Contains(serial, []byte("ACPI: RSDP")) {
		t.Fatal("a kernel found ACPI tables under acpi=off")
	}
	list2 := checkARM64Chain(t, g, res, 1, 2)
	if n := countBootAggregates(list2); n != 2 {
		t.Fatalf("boot 2: %s", describe(list2))
	}
	if c, ok := cmdOutput(res, 1, "/bin/gokexec -d -l"); !ok || bytes.Contains(c.Output, []byte("warning")) {
		t.Fatalf("gokexec -l of the test kernel under UEFI with a device tree warned:\n%s", c.Output)
	}

	// Boot 3: Debian's kernel; gokexec said it cannot restore.
	c, ok := cmdOutput(res, 2, "/bin/gokexec -d -l")
	if !ok || !bytes.Contains(c.Output, []byte("cannot restore the IMA list")) {
		t.Fatalf("gokexec -l of Debian's kernel did not warn that it cannot restore:\n%s", c.Output)
	}
	if rel := res.BootInfo(3).Release; rel == res.BootInfo(2).Release || !strings.Contains(rel, "arm64") {
		t.Fatalf("boot 3 ran %s, want Debian's kernel", rel)
	}
	list3 := parseList(t, res.List(3, "binary_runtime_measurements"), "boot 3")
	if countBootAggregates(list3) != 1 || len(list3) >= len(list2) {
		t.Fatalf("boot 3 (Debian, no restore side): %s; boot 2 had %d entries", describe(list3), len(list2))
	}
	t.Logf("UEFI+DT: boot 2 restored %s; Debian %s booted with its own list (%s), as gokexec warned",
		describe(list2), res.BootInfo(3).Release, describe(list3))
}
