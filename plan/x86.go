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

// x86 placement bounds.
const (
	x86LowestLoad   = 16 * mib  // LOAD_PHYSICAL_ADDR of distribution kernels
	x86KASLRFloor   = 512 * mib // the decompressor's KASLR floor is min(load address, 512 MiB)
	x86LowestBuffer = 1 * mib   // recent kernels refuse an IMA buffer below 1 MiB
	x86Below4G      = 4 * gib
)

func buildX86(in *Inputs) (*Plan, error) {
	if vmlinux.IsELF(in.Kernel) { // kexec-tools' "elf-x86_64"
		return buildX86ELF(in)
	}
	im, err := bzimage.Parse(in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	if err := im.CheckCmdline(in.Cmdline); err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	p, mem, alloc, err := startX86(in)
	if err != nil {
		return nil, err
	}

	// 1. The kernel, as low as KASLR's floor allows: at or below 512 MiB so
	//    that memory beneath it is out of the decompressor's reach.
	kreq := segment.Request{Name: "kernel", Size: im.MemSize(), Align: uint64(im.KernelAlignment)}
	if im.Relocatable {
		kreq.Min, kreq.Max = in.bounds(x86LowestLoad, 0)
		// Prefer an end at or below the floor plus the kernel's size, so
		// the load address itself is <= 512 MiB.
		low := kreq
		if hi := x86KASLRFloor + alignUp(im.MemSize(), in.PageSize); low.Max == 0 || hi < low.Max {
			low.Max = hi
		}
		p.KernelAddr = 0
		if r, err := alloc.Place(low); err == nil {
			p.KernelAddr = r.Start
			p.Segments = append(p.Segments, newSegment("kernel", r, im.ProtectedMode))
		} else if r, err2 := alloc.Place(kreq); err2 == nil {
			p.KernelAddr = r.Start
			p.Segments = append(p.Segments, newSegment("kernel", r, im.ProtectedMode))
		} else {
			return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err2)
		}
	} else {
		kreq.Fixed, kreq.FixedAt = true, im.PrefAddress
		r, err := alloc.Place(kreq)
		if err != nil {
			return nil, fmt.Errorf("kernel %s is not relocatable: %w", in.KernelPath, err)
		}
		p.KernelAddr = r.Start
		p.Segments = append(p.Segments, newSegment("kernel", r, im.ProtectedMode))
	}

	// 2-5. What both kernel forms share. The IMA buffer stays below the
	// kernel and below the KASLR floor.
	ceiling := p.KernelAddr
	if ceiling > x86KASLRFloor {
		ceiling = x86KASLRFloor
	}
	if err := placeX86Rest(in, p, alloc, im, mem, ceiling, p.KernelAddr+bzimage.Entry64Offset); err != nil {
		return nil, err
	}
	return p, nil
}

// startX86 is what both x86 kernel forms start from: the memory map
// normalized, an allocator over its RAM with the first MiB reserved, and
// a kexec_load plan naming the kernel input.
func startX86(in *Inputs) (*Plan, segment.Map, *segment.Allocator, error) {
	mem, err := in.Memory.Normalize()
	if err != nil {
		return nil, nil, nil, err
	}
	alloc, err := segment.NewAllocator(mem.RAM(), in.PageSize)
	if err != nil {
		return nil, nil, nil, err
	}
	// Never place anything in the first MiB: firmware, the real-mode
	// trampoline and the BIOS data areas live there.
	alloc.Reserve(segment.Range{Start: 0, End: 1 * mib})
	p := &Plan{
		Arch:     ArchAMD64,
		PageSize: in.PageSize,
		Syscall:  SyscallKexecLoad,
		Cmdline:  in.Cmdline,
		Kernel:   Input{Path: in.KernelPath, Size: uint64(len(in.Kernel)), SHA256: in.kernelDigest()},
	}
	return p, mem, alloc, nil
}

