package arm64

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gokexec/gokexec/vmlinux"
)

// Header layout and flag values from booting.rst.
const (
	HeaderSize = 64
	Magic      = 0x644d5241 // "ARM\x64", little endian at offset 0x38

	FlagBigEndian    = 1 << 0
	flagPageShift    = 1
	flagPageMask     = 3 << flagPageShift
	FlagAnyPlacement = 1 << 3

	// LegacyTextOffset is what booting.rst says to assume when image_size
	// is 0 (kernels before v3.17).
	LegacyTextOffset = 0x80000

	// MaxKernelSize bounds the (decompressed) Image ParseImage accepts, so
	// a gzip bomb cannot exhaust memory. Debian's 6.1 Image is 27 MiB.
	MaxKernelSize = 256 << 20

	zbootMagic = 0x818223cd // LINUX_PE_MAGIC at 0x38 of an EFI zboot image
)

// Sentinel errors.
var (
	ErrNotImage     = errors.New("arm64: not an arm64 kernel Image")
	ErrBigEndian    = errors.New("arm64: big-endian kernel")
	ErrPageSize     = errors.New("arm64: unsupported kernel page size")
	ErrLegacyImage  = errors.New("arm64: Image header has image_size 0 (kernel older than 3.17)")
	ErrImageHeader  = errors.New("arm64: inconsistent Image header")
	ErrTruncated    = errors.New("arm64: truncated Image")
	ErrTooLarge     = errors.New("arm64: kernel too large")
	ErrPlacement    = errors.New("arm64: placement violates the arm64 boot protocol")
	ErrDTBTooLarge  = errors.New("arm64: device tree larger than the kernel accepts")
	ErrChosenOption = errors.New("arm64: bad /chosen option")
)

// Image is a parsed arm64 kernel Image.
type Image struct {
	// Kernel is the uncompressed Image: the bytes to load at the load
	// address.
	Kernel []byte
	// Compression names how the input was packed: "" (raw Image),
	// "gzip" (Image.gz), or "zboot-" and the zboot header's compression
	// type ("zboot-gzip", "zboot-zstd") for an EFI zboot image, or
	// "elf" for a vmlinux (its flat Image, as objcopy makes it).
	Compression string

	Code0, Code1 uint32
	TextOffset   uint64
	ImageSize    uint64 // bytes from the load address the kernel needs
	Flags        uint64
	PEOffset     uint32 // res5: offset of the PE header (EFI stub), 0 if none
}

// BigEndian reports flags bit 0.
func (im *Image) BigEndian() bool { return im.Flags&FlagBigEndian != 0 }

// PageSize returns the kernel's page size from flags bits 1-2, or 0 when
// the header leaves it unspecified.
func (im *Image) PageSize() uint64 {
	switch (im.Flags & flagPageMask) >> flagPageShift {
	case 1:
		return 4 << 10
	case 2:
		return 16 << 10
	case 3:
		return 64 << 10
	}
	return 0
}

// AnyPlacement reports flags bit 3: the 2 MiB aligned base may be anywhere
// such that the image lies below 2^48. When false the base should be as
// close to the start of DRAM as possible.
func (im *Image) AnyPlacement() bool { return im.Flags&FlagAnyPlacement != 0 }

// CheckPageSize reports ErrPageSize unless the Image's page size is one of
// the granules the target CPU supports (a CPU need not implement all of
// 4K, 16K and 64K; Cortex-A57, for one, has no 16K granule). Callers that
// cannot read ID_AA64MMFR0_EL1 pass the running kernel's page size, which
// is known to work. An unspecified page size passes.
func (im *Image) CheckPageSize(supported ...uint64) error {
	ps := im.PageSize()
	if ps == 0 {
		return nil
	}
	for _, s := range supported {
		if s == ps {
			return nil
		}
	}
	return fmt.Errorf("%w: the Image uses %d KiB pages, the target supports %v", ErrPageSize, ps>>10, supported)
}

