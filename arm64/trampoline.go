package arm64

import "encoding/binary"

// TrampolineSize is the length of the code Trampoline returns.
const TrampolineSize = 40

// Trampoline returns aarch64 machine code (little endian) that enters a
// kernel the way booting.rst requires: x0 = dtbAddr, x1 = x2 = x3 = 0,
// then a branch to kernelEntry (the Image load address). The kernel's
// arm64_relocate_new_kernel enters the kexec entry with x0 =
// kimage->arch.dtb_mem, which only kexec_file_load sets; after kexec_load
// x0 is 0. So this code is loaded as its own segment and used as the kexec
// entry point. It is position independent; the MMU is off when it runs.
//
// Layout and encodings (A64; each instruction one little-endian word):
//
//	0x00  ldr x0, #24   58000000 | imm19<<5 | Rt: imm19 = 24/4 = 6, Rt = 0  -> 580000c0
//	0x04  ldr x4, #28   LDR (literal) 64-bit, imm19 = 28/4 = 7, Rt = 4      -> 580000e4
//	0x08  mov x1, xzr   ORR x1, xzr, xzr: aa000000 | Rm=31<<16 | Rn=31<<5 | Rd=1 -> aa1f03e1
//	0x0c  mov x2, xzr   -> aa1f03e2
//	0x10  mov x3, xzr   -> aa1f03e3
//	0x14  br x4         d61f0000 | Rn<<5, Rn = 4                           -> d61f0080
//	0x18  .quad dtbAddr      (literal pool, 8-byte aligned)
//	0x20  .quad kernelEntry
//
// LDR (literal) offsets are relative to the instruction's own address, so
// the literals are found wherever the segment is loaded. x4 carries the
// entry because x0-x3 are the boot arguments.
func Trampoline(dtbAddr, kernelEntry uint64) []byte {
	const (
		ldrLit64 = 0x58000000
		orrXZR   = 0xaa1f03e0 // ORR Xd, XZR, XZR (MOV Xd, XZR) with Rd = 0
		brReg    = 0xd61f0000
	)
	ldr := func(rt, at, lit uint32) uint32 { return ldrLit64 | ((lit-at)/4)<<5 | rt }
	words := []uint32{
		ldr(0, 0x00, 0x18),
		ldr(4, 0x04, 0x20),
		orrXZR | 1,
		orrXZR | 2,
		orrXZR | 3,
		brReg | 4<<5,
	}
	b := make([]byte, 0, TrampolineSize)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	b = binary.LittleEndian.AppendUint64(b, dtbAddr)
	return binary.LittleEndian.AppendUint64(b, kernelEntry)
}
