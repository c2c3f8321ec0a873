package plan

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/segment"
	"github.com/gokexec/gokexec/vmlinux"
)

// A crash plan (kexec -p) loads a kernel that the running kernel boots
// when it panics. Its invariants, besides the Plan's:
//   - Every segment lies inside the "Crash kernel" regions of /proc/iomem:
//     the kernel refuses anything else (EADDRNOTAVAIL), and memory outside
//     them is the crashed kernel's, to be dumped, not overwritten.
//   - The crash kernel's e820 map is the crash regions (less the ELF core
//     header) as RAM, the low 1 MiB of RAM (which an x86 kernel since 5.13
//     never uses, so the crash kernel may) and the ACPI, NVS and reserved
//     ranges as they are — what the kernel itself gives a kexec_file_load
//     crash image (arch/x86/kernel/crash.c).
//   - The ELF core header describes all RAM except the low 1 MiB and the
//     crash regions, and is passed as elfcorehdr= on the command line.
//   - Nothing of IMA is handed over (README: "Crash kernels").

// Errors of crash plans; match with errors.Is.
var (
	// ErrNoCrashRegion: the running kernel reserved no crash memory.
	ErrNoCrashRegion = segment.ErrNoCrashRegion
	// ErrCrashNoFit: the crash kernel and its initrd do not fit in the
	// reserved region.
	ErrCrashNoFit = errors.New("the crash kernel does not fit in the crash kernel region")
	// ErrNotCrashKernel: the image cannot run as a crash kernel (not
	// relocatable, no 64-bit entry, boot protocol too old).
	ErrNotCrashKernel = errors.New("kernel cannot run as a crash kernel")
	// ErrCrashFacts: the crashed kernel's notes are missing or bad.
	ErrCrashFacts = errors.New("the running kernel's crash dump facts are unusable")
)

// Crash is what a crash plan needs to know about the running kernel.
type Crash struct {
	// Regions are the "Crash kernel" ranges of /proc/iomem.
	Regions []segment.Range
	// CPUNotes are /sys/devices/system/cpu/cpuN/crash_notes, in CPU order.
	CPUNotes []elfcore.Note
	// VMCoreInfo is /sys/kernel/vmcoreinfo.
	VMCoreInfo elfcore.Note
	// PageOffset is the direct map's base (from /proc/kcore); 0 means
	// unknown, and the non-KASLR default is used.
	PageOffset uint64
	// KernelText is the kernel image mapping (from /proc/kcore), if known.
	KernelText *elfcore.Load
}

// DefaultPageOffset is x86-64's direct map base without KASLR (4-level
// paging): the p_vaddr base when /proc/kcore could not be read.
const DefaultPageOffset = 0xffff888000000000

// CrashPlan is the crash part of a plan, shown by --dry-run --json.
type CrashPlan struct {
	Regions []segment.Range `json:"regions"`
	// ElfCoreHdr is the address of the ELF core header segment
	// (kexec_load; the kernel places its own for kexec_file_load).
	ElfCoreHdr     uint64 `json:"elfcorehdr,omitempty"`
	ElfCoreHdrSize uint64 `json:"elfcorehdr_size,omitempty"`
	CPUNotes       int    `json:"cpu_notes,omitempty"`
	PageOffset     uint64 `json:"page_offset,omitempty"`
	// Dumped are the RAM ranges the header gives a PT_LOAD each.
	Dumped []segment.Range `json:"dumped,omitempty"`
	// Memmap is the crash kernel's e820 map.
	Memmap segment.Map `json:"memmap,omitempty"`
}

// DecideCrash chooses the syscall of a crash load. It is Decide with no
// IMA hand-over wanted (none goes into a crash kernel): -a takes
// kexec_file_load, as kexec-tools does, falling back to kexec_load; under
// lockdown only kexec_file_load.
func DecideCrash(mode Mode, f Facts) Decision {
	f.HandoverWanted = false
	d := Decide(mode, f)
	if d.Mode == ModeAuto && !f.CrossArch && !lockedDown(f.Lockdown) {
		d.Reason = "crash kernel (no IMA hand-over): kexec_file_load, as kexec-tools chooses by default"
	}
	d.Warning = ""
	if d.Syscall == SyscallKexecLoad && lockedDown(f.Lockdown) {
		d.Warning = fmt.Sprintf("kernel lockdown (%s) forbids kexec_load; the load will be refused", f.Lockdown)
	}
	return d
}

