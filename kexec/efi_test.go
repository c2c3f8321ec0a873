package kexec

import (
	"testing"
)

// TestReadFirmwareCapture reads a captured OVMF guest's tree the way a
// running system's root is read.
func TestReadFirmwareCapture(t *testing.T) {
	h, err := ReadFirmware("../plan/testdata/host-qemu-q35-ovmf-1g-linux-image-6.1.0-57-cloud-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if h == nil || !h.EFI || len(h.Missing) != 0 || len(h.RuntimeMap) != 7 || h.Systab.SMBIOS != 0x3f520000 {
		t.Fatalf("%+v", h)
	}
}

// TestReadFirmwareHere reads this machine without failing: a BIOS host
// gives EFI false, an EFI host its description.
func TestReadFirmwareHere(t *testing.T) {
	h, err := ReadFirmware("")
	if err != nil {
		t.Fatal(err)
	}
	if h != nil && h.EFI && h.BootParams != nil && !h.BootParams.EFIBoot() {
		t.Logf("note: /sys/firmware/efi exists but boot_params carry no EFI signature")
	}
}
