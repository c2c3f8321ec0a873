package plan

import (
	"fmt"
	"strings"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/segment"
)

// EFI describes the EFI state handed to an x86 kernel in boot_params.
//
// secure_boot carries the running kernel's own boot_params.secure_boot, as
// the kernel's kexec_file_load does: it is what the EFI stub read from the
// firmware's SecureBoot variable at power-on, and that variable cannot change
// without a firmware reboot. The next kernel's lockdown and IMA arch policy
// then see the same secure-boot mode as the first. (kexec-tools leaves it 0,
// "unset": the next kernel prints "Secure boot could not be determined" and
// does not apply secure-boot lockdown.) A value outside the enum (0-3) is
// handed over as 0.
type EFI struct {
	LoaderSignature string           `json:"loader_signature"`
	Systab          uint64           `json:"systab"`
	Memmap          uint64           `json:"memmap"`
	MemmapSize      uint32           `json:"memmap_size"`
	MemdescSize     uint32           `json:"memdesc_size"`
	MemdescVersion  uint32           `json:"memdesc_version"`
	SecureBoot      uint8            `json:"secure_boot"`
	FwVendor        uint64           `json:"fw_vendor"`
	Runtime         uint64           `json:"runtime"`
	ConfigTable     uint64           `json:"config_table"`
	SMBIOS          uint64           `json:"smbios"`
	RuntimeMap      []efi.Descriptor `json:"runtime_map"`
	// ConventionalDescriptors is how many EFI_CONVENTIONAL_MEMORY
	// descriptors (the RAM, for physical KASLR) follow the runtime map in
	// the memory map.
	ConventionalDescriptors int `json:"conventional_descriptors"`
}

// NoEFIConsequence is what a kernel booted without the EFI hand-over lacks;
// every warning about a missing hand-over ends with it.
const NoEFIConsequence = "the next kernel boots without EFI: no EFI runtime services or variables, " +
	"no EFI configuration tables (so no firmware TPM event log for PCRs 0-7, no SMBIOS entry point), no secure-boot state"

// efiState decides the EFI part of the boot_params. It returns nil when the
// host is not an EFI host, when --noefi asked for none, or when the hand-over
// is impossible; the latter comes with a warning naming the cause and what
// the next kernel will lack.
func efiState(in *Inputs, im *bzimage.Image, ram []segment.Range) (*bzimage.EFI, *EFI, []string) {
	h := in.EFI
	if h == nil || !h.EFI || in.NoEFI {
		return nil, nil, nil
	}
	warn := func(format string, a ...any) []string {
		return []string{fmt.Sprintf(format, a...) + ": " + NoEFIConsequence}
	}
	if im.Xloadflags&bzimage.XLFEFIKexec == 0 {
		return nil, nil, warn("kernel %s does not set XLF_EFI_KEXEC (xloadflags %#x), so it cannot take EFI state from a kexec loader", in.KernelPath, im.Xloadflags)
	}
	if len(h.Missing) > 0 {
		return nil, nil, warn("this host does not publish %s (a kernel without CONFIG_EFI_RUNTIME_MAP?)", "/"+strings.Join(h.Missing, ", /"))
	}
	bp := h.BootParams
	switch {
	case !bp.EFIBoot():
		return nil, nil, warn("the running kernel's boot_params have no EFI loader signature (%q): it was not booted by EFI", bp.EFI.LoaderSignature)
	case bp.EFI.LoaderSignature != efi.SignatureEL64:
		return nil, nil, warn("the firmware is 32-bit EFI (loader signature %q), which a 64-bit kexec cannot hand over", bp.EFI.LoaderSignature)
	case bp.EFI.MemdescVersion != efi.MemoryDescriptorVersion:
		return nil, nil, warn("the running kernel's EFI memory descriptors are version %d; only version %d is known", bp.EFI.MemdescVersion, efi.MemoryDescriptorVersion)
	case bp.EFI.Systab == 0:
		return nil, nil, warn("the running kernel's boot_params have no EFI system table")
	case len(h.RuntimeMap) == 0:
		return nil, nil, warn("/%s is empty (EFI runtime services disabled in the running kernel?)", efi.PathRuntimeMap)
	}
	sb := bp.SecureBoot
	if sb > 3 {
		sb = 0
	}
	descs := append(append([]efi.Descriptor(nil), h.RuntimeMap...), conventional(ram, h.RuntimeMap)...)
	mm := efi.EncodeMemmap(descs)
	be := &bzimage.EFI{
		LoaderSignature: bp.EFI.LoaderSignature,
		Systab:          bp.EFI.Systab,
		MemdescSize:     efi.MemoryDescriptorSize,
		MemdescVersion:  efi.MemoryDescriptorVersion,
		Memmap:          mm,
		SecureBoot:      sb,
		FwVendor:        h.FwVendor,
		Runtime:         h.Runtime,
		Tables:          h.ConfigTable,
		SMBIOS:          h.Systab.SMBIOS,
	}
	pe := &EFI{LoaderSignature: be.LoaderSignature, Systab: be.Systab, MemmapSize: uint32(len(mm)),
		MemdescSize: be.MemdescSize, MemdescVersion: be.MemdescVersion, SecureBoot: sb,
		FwVendor: be.FwVendor, Runtime: be.Runtime, ConfigTable: be.Tables, SMBIOS: be.SMBIOS,
		RuntimeMap: append([]efi.Descriptor(nil), h.RuntimeMap...), ConventionalDescriptors: len(descs) - len(h.RuntimeMap)}
	return be, pe, nil
}