// ParseImage parses an arm64 Image: raw, gzip-compressed (Image.gz),
// wrapped in an EFI zboot image (vmlinuz.efi), which it unpacks within
// MaxKernelSize bytes, or the ELF vmlinux it was made from. The result does not alias b.
func ParseImage(b []byte) (*Image, error) { return parseImage(b, MaxKernelSize) }

func parseImage(b []byte, limit int) (*Image, error) {
	comp := ""
	switch {
	case IsZboot(b):
		raw, z, err := unpackZboot(b, limit)
		if err != nil {
			return nil, err
		}
		if !looksLikeImage(raw) {
			return nil, fmt.Errorf("%w: EFI zboot payload (%s) holds %s", ErrNotImage, z.Compression, describe(raw))
		}
		b, comp = raw, "zboot-"+z.Compression
	case vmlinux.IsELF(b):
		k, err := vmlinux.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotImage, err)
		}
		if k.Machine != vmlinux.ARM64 {
			return nil, fmt.Errorf("%w: ELF kernel (vmlinux) for %s", ErrNotImage, k.Machine)
		}
		raw, err := k.Image()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotImage, err)
		}
		if len(raw) > limit {
			return nil, fmt.Errorf("%w: the vmlinux's Image is %d bytes, more than %d", ErrTooLarge, len(raw), limit)
		}
		if !looksLikeImage(raw) {
			return nil, fmt.Errorf("%w: arm64 ELF file whose loadable bytes hold %s", ErrNotImage, describe(raw))
		}
		b, comp = raw, "elf"
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		raw, err := gunzipLimited(b, limit)
		if err != nil {
			return nil, err
		}
		if !looksLikeImage(raw) {
			return nil, fmt.Errorf("%w: gzip-compressed %s", ErrNotImage, describe(raw))
		}
		b, comp = raw, "gzip"
	default:
		if len(b) > limit {
			return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(b), limit)
		}
		b = bytes.Clone(b)
	}
	if !looksLikeImage(b) {
		return nil, fmt.Errorf("%w: %s", ErrNotImage, describe(b))
	}
	le := binary.LittleEndian
	im := &Image{
		Kernel:      b,
		Compression: comp,
		Code0:       le.Uint32(b[0:]),
		Code1:       le.Uint32(b[4:]),
		TextOffset:  le.Uint64(b[8:]),
		ImageSize:   le.Uint64(b[16:]),
		Flags:       le.Uint64(b[24:]),
		PEOffset:    le.Uint32(b[60:]),
	}
	if im.ImageSize == 0 {
		return nil, fmt.Errorf("%w: its text_offset and memory footprint are unknown (booting.rst would assume text_offset %#x and unbounded memory after it); the kernel's own loader refuses such Images too", ErrLegacyImage, LegacyTextOffset)
	}
	if im.BigEndian() {
		return nil, fmt.Errorf("%w: flags %#x have bit 0 set; only little-endian kernels are loaded", ErrBigEndian, im.Flags)
	}
	if uint64(len(b)) > im.ImageSize {
		return nil, fmt.Errorf("%w: file is %#x bytes but image_size is only %#x", ErrImageHeader, len(b), im.ImageSize)
	}
	if im.TextOffset%(4<<10) != 0 {
		// Real kernels use 0x80000 or (since 5.8) 0; a kexec segment
		// must start on a page.
		return nil, fmt.Errorf("%w: text_offset %#x is not a multiple of 4 KiB", ErrImageHeader, im.TextOffset)
	}
	if err := checkStub(b, im); err != nil {
		if comp != "" {
			return nil, fmt.Errorf("%w (after gunzip, %d bytes)", err, len(b))
		}
		return nil, err
	}
	return im, nil
}

