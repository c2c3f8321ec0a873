package arm64

import (
	"fmt"

	"github.com/gokexec/gokexec/fdt"
)

// Placement constants of the arm64 boot protocol.
const (
	// KernelAlign: the Image goes text_offset bytes above a base aligned
	// to this.
	KernelAlign = 2 << 20
	// InitrdWindowAlign and InitrdWindowSize: kernel and initrd must both
	// lie in one window of at most InitrdWindowSize bytes that starts on
	// an InitrdWindowAlign boundary.
	InitrdWindowAlign = 1 << 30
	InitrdWindowSize  = 32 << 30
	// MaxDTBSize is the largest DTB the kernel maps (MAX_FDT_SIZE).
	MaxDTBSize = 2 << 20
	// DTBMinAlign is the alignment booting.rst requires of the DTB;
	// DTBAlign is what the kernel's own loader uses (a 2 MiB aligned DTB
	// of at most 2 MiB never crosses a 2 MiB boundary). Place with
	// DTBAlign.
	DTBMinAlign = 8
	DTBAlign    = 2 << 20
	// PhysLimit48: with flags bit 3 set the whole image must lie below
	// 2^48.
	PhysLimit48 = 1 << 48
)

// KernelPlacement tells a placer where the kernel may go: a region of Size
// bytes starting at an Align-aligned base, the Image itself loaded at
// base+TextOffset (LoadAddress). The region [base, base+TextOffset) is
// free for other use per booting.rst; it is included in Size so that the
// whole region is one reservation.
type KernelPlacement struct {
	Align      uint64 // KernelAlign
	TextOffset uint64
	Size       uint64 // TextOffset + ImageSize
	// Max is the exclusive upper bound for the region's end, 0 for none.
	Max uint64
	// BottomUp asks for the lowest possible base: without flags bit 3 the
	// kernel cannot use memory below itself (kernels before 4.6), so it
	// should sit as close to the start of DRAM as possible.
	BottomUp bool
}

// Placement returns the kernel placement rule for this Image.
func (im *Image) Placement() (KernelPlacement, error) {
	size := im.TextOffset + im.ImageSize
	if size < im.ImageSize {
		return KernelPlacement{}, fmt.Errorf("%w: text_offset %#x + image_size %#x overflows", ErrImageHeader, im.TextOffset, im.ImageSize)
	}
	p := KernelPlacement{Align: KernelAlign, TextOffset: im.TextOffset, Size: size, BottomUp: !im.AnyPlacement()}
	if im.AnyPlacement() {
		p.Max = PhysLimit48
	}
	return p, nil
}

// LoadAddress returns base+TextOffset, the address to load Kernel at and
// to enter. base must be KernelAlign-aligned.
func (im *Image) LoadAddress(base uint64) (uint64, error) {
	if base%KernelAlign != 0 {
		return 0, fmt.Errorf("%w: kernel base %#x is not 2 MiB aligned", ErrPlacement, base)
	}
	end := base + im.TextOffset + im.ImageSize
	if end < base || base+im.TextOffset < base {
		return 0, fmt.Errorf("%w: kernel at %#x + %#x overflows", ErrPlacement, base, im.TextOffset+im.ImageSize)
	}
	if im.AnyPlacement() && end > PhysLimit48 {
		return 0, fmt.Errorf("%w: kernel end %#x is above 2^48", ErrPlacement, end)
	}
	return base + im.TextOffset, nil
}

// InitrdWindow returns the range an initrd may occupy given the kernel
// Image at kernel (load address, image_size): the union of every 1 GiB
// aligned, 32 GiB window that covers the kernel. Any initrd inside it that
// is not larger than 31 GiB is valid; CheckInitrd decides exactly.
func InitrdWindow(kernel fdt.Range) (fdt.Range, error) {
	kend, ok := kernel.End()
	if !ok || kernel.Size == 0 {
		return fdt.Range{}, fmt.Errorf("%w: kernel range %v", ErrPlacement, kernel)
	}
	hiStart := kernel.Start &^ (InitrdWindowAlign - 1)
	kendUp := (kend + InitrdWindowAlign - 1) &^ (InitrdWindowAlign - 1)
	if kendUp < kend {
		return fdt.Range{}, fmt.Errorf("%w: kernel range %v ends in the last GiB of the address space", ErrPlacement, kernel)
	}
	if kendUp-hiStart > InitrdWindowSize {
		return fdt.Range{}, fmt.Errorf("%w: kernel %v spans more than a 32 GiB window", ErrPlacement, kernel)
	}
	lo := uint64(0)
	if kendUp > InitrdWindowSize {
		lo = kendUp - InitrdWindowSize
	}
	hi := hiStart + InitrdWindowSize
	if hi < hiStart {
		hi = ^uint64(0)
	}
	return fdt.Range{Start: lo, Size: hi - lo}, nil
}

// CheckInitrd reports ErrPlacement unless kernel and initrd fit in one
// 1 GiB aligned window of at most 32 GiB (booting.rst).
func CheckInitrd(kernel, initrd fdt.Range) error {
	kend, ok1 := kernel.End()
	iend, ok2 := initrd.End()
	if !ok1 || !ok2 {
		return fmt.Errorf("%w: kernel %v or initrd %v wraps around", ErrPlacement, kernel, initrd)
	}
	lo := min(kernel.Start, initrd.Start) &^ (InitrdWindowAlign - 1)
	hi := max(kend, iend)
	if hi-lo > InitrdWindowSize {
		return fmt.Errorf("%w: initrd %v and kernel %v do not fit one 1 GiB aligned 32 GiB window", ErrPlacement, initrd, kernel)
	}
	return nil
}

// CheckDTB reports ErrPlacement or ErrDTBTooLarge unless a DTB of size
// bytes at addr is 8-byte aligned, at most MaxDTBSize and within one 2 MiB
// aligned block.
func CheckDTB(addr, size uint64) error {
	if size > MaxDTBSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d (MAX_FDT_SIZE)", ErrDTBTooLarge, size, MaxDTBSize)
	}
	if addr%DTBMinAlign != 0 {
		return fmt.Errorf("%w: DTB at %#x is not 8-byte aligned", ErrPlacement, addr)
	}
	if size == 0 {
		return fmt.Errorf("%w: empty DTB", ErrPlacement)
	}
	last := addr + size - 1
	if last < addr || addr/DTBAlign != last/DTBAlign {
		return fmt.Errorf("%w: DTB [%#x, +%#x) crosses a 2 MiB boundary", ErrPlacement, addr, size)
	}
	return nil
}