// conventional describes the RAM of the memory map as EFI conventional
// memory, for the next kernel's decompressor. With EFI state in boot_params
// it chooses its physical KASLR slot among the EFI map's conventional
// descriptors only, never from e820; the runtime map alone has none, and a
// kernel handed just that (as kexec-tools and kexec_file_load do) runs
// without physical KASLR. The descriptors cover whole pages inside RAM and
// outside every runtime region; the kernel itself takes its memory from
// e820 and maps only EFI_MEMORY_RUNTIME descriptors, so these add nothing
// else. The decompressor still never goes below min(load address, 512 MiB),
// which keeps the IMA buffer and boot_params out of its reach.
func conventional(ram []segment.Range, runtime []efi.Descriptor) []efi.Descriptor {
	var busy []segment.Range
	for _, d := range runtime {
		if end, ok := d.End(); ok {
			busy = append(busy, segment.Range{Start: d.Phys, End: end})
		}
	}
	var out []efi.Descriptor
	for _, r := range ram {
		free := []segment.Range{r}
		for _, b := range busy {
			var next []segment.Range
			for _, f := range free {
				if !f.Overlaps(b) {
					next = append(next, f)
					continue
				}
				if f.Start < b.Start {
					next = append(next, segment.Range{Start: f.Start, End: b.Start})
				}
				if b.End < f.End {
					next = append(next, segment.Range{Start: b.End, End: f.End})
				}
			}
			free = next
		}
		for _, f := range free {
			s, ok := segment.AlignUp(f.Start, 4096)
			e := segment.AlignDown(f.End, 4096)
			if !ok || e <= s {
				continue
			}
			out = append(out, efi.Descriptor{Type: efi.ConventionalMemory, Phys: s, Pages: (e - s) >> 12, Attribute: efi.MemoryWB | efi.MemoryWT | efi.MemoryWC | efi.MemoryUC})
		}
	}
	return out
}

// screenInfo returns the running kernel's screen_info when it describes a
// linear framebuffer (EFI GOP or VESA), for the next kernel to keep using.
// It is the screen as the running kernel was given it at boot, which is
// what the kernel's own kexec_file_load hands over too.
func screenInfo(in *Inputs) ([]byte, *efi.Screen) {
	if in.EFI == nil || in.EFI.BootParams == nil {
		return nil, nil
	}
	si := in.EFI.BootParams.ScreenInfo
	s, ok := efi.Framebuffer(si)
	if !ok {
		return nil, nil
	}
	return si, &s
}
