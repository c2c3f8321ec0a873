// Package arm64 holds the pure, arm64-specific parts of a kexec_load: the
// kernel Image header, placement rules for kernel, initrd and DTB, the
// /chosen hand-over in the device tree, and the entry trampoline.
//
// Facts come from the kernel's Documentation/arch/arm64/booting.rst, its
// own kexec_file loader (arch/arm64/kernel/kexec_image.c,
// machine_kexec_file.c) and drivers/of/kexec.c:
//
//   - The Image has a 64-byte little-endian header: code0, code1,
//     text_offset, image_size, flags, three reserved u64, the magic
//     "ARM\x64" at 0x38 and the PE header offset at 0x3c. Flags: bit 0 big
//     endian, bits 1-2 page size (0 unspecified, 1 4K, 2 16K, 3 64K), bit 3
//     "may be placed anywhere below 2^48" (else as low in DRAM as possible).
//   - image_size 0 marks a pre-3.17 kernel whose text_offset endianness is
//     unknown and whose memory footprint is unbounded; booting.rst tells a
//     boot loader to assume text_offset 0x80000 and leave as much memory as
//     possible after it. The kernel's own kexec_file loader refuses such an
//     Image, and so does ParseImage: without image_size there is no size to
//     reserve, so nothing can be placed safely after the kernel.
//   - The Image is loaded text_offset bytes above a 2 MiB aligned base, and
//     image_size bytes from its start must be free. Debian's arm64 vmlinuz
//     is an uncompressed Image; Image.gz (gzip) is unpacked here, since the
//     arm64 kernel has no decompressor of its own.
//   - An initrd must lie, with the kernel Image, inside one 1 GiB aligned
//     window of at most 32 GiB.
//   - The DTB must be 8-byte aligned and at most 2 MiB (MAX_FDT_SIZE); the
//     kernel's own loader also keeps it from crossing a 2 MiB boundary, and
//     so does CheckDTB.
//   - The kernel is entered with x0 = physical address of the DTB and
//     x1 = x2 = x3 = 0. After kexec_load the kernel enters the entry with
//     x0 = 0 (it knows the DTB only for kexec_file_load), so a trampoline
//     segment (Trampoline) sets the registers and branches.
//
// # Building an arm64 kexec_load plan
//
//	im, err := arm64.ParseImage(kernelBytes)   // raw Image or Image.gz
//	err = im.CheckPageSize(runningPageSize)     // a granule the CPU has
//	tree, err := fdt.Parse(sysFirmwareFDT)      // or the --dtb file
//	ram, err := tree.MemoryRanges()             // fdt.ErrNoMemory on UEFI: use /proc/iomem
//	avoid, err := tree.ReservedRanges()         // memreserve + /reserved-memory: keep segments out
//	kp, err := im.Placement()                   // Align 2 MiB, Size, Max, BottomUp
//	base := place(kp.Size, kp.Align, kp.Max, kp.BottomUp)
//	entry, err := im.LoadAddress(base)          // kernel segment: mem entry, buf im.Kernel, memsz im.ImageSize
//	kernel := fdt.Range{Start: entry, Size: im.ImageSize}
//	win, err := arm64.InitrdWindow(kernel)
//	initrd := place(len(initrd), within win); err = arm64.CheckInitrd(kernel, initrd)
//	ima := place(IMA segment size, anywhere)
//	err = arm64.PrepareDTB(tree, arm64.ChosenOptions{Bootargs: cmdline,
//		Initrd: &initrd, KASLRSeed: rand64, RNGSeed: rand128, IMABuffer: &ima})
//	dtb, err := arm64.BuildDTB(tree)            // ErrDTBTooLarge above 2 MiB
//	dtbAddr := place(len(dtb), arm64.DTBAlign); err = arm64.CheckDTB(dtbAddr, len(dtb))
//	tramp := arm64.Trampoline(dtbAddr, entry)   // its own segment; kexec entry = its address
//
// The DTB names the initrd and IMA addresses and the trampoline names the
// DTB address, so place kernel, initrd and IMA first, then build and place
// the DTB, then the trampoline. TestBootThroughTrampoline boots Debian's
// arm64 kernel on QEMU from exactly this layout.
//
// Invariants: the package is pure (no system calls, no host files; callers
// pass bytes in and supply randomness); it never panics on input; every
// address computation is checked for overflow; errors wrap sentinels that
// errors.Is matches.
package arm64
