// Package efi reads what a running x86 Linux kernel publishes about the UEFI
// firmware it booted from, in the form a kexec loader needs to hand that
// firmware state to the next kernel: the efi_info block and secure_boot byte
// of the kernel's own boot_params (/sys/kernel/boot_params/data), the
// physical addresses of the firmware vendor string, runtime services table
// and configuration table array (/sys/firmware/efi/{fw_vendor,runtime,
// config_table}), the table pointers in /sys/firmware/efi/systab, and the
// runtime memory map (/sys/firmware/efi/runtime-map/N/*), which records the
// virtual addresses the firmware's runtime regions were mapped at.
//
// Invariants:
//   - Pure: every function works on bytes or on an fs.FS handed in (the
//     real root, a captured host tree, or a test map). Nothing here opens a
//     path of its own, calls the kernel, or logs.
//   - Every file is read through a size cap before it is parsed, and the
//     runtime map is capped in entries; parsers take explicit little-endian
//     byte order (x86 only) and never panic on any input.
//   - Absence is not an error: a host without /sys/firmware/efi is a BIOS
//     host (ReadHost returns nil, nil); a UEFI host whose kernel lacks
//     CONFIG_EFI_RUNTIME_MAP is reported in Host.Missing so that a caller can
//     warn and boot the next kernel without EFI. Malformed contents (a
//     truncated boot_params, an unparsable number) are errors.
//
// Written by hand: these are Linux sysfs formats that no Go library parses.
package efi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Paths, relative to the root of a host tree (an fs.FS rooted at "/").
const (
	PathBootParams  = "sys/kernel/boot_params/data"
	PathEFIDir      = "sys/firmware/efi"
	PathFwVendor    = "sys/firmware/efi/fw_vendor"
	PathRuntime     = "sys/firmware/efi/runtime"
	PathConfigTable = "sys/firmware/efi/config_table"
	PathSystab      = "sys/firmware/efi/systab"
	PathRuntimeMap  = "sys/firmware/efi/runtime-map"
)

// Layout facts of struct boot_params (arch/x86/include/uapi/asm/bootparam.h).
const (
	BootParamsSize   = 4096
	OffScreenInfo    = 0x000
	ScreenInfoSize   = 0x40
	OffEFIInfo       = 0x1c0
	EFIInfoSize      = 0x20
	OffSecureBoot    = 0x1ec
	offVideoIsVGA    = 0x0f // screen_info.orig_video_isVGA
	offLFBWidth      = 0x12
	offLFBHeight     = 0x14
	offLFBDepth      = 0x16
	offLFBBase       = 0x18
	offExtLFBBase    = 0x3a
	offCapabilities  = 0x36
	capability64Base = 1 << 1 // VIDEO_CAPABILITY_64BIT_BASE
)

// Video types of screen_info.orig_video_isVGA that describe a linear
// framebuffer the next kernel can keep using (include/uapi/linux/screen_info.h).
const (
	VideoTypeVLFB = 0x23 // VESA VGA in graphic mode
	VideoTypeEFI  = 0x70 // EFI graphic mode (GOP)
)

// Loader signatures in efi_info.efi_loader_signature.
const (
	SignatureEL64 = "EL64"
	SignatureEL32 = "EL32"
)

// MemoryDescriptorVersion is EFI_MEMORY_DESCRIPTOR_VERSION, the only
// descriptor layout this package writes.
const MemoryDescriptorVersion = 1

// MemoryDescriptorSize is sizeof(efi_memory_desc_t): u32 type, u32 pad,
// u64 phys_addr, u64 virt_addr, u64 num_pages, u64 attribute. Descriptors
// rebuilt from sysfs carry no firmware padding, so this is their stride.
const MemoryDescriptorSize = 40

// Descriptor attributes (UEFI spec, EFI_MEMORY_*).
const (
	MemoryUC      = 1 << 0
	MemoryWC      = 1 << 1
	MemoryWT      = 1 << 2
	MemoryWB      = 1 << 3
	MemoryRuntime = 1 << 63
)

// ConventionalMemory is EfiConventionalMemory, free RAM.
const ConventionalMemory = 7

// Caps on what is read.
const (
	MaxRuntimeEntries = 1024    // runtime-map directories
	maxValueBytes     = 64      // one sysfs number
	maxSystabBytes    = 4 << 10 // /sys/firmware/efi/systab
	pageShift         = 12      // EFI pages are 4 KiB
)

// Errors; match with errors.Is.
var (
	ErrTruncated = errors.New("truncated")
	ErrMalformed = errors.New("malformed EFI description")
	ErrTooLarge  = errors.New("too large")
)

