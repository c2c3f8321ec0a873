package qemu

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Firmware choices for VM.Firmware (amd64).
const (
	FirmwareBIOS = "bios" // SeaBIOS, QEMU's default
	FirmwareUEFI = "uefi" // OVMF from Debian's ovmf package
)

// OVMF images (Debian package ovmf). The code image is mapped read-only; the
// variable store is copied per run so that runs do not share EFI variables.
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// firmwareArgs returns the QEMU arguments for vm.Firmware, copying OVMF's
// variable store into work.
func firmwareArgs(vm VM, work string) ([]string, error) {
	switch vm.Firmware {
	case "", FirmwareBIOS:
		return nil, nil
	case FirmwareUEFI:
	default:
		return nil, fmt.Errorf("qemu: unknown firmware %q (want %s or %s)", vm.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	if vm.Arch != "amd64" {
		return nil, fmt.Errorf("qemu: firmware %s is for amd64 guests", vm.Firmware)
	}
	for _, f := range []string{OVMFCode, OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("qemu: OVMF: %w (install Debian's ovmf package: bash scripts/setup.sh)", err)
		}
	}
	vars := filepath.Join(work, "OVMF_VARS.fd")
	if err := copyFile(OVMFVars, vars); err != nil {
		return nil, fmt.Errorf("qemu: OVMF variable store: %w", err)
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
