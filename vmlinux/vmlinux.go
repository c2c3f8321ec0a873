// Package vmlinux reads Linux kernels in ELF form (the vmlinux a kernel
// build links, which kdump-tools and some boot loaders pass to kexec) for
// x86_64 and arm64, with the standard library's debug/elf.
//
// What a loader does with one (facts from kexec-tools' kexec/arch/*/kexec-elf-*.c
// and the kernels' linker scripts):
//
//   - x86_64 (kexec-tools "elf-x86_64"): every PT_LOAD segment is loaded at
//     its physical address p_paddr (file bytes p_filesz, zero-filled to
//     p_memsz), and the kernel is entered at e_entry — a physical address,
//     the 64-bit entry startup_64 — with %rsi pointing at a boot_params page
//     built from zero. No decompressor runs, so the kernel runs where it was
//     linked (no KASLR).
//   - arm64: the vmlinux is the Image before `objcopy -O binary`; Image
//     gives the flat bytes the build's objcopy writes (the allocated,
//     non-empty sections, placed at their
//     load addresses relative to the first one, gaps zero-filled), which
//     begin with the Image header and are loaded like any Image. Only the
//     sections named .note, .note.gnu.build-id and .comment are left out
//     (objcopy -R takes exact names: the kernel's .notes stays).
//
// Invariants: pure (bytes in, values out; no files, no host state); never
// panics on input (debug/elf's own errors are wrapped); every size is
// bounded before anything is allocated: at most MaxSegments PT_LOAD
// segments, MaxLoadSize bytes of memory image, segments inside the file
// and not overlapping; errors wrap ErrNotVmlinux, ErrMachine or ErrBad,
// which errors.Is matches.
package vmlinux

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
)

// Limits.
const (
	MaxSegments = 64
	// MaxLoadSize bounds the memory image (from the lowest to the highest
	// loaded byte). A distribution kernel's is under 64 MiB.
	MaxLoadSize = 512 << 20
)

// Errors.
var (
	ErrNotVmlinux = errors.New("vmlinux: not an ELF kernel")
	ErrMachine    = errors.New("vmlinux: ELF kernel for another machine")
	ErrBad        = errors.New("vmlinux: malformed ELF kernel")
)

// Machine names what the kernel was built for.
type Machine string

// Machines Parse accepts.
const (
	X86_64 Machine = "x86_64"
	ARM64  Machine = "arm64"
)

// Segment is one PT_LOAD segment.
type Segment struct {
	Phys    uint64 // p_paddr
	Virt    uint64 // p_vaddr
	Data    []byte // p_filesz bytes (aliases the input)
	MemSize uint64 // p_memsz >= len(Data)
}

// Kernel is a parsed vmlinux.
type Kernel struct {
	Machine  Machine
	Entry    uint64    // e_entry
	Segments []Segment // by physical address
	raw      []byte
	file     *elf.File
}

// IsELF reports whether b starts with the ELF magic.
func IsELF(b []byte) bool { return len(b) >= 4 && string(b[:4]) == elf.ELFMAG }

