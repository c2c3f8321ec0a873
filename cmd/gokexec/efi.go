package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/gokexec/gokexec/loader"
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

// hostDefaults points the finer overrides (--memmap, --ima-log) into a
// captured host tree when they are not given.
func hostDefaults(o *loader.Options) {
	if o.Host == "" {
		return
	}
	if o.MemMap == "" {
		for _, p := range []string{"sys/firmware/memmap", "proc/iomem"} {
			if _, err := os.Stat(filepath.Join(o.Host, p)); err == nil {
				o.MemMap = filepath.Join(o.Host, p)
				break
			}
		}
	}
	if o.IMALog == "" {
		for _, p := range []string{"sys/kernel/security/ima/binary_runtime_measurements", "sys/kernel/security/integrity/ima/binary_runtime_measurements"} {
			if _, err := os.Stat(filepath.Join(o.Host, p)); err == nil {
				o.IMALog = filepath.Join(o.Host, p)
				break
			}
		}
	}
}
