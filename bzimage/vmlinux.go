package bzimage

import "encoding/binary"

// Setup header values synthesized for a kernel that comes without one (an
// ELF vmlinux, kexec-tools' "elf-x86_64"): the 64-bit boot protocol's
// startup_64 reads boot_params, not a real-mode header, so a loader fills
// the fields the kernel consults itself.
const (
	// VmlinuxVersion is the boot protocol version written for a vmlinux:
	// 2.15, so that the fields up to acpi_rsdp_addr (2.14) are read.
	VmlinuxVersion = 0x020f
	// VmlinuxCmdlineSize is the longest command line accepted for a
	// vmlinux, COMMAND_LINE_SIZE (2048) less the NUL, as x86 kernels have
	// had since 2.6.
	VmlinuxCmdlineSize = 2047
	// VmlinuxInitrdAddrMax is the highest initrd byte offered to a
	// vmlinux, the value x86_64 kernels put in their own header.
	VmlinuxInitrdAddrMax = 0x7fffffff
	loadedHigh           = 0x01
)

// ForVmlinux returns an Image whose setup header is synthesized for an x86_64
// ELF vmlinux whose memory image spans memSize bytes: "HdrS" magic, boot
// flag, protocol VmlinuxVersion, loadflags LOADED_HIGH, xloadflags
// XLF_KERNEL_64 only (the ELF says nothing of XLF_EFI_KEXEC, so no EFI state
// is passed), not relocatable (a vmlinux runs where it was linked). The
// Image has no ProtectedMode bytes: the caller loads the ELF's segments.
// BuildParams copies this header into boot_params like a bzImage's.
func ForVmlinux(memSize uint32) *Image {
	im := &Image{
		Version:         VmlinuxVersion,
		Loadflags:       loadedHigh,
		Xloadflags:      XLFKernel64,
		InitrdAddrMax:   VmlinuxInitrdAddrMax,
		KernelAlignment: 1 << 21,
		CmdlineSize:     VmlinuxCmdlineSize,
		InitSize:        memSize,
	}
	h := make([]byte, offInitSize+4-offSetupSects)
	at := func(off int) []byte { return h[off-offSetupSects:] }
	le := binary.LittleEndian
	le.PutUint16(at(offBootFlag), 0xaa55)
	copy(at(offHeader), "HdrS")
	le.PutUint16(at(offVersion), im.Version)
	at(offLoadflags)[0] = im.Loadflags
	le.PutUint32(at(offInitrdAddrMax), im.InitrdAddrMax)
	le.PutUint32(at(offKernelAlignment), im.KernelAlignment)
	le.PutUint16(at(offXloadflags), im.Xloadflags)
	le.PutUint32(at(offCmdlineSize), im.CmdlineSize)
	le.PutUint32(at(offInitSize), im.InitSize)
	im.header = h
	return im
}
