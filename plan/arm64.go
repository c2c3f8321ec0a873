package plan

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/gokexec/gokexec/arm64"
	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/segment"
)

// arm64 placement: the DTB gets a slot with room for what PrepareDTB adds.
const dtbSlack = 64 << 10

// rngSeeds derives the arm64 kaslr-seed and rng-seed from the plan's seed
// input, so that planning stays a pure function of its inputs.
func rngSeeds(seed []byte) (uint64, []byte) {
	if len(seed) == 0 {
		return 0, nil
	}
	var out []byte
	for i := byte(0); len(out) < 8+arm64.RNGSeedSize; i++ {
		h := sha512.Sum512(append(append([]byte(nil), seed...), 'g', 'k', i))
		out = append(out, h[:]...)
	}
	return binary.LittleEndian.Uint64(out), out[8 : 8+arm64.RNGSeedSize]
}

func buildARM64(in *Inputs) (*Plan, error) {
	im, err := arm64.ParseImage(in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	if err := im.CheckPageSize(in.PageSize); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	if len(in.DTB) == 0 {
		return nil, fmt.Errorf("%w: arm64 needs a device tree (given, or the running system's /sys/firmware/fdt)", ErrInput)
	}
	if len(in.DTB) > arm64.MaxDTBSize {
		return nil, fmt.Errorf("device tree: %w: %d bytes, the limit is %d", arm64.ErrDTBTooLarge, len(in.DTB), arm64.MaxDTBSize)
	}
	tree, err := fdt.Parse(in.DTB)
	if err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}

	// Memory: the given map, else the DTB's /memory nodes.
	var ram []segment.Range
	if len(in.Memory) > 0 {
		mem, err := in.Memory.Normalize()
		if err != nil {
			return nil, err
		}
		ram = mem.RAM()
	} else {
		rs, err := tree.MemoryRanges()
		if err != nil {
			return nil, fmt.Errorf("device tree: %w, and no memory map was given", err)
		}
		for _, r := range rs {
			end, _ := r.End()
			ram = append(ram, segment.Range{Start: r.Start, End: end})
		}
	}
	if len(ram) == 0 {
		return nil, fmt.Errorf("%w: no RAM in the memory map", segment.ErrBadMap)
	}
	alloc, err := segment.NewAllocator(ram, in.PageSize)
	if err != nil {
		return nil, err
	}
	// Keep clear of what the tree reserves, once the stale hand-over
	// properties (and their reservations) are gone.
	probe := tree.Clone()
	if err := arm64.PrepareDTB(probe, arm64.ChosenOptions{Bootargs: in.Cmdline}); err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}
	reserved, err := probe.ReservedRanges()
	if err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}
	for _, r := range reserved {
		end, ok := r.End()
		if !ok {
			end = ^uint64(0)
		}
		alloc.Reserve(segment.Range{Start: r.Start, End: end})
	}

	p := &Plan{Arch: ArchARM64, PageSize: in.PageSize, Syscall: SyscallKexecLoad, Cmdline: in.Cmdline,
		Kernel: Input{Path: in.KernelPath, Size: uint64(len(in.Kernel)), SHA256: in.kernelDigest()}}

	// 1. Kernel: 2 MiB aligned base + text_offset.
	pl, err := im.Placement()
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	lo, hi := in.bounds(0, pl.Max)
	kr, err := alloc.Place(segment.Request{Name: "kernel", Size: pl.Size, Align: pl.Align, Min: lo, Max: hi, BottomUp: pl.BottomUp})
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	load, err := im.LoadAddress(kr.Start)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	kbuf := append(make([]byte, pl.TextOffset, pl.TextOffset+uint64(len(im.Kernel))), im.Kernel...)
	p.KernelAddr = load
	p.Segments = append(p.Segments, newSegment("kernel", kr, kbuf))
	opt := arm64.ChosenOptions{Bootargs: in.Cmdline}
	opt.KASLRSeed, opt.RNGSeed = rngSeeds(in.RNGSeed)

	// 2. IMA buffer, reserved for the next kernel by a /memreserve/.
	if in.IMAList != nil || in.IMAEntries != nil || in.IMAKexecList != nil {
		buf, n, size, err := imaLayout(in)
		if err != nil {
			return nil, err
		}
		lo, hi := in.bounds(0, 0)
		r, err := alloc.Place(segment.Request{Name: "ima", Size: size, Min: lo, Max: hi})
		if err != nil {
			return nil, fmt.Errorf("IMA buffer of %d bytes: %w", size, err)
		}
		p.Segments = append(p.Segments, newSegment("ima", r, buf))
		p.IMA = &IMA{Segment: "ima", Addr: r.Start, Size: r.Size(), ListBytes: uint64(len(buf) - ima.KexecHeaderSize), Entries: n, Headroom: r.Size() - uint64(len(buf))}
		opt.IMABuffer = &fdt.Range{Start: r.Start, Size: r.Size()}
		if !im.ReadsIMABuffer() {
			p.Warnings = append(p.Warnings, fmt.Sprintf("kernel %s cannot restore the IMA list: it never reads /chosen/linux,ima-kexec-buffer (built without KEXEC_FILE, like Debian's arm64 kernels); it will start a new list and the TPM's PCRs will no longer match it", in.KernelPath))
		} else if arm64.BootsWithACPI(tree, in.Cmdline) {
			p.Warnings = append(p.Warnings, fmt.Sprintf("kernel %s will not restore the IMA list: it boots with ACPI (the device tree holds only /chosen, as the EFI stub makes it, and the command line has no acpi=off), and arm64 Linux reads /chosen/linux,ima-kexec-buffer only when it boots from a device tree; it will start a new list and the TPM's PCRs will no longer match it", in.KernelPath))
		}
	}

	// 3. initrd, inside the window the kernel can reach.
	if in.Initrd != nil {
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
		}
		win, err := arm64.InitrdWindow(fdt.Range{Start: load, Size: im.ImageSize})
		if err != nil {
			return nil, err
		}
		wend, _ := win.End()
		lo, hi := in.bounds(win.Start, wend)
		r, err := alloc.Place(segment.Request{Name: "initrd", Size: uint64(len(in.Initrd)), Min: lo, Max: hi})
		if err != nil {
			return nil, fmt.Errorf("initrd %s: %w", in.InitrdPath, err)
		}
		if err := arm64.CheckInitrd(fdt.Range{Start: load, Size: im.ImageSize}, fdt.Range{Start: r.Start, Size: uint64(len(in.Initrd))}); err != nil {
			return nil, fmt.Errorf("initrd %s: %w", in.InitrdPath, err)
		}
		p.Initrd = &Input{Path: in.InitrdPath, Size: uint64(len(in.Initrd)), SHA256: in.initrdDigest()}
		p.Segments = append(p.Segments, newSegmentDigest("initrd", r, in.Initrd, p.Initrd.SHA256))
		opt.Initrd = &fdt.Range{Start: r.Start, Size: uint64(len(in.Initrd))}
	}

	// 4. The DTB: a 2 MiB aligned slot, so it can never cross a 2 MiB boundary.
	if err := arm64.PrepareDTB(tree, opt); err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}
	dtb, err := arm64.BuildDTB(tree)
	if err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}
	slot := uint64(len(dtb)) + dtbSlack
	if slot > arm64.MaxDTBSize {
		slot = arm64.MaxDTBSize
	}
	lo, hi = in.bounds(0, 0)
	dr, err := alloc.Place(segment.Request{Name: "dtb", Size: slot, Align: arm64.DTBAlign, Min: lo, Max: hi})
	if err != nil {
		return nil, fmt.Errorf("device tree: %w", err)
	}
	if err := arm64.CheckDTB(dr.Start, uint64(len(dtb))); err != nil {
		return nil, err
	}
	p.Segments = append(p.Segments, newSegment("dtb", dr, dtb))
	p.DTB = &DTBInfo{Addr: dr.Start, Size: uint64(len(dtb))}

	// 5. The trampoline: x0 = DTB, then the kernel.
	tr, err := alloc.Place(segment.Request{Name: "trampoline", Size: in.PageSize, Min: lo, Max: hi})
	if err != nil {
		return nil, fmt.Errorf("trampoline: %w", err)
	}
	p.Segments = append(p.Segments, newSegment("trampoline", tr, arm64.Trampoline(dr.Start, load)))
	p.Entry = tr.Start

	if err := p.finish(ram); err != nil {
		return nil, err
	}
	return p, nil
}

// DTBBytes returns the device tree a plan hands over (arm64), or nil.
func (p *Plan) DTBBytes() []byte {
	for _, s := range p.Segments {
		if s.Name == "dtb" {
			return s.Buf
		}
	}
	return nil
}

func checkARM64Kernel(in *Inputs) error {
	if _, err := arm64.ParseImage(in.Kernel); err != nil {
		return fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	return nil
}

// FileLoadKernel returns the kernel bytes kexec_file_load must be given
// for in: the input itself, except on arm64 for an EFI zboot image,
// Image.gz or vmlinux, which the kernel's loader (a raw Image only) cannot
// read: then the Image unpacked from it.
func FileLoadKernel(in *Inputs) ([]byte, error) {
	if in.Arch != ArchARM64 {
		return in.Kernel, nil
	}
	im, err := arm64.ParseImage(in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", in.KernelPath, err)
	}
	if im.Compression == "" {
		return in.Kernel, nil
	}
	return im.Kernel, nil
}