// Info is struct efi_info at boot_params offset 0x1c0, with the split
// 64-bit fields joined.
type Info struct {
	LoaderSignature string // "EL64" on a 64-bit EFI boot
	Systab          uint64 // physical address of the EFI system table
	MemdescSize     uint32
	MemdescVersion  uint32
	Memmap          uint64
	MemmapSize      uint32
}

// BootParams is what a kexec loader takes from the running kernel's
// boot_params.
type BootParams struct {
	EFI        Info
	SecureBoot uint8  // enum efi_secureboot_mode: 0 unset, 1 unknown, 2 disabled, 3 enabled
	ScreenInfo []byte // the 64-byte struct screen_info
}

// ParseBootParams reads a struct boot_params as /sys/kernel/boot_params/data
// publishes it. It must be the whole 4096 bytes: a short file is refused
// with ErrTruncated rather than read as zeros.
func ParseBootParams(b []byte) (*BootParams, error) {
	if len(b) < BootParamsSize {
		return nil, fmt.Errorf("boot_params: %w: %d bytes, want %d", ErrTruncated, len(b), BootParamsSize)
	}
	if len(b) > BootParamsSize {
		return nil, fmt.Errorf("boot_params: %w: %d bytes, want %d", ErrTooLarge, len(b), BootParamsSize)
	}
	le := binary.LittleEndian
	e := b[OffEFIInfo : OffEFIInfo+EFIInfoSize]
	bp := &BootParams{
		EFI: Info{
			LoaderSignature: string(e[0:4]),
			Systab:          uint64(le.Uint32(e[4:])) | uint64(le.Uint32(e[24:]))<<32,
			MemdescSize:     le.Uint32(e[8:]),
			MemdescVersion:  le.Uint32(e[12:]),
			Memmap:          uint64(le.Uint32(e[16:])) | uint64(le.Uint32(e[28:]))<<32,
			MemmapSize:      le.Uint32(e[20:]),
		},
		SecureBoot: b[OffSecureBoot],
		ScreenInfo: append([]byte(nil), b[OffScreenInfo:OffScreenInfo+ScreenInfoSize]...),
	}
	return bp, nil
}

// EFIBoot reports whether the kernel that owns these boot_params was booted
// by EFI (its loader signature says so).
func (bp *BootParams) EFIBoot() bool {
	s := bp.EFI.LoaderSignature
	return s == SignatureEL64 || s == SignatureEL32
}

// Screen summarises a screen_info that describes a linear framebuffer.
type Screen struct {
	VideoType uint8  `json:"video_type"`
	Base      uint64 `json:"lfb_base"`
	Width     uint16 `json:"lfb_width"`
	Height    uint16 `json:"lfb_height"`
	Depth     uint16 `json:"lfb_depth"`
}

// Framebuffer returns the linear framebuffer a screen_info block describes,
// or false when it describes none (text mode, no video, or a short block).
func Framebuffer(si []byte) (Screen, bool) {
	if len(si) < ScreenInfoSize {
		return Screen{}, false
	}
	le := binary.LittleEndian
	s := Screen{VideoType: si[offVideoIsVGA], Width: le.Uint16(si[offLFBWidth:]), Height: le.Uint16(si[offLFBHeight:]),
		Depth: le.Uint16(si[offLFBDepth:]), Base: uint64(le.Uint32(si[offLFBBase:]))}
	if le.Uint32(si[offCapabilities:])&capability64Base != 0 {
		s.Base |= uint64(le.Uint32(si[offExtLFBBase:])) << 32
	}
	if s.VideoType != VideoTypeVLFB && s.VideoType != VideoTypeEFI {
		return Screen{}, false
	}
	if s.Base == 0 || s.Width == 0 || s.Height == 0 {
		return Screen{}, false
	}
	return s, true
}

// Descriptor is one entry of the EFI memory map.
type Descriptor struct {
	Type      uint32 `json:"type"`
	Phys      uint64 `json:"phys_addr"`
	Virt      uint64 `json:"virt_addr"`
	Pages     uint64 `json:"num_pages"`
	Attribute uint64 `json:"attribute"`
}

// End is the first physical address after the descriptor's range, and false
// when the range overflows 64 bits.
func (d Descriptor) End() (uint64, bool) {
	if d.Pages > (^uint64(0))>>pageShift {
		return 0, false
	}
	n := d.Pages << pageShift
	if d.Phys+n < d.Phys {
		return 0, false
	}
	return d.Phys + n, true
}

