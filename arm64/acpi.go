package arm64

import (
	"strings"

	"github.com/gokexec/gokexec/fdt"
)

// BootsWithACPI tells whether an arm64 kernel given tree and cmdline will
// describe the machine from ACPI rather than from the device tree, by the
// rule of arch/arm64/kernel/acpi.c (acpi_boot_table_init): acpi=off never;
// acpi=on or acpi=force always (when the firmware has ACPI tables; off
// wins over both wherever the words stand);
// otherwise when the tree is a stub, its root holding no node but /chosen
// (and a Xen /hypervisor node), as the EFI stub makes on UEFI servers whose
// firmware gives no device tree.
//
// It matters for the hand-over: with ACPI, arm64's setup_arch never
// unflattens the device tree, so of_chosen stays NULL and
// ima_get_kexec_buffer (drivers/of/kexec.c) finds no
// linux,ima-kexec-buffer; the kernel silently starts a new list, whether
// gokexec or the kernel's own kexec_file_load wrote the property.
func BootsWithACPI(tree *fdt.Tree, cmdline string) bool {
	off, on := acpiParams(cmdline)
	if off {
		return false
	}
	if on {
		return true
	}
	for _, n := range tree.Root().Children() {
		switch {
		case n.Name() == "chosen":
		case n.Name() == "hypervisor" && isCompatible(n, "xen,xen"):
		default:
			return false
		}
	}
	return true
}

// acpiParams reads the acpi= words of cmdline as the arm64 kernel does:
// each sets a flag, and acpi=off wins over acpi=on and acpi=force wherever
// it stands.
func acpiParams(cmdline string) (off, on bool) {
	for _, w := range strings.Fields(cmdline) {
		if w == "--" {
			break // the rest is init's
		}
		switch w {
		case "acpi=off":
			off = true
		case "acpi=on", "acpi=force":
			on = true
		}
	}
	return off, on
}

func isCompatible(n *fdt.Node, want string) bool {
	cs, err := n.Strings("compatible")
	if err != nil {
		return false
	}
	for _, c := range cs {
		if c == want {
			return true
		}
	}
	return false
}
