package plan

import (
	"fmt"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/segment"
	"github.com/gokexec/gokexec/vmlinux"
)

// buildX86ELF plans an x86_64 ELF vmlinux the way kexec-tools' "elf-x86_64"
// loads one: every PT_LOAD segment at its physical address, boot_params
// built from zero around a synthesized setup header, and the trampoline
// entering e_entry (startup_64 of the kernel proper; no decompressor, no
// KASLR) with %rsi = boot_params. The IMA buffer goes below the kernel's
// lowest physical address, like the bzImage path's.
func buildX86ELF(in *Inputs) (*Plan, error) {
	k, err := vmlinux.Parse(in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	if k.Machine != vmlinux.X86_64 {
		return nil, fmt.Errorf("%w: kernel %s is an ELF kernel (vmlinux) for %s, not x86_64", ErrInput, in.KernelPath, k.Machine)
	}
	if len(k.Segments) == 0 {
		return nil, fmt.Errorf("%w: kernel %s: vmlinux has no PT_LOAD segment", ErrInput, in.KernelPath)
	}
	mem, err := in.Memory.Normalize()
	if err != nil {
		return nil, err
	}
	ram := mem.RAM()
	alloc, err := segment.NewAllocator(ram, in.PageSize)
	if err != nil {
		return nil, err
	}
	alloc.Reserve(segment.Range{Start: 0, End: 1 * mib})

	p := &Plan{
		Arch:     ArchAMD64,
		PageSize: in.PageSize,
		Syscall:  SyscallKexecLoad,
		Cmdline:  in.Cmdline,
		Kernel:   Input{Path: in.KernelPath, Size: uint64(len(in.Kernel)), SHA256: in.kernelDigest()},
	}

	// 1. The kernel's segments, each at its p_paddr (vmlinux.Parse sorted
	//    them and refused overlaps).
	lowest, end := k.Segments[0].Phys, uint64(0)
	entryIn := false
	for i, s := range k.Segments {
		name := "kernel"
		if i > 0 {
			name = fmt.Sprintf("kernel.%d", i)
		}
		if s.Phys%in.PageSize != 0 {
			return nil, fmt.Errorf("%w: kernel %s: PT_LOAD segment %d at physical %#x is not page-aligned", ErrInput, in.KernelPath, i, s.Phys)
		}
		r, err := alloc.Place(segment.Request{Name: name, Size: s.MemSize, Fixed: true, FixedAt: s.Phys})
		if err != nil {
			return nil, fmt.Errorf("kernel %s: PT_LOAD segment %d [%#x, %#x) must be loaded at its physical address: %w",
				in.KernelPath, i, s.Phys, s.Phys+s.MemSize, err)
		}
		p.Segments = append(p.Segments, newSegment(name, r, s.Data))
		if k.Entry >= s.Phys && k.Entry < s.Phys+s.MemSize {
			entryIn = true
		}
		if r.End > end {
			end = r.End
		}
	}
	if !entryIn {
		return nil, fmt.Errorf("%w: kernel %s: entry point %#x lies in no PT_LOAD segment (a virtual address? not an x86_64 vmlinux)", ErrInput, in.KernelPath, k.Entry)
	}
	p.KernelAddr = lowest
	im := bzimage.ForVmlinux(uint32(min(end-lowest, 0xffffffff)))
	if err := im.CheckCmdline(in.Cmdline); err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}

	var setup []bzimage.SetupData
	// 2. The IMA hand-over buffer, above 1 MiB and below the kernel.
	if in.IMAList != nil || in.IMAEntries != nil {
		buf, n, size, err := imaLayout(in)
		if err != nil {
			return nil, err
		}
		lo, hi := in.bounds(x86LowestBuffer, lowest)
		r, err := alloc.Place(segment.Request{Name: "ima", Size: size, Min: lo, Max: hi})
		if err != nil {
			return nil, fmt.Errorf("IMA buffer of %d bytes (list %d + headroom %d) must lie in [%#x, %#x), below the kernel %s at %#x: %w",
				size, len(buf), in.IMAExtra, lo, hi, in.KernelPath, lowest, err)
		}
		p.Segments = append(p.Segments, newSegment("ima", r, buf))
		p.IMA = &IMA{Segment: "ima", Addr: r.Start, Size: r.Size(), ListBytes: uint64(len(buf) - ima.KexecHeaderSize), Entries: n, Headroom: r.Size() - uint64(len(buf))}
		setup = append(setup, bzimage.IMASetupData(r.Start, r.Size()))
	}
	if len(in.RNGSeed) > 0 {
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupRNGSeed, Data: in.RNGSeed})
	}
	if len(in.DTB) > 0 {
		if _, err := fdt.Parse(in.DTB); err != nil {
			return nil, fmt.Errorf("device tree: %w", err)
		}
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupDTB, Data: in.DTB})
	}

	// 3. The initrd, as high as the synthesized header allows.
	var initrdR segment.Range
	if in.Initrd != nil {
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
		}
		lo, hi := in.bounds(x86LowestBuffer, im.InitrdMax())
		r, err := alloc.Place(segment.Request{Name: "initrd", Size: uint64(len(in.Initrd)), Min: lo, Max: hi})
		if err != nil {
			return nil, fmt.Errorf("initrd %s: %w", in.InitrdPath, err)
		}
		initrdR = r
		p.Initrd = &Input{Path: in.InitrdPath, Size: uint64(len(in.Initrd)), SHA256: in.initrdDigest()}
		p.Segments = append(p.Segments, newSegmentDigest("initrd", r, in.Initrd, p.Initrd.SHA256))
	}

	// 4. Zero page + command line + setup_data, below 4 GiB. EFI state
	//    needs XLF_EFI_KEXEC, which a vmlinux cannot declare: efiState
	//    says so in the plan's warnings on an EFI host.
	rsdp := in.ACPIRSDP
	if rsdp == 0 && in.EFI != nil && in.EFI.EFI {
		rsdp = in.EFI.Systab.RSDP()
	}
	params := &bzimage.Params{E820: mem, Cmdline: in.Cmdline, ACPIRSDP: rsdp, SetupData: setup}
	if in.Initrd != nil {
		params.InitrdAddr, params.InitrdSize = initrdR.Start, uint64(len(in.Initrd))
	}
	var efiPlan *EFI
	params.EFI, efiPlan, p.Warnings = efiState(in, im, ram)
	var screen *efi.Screen
	params.ScreenInfo, screen = screenInfo(in)
	psize, err := bzimage.ParamsSize(params)
	if err != nil {
		return nil, err
	}
	lo, hi := in.bounds(x86LowestBuffer, x86Below4G)
	pr, err := alloc.Place(segment.Request{Name: "boot_params", Size: psize, Min: lo, Max: hi})
	if err != nil {
		return nil, fmt.Errorf("boot params: %w", err)
	}
	pbuf, placed, err := bzimage.BuildParamsEFI(im, pr.Start, params)
	if err != nil {
		return nil, err
	}
	p.Segments = append(p.Segments, newSegment("boot_params", pr, pbuf))
	p.BootParams = &BootParams{Addr: pr.Start, CmdlineAddr: pr.Start + bzimage.BootParamsSize, E820Entries: len(mem),
		ACPIRSDP: rsdp, EFI: efiPlan, Screen: screen}
	if efiPlan != nil {
		efiPlan.Memmap = placed.MemmapAddr
	}
	for _, n := range placed.Nodes {
		p.BootParams.SetupData = append(p.BootParams.SetupData, SetupData{Type: n.Type, Addr: n.Addr, Len: n.Len})
	}

	// 5. The trampoline (the bzImage path's), entering e_entry.
	tr, err := alloc.Place(segment.Request{Name: "trampoline", Size: in.PageSize, Min: lo, Max: hi})
	if err != nil {
		return nil, fmt.Errorf("trampoline: %w", err)
	}
	p.Segments = append(p.Segments, newSegment("trampoline", tr, bzimage.Trampoline(tr.Start, pr.Start, k.Entry)))
	p.Entry = tr.Start

	if err := p.finish(ram); err != nil {
		return nil, err
	}
	return p, nil
}

