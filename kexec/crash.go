package kexec

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/segment"
)

// OnCrash is kexec_load's KEXEC_ON_CRASH flag: load the image the kernel
// boots when it panics.
const OnCrash = 0x1

// Paths of the crash dump facts.
const (
	SysCPU          = "/sys/devices/system/cpu"
	SysVMCoreInfo   = "/sys/kernel/vmcoreinfo"
	SysCrashLoaded  = "/sys/kernel/kexec_crash_loaded"
	ProcKcore       = "/proc/kcore"
	kernelTextFloor = 0xffffffff80000000 // x86-64 __START_KERNEL_map
	maxCPUs         = 8192
)

// CrashFacts is what the running kernel tells about a crash dump of
// itself.
type CrashFacts struct {
	// Regions are the "Crash kernel" ranges of /proc/iomem.
	Regions []segment.Range
	// Memory is /proc/iomem's top-level map (what the ELF core header
	// dumps, and what the crash e820 keeps of ACPI and reserved ranges).
	Memory segment.Map
	// CPUNotes, VMCoreInfo: the note buffers, from sysfs. Empty when
	// they were not asked for or not found.
	CPUNotes   []elfcore.Note
	VMCoreInfo elfcore.Note
	// PageOffset and KernelText come from /proc/kcore's program headers;
	// zero and nil when it could not be read (KcoreErr says why).
	PageOffset uint64
	KernelText *elfcore.Load
	KcoreErr   string
}

// ReadCrashFacts reads the crash facts of the tree at root ("": this
// system). iomem, when not empty, names the /proc/iomem file to use
// instead of root's. notes asks for the CPU notes, VMCOREINFO and
// /proc/kcore too (a kexec_load crash plan needs them; kexec_file_load
// builds its header in the kernel).
func ReadCrashFacts(root, iomem string, notes bool) (*CrashFacts, error) {
	return readCrashFactsIn(sysFiles{root}, iomem, notes)
}

func readCrashFactsIn(fl files, iomem string, notes bool) (*CrashFacts, error) {
	var b []byte
	var err error
	if iomem == "" {
		iomem = fl.name("proc/iomem")
		b, err = fl.readFile("memory map", "proc/iomem", MaxMemmapBytes)
	} else {
		b, err = ReadInput("memory map", iomem, MaxMemmapBytes)
	}
	if err != nil {
		return nil, err
	}
	f := &CrashFacts{}
	if f.Regions, err = segment.ParseCrashRegions(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("%s: %w", iomem, err)
	}
	if f.Memory, err = segment.ParseIomem(bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("memory map %s: %w", iomem, err)
	}
	if !notes {
		return f, nil
	}
	if f.CPUNotes, err = readCPUNotes(fl); err != nil {
		return nil, err
	}
	vb, err := fl.readFile("crash dump", rel(SysVMCoreInfo), MaxSmallBytes)
	if err != nil {
		return nil, fmt.Errorf("crash dump: %w", err)
	}
	if f.VMCoreInfo, err = elfcore.ParseVMCoreInfo(string(vb)); err != nil {
		return nil, fmt.Errorf("%s: %w", SysVMCoreInfo, err)
	}
	f.PageOffset, f.KernelText, err = readKcoreIn(fl)
	if err != nil {
		f.KcoreErr = err.Error()
	}
	return f, nil
}

// readCPUNotes reads cpuN/crash_notes (and crash_notes_size) for every
// CPU directory that has one, in CPU order.
func readCPUNotes(fl files) ([]elfcore.Note, error) {
	dir := fl.name(rel(SysCPU))
	ents, err := fs.ReadDir(fl.fsys(MaxSmallBytes), rel(SysCPU))
	if err != nil {
		return nil, fmt.Errorf("crash dump: %w", err)
	}
	var cpus []int
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "cpu")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < maxCPUs {
			cpus = append(cpus, i)
		}
	}
	sort.Ints(cpus)
	var out []elfcore.Note
	for _, c := range cpus {
		cpu := path.Join(rel(SysCPU), "cpu"+strconv.Itoa(c))
		base := fl.name(cpu)
		a, err := fl.readFile("crash dump", path.Join(cpu, "crash_notes"), MaxSmallBytes)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("crash dump: %w", err)
		}
		s, err := fl.readFile("crash dump", path.Join(cpu, "crash_notes_size"), MaxSmallBytes)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("crash dump: %w", err)
		}
		n, err := elfcore.ParseCrashNotes(string(a), string(s))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", base, err)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("crash dump: no cpuN/crash_notes under %s (a kernel without CONFIG_CRASH_DUMP?)", dir)
	}
	return out, nil
}

