// Package elfcore builds the ELF core header a crash kernel reads through
// elfcorehdr=: the description of the crashed kernel's memory that
// /proc/vmcore serves. It is what the kernel builds itself for
// kexec_file_load (crash_prepare_elf64_headers) and what a kexec_load
// loader must build: an ELF64 ET_CORE header, one PT_NOTE per CPU pointing
// at that CPU's crash_notes buffer (the registers saved at the panic), one
// PT_NOTE for the VMCOREINFO note, optionally a PT_LOAD for the kernel text
// mapping, and one PT_LOAD per range of RAM to dump.
//
// Invariants:
//   - Pure: everything comes from the values handed in; the host facts
//     (note addresses, page offset, RAM) are read elsewhere.
//   - Every address and size is a uint64 and every sum is checked for
//     overflow; a header never describes a range that wraps or a physical
//     range ending above MaxPhysAddr (p_offset is signed to its readers).
//   - The text parsers (the sysfs crash_notes and vmcoreinfo files) bound
//     their input and never panic.
//   - The header is little-endian ELF64 (x86-64 and arm64 crash kernels
//     both read that); PT_LOAD p_offset equals p_paddr, as the crash
//     kernel's vmcore code expects of a header made before the panic.
//
// It is written by hand because the standard library's debug/elf reads
// ELF but does not write it, and the header is a few hundred bytes of
// fixed layout.
package elfcore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gokexec/gokexec/segment"
)

// ELF constants used here (the values of debug/elf's; repeated so that
// the layout code reads on its own).
const (
	HeaderSize  = 64 // sizeof(Elf64_Ehdr)
	PhdrSize    = 56 // sizeof(Elf64_Phdr)
	MachineX86  = 62 // EM_X86_64
	MachineARM  = 183
	typeCore    = 4 // ET_CORE
	ptLoad      = 1
	ptNote      = 4
	flagsRWX    = 7
	maxPhdrs    = 0xfffe // below PN_XNUM: no extended numbering
	maxTextSize = 64     // sysfs values are one short line
)

// Errors; match with errors.Is.
var (
	ErrBadHeader = errors.New("bad ELF core header input")
	ErrBadSysfs  = errors.New("bad crash note file")
)

// Note is a PT_NOTE: a note buffer in the crashed kernel's memory.
type Note struct {
	Addr uint64 `json:"addr"`
	Size uint64 `json:"size"`
}

// Load is a PT_LOAD with an explicit virtual address (the kernel text
// mapping).
type Load struct {
	Phys uint64 `json:"phys"`
	Virt uint64 `json:"virt"`
	Size uint64 `json:"size"`
}

// Header is what an ELF core header describes.
type Header struct {
	Machine uint16 // MachineX86 or MachineARM
	// CPUNotes are the per-CPU crash_notes buffers, in CPU order.
	CPUNotes []Note
	// VMCoreInfo is the VMCOREINFO note (/sys/kernel/vmcoreinfo).
	VMCoreInfo Note
	// KernelText, when set, adds a PT_LOAD for the kernel image's own
	// mapping (tools such as gdb and crash look for it).
	KernelText *Load
	// PageOffset is the virtual address of physical 0 in the kernel's
	// direct map: each RAM PT_LOAD gets p_vaddr = PageOffset + start.
	// makedumpfile derives the direct map's base from these.
	PageOffset uint64
	// RAM are the ranges to dump, one PT_LOAD each.
	RAM []segment.Range
}

// Phdrs returns how many program headers h needs.
func (h *Header) Phdrs() int {
	n := len(h.CPUNotes) + 1 + len(h.RAM)
	if h.KernelText != nil {
		n++
	}
	return n
}

// Size is the length of the header Build produces.
func (h *Header) Size() uint64 { return HeaderSize + uint64(h.Phdrs())*PhdrSize }

