package qemu

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Firmware choices for VM.Firmware.
const (
	FirmwareBIOS = "bios" // amd64: SeaBIOS, QEMU's default; arm64: none, QEMU boots the kernel with a device tree
	FirmwareUEFI = "uefi" // OVMF (amd64, Debian's ovmf) or AAVMF (arm64, Debian's qemu-efi-aarch64)
)

// OVMF images (Debian package ovmf). The code image is mapped read-only; the
// variable store is copied per run so that runs do not share EFI variables.
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// AAVMF images (Debian package qemu-efi-aarch64), padded to QEMU virt's
// 64 MiB flash banks. As with OVMF the code is read-only and the variable
// store is copied per run. With -kernel, AAVMF starts the kernel's EFI stub
// (QEMU hands the Image and initrd over through fw_cfg) and exposes QEMU's
// ACPI tables, not its device tree: the kernel runs on ACPI and the tree it
// gets holds only what the EFI stub writes into /chosen.
var (
	AAVMFCode = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// firmwareArgs returns the QEMU arguments for vm.Firmware, copying the UEFI
// variable store into work.
func firmwareArgs(vm VM, work string) ([]string, error) {
	switch vm.Firmware {
	case "", FirmwareBIOS:
		return nil, nil
	case FirmwareUEFI:
	default:
		return nil, fmt.Errorf("qemu: unknown firmware %q (want %s or %s)", vm.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	code, vars, name, pkg := OVMFCode, OVMFVars, "OVMF", "ovmf"
	if vm.Arch == "arm64" {
		code, vars, name, pkg = AAVMFCode, AAVMFVars, "AAVMF", "qemu-efi-aarch64"
	}
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w (install Debian's %s package: bash scripts/setup.sh)", name, err, pkg)
		}
	}
	copyVars := filepath.Join(work, name+"_VARS.fd")
	if err := copyFile(vars, copyVars); err != nil {
		return nil, fmt.Errorf("qemu: %s variable store: %w", name, err)
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + copyVars,
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