// crashKernel parses the image and checks that it can run as a crash
// kernel: a bzImage with a 64-bit entry point, boot protocol 2.12 or
// later, relocatable (it runs wherever the crash region is).
func crashKernel(in *Inputs) (*bzimage.Image, error) {
	if vmlinux.IsELF(in.Kernel) {
		return nil, errCrashELF(in)
	}
	im, err := bzimage.Parse(in.Kernel)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotCrashKernel, in.KernelPath, err)
	}
	if !im.Relocatable {
		return nil, fmt.Errorf("%w: %s is not relocatable (CONFIG_RELOCATABLE off); it could only run at %#x", ErrNotCrashKernel, in.KernelPath, im.PrefAddress)
	}
	return im, nil
}

func checkCrashFacts(c *Crash, needNotes bool) error {
	if c == nil || len(c.Regions) == 0 {
		return ErrNoCrashRegion
	}
	for _, r := range c.Regions {
		if r.Size() == 0 {
			return fmt.Errorf("%w: empty crash region %v", segment.ErrBadMap, r)
		}
	}
	if needNotes {
		if len(c.CPUNotes) == 0 {
			return fmt.Errorf("%w: no CPU crash_notes in /sys/devices/system/cpu", ErrCrashFacts)
		}
		if c.VMCoreInfo.Size == 0 {
			return fmt.Errorf("%w: no /sys/kernel/vmcoreinfo", ErrCrashFacts)
		}
	}
	return nil
}

// crashAllocator hands out memory of the crash regions only.
func crashAllocator(c *Crash, page uint64) (*segment.Allocator, error) {
	return segment.NewAllocator(c.Regions, page)
}

// FileLoadCrash describes a kexec_file_load with KEXEC_FILE_ON_CRASH: the
// kernel builds the ELF core header and the crash memory map itself. The
// checks a user-space loader can make come first: a crash region exists,
// the image can run as a crash kernel, and kernel and initrd fit.
func FileLoadCrash(in *Inputs, c *Crash) (*Plan, error) {
	if in.Arch != ArchAMD64 && in.Arch != "" {
		return nil, fmt.Errorf("%w: crash kernels: architecture %q (amd64 only)", ErrInput, in.Arch)
	}
	if in.PageSize == 0 {
		in.PageSize = 4096
	}
	if err := checkCrashFacts(c, false); err != nil {
		return nil, err
	}
	im, err := crashKernel(in)
	if err != nil {
		return nil, err
	}
	if err := im.CheckCmdline(in.Cmdline); err != nil {
		return nil, fmt.Errorf("command line: %w", err)
	}
	alloc, err := crashAllocator(c, in.PageSize)
	if err != nil {
		return nil, err
	}
	// The kernel's own layout: the image at its alignment, the initrd,
	// and a few pages (purgatory, boot params, ELF header) besides.
	if _, err := placeCrashKernel(alloc, im, in); err != nil {
		return nil, err
	}
	if in.Initrd != nil {
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
		}
		if _, err := alloc.Place(segment.Request{Name: "initrd", Size: uint64(len(in.Initrd))}); err != nil {
			return nil, fmt.Errorf("%w: initrd %s (%d bytes): %w", ErrCrashNoFit, in.InitrdPath, len(in.Initrd), err)
		}
	}
	if _, err := alloc.Place(segment.Request{Name: "purgatory and headers", Size: 256 << 10}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCrashNoFit, err)
	}
	p, err := FileLoad(in)
	if err != nil {
		return nil, err
	}
	p.Crash = &CrashPlan{Regions: c.Regions}
	return p, nil
}

// placeCrashKernel puts the kernel as low in the crash regions as its
// alignment allows (kernel_alignment, else the minimum alignment a
// relocatable kernel accepts).
func placeCrashKernel(alloc *segment.Allocator, im *bzimage.Image, in *Inputs) (segment.Range, error) {
	req := segment.Request{Name: "kernel", Size: im.MemSize(), Align: uint64(im.KernelAlignment), BottomUp: true}
	r, err := alloc.Place(req)
	if err == nil {
		return r, nil
	}
	if im.MinAlignment > 0 && im.MinAlignment < 32 {
		req.Align = 1 << im.MinAlignment
		if r, err2 := alloc.Place(req); err2 == nil {
			return r, nil
		}
	}
	return segment.Range{}, fmt.Errorf("%w: kernel %s needs %#x bytes aligned to %#x, the free crash memory is %s", ErrCrashNoFit, in.KernelPath, im.MemSize(), im.KernelAlignment, describeFree(alloc))
}

