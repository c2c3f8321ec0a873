package qemu

import (
	"fmt"
	"os"
	"path/filepath"
)

// arm64 test kernels built by scripts/build-kernel-arm64.sh from Debian
// unstable's linux-source-* (tinyconfig + scripts/kernel-arm64.config): both
// restore a list handed over in /chosen (KEXEC_FILE, IMA), find the TPM
// through the device tree or ACPI, and boot under AAVMF through their EFI
// stub.
const (
	// RestoreARM64 has IMA_KEXEC off (gokexec's kexec_load hand-over);
	// its zboot payload is gzip.
	RestoreARM64 = "restore-arm64"
	// IMAKexecARM64 has IMA_KEXEC on (the kernel's own kexec_file_load
	// hand-over); its zboot payload is zstd.
	IMAKexecARM64 = "imakexec-arm64"
)

// KernelFile returns the path of a file kept beside a cached kernel: for
// the arm64 test kernels "vmlinuz.efi" (EFI zboot), "Image.gz", "vmlinux"
// and "config"; "vmlinuz" is the kernel Kernel returns.
func KernelFile(name, file string) (string, error) {
	k, err := Kernel(name)
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(k), file)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: %s of %s (run: bash scripts/build-kernel-arm64.sh): %v", ErrNoKernel, file, name, err)
	}
	return p, nil
}
