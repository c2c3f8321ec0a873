// Package bzimage speaks the x86 Linux boot protocol
// (Documentation/arch/x86/boot.rst) for a 64-bit kexec_load: it parses and
// checks a bzImage's setup header, builds a zero page (struct boot_params)
// from nothing, chains setup_data nodes, and emits the small trampoline that
// kexec_load needs to enter the kernel's 64-bit entry point with %rsi set.
//
// Invariants:
//   - Pure: no syscalls, no host reads. Everything is derived from the bytes
//     and values handed in.
//   - boot_params is built from zero; only the image's own setup header is
//     copied in. Nothing of the running kernel's boot_params (in particular
//     its setup_data pointer) is ever carried over, and the header fields a
//     loader owns (initrd, command line pointer, setup_data) are cleared
//     before this package fills them, whatever the image file holds there.
//   - Parsing never panics and never trusts a length field without checking
//     it against the image size.
//   - EFI state (efi_info, secure_boot, a SETUP_EFI node and the EFI memory
//     map, placed in the parameter block after the setup_data chain) is
//     written only when the caller hands it in, and only for a kernel that
//     sets XLF_EFI_KEXEC; otherwise efi_info stays zero and the kernel boots
//     as non-EFI.
//
// It is written by hand because no maintained Go library builds boot_params
// for a kexec_load that enters startup_64: u-root's bzImage package targets
// its own loader and rewrites the image; kexec-tools is C.
package bzimage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets in the bzImage and in struct boot_params (the setup header sits at
// the same offset in both).
const (
	offSetupSects      = 0x1f1
	offSyssize         = 0x1f4
	offBootFlag        = 0x1fe
	offJump            = 0x200
	offHeader          = 0x202
	offVersion         = 0x206
	offTypeOfLoader    = 0x210
	offLoadflags       = 0x211
	offRamdiskImage    = 0x218
	offRamdiskSize     = 0x21c
	offCmdLinePtr      = 0x228
	offInitrdAddrMax   = 0x22c
	offKernelAlignment = 0x230
	offRelocatable     = 0x234
	offMinAlignment    = 0x235
	offXloadflags      = 0x236
	offCmdlineSize     = 0x238
	offSetupData       = 0x250
	offPrefAddress     = 0x258
	offInitSize        = 0x260
	setupHeaderMax     = 0x290 // first boot_params byte after the setup header area

	offScreenInfo      = 0x000
	offACPIRSDP        = 0x070
	offEFIInfo         = 0x1c0
	offSecureBoot      = 0x1ec
	offExtRamdiskImage = 0x0c0
	offExtRamdiskSize  = 0x0c4
	offExtCmdLinePtr   = 0x0c8
	offE820Entries     = 0x1e8
	offE820Table       = 0x2d0

	// BootParamsSize is sizeof(struct boot_params).
	BootParamsSize = 4096
	// E820Max is the number of e820 entries boot_params holds itself.
	E820Max = 128
	// ScreenInfoSize is sizeof(struct screen_info).
	ScreenInfoSize = 0x40
)

// xloadflags bits.
const (
	XLFKernel64           = 1 << 0
	XLFCanBeLoadedAbove4G = 1 << 1
	// XLFEFIKexec: the kernel can take EFI runtime state from a kexec
	// loader (efi_info plus a SETUP_EFI node) instead of calling
	// SetVirtualAddressMap again.
	XLFEFIKexec = 1 << 4
)

// Minimum boot protocol: 2.12 introduced xloadflags and with them a declared
// 64-bit entry point.
const MinVersion = 0x020c

// Errors; match with errors.Is.
var (
	ErrNotBzImage  = errors.New("not a bzImage")
	ErrUnsupported = errors.New("unsupported kernel image")
	ErrCmdline     = errors.New("command line not accepted by the kernel")
)

// Image is a parsed bzImage.
type Image struct {
	Version         uint16
	SetupSects      int
	Loadflags       uint8
	Xloadflags      uint16
	InitrdAddrMax   uint32
	KernelAlignment uint32
	Relocatable     bool
	MinAlignment    uint8
	CmdlineSize     uint32
	PrefAddress     uint64
	InitSize        uint32
	header          []byte // setup header bytes, from offSetupSects to its end
	ProtectedMode   []byte // the (still compressed) protected-mode kernel
}

// Parse checks b as a bzImage that can be entered through its 64-bit entry
// point and returns its header fields.
func Parse(b []byte) (*Image, error) {
	if len(b) < 0x270 {
		return nil, fmt.Errorf("%w: %d bytes is too short for a setup header", ErrNotBzImage, len(b))
	}
	le := binary.LittleEndian
	if string(b[offHeader:offHeader+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no \"HdrS\" magic at %#x", ErrNotBzImage, offHeader)
	}
	if f := le.Uint16(b[offBootFlag:]); f != 0xaa55 {
		return nil, fmt.Errorf("%w: boot flag %#04x at %#x, want 0xaa55", ErrNotBzImage, f, offBootFlag)
	}
	im := &Image{
		Version:         le.Uint16(b[offVersion:]),
		SetupSects:      int(b[offSetupSects]),
		Loadflags:       b[offLoadflags],
		Xloadflags:      le.Uint16(b[offXloadflags:]),
		InitrdAddrMax:   le.Uint32(b[offInitrdAddrMax:]),
		KernelAlignment: le.Uint32(b[offKernelAlignment:]),
		Relocatable:     b[offRelocatable] != 0,
		MinAlignment:    b[offMinAlignment],
		CmdlineSize:     le.Uint32(b[offCmdlineSize:]),
		PrefAddress:     le.Uint64(b[offPrefAddress:]),
		InitSize:        le.Uint32(b[offInitSize:]),
	}
	if im.Version < MinVersion {
		return nil, fmt.Errorf("%w: boot protocol %d.%02d is older than 2.12 (no 64-bit entry point)", ErrUnsupported, im.Version>>8, im.Version&0xff)
	}
	if im.Loadflags&0x01 == 0 {
		return nil, fmt.Errorf("%w: zImage (not loaded high); only bzImage is supported", ErrUnsupported)
	}
	if im.Xloadflags&XLFKernel64 == 0 {
		return nil, fmt.Errorf("%w: kernel has no 64-bit entry point (xloadflags %#x): a 32-bit-only kernel", ErrUnsupported, im.Xloadflags)
	}
	if im.SetupSects == 0 {
		im.SetupSects = 4
	}
	pmOff := (im.SetupSects + 1) * 512
	if pmOff >= len(b) {
		return nil, fmt.Errorf("%w: setup code of %d sectors leaves no protected-mode kernel in %d bytes", ErrNotBzImage, im.SetupSects, len(b))
	}
	im.ProtectedMode = b[pmOff:]
	if sys := uint64(le.Uint32(b[offSyssize:])) * 16; sys > uint64(len(im.ProtectedMode))+16 {
		return nil, fmt.Errorf("%w: header says %d bytes of kernel, file has %d (truncated?)", ErrNotBzImage, sys, len(im.ProtectedMode))
	}
	if im.KernelAlignment == 0 || im.KernelAlignment&(im.KernelAlignment-1) != 0 {
		return nil, fmt.Errorf("%w: kernel_alignment %#x is not a power of two", ErrUnsupported, im.KernelAlignment)
	}
	if im.InitSize == 0 {
		return nil, fmt.Errorf("%w: init_size is 0", ErrUnsupported)
	}
	end := offHeader + int(b[offJump+1])
	if end > setupHeaderMax {
		end = setupHeaderMax
	}
	if end < offInitSize+4 {
		return nil, fmt.Errorf("%w: setup header ends at %#x, before init_size", ErrNotBzImage, end)
	}
	im.header = append([]byte(nil), b[offSetupSects:end]...)
	return im, nil
}

// MemSize is how much memory the kernel needs at its load address: the
// decompressor works in place inside [load, load+init_size).
func (im *Image) MemSize() uint64 {
	n := uint64(len(im.ProtectedMode))
	if uint64(im.InitSize) > n {
		n = uint64(im.InitSize)
	}
	return n
}

// Entry64Offset is the offset of startup_64 from the load address.
const Entry64Offset = 0x200

// InitrdMax is the highest end address an initrd may have.
func (im *Image) InitrdMax() uint64 {
	if im.Xloadflags&XLFCanBeLoadedAbove4G != 0 {
		return 0 // no limit
	}
	return uint64(im.InitrdAddrMax) + 1
}

// CheckCmdline verifies the command line fits the kernel's buffer.
func (im *Image) CheckCmdline(cmdline string) error {
	max := im.CmdlineSize
	if im.Version < 0x0206 {
		max = 255
	}
	if uint64(len(cmdline)) > uint64(max) {
		return fmt.Errorf("%w: %d bytes, the kernel takes at most %d", ErrCmdline, len(cmdline), max)
	}
	for i := 0; i < len(cmdline); i++ {
		if cmdline[i] == 0 {
			return fmt.Errorf("%w: NUL byte at offset %d", ErrCmdline, i)
		}
	}
	return nil
}
