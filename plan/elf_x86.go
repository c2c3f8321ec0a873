package plan

import (
	"fmt"

	"github.com/gokexec/gokexec/bzimage"
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
	p, mem, alloc, err := startX86(in)
	if err != nil {
		return nil, err
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

	// 2-5. As for a bzImage; the IMA buffer below the lowest segment.
	if err := placeX86Rest(in, p, alloc, im, mem, lowest, k.Entry); err != nil {
		return nil, err
	}
	return p, nil
}

// ImageDecision adjusts an automatic decision to the image on x86: an
// ELF vmlinux can only be loaded with kexec_load (the kernel's
// kexec_file_load takes a bzImage only), and so can a given device tree
// (kexec_file_load has no argument for one), so auto picks kexec_load for
// either, with no kexec_file_load fallback, unless lockdown forbids it
// (FileLoad then refuses by name).
func ImageDecision(d *Decision, in *Inputs) {
	if d.Mode != ModeAuto || lockedDown(d.Facts.Lockdown) || d.Facts.CrossArch || in.Arch != ArchAMD64 && in.Arch != "" {
		return
	}
	if d.Syscall == SyscallKexecLoad {
		if len(in.DTB) > 0 {
			d.Plan = nil
		}
		return
	}
	switch {
	case vmlinux.IsELF(in.Kernel):
		d.Syscall = SyscallKexecLoad
		d.Reason = "the kernel is an ELF vmlinux, which x86_64's kexec_file_load does not take: kexec_load, as kexec-tools' elf-x86_64"
		d.Plan = nil
	case len(in.DTB) > 0:
		d.Syscall = SyscallKexecLoad
		d.Reason = "a device tree is given, which x86's kexec_file_load cannot pass: kexec_load, with the tree in a SETUP_DTB node"
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
