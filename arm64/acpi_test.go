package arm64

import (
	"testing"

	"github.com/gokexec/gokexec/fdt"
)

// TestBootsWithACPIUnderAAVMF is the finding of TestARM64UEFI: the tree
// the EFI stub made under AAVMF with ACPI (captured from the guest's
// /sys/firmware/fdt) has only /chosen, so the next kernel boots with ACPI
// and never reads the IMA buffer gokexec puts there; a board's tree, or
// acpi=off, keeps the device tree in charge.
func TestBootsWithACPIUnderAAVMF(t *testing.T) {
	stub, err := fdt.Parse(readFile(t, "testdata/efi-stub-aavmf.dtb"))
	if err != nil {
		t.Fatal(err)
	}
	board, err := fdt.Parse(readFile(t, "testdata/dtc-stale-chosen.dtb"))
	if err != nil {
		t.Fatal(err)
	}
	xen := fdt.New()
	if _, err := xen.CreateNode("/chosen"); err != nil {
		t.Fatal(err)
	}
	hv, err := xen.CreateNode("/hypervisor")
	if err != nil {
		t.Fatal(err)
	}
	if err := hv.SetProperty("compatible", []byte("xen,xen-4.17\x00xen,xen\x00")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		tree    *fdt.Tree
		cmdline string
		want    bool
	}{
		{"EFI stub tree", stub, "console=ttyAMA0 quiet", true},
		{"EFI stub tree, acpi=off", stub, "console=ttyAMA0 acpi=off", false},
		{"EFI stub tree, acpi=off before acpi=force", stub, "acpi=off acpi=force", false},
		{"EFI stub tree, acpi=off after --", stub, "quiet -- acpi=off", true},
		{"board tree", board, "console=ttyAMA0", false},
		{"board tree, acpi=force", board, "acpi=force", true},
		{"board tree, acpi=on", board, "acpi=on", true},
		{"board tree, acpi=nospcr", board, "acpi=nospcr", false},
		{"Xen stub", xen, "", true},
	} {
		if got := BootsWithACPI(c.tree, c.cmdline); got != c.want {
			t.Errorf("%s (%q): BootsWithACPI = %v, want %v", c.name, c.cmdline, got, c.want)
		}
	}
}
