package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// printEFI prints the EFI part of an x86 plan and its warnings.
func printEFI(p *plan.Plan, w io.Writer) {
	for _, s := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	bp := p.BootParams
	if bp == nil {
		return
	}
	if e := bp.EFI; e != nil {
		fmt.Fprintf(w, "EFI hand-over: systab %#x, memory map %d descriptors (%d bytes) at %#x, SETUP_EFI tables %#x smbios %#x, secure_boot %d\n",
			e.Systab, len(e.RuntimeMap), e.MemmapSize, e.Memmap, e.ConfigTable, e.SMBIOS, e.SecureBoot)
	} else {
		fmt.Fprintln(w, "EFI hand-over: none (the next kernel boots as non-EFI)")
	}
	if bp.ACPIRSDP != 0 {
		fmt.Fprintf(w, "ACPI RSDP %#x\n", bp.ACPIRSDP)
	}
	if s := bp.Screen; s != nil {
		fmt.Fprintf(w, "screen: framebuffer type %#x %dx%dx%d at %#x\n", s.VideoType, s.Width, s.Height, s.Depth, s.Base)
	}
}

// captureFiles are the host files a plan reads, relative to /; a trailing
// "/*/" names every numbered subdirectory's listed fields.
var captureFiles = []string{
	"sys/kernel/boot_params/data",
	"sys/firmware/efi/fw_vendor",
	"sys/firmware/efi/runtime",
	"sys/firmware/efi/config_table",
	"sys/firmware/efi/systab",
	"proc/iomem",
	"proc/cmdline",
	"sys/kernel/security/lockdown",
	"proc/sys/kernel/kexec_load_disabled",
	"sys/kernel/security/ima/binary_runtime_measurements",
	"sys/kernel/security/integrity/ima/binary_runtime_measurements",
	"proc/sys/kernel/random/boot_id",
	"sys/kernel/kexec_loaded",
	"sys/kernel/kexec_crash_loaded",
	"sys/firmware/fdt",
}

var captureDirs = []struct {
	dir    string
	fields []string
}{
	{"sys/firmware/efi/runtime-map", []string{"type", "phys_addr", "virt_addr", "num_pages", "attribute"}},
	{"sys/firmware/memmap", []string{"start", "end", "type"}},
}

// captureHost writes, under dir, a copy of every host file the planner
// reads, laid out like / (for --host). /proc/kallsyms is reduced to the IMA
// symbols the syscall decision looks for, with zero addresses.
func captureHost(src, dir string) error {
	if src == "" {
		src = kexec.RootFS
	}
	copyOne := func(rel string) error {
		b, err := kexec.ReadInput("capture-host", filepath.Join(src, rel), kexec.MaxIMAListBytes)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	}
	for _, rel := range captureFiles {
		if err := copyOne(rel); err != nil {
			return fmt.Errorf("capture-host: %w", err)
		}
	}
	for _, d := range captureDirs {
		ents, err := os.ReadDir(filepath.Join(src, d.dir))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("capture-host: %w", err)
		}
		for _, e := range ents {
			for _, f := range d.fields {
				if err := copyOne(filepath.Join(d.dir, e.Name(), f)); err != nil {
					return fmt.Errorf("capture-host: %w", err)
				}
			}
		}
	}
	// Only the IMA symbols the syscall decision looks for, read bounded and
	// non-blocking; a kallsyms that cannot be read is said, not skipped.
	// (none in the source: the tree has none either, and a plan made
	// against it says the kernel's facts are unknown).
	ks, err := kexec.CaptureKallsyms(src)
	if errors.Is(err, os.ErrNotExist) {
		return captureCrashOf(src, dir)
	}
	if err != nil {
		return fmt.Errorf("capture-host: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "proc"), 0o755); err != nil {
		return fmt.Errorf("capture-host: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "proc/kallsyms"), ks, 0o644); err != nil {
		return fmt.Errorf("capture-host: %w", err)
	}
	return captureCrashOf(src, dir)
}

func captureCrashOf(src, dir string) error {
	if err := captureCrash(src, dir); err != nil {
		return fmt.Errorf("capture-host: %w", err)
	}
	return nil
}