// readKcore takes the direct map's base and the kernel text mapping from
// /proc/kcore's program headers (only the headers are read): a RAM
// PT_LOAD has p_vaddr = PAGE_OFFSET + p_paddr, the kernel text one a
// virtual address in the kernel image map. Reading it needs root; under
// lockdown (confidentiality) it is refused.
func readKcore(path string) (uint64, *elfcore.Load, error) {
	return readKcoreIn(sysFiles{filepath.Dir(path)}, filepath.Base(path))
}

func readKcoreIn(fl files, relPath ...string) (uint64, *elfcore.Load, error) {
	p := rel(ProcKcore)
	if len(relPath) > 0 {
		p = relPath[0]
	}
	path := fl.name(p)
	f, err := fl.open("kcore", p)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	if ef.Type != elf.ET_CORE || len(ef.Progs) > 1<<16 {
		return 0, nil, fmt.Errorf("%s: not an ELF core (%v, %d headers)", path, ef.Type, len(ef.Progs))
	}
	var po uint64
	var text *elfcore.Load
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD || p.Paddr == ^uint64(0) || p.Memsz == 0 {
			continue
		}
		switch {
		case p.Vaddr >= kernelTextFloor && text == nil:
			text = &elfcore.Load{Phys: p.Paddr, Virt: p.Vaddr, Size: p.Memsz}
		case p.Vaddr < kernelTextFloor && p.Vaddr >= p.Paddr && po == 0:
			po = p.Vaddr - p.Paddr
		}
	}
	if po == 0 {
		return 0, text, fmt.Errorf("%s: no RAM program header", path)
	}
	return po, text, nil
}

// CrashLoaded reports /sys/kernel/kexec_crash_loaded.
func CrashLoaded() (bool, error) {
	b, err := readSmall(SysCrashLoaded)
	if err != nil {
		return false, fmt.Errorf("kexec: %w", err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// UnloadFileCrash unloads a crash image loaded with kexec_file_load.
func UnloadFileCrash() error {
	err := unix.KexecFileLoad(-1, -1, "", FileUnload|FileOnCrash)
	if errno, ok := err.(unix.Errno); ok {
		return Explain("kexec_file_load (unload crash)", errno, Lockdown(), "")
	}
	return err
}

// maxKcoreHeaders bounds the program headers KcoreHeaders copies.
const maxKcoreHeaders = 1 << 20

// KcoreHeaders returns the ELF header and program headers of /proc/kcore
// at path (no memory contents): what readKcore needs, small enough for
// capture-host to keep.
func KcoreHeaders(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Type != elf.ET_CORE {
		return nil, fmt.Errorf("%s: not an ELF64 core", path)
	}
	var eh [elfcore.HeaderSize]byte
	if _, err := f.ReadAt(eh[:], 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	bo := ef.ByteOrder
	phoff, phentsize, phnum := bo.Uint64(eh[32:]), uint64(bo.Uint16(eh[54:])), uint64(bo.Uint16(eh[56:]))
	end := phoff + phentsize*phnum
	if phoff < elfcore.HeaderSize || end < phoff || end > maxKcoreHeaders {
		return nil, fmt.Errorf("%s: program headers at %#x..%#x", path, phoff, end)
	}
	b := make([]byte, end)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// rel is an absolute system path relative to a tree's root.
func rel(abs string) string { return strings.TrimPrefix(abs, "/") }