// placeX86Rest places, for either x86 kernel form once its kernel segments
// are in p and alloc, the IMA hand-over buffer in [1 MiB, imaCeiling), the
// setup_data nodes, the initrd, boot_params with the command line, and the
// trampoline that enters entry with %rsi = boot_params; then it finishes p.
func placeX86Rest(in *Inputs, p *Plan, alloc *segment.Allocator, im *bzimage.Image, mem segment.Map, imaCeiling, entry uint64) error {
	ram := mem.RAM()
	var setup []bzimage.SetupData
	// 2. The IMA hand-over buffer, below the kernel, out of the
	//    decompressor's reach.
	if in.IMAList != nil || in.IMAEntries != nil || in.IMAKexecList != nil {
		buf, n, size, err := imaLayout(in)
		if err != nil {
			return err
		}
		lo, hi := in.bounds(x86LowestBuffer, imaCeiling)
		r, err := alloc.Place(segment.Request{Name: "ima", Size: size, Min: lo, Max: hi})
		if err != nil {
			return fmt.Errorf("IMA buffer of %d bytes (list %d + headroom %d) must lie in [%#x, %#x), below the kernel at %#x so that KASLR cannot overwrite it: %w",
				size, len(buf), in.IMAExtra, lo, hi, p.KernelAddr, err)
		}
		p.Segments = append(p.Segments, newSegment("ima", r, buf))
		p.IMA = &IMA{Segment: "ima", Addr: r.Start, Size: r.Size(), ListBytes: uint64(len(buf) - ima.KexecHeaderSize), Entries: n, Headroom: r.Size() - uint64(len(buf))}
		setup = append(setup, bzimage.IMASetupData(r.Start, r.Size()))
	}
	if len(in.RNGSeed) > 0 {
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupRNGSeed, Data: in.RNGSeed})
	}
	// A device tree given for x86 goes to the kernel as a SETUP_DTB node,
	// as kexec-tools passes it: what is measured as loaded is handed over.
	if len(in.DTB) > 0 {
		dtb, err := x86DTB(in.DTB, p.IMA)
		if err != nil {
			return fmt.Errorf("device tree: %w", err)
		}
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupDTB, Data: dtb})
	}

	// 3. The initrd, as high as the kernel accepts.
	var initrdR segment.Range
	if in.Initrd != nil {
		if len(in.Initrd) == 0 {
			return fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
		}
		lo, hi := in.bounds(x86LowestBuffer, im.InitrdMax())
		r, err := alloc.Place(segment.Request{Name: "initrd", Size: uint64(len(in.Initrd)), Min: lo, Max: hi})
		if err != nil {
			return fmt.Errorf("initrd %s: %w", in.InitrdPath, err)
		}
		initrdR = r
		p.Initrd = &Input{Path: in.InitrdPath, Size: uint64(len(in.Initrd)), SHA256: in.initrdDigest()}
		p.Segments = append(p.Segments, newSegmentDigest("initrd", r, in.Initrd, p.Initrd.SHA256))
	}

	// 4. Zero page + command line + setup_data (+ the EFI memory map), below
	//    4 GiB. EFI state needs XLF_EFI_KEXEC, which a vmlinux cannot
	//    declare: efiState says so in the plan's warnings on an EFI host.
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
		return err
	}
	lo, hi := in.bounds(x86LowestBuffer, x86Below4G)
	preq := segment.Request{Name: "boot_params", Size: psize, Min: lo, Max: hi}
	var pr segment.Range
	if params.EFI != nil && p.KernelAddr < hi {
		// The EFI memory map is no setup_data node, so the decompressor
		// does not know to avoid it: keep the block below the kernel, out of
		// KASLR's reach, when there is room.
		below := preq
		below.Max = p.KernelAddr
		pr, err = alloc.Place(below)
	}
	if params.EFI == nil || err != nil || pr.Size() == 0 {
		if pr, err = alloc.Place(preq); err != nil {
			return fmt.Errorf("boot params: %w", err)
		}
	}
	pbuf, placed, err := bzimage.BuildParamsEFI(im, pr.Start, params)
	if err != nil {
		return err
	}
	p.Segments = append(p.Segments, newSegment("boot_params", pr, pbuf))
	p.BootParams = &BootParams{Addr: pr.Start, CmdlineAddr: pr.Start + bzimage.BootParamsSize, E820Entries: len(mem),
		ACPIRSDP: 0, EFI: efiPlan, Screen: screen}
	if im.Version >= 0x020e {
		p.BootParams.ACPIRSDP = rsdp
	}
	if efiPlan != nil {
		efiPlan.Memmap = placed.MemmapAddr
	}
	for _, n := range placed.Nodes {
		p.BootParams.SetupData = append(p.BootParams.SetupData, SetupData{Type: n.Type, Addr: n.Addr, Len: n.Len})
	}

	// 5. The trampoline: one page below 4 GiB, entering entry.
	tr, err := alloc.Place(segment.Request{Name: "trampoline", Size: in.PageSize, Min: lo, Max: hi})
	if err != nil {
		return fmt.Errorf("trampoline: %w", err)
	}
	p.Segments = append(p.Segments, newSegment("trampoline", tr, bzimage.Trampoline(tr.Start, pr.Start, entry)))
	p.Entry = tr.Start
	return p.finish(ram)
}

// x86DTB is the tree a SETUP_DTB node carries: the one given, with
// /chosen/linux,ima-kexec-buffer naming the IMA segment (in the root's
// #address-cells/#size-cells) when there is one. An x86 kernel built with
// CONFIG_OF_FLATTREE looks for its predecessor's list there and only
// there (its SETUP_IMA reader is compiled out, though it still reserves
// the SETUP_IMA range, which therefore stays as well); a kernel without
// it ignores the tree. A stale linux,ima-kexec-buffer (a tree taken from
// /sys/firmware/fdt) is removed. A tree that needs no change is passed
// byte for byte.
func x86DTB(b []byte, im *IMA) ([]byte, error) {
	t, err := fdt.Parse(b)
	if err != nil {
		return nil, err
	}
	const prop = "linux,ima-kexec-buffer"
	ch, ok := t.Lookup("/chosen")
	if im == nil && (!ok || !ch.HasProperty(prop)) {
		return b, nil
	}
	if ch, err = t.CreateNode("/chosen"); err != nil {
		return nil, err
	}
	ch.DeleteProperty(prop)
	if im != nil {
		root := t.Root()
		ac, err := root.AddressCells()
		if err != nil {
			return nil, fmt.Errorf("root #address-cells: %w", err)
		}
		sc, err := root.SizeCells()
		if err != nil {
			return nil, fmt.Errorf("root #size-cells: %w", err)
		}
		v, err := fdt.EncodeRanges(ac, sc, []fdt.Range{{Start: im.Addr, Size: im.Size}})
		if err != nil {
			return nil, fmt.Errorf("%s for the IMA segment at %#x (+%#x) in the root's %d/%d cells: %w", prop, im.Addr, im.Size, ac, sc, err)
		}
		if err := ch.SetProperty(prop, v); err != nil {
			return nil, err
		}
	}
	return t.Marshal()
}

func alignUp(v, a uint64) uint64 {
	r, ok := segment.AlignUp(v, a)
	if !ok {
		return v
	}
	return r
}