// ImageDecision adjusts an automatic decision to the kernel image: an x86_64
// ELF vmlinux can only be loaded with kexec_load (the kernel's
// kexec_file_load takes a bzImage only on x86), so auto picks kexec_load for
// it unless lockdown forbids that (FileLoad then refuses it by name).
func ImageDecision(d *Decision, in *Inputs) {
	if d.Mode != ModeAuto || d.Syscall != SyscallKexecFileLoad || lockedDown(d.Facts.Lockdown) || d.Facts.CrossArch {
		return
	}
	if (in.Arch == ArchAMD64 || in.Arch == "") && vmlinux.IsELF(in.Kernel) {
		d.Syscall = SyscallKexecLoad
		d.Reason = "the kernel is an ELF vmlinux, which x86_64's kexec_file_load does not take: kexec_load, as kexec-tools' elf-x86_64"
		d.Plan = nil
	}
}

// errFileLoadELF is FileLoad's refusal of an x86_64 ELF vmlinux.
func errFileLoadELF(in *Inputs) error {
	return fmt.Errorf("%w: kernel %s is an ELF vmlinux; on x86_64 kexec_file_load takes only a bzImage, so it must be loaded with kexec_load", ErrInput, in.KernelPath)
}

// errCrashELF is the crash planners' refusal of an x86_64 ELF vmlinux: a
// crash kernel must run inside the crash region, away from the p_paddr it
// was linked at, and gokexec relocates only bzImages there.
func errCrashELF(in *Inputs) error {
	return fmt.Errorf("%w: %s is an ELF vmlinux; gokexec loads x86_64 crash kernels from a bzImage only (a vmlinux runs at the physical address it was linked at, outside the crash region): load the bzImage built with it", ErrNotCrashKernel, in.KernelPath)
}