// EncodeMemmap writes descriptors as an EFI memory map of
// MemoryDescriptorSize-byte, version-1 descriptors, little endian.
func EncodeMemmap(ds []Descriptor) []byte {
	b := make([]byte, 0, len(ds)*MemoryDescriptorSize)
	le := binary.LittleEndian
	for _, d := range ds {
		b = le.AppendUint32(b, d.Type)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint64(b, d.Phys)
		b = le.AppendUint64(b, d.Virt)
		b = le.AppendUint64(b, d.Pages)
		b = le.AppendUint64(b, d.Attribute)
	}
	return b
}

// DecodeMemmap is EncodeMemmap's inverse for a map of descSize-byte
// descriptors (descSize >= MemoryDescriptorSize); it is the reader for
// tests and plan checks.
func DecodeMemmap(b []byte, descSize uint32) ([]Descriptor, error) {
	if descSize < MemoryDescriptorSize || descSize > 4096 {
		return nil, fmt.Errorf("%w: descriptor size %d", ErrMalformed, descSize)
	}
	if uint64(len(b))%uint64(descSize) != 0 {
		return nil, fmt.Errorf("%w: memory map of %d bytes is not a multiple of %d", ErrMalformed, len(b), descSize)
	}
	n := len(b) / int(descSize)
	if n > MaxRuntimeEntries {
		return nil, fmt.Errorf("memory map: %w: %d descriptors", ErrTooLarge, n)
	}
	le := binary.LittleEndian
	out := make([]Descriptor, 0, n)
	for i := 0; i < n; i++ {
		d := b[i*int(descSize):]
		out = append(out, Descriptor{Type: le.Uint32(d), Phys: le.Uint64(d[8:]), Virt: le.Uint64(d[16:]), Pages: le.Uint64(d[24:]), Attribute: le.Uint64(d[32:])})
	}
	return out, nil
}

// ParseValue parses one sysfs number: "0x7f8e0f98\n", decimal also taken.
func ParseValue(b []byte) (uint64, error) {
	if len(b) > maxValueBytes {
		return 0, fmt.Errorf("%w: value of %d bytes", ErrTooLarge, len(b))
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a number", ErrMalformed, s)
	}
	return v, nil
}

// Systab is what /sys/firmware/efi/systab lists: the configuration tables
// Linux knows, as NAME=0xADDR lines. Absent tables are 0.
type Systab struct {
	ACPI20, ACPI, SMBIOS3, SMBIOS uint64
}

// ParseSystab parses /sys/firmware/efi/systab. Unknown names are ignored;
// a known name with an unparsable address is an error.
func ParseSystab(b []byte) (Systab, error) {
	var s Systab
	if len(b) > maxSystabBytes {
		return s, fmt.Errorf("systab: %w: %d bytes", ErrTooLarge, len(b))
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "ACPI20":
			dst = &s.ACPI20
		case "ACPI":
			dst = &s.ACPI
		case "SMBIOS3":
			dst = &s.SMBIOS3
		case "SMBIOS":
			dst = &s.SMBIOS
		default:
			continue
		}
		n, err := ParseValue([]byte(v))
		if err != nil {
			return s, fmt.Errorf("systab %s: %w", k, err)
		}
		*dst = n
	}
	return s, nil
}

// RSDP is the ACPI root pointer to hand over: ACPI 2.0's when present.
func (s Systab) RSDP() uint64 {
	if s.ACPI20 != 0 {
		return s.ACPI20
	}
	return s.ACPI
}

// Host is everything about the firmware a loader hands over, as read.
type Host struct {
	// EFI says the host has /sys/firmware/efi: its kernel runs on EFI. A
	// BIOS host's Host carries BootParams only (for screen_info).
	EFI bool
	// BootParams is the running kernel's boot_params; nil when the host
	// does not publish them (CONFIG_SYSFS off, or not x86).
	BootParams *BootParams
	// FwVendor, Runtime and ConfigTable are the physical addresses the
	// running kernel found before it switched the firmware to virtual
	// mode; 0 when not published.
	FwVendor, Runtime, ConfigTable uint64
	Systab                         Systab
	// RuntimeMap is the runtime memory map in directory order (0, 1, ...);
	// nil when /sys/firmware/efi/runtime-map is absent.
	RuntimeMap []Descriptor
	// Missing names the files a complete hand-over needs that the host
	// does not have.
	Missing []string
}

