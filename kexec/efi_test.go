package kexec

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
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

// TestReadFirmwareHere reads this machine and compares what ReadFirmware
// says with the host's own files, read here directly (issue 23: the test
// asserted err == nil and logged the rest): EFI exactly when
// /sys/firmware/efi exists; boot_params' EFI signature, system table and
// screen_info as the bytes of /sys/kernel/boot_params/data hold them; on
// an EFI host the fw_vendor/runtime/config_table addresses and one
// runtime-map descriptor per directory.
func TestReadFirmwareHere(t *testing.T) {
	h, err := ReadFirmware("")
	if err != nil {
		t.Fatal(err)
	}
	_, serr := os.Stat("/sys/firmware/efi")
	efiHere := serr == nil
	bp, bperr := os.ReadFile("/sys/kernel/boot_params/data")
	if h == nil {
		if efiHere || bperr == nil {
			t.Fatalf("ReadFirmware says nothing, but the host has /sys/firmware/efi (%v) or boot_params (%v)", efiHere, bperr == nil)
		}
		return
	}
	if h.EFI != efiHere {
		t.Fatalf("ReadFirmware says EFI=%v; /sys/firmware/efi exists: %v", h.EFI, efiHere)
	}
	if bperr == nil {
		if h.BootParams == nil {
			t.Fatal("the host publishes boot_params; ReadFirmware has none")
		}
		le := binary.LittleEndian
		sig := string(bp[0x1c0:0x1c4])
		systab := uint64(le.Uint32(bp[0x1c4:])) | uint64(le.Uint32(bp[0x1d8:]))<<32
		if h.BootParams.EFI.LoaderSignature != sig || h.BootParams.EFI.Systab != systab {
			t.Fatalf("boot_params: ReadFirmware says %q systab %#x; the file holds %q %#x", h.BootParams.EFI.LoaderSignature, h.BootParams.EFI.Systab, sig, systab)
		}
		if !bytes.Equal(h.BootParams.ScreenInfo, bp[:64]) {
			t.Fatal("screen_info differs from the first 64 bytes of boot_params")
		}
		t.Logf("boot_params: loader signature %q, EFI boot %v", sig, h.BootParams.EFIBoot())
	}
	if !efiHere {
		if h.RuntimeMap != nil || h.FwVendor != 0 || h.Runtime != 0 || h.ConfigTable != 0 {
			t.Fatalf("a BIOS host with EFI facts: %+v", h)
		}
		t.Log("BIOS host: no /sys/firmware/efi")
		return
	}
	for name, got := range map[string]uint64{"fw_vendor": h.FwVendor, "runtime": h.Runtime, "config_table": h.ConfigTable} {
		b, err := os.ReadFile("/sys/firmware/efi/" + name)
		if err != nil {
			continue
		}
		want, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 64)
		if err != nil || want != got {
			t.Fatalf("/sys/firmware/efi/%s holds %q; ReadFirmware says %#x", name, b, got)
		}
	}
	if ds, err := os.ReadDir("/sys/firmware/efi/runtime-map"); err == nil && len(ds) != len(h.RuntimeMap) {
		t.Fatalf("runtime-map has %d descriptors; ReadFirmware read %d", len(ds), len(h.RuntimeMap))
	}
}