// Build encodes h: the ELF header, then the PT_NOTEs (CPUs, then
// VMCOREINFO), the kernel text PT_LOAD if any, and the RAM PT_LOADs.
func Build(h *Header) ([]byte, error) {
	if h.Machine != MachineX86 && h.Machine != MachineARM {
		return nil, fmt.Errorf("%w: machine %d", ErrBadHeader, h.Machine)
	}
	if len(h.CPUNotes) == 0 {
		return nil, fmt.Errorf("%w: no CPU crash notes", ErrBadHeader)
	}
	if h.VMCoreInfo.Addr == 0 || h.VMCoreInfo.Size == 0 {
		return nil, fmt.Errorf("%w: no VMCOREINFO note", ErrBadHeader)
	}
	if len(h.RAM) == 0 {
		return nil, fmt.Errorf("%w: no RAM to dump", ErrBadHeader)
	}
	if h.Phdrs() > maxPhdrs {
		return nil, fmt.Errorf("%w: %d program headers, at most %d", ErrBadHeader, h.Phdrs(), maxPhdrs)
	}
	le := binary.LittleEndian
	b := make([]byte, HeaderSize, h.Size())
	copy(b, "\x7fELF")
	b[4] = 2 // ELFCLASS64
	b[5] = 1 // ELFDATA2LSB
	b[6] = 1 // EV_CURRENT
	le.PutUint16(b[16:], typeCore)
	le.PutUint16(b[18:], h.Machine)
	le.PutUint32(b[20:], 1) // e_version
	le.PutUint64(b[32:], HeaderSize)
	le.PutUint16(b[52:], HeaderSize)
	le.PutUint16(b[54:], PhdrSize)
	le.PutUint16(b[56:], uint16(h.Phdrs()))

	phdr := func(typ uint32, flags uint32, off, vaddr, paddr, size uint64) {
		var p [PhdrSize]byte
		le.PutUint32(p[0:], typ)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[24:], paddr)
		le.PutUint64(p[32:], size)
		le.PutUint64(p[40:], size)
		b = append(b, p[:]...)
	}
	notes := append(append([]Note(nil), h.CPUNotes...), h.VMCoreInfo)
	for i, n := range notes {
		if n.Addr == 0 || !physRange(n.Addr, n.Size) {
			return nil, fmt.Errorf("%w: note %d at %#x size %#x", ErrBadHeader, i, n.Addr, n.Size)
		}
		phdr(ptNote, 0, n.Addr, 0, n.Addr, n.Size)
	}
	if t := h.KernelText; t != nil {
		if !physRange(t.Phys, t.Size) || t.Virt+t.Size < t.Virt {
			return nil, fmt.Errorf("%w: kernel text %#x (virtual %#x) size %#x", ErrBadHeader, t.Phys, t.Virt, t.Size)
		}
		phdr(ptLoad, flagsRWX, t.Phys, t.Virt, t.Phys, t.Size)
	}
	for _, r := range h.RAM {
		if r.End <= r.Start || r.End > MaxPhysAddr {
			return nil, fmt.Errorf("%w: RAM range %v is empty or above the %d-bit physical address space", ErrBadHeader, r, 52)
		}
		v := h.PageOffset + r.Start
		if v < h.PageOffset || v+r.Size() < v {
			return nil, fmt.Errorf("%w: RAM range %v at page offset %#x wraps", segment.ErrOverflow, r, h.PageOffset)
		}
		phdr(ptLoad, flagsRWX, r.Start, v, r.Start, r.Size())
	}
	return b, nil
}

// hexField parses one sysfs value: hex digits with or without 0x, one
// line, within maxTextSize bytes.
func hexField(what, s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" || len(t) > maxTextSize {
		return 0, fmt.Errorf("%w: %s: %q", ErrBadSysfs, what, clip(s))
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(t, "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %q is not hex", ErrBadSysfs, what, clip(s))
	}
	return v, nil
}

func clip(s string) string {
	if len(s) > maxTextSize {
		return s[:maxTextSize] + "..."
	}
	return s
}

// MaxPhysAddr bounds every physical range a header describes: neither
// x86-64 (five-level paging) nor arm64 (LPA) addresses more than 52 bits,
// and /proc/vmcore reads p_offset as a signed file offset.
const MaxPhysAddr = 1 << 52

// physRange reports whether [addr, addr+size) is a non-empty range of
// physical memory that ends at or below MaxPhysAddr.
func physRange(addr, size uint64) bool {
	return size != 0 && addr+size > addr && addr+size <= MaxPhysAddr
}

// DefaultCrashNotesSize is the size given a CPU's note buffer when the
// kernel publishes no crash_notes_size (kernels before 4.1): larger than
// any note_buf_t, which is harmless because the crash kernel walks the
// notes only up to the empty note that ends them.
const DefaultCrashNotesSize = 1024

// ParseCrashNotes reads /sys/devices/system/cpu/cpuN/crash_notes (the
// physical address, hex) and crash_notes_size (decimal; "" when the file
// is absent).
func ParseCrashNotes(addr, size string) (Note, error) {
	a, err := hexField("crash_notes", addr)
	if err != nil {
		return Note{}, err
	}
	if a == 0 {
		return Note{}, fmt.Errorf("%w: crash_notes at address 0 (read it as root)", ErrBadSysfs)
	}
	n := Note{Addr: a, Size: DefaultCrashNotesSize}
	if strings.TrimSpace(size) != "" {
		t := strings.TrimSpace(size)
		if len(t) > maxTextSize {
			return Note{}, fmt.Errorf("%w: crash_notes_size: %q", ErrBadSysfs, clip(size))
		}
		v, err := strconv.ParseUint(t, 10, 64)
		if err != nil || v == 0 || v > 1<<20 {
			return Note{}, fmt.Errorf("%w: crash_notes_size: %q", ErrBadSysfs, clip(size))
		}
		n.Size = v
	}
	if !physRange(n.Addr, n.Size) {
		return Note{}, fmt.Errorf("%w: crash_notes at %#x size %#x is not a physical range", ErrBadSysfs, n.Addr, n.Size)
	}
	return n, nil
}

// ParseVMCoreInfo reads /sys/kernel/vmcoreinfo: "ADDR SIZE", both hex.
func ParseVMCoreInfo(s string) (Note, error) {
	f := strings.Fields(s)
	if len(s) > maxTextSize || len(f) != 2 {
		return Note{}, fmt.Errorf("%w: vmcoreinfo: %q is not \"address size\"", ErrBadSysfs, clip(s))
	}
	a, err := hexField("vmcoreinfo address", f[0])
	if err != nil {
		return Note{}, err
	}
	n, err := hexField("vmcoreinfo size", f[1])
	if err != nil {
		return Note{}, err
	}
	if a == 0 || n > 1<<20 || !physRange(a, n) {
		return Note{}, fmt.Errorf("%w: vmcoreinfo at %#x size %#x (read it as root)", ErrBadSysfs, a, n)
	}
	return Note{Addr: a, Size: n}, nil
}