// ReadHost reads a host's firmware description from fsys, a tree laid out
// like the root file system. A host without /sys/firmware/efi (a BIOS boot)
// gets a Host with EFI false and only BootParams; one that has neither gets
// nil, nil.
func ReadHost(fsys fs.FS) (*Host, error) {
	h := &Host{EFI: true}
	if _, err := fs.Stat(fsys, PathEFIDir); errors.Is(err, fs.ErrNotExist) {
		h.EFI = false
	} else if err != nil {
		return nil, fmt.Errorf("/%s: %w", PathEFIDir, err)
	}
	b, err := readCapped(fsys, PathBootParams, BootParamsSize+1)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		// Unreadable (an unprivileged dry run on a kernel that keeps it
		// root-only) counts as absent: the plan then says what is lost.
		if !h.EFI {
			return nil, nil
		}
		h.Missing = append(h.Missing, PathBootParams)
	case err != nil:
		return nil, err
	default:
		if h.BootParams, err = ParseBootParams(b); err != nil {
			return nil, fmt.Errorf("/%s: %w", PathBootParams, err)
		}
	}
	if !h.EFI {
		return h, nil
	}
	for _, f := range []struct {
		path string
		dst  *uint64
	}{{PathFwVendor, &h.FwVendor}, {PathRuntime, &h.Runtime}, {PathConfigTable, &h.ConfigTable}} {
		b, err := readCapped(fsys, f.path, maxValueBytes)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			h.Missing = append(h.Missing, f.path)
			continue
		}
		if err != nil {
			return nil, err
		}
		if *f.dst, err = ParseValue(b); err != nil {
			return nil, fmt.Errorf("/%s: %w", f.path, err)
		}
	}
	b, err = readCapped(fsys, PathSystab, maxSystabBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		h.Missing = append(h.Missing, PathSystab)
	case err != nil:
		return nil, err
	default:
		if h.Systab, err = ParseSystab(b); err != nil {
			return nil, fmt.Errorf("/%s: %w", PathSystab, err)
		}
	}
	h.RuntimeMap, err = ReadRuntimeMap(fsys)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		h.Missing = append(h.Missing, PathRuntimeMap)
	} else if err != nil {
		return nil, err
	}
	return h, nil
}

// ReadRuntimeMap reads /sys/firmware/efi/runtime-map: one directory per
// descriptor, named by its index, each holding type, phys_addr, virt_addr,
// num_pages and attribute. The result is in index order. A missing
// directory gives an error matching fs.ErrNotExist; an empty one, an
// empty map.
func ReadRuntimeMap(fsys fs.FS) ([]Descriptor, error) {
	ents, err := fs.ReadDir(fsys, PathRuntimeMap)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", PathRuntimeMap, err)
	}
	if len(ents) > MaxRuntimeEntries {
		return nil, fmt.Errorf("/%s: %w: %d entries (at most %d)", PathRuntimeMap, ErrTooLarge, len(ents), MaxRuntimeEntries)
	}
	type indexed struct {
		i int
		d Descriptor
	}
	var out []indexed
	for _, e := range ents {
		i, err := strconv.Atoi(e.Name())
		if err != nil || i < 0 || i >= MaxRuntimeEntries {
			continue // not a descriptor directory
		}
		dir := path.Join(PathRuntimeMap, e.Name())
		var d Descriptor
		var typ uint64
		for _, f := range []struct {
			name string
			dst  *uint64
		}{{"type", &typ}, {"phys_addr", &d.Phys}, {"virt_addr", &d.Virt}, {"num_pages", &d.Pages}, {"attribute", &d.Attribute}} {
			b, err := readCapped(fsys, path.Join(dir, f.name), maxValueBytes)
			if err != nil {
				// Not fs.ErrNotExist: the map exists, this entry is broken.
				return nil, fmt.Errorf("%w: runtime-map entry %s: %v", ErrMalformed, e.Name(), err)
			}
			if *f.dst, err = ParseValue(b); err != nil {
				return nil, fmt.Errorf("/%s/%s: %w", dir, f.name, err)
			}
		}
		if typ > 0xffffffff {
			return nil, fmt.Errorf("/%s/type: %w: %#x", dir, ErrMalformed, typ)
		}
		d.Type = uint32(typ)
		if _, ok := d.End(); !ok {
			return nil, fmt.Errorf("/%s: %w: %#x pages at %#x overflow", dir, ErrMalformed, d.Pages, d.Phys)
		}
		out = append(out, indexed{i, d})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].i < out[b].i })
	ds := make([]Descriptor, 0, len(out))
	for k, e := range out {
		if e.i != k {
			return nil, fmt.Errorf("/%s: %w: entries are not numbered 0..%d (found %d at position %d)", PathRuntimeMap, ErrMalformed, len(out)-1, e.i, k)
		}
		ds = append(ds, e.d)
	}
	return ds, nil
}

// readCapped reads a file of at most max bytes; a larger one is refused.
func readCapped(fsys fs.FS, name string, max int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("/%s: %w: not a regular file", name, ErrMalformed)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("/%s: %w: more than %d bytes", name, ErrTooLarge, max)
	}
	return b, nil
}