// describeFree names the free ranges of alloc, for a "does not fit" error.
func describeFree(alloc *segment.Allocator) string {
	free := alloc.Free()
	if len(free) == 0 {
		return "none"
	}
	s := ""
	for i, r := range free {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%v (%d MiB)", r, r.Size()>>20)
	}
	return s
}

// BuildCrash makes a kexec_load crash plan: kernel, initrd, ELF core
// header, boot params (with the crash e820 map and elfcorehdr= on the
// command line) and trampoline, all inside the crash regions.
func BuildCrash(in *Inputs, c *Crash) (*Plan, error) {
	if in.Arch != ArchAMD64 && in.Arch != "" {
		return nil, fmt.Errorf("%w: crash kernels: architecture %q (amd64 only)", ErrInput, in.Arch)
	}
	if in.PageSize == 0 {
		in.PageSize = 4096
	}
	if err := checkCrashFacts(c, true); err != nil {
		return nil, err
	}
	im, err := crashKernel(in)
	if err != nil {
		return nil, err
	}
	mem, err := in.Memory.Normalize()
	if err != nil {
		return nil, err
	}
	ram := mem.RAM()
	for _, r := range c.Regions {
		inside := false
		for _, m := range ram {
			if m.Contains(r) {
				inside = true
			}
		}
		if !inside {
			return nil, fmt.Errorf("%w: crash region %v is not inside System RAM", segment.ErrBadMap, r)
		}
	}
	alloc, err := crashAllocator(c, in.PageSize)
	if err != nil {
		return nil, err
	}
	p := &Plan{Arch: ArchAMD64, PageSize: in.PageSize, Syscall: SyscallKexecLoad,
		Kernel: Input{Path: in.KernelPath, Size: uint64(len(in.Kernel)), SHA256: in.kernelDigest()}}

	// 1. The kernel, low in the region.
	kr, err := placeCrashKernel(alloc, im, in)
	if err != nil {
		return nil, err
	}
	p.KernelAddr = kr.Start
	p.Segments = append(p.Segments, newSegment("kernel", kr, im.ProtectedMode))

	// 2. The ELF core header: all RAM but the low 1 MiB and the crash
	//    regions.
	lowMiB := segment.Range{Start: 0, End: 1 * mib}
	dumped := segment.Subtract(ram, append([]segment.Range{lowMiB}, c.Regions...))
	po := c.PageOffset
	if po == 0 {
		po = DefaultPageOffset
		p.Warnings = append(p.Warnings, fmt.Sprintf("the direct map's base is unknown (/proc/kcore unreadable): the ELF core header assumes %#x, right only without KASLR", uint64(DefaultPageOffset)))
	}
	hdr := &elfcore.Header{Machine: elfcore.MachineX86, CPUNotes: c.CPUNotes, VMCoreInfo: c.VMCoreInfo,
		KernelText: c.KernelText, PageOffset: po, RAM: dumped}
	hbuf, err := elfcore.Build(hdr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCrashFacts, err)
	}
	hr, err := alloc.Place(segment.Request{Name: "elfcorehdr", Size: uint64(len(hbuf)), Max: x86Below4G})
	if err != nil {
		if hr, err = alloc.Place(segment.Request{Name: "elfcorehdr", Size: uint64(len(hbuf))}); err != nil {
			return nil, fmt.Errorf("%w: ELF core header: %w", ErrCrashNoFit, err)
		}
	}
	p.Segments = append(p.Segments, newSegment("elfcorehdr", hr, hbuf))

	// 3. The initrd, as high as the kernel accepts.
	var initrdR segment.Range
	if in.Initrd != nil {
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", ErrInput, in.InitrdPath)
		}
		initrdR, err = alloc.Place(segment.Request{Name: "initrd", Size: uint64(len(in.Initrd)), Max: im.InitrdMax()})
		if err != nil {
			return nil, fmt.Errorf("%w: initrd %s (%d bytes): %w", ErrCrashNoFit, in.InitrdPath, len(in.Initrd), err)
		}
		p.Initrd = &Input{Path: in.InitrdPath, Size: uint64(len(in.Initrd)), SHA256: in.initrdDigest()}
		p.Segments = append(p.Segments, newSegmentDigest("initrd", initrdR, in.Initrd, p.Initrd.SHA256))
	}

	// 4. The crash kernel's memory map and command line.
	e820 := CrashMemmap(mem, c.Regions, hr)
	p.Cmdline = crashCmdline(in.Cmdline, hr.Start)
	if err := im.CheckCmdline(p.Cmdline); err != nil {
		return nil, fmt.Errorf("command line with elfcorehdr=: %w", err)
	}
	rsdp := in.ACPIRSDP
	if rsdp == 0 && in.EFI != nil && in.EFI.EFI {
		rsdp = in.EFI.Systab.RSDP()
		p.Warnings = append(p.Warnings, "the crash kernel boots without EFI runtime services (as kexec-tools without --pass-memmap); ACPI is found through boot_params.acpi_rsdp_addr")
	}
	var setup []bzimage.SetupData
	if len(in.RNGSeed) > 0 {
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupRNGSeed, Data: in.RNGSeed})
	}
	// A given device tree goes to the crash kernel as to any other (no
	// IMA hand-over: a stale pointer in it is dropped).
	if len(in.DTB) > 0 {
		dtb, err := x86DTB(in.DTB, nil)
		if err != nil {
			return nil, fmt.Errorf("device tree: %w", err)
		}
		setup = append(setup, bzimage.SetupData{Type: bzimage.SetupDTB, Data: dtb})
	}
	params := &bzimage.Params{E820: e820, Cmdline: p.Cmdline, ACPIRSDP: rsdp, SetupData: setup}
	if in.Initrd != nil {
		params.InitrdAddr, params.InitrdSize = initrdR.Start, uint64(len(in.Initrd))
	}
	psize, err := bzimage.ParamsSize(params)
	if err != nil {
		return nil, err
	}
	pr, err := alloc.Place(segment.Request{Name: "boot_params", Size: psize, Min: x86LowestBuffer, Max: x86Below4G})
	if err != nil {
		return nil, fmt.Errorf("%w: boot params below 4 GiB: %w", ErrCrashNoFit, err)
	}
	pbuf, nodes, err := bzimage.BuildParams(im, pr.Start, params)
	if err != nil {
		return nil, err
	}
	p.Segments = append(p.Segments, newSegment("boot_params", pr, pbuf))
	p.BootParams = &BootParams{Addr: pr.Start, CmdlineAddr: pr.Start + bzimage.BootParamsSize, E820Entries: len(e820)}
	if im.Version >= 0x020e {
		p.BootParams.ACPIRSDP = rsdp
	}
	for _, n := range nodes {
		p.BootParams.SetupData = append(p.BootParams.SetupData, SetupData{Type: n.Type, Addr: n.Addr, Len: n.Len})
	}

	// 5. The trampoline.
	tr, err := alloc.Place(segment.Request{Name: "trampoline", Size: in.PageSize, Min: x86LowestBuffer, Max: x86Below4G})
	if err != nil {
		return nil, fmt.Errorf("%w: trampoline below 4 GiB: %w", ErrCrashNoFit, err)
	}
	p.Segments = append(p.Segments, newSegment("trampoline", tr, bzimage.Trampoline(tr.Start, pr.Start, p.KernelAddr+bzimage.Entry64Offset)))
	p.Entry = tr.Start

	p.Crash = &CrashPlan{Regions: c.Regions, ElfCoreHdr: hr.Start, ElfCoreHdrSize: uint64(len(hbuf)),
		CPUNotes: len(c.CPUNotes), PageOffset: po, Dumped: dumped, Memmap: e820}
	if err := p.finish(c.Regions); err != nil {
		return nil, err
	}
	return p, nil
}

// crashCmdline appends elfcorehdr= (the header's physical address) to the
// user's command line, replacing one the user gave.
func crashCmdline(cmdline string, hdr uint64) string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, "elfcorehdr=") {
			out = append(out, f)
		}
	}
	return strings.Join(append(out, fmt.Sprintf("elfcorehdr=%#x", hdr)), " ")
}

// CrashMemmap is the crash kernel's e820 map: the RAM of the low 1 MiB,
// the ACPI, NVS and reserved ranges of mem, and the crash regions less
// the ELF core header as RAM.
func CrashMemmap(mem segment.Map, regions []segment.Range, hdr segment.Range) segment.Map {
	var out segment.Map
	for _, r := range segment.Intersect(mem.RAM(), segment.Range{Start: 0, End: 1 * mib}) {
		out = append(out, segment.Region{Range: r, Type: segment.TypeRAM})
	}
	for _, r := range mem {
		switch r.Type {
		case segment.TypeACPI, segment.TypeNVS, segment.TypeReserved, segment.TypePMEM, segment.TypePRAM:
			out = append(out, r)
		}
	}
	for _, r := range segment.Subtract(regions, []segment.Range{hdr}) {
		out = append(out, segment.Region{Range: r, Type: segment.TypeRAM})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}