// checkStub catches truncated Images through the EFI stub's PE/COFF
// header, which every EFI-capable kernel carries: an Image whose first
// bytes say "MZ" and whose header points at a PE header must hold that
// header, and every section's file data must lie inside the Image. An
// Image that ends before the PE header, or before a section's data ends,
// is truncated (the reproducer of issue 11: a 100-byte gzip of a header).
// A kernel built without the EFI stub has no such structure, and its
// truncation cannot be told from the header alone.
func checkStub(b []byte, im *Image) error {
	if im.Code0&0xffff != 0x5a4d || im.PEOffset == 0 { // "MZ"
		return nil
	}
	off := int(im.PEOffset)
	if off < HeaderSize || off > len(b)-4 {
		return fmt.Errorf("%w: %d bytes, but the header places the EFI stub's PE header at %#x", ErrTruncated, len(b), im.PEOffset)
	}
	if !bytes.Equal(b[off:off+4], []byte("PE\x00\x00")) {
		return nil // not a PE image after all (test fixtures pad with zeros)
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: the EFI stub's PE/COFF header: %v", ErrTruncated, err)
	}
	defer f.Close()
	for _, s := range f.Sections {
		if end := uint64(s.Offset) + uint64(s.Size); s.Size != 0 && end > uint64(len(b)) {
			return fmt.Errorf("%w: %d bytes, but PE section %q ends at %#x", ErrTruncated, len(b), s.Name, end)
		}
	}
	return nil
}

func looksLikeImage(b []byte) bool {
	return len(b) >= HeaderSize && binary.LittleEndian.Uint32(b[0x38:]) == Magic
}

// describe says what b is when it is not an arm64 Image.
func describe(b []byte) string {
	le := binary.LittleEndian
	switch {
	case len(b) == 0:
		return "empty input"
	case len(b) >= 0x206 && string(b[0x202:0x206]) == "HdrS":
		return "x86 bzImage (boot protocol header \"HdrS\" at 0x202), not an arm64 Image"
	case len(b) >= 4 && string(b[:4]) == "\x7fELF":
		return "ELF file (a vmlinux?), not an arm64 Image; load arch/arm64/boot/Image"
	case len(b) >= 0x40 && string(b[:2]) == "MZ" && string(b[4:8]) == "zimg":
		end := bytes.IndexByte(b[0x18:0x38], 0)
		if end < 0 {
			end = 0x20
		}
		return fmt.Sprintf("EFI zboot image (payload compressed with %q)", b[0x18:0x18+end])
	case len(b) >= 0x40 && le.Uint32(b[0x38:]) == zbootMagic:
		return "EFI zboot image, not a bare Image"
	case len(b) >= 6 && string(b[:6]) == "\xfd7zXZ\x00":
		return "xz-compressed data; decompress it first"
	case len(b) >= 4 && le.Uint32(b) == 0xfd2fb528:
		return "zstd-compressed data; decompress it first"
	case len(b) >= 3 && string(b[:3]) == "BZh":
		return "bzip2-compressed data; decompress it first"
	case len(b) >= 4 && le.Uint32(b) == 0x184c2102:
		return "lz4-compressed data; decompress it first"
	case len(b) < HeaderSize:
		return fmt.Sprintf("%d bytes, shorter than the %d-byte Image header", len(b), HeaderSize)
	case string(b[:2]) == "MZ":
		return fmt.Sprintf("PE/COFF file without the arm64 Image magic (found %#08x at 0x38, want %#08x \"ARM\\x64\")", le.Uint32(b[0x38:]), uint32(Magic))
	}
	return fmt.Sprintf("found %#08x at 0x38, want the Image magic %#08x (\"ARM\\x64\")", le.Uint32(b[0x38:]), uint32(Magic))
}

// imaBufferProperty is the /chosen property through which a kernel finds
// the IMA list its predecessor handed over.
var imaBufferProperty = []byte("linux,ima-kexec-buffer")

// ReadsIMABuffer reports whether the Image holds the name of the /chosen
// property through which a kernel restores a handed-over IMA list. The only
// code that uses the name (drivers/of/kexec.c: ima_get_kexec_buffer and the
// kexec_file_load side) is built only with KEXEC_FILE, so a kernel without
// it cannot restore a list: Debian's arm64 kernels, for one. The name in
// the Image does not prove the restore (that also needs IMA), but its
// absence proves there is none. The Image is uncompressed, so its strings
// are plain.
func (im *Image) ReadsIMABuffer() bool { return bytes.Contains(im.Kernel, imaBufferProperty) }