// Parse parses an ELF kernel for x86_64 or arm64 (64-bit, little endian,
// an executable).
func Parse(b []byte) (*Kernel, error) {
	if !IsELF(b) {
		return nil, fmt.Errorf("%w: no ELF magic", ErrNotVmlinux)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBad, err)
	}
	k := &Kernel{Entry: f.Entry, raw: b, file: f}
	switch {
	case f.Machine == elf.EM_X86_64:
		k.Machine = X86_64
	case f.Machine == elf.EM_AARCH64:
		k.Machine = ARM64
	default:
		return nil, fmt.Errorf("%w: e_machine %v (want EM_X86_64 or EM_AARCH64)", ErrMachine, f.Machine)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%w: %v %v, want a 64-bit little-endian kernel", ErrMachine, f.Class, f.Data)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%w: e_type %v, want an executable", ErrNotVmlinux, f.Type)
	}
	var total uint64
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if len(k.Segments) == MaxSegments {
			return nil, fmt.Errorf("%w: more than %d PT_LOAD segments", ErrBad, MaxSegments)
		}
		if p.Filesz > p.Memsz {
			return nil, fmt.Errorf("%w: PT_LOAD at %#x has p_filesz %#x > p_memsz %#x", ErrBad, p.Paddr, p.Filesz, p.Memsz)
		}
		if p.Memsz > MaxLoadSize {
			return nil, fmt.Errorf("%w: PT_LOAD at %#x is %#x bytes (limit %#x)", ErrBad, p.Paddr, p.Memsz, MaxLoadSize)
		}
		total += p.Memsz
		if total > MaxLoadSize {
			return nil, fmt.Errorf("%w: PT_LOAD segments total more than %#x bytes", ErrBad, MaxLoadSize)
		}
		end := p.Off + p.Filesz
		if end < p.Off || end > uint64(len(b)) {
			return nil, fmt.Errorf("%w: PT_LOAD at %#x: file bytes %#x+%#x lie beyond the %#x-byte file (truncated?)", ErrBad, p.Paddr, p.Off, p.Filesz, len(b))
		}
		if p.Paddr+p.Memsz < p.Paddr || p.Vaddr+p.Memsz < p.Vaddr {
			return nil, fmt.Errorf("%w: PT_LOAD at %#x wraps around", ErrBad, p.Paddr)
		}
		k.Segments = append(k.Segments, Segment{Phys: p.Paddr, Virt: p.Vaddr, Data: b[p.Off:end:end], MemSize: p.Memsz})
	}
	if len(k.Segments) == 0 {
		return nil, fmt.Errorf("%w: no PT_LOAD segment", ErrNotVmlinux)
	}
	// A Linux kernel links its text in the upper (kernel) half of the
	// address space on both architectures (x86_64 0xffffffff81000000,
	// arm64 0xffff8000...); a user-space executable — any static binary
	// lying around — never does, and must not be loaded as a kernel.
	kernelSpace := false
	for _, s := range k.Segments {
		kernelSpace = kernelSpace || s.Virt >= 1<<63
	}
	if !kernelSpace {
		return nil, fmt.Errorf("%w: no PT_LOAD segment is linked at a kernel-space address (a user-space executable?)", ErrNotVmlinux)
	}
	sort.Slice(k.Segments, func(i, j int) bool { return k.Segments[i].Phys < k.Segments[j].Phys })
	for i := 1; i < len(k.Segments); i++ {
		a, s := k.Segments[i-1], k.Segments[i]
		if a.Phys+a.MemSize > s.Phys {
			return nil, fmt.Errorf("%w: PT_LOAD segments at %#x and %#x overlap", ErrBad, a.Phys, s.Phys)
		}
	}
	if span := k.Segments[len(k.Segments)-1].Phys + k.Segments[len(k.Segments)-1].MemSize - k.Segments[0].Phys; span > MaxLoadSize {
		return nil, fmt.Errorf("%w: segments span %#x bytes (limit %#x)", ErrBad, span, MaxLoadSize)
	}
	if k.Machine == X86_64 {
		if !k.contains(k.Entry) {
			return nil, fmt.Errorf("%w: entry %#x lies in no PT_LOAD segment's physical range", ErrBad, k.Entry)
		}
	}
	return k, nil
}

// contains reports whether phys lies inside a loaded segment.
func (k *Kernel) contains(phys uint64) bool {
	for _, s := range k.Segments {
		if phys >= s.Phys && phys-s.Phys < s.MemSize {
			return true
		}
	}
	return false
}

// Image returns an arm64 vmlinux's flat Image: what the kernel build's
// `objcopy -O binary -R .note -R .note.gnu.build-id -R .comment -S` writes
// (arch/arm64/boot/Makefile): the allocated sections that have file bytes,
// except .note, .note.gnu.build-id and .comment, each at its load address minus the lowest one, the gaps
// zero-filled. It is the arm64 Image, header first, for arm64.ParseImage.
func (k *Kernel) Image() ([]byte, error) {
	if k.Machine != ARM64 {
		return nil, fmt.Errorf("%w: %s kernel has no arm64 Image", ErrMachine, k.Machine)
	}
	type piece struct {
		lma  uint64
		data []byte
	}
	var ps []piece
	for _, s := range k.file.Sections {
		// objcopy's -R takes exact names: the kernel's own ".notes"
		// section stays in the Image.
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Type == elf.SHT_NULL || s.Size == 0 ||
			s.Name == ".note" || s.Name == ".note.gnu.build-id" || s.Name == ".comment" {
			continue
		}
		lma, ok := k.lma(s)
		if !ok {
			return nil, fmt.Errorf("%w: section %s at file offset %#x lies in no PT_LOAD segment", ErrBad, s.Name, s.Offset)
		}
		end := s.Offset + s.Size
		if end < s.Offset || end > uint64(len(k.raw)) {
			return nil, fmt.Errorf("%w: section %s lies beyond the file", ErrBad, s.Name)
		}
		ps = append(ps, piece{lma, k.raw[s.Offset:end]})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: no loadable section", ErrBad)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].lma < ps[j].lma })
	base := ps[0].lma
	var size uint64
	for _, p := range ps {
		if e := p.lma - base + uint64(len(p.data)); e > size {
			size = e
		}
	}
	if size > MaxLoadSize {
		return nil, fmt.Errorf("%w: the Image would be %#x bytes (limit %#x)", ErrBad, size, MaxLoadSize)
	}
	out := make([]byte, size)
	for _, p := range ps {
		copy(out[p.lma-base:], p.data)
	}
	return out, nil
}

// lma is a section's load address: its place in the PT_LOAD segment that
// holds its file bytes.
func (k *Kernel) lma(s *elf.Section) (uint64, bool) {
	for _, p := range k.file.Progs {
		if p.Type == elf.PT_LOAD && s.Offset >= p.Off && s.Offset+s.Size <= p.Off+p.Filesz && s.Offset+s.Size >= s.Offset {
			return p.Paddr + (s.Offset - p.Off), true
		}
	}
	return 0, false
}
