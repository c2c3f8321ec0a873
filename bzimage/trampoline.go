package bzimage

import "encoding/binary"

// Trampoline returns position-dependent x86-64 code, to be loaded at
// physical address at, that enters a kernel the way the 64-bit boot protocol
// asks: it loads a flat GDT (the kexec'ing kernel leaves an invalid one
// behind), reloads every segment register, sets up a private stack, puts
// the zero page's address in %rsi and jumps to entry (startup_64).
//
// kexec_load starts it in 64-bit mode with paging identity-mapping RAM,
// interrupts off and the general registers zeroed.
//
// Layout: code at 0x00, GDT at 0x40, GDTR at 0x60, stack top at the end of
// the returned page.
func Trampoline(at, bootParams, entry uint64) []byte {
	const (
		gdtOff  = 0x40
		gdtrOff = 0x60
		size    = 4096
	)
	b := make([]byte, size)
	code := b[:0]
	rel := func(target, next int) []byte { // rel32 from the end of the instruction
		return binary.LittleEndian.AppendUint32(nil, uint32(int32(target-next)))
	}
	// lea rsp, [rip + size]           48 8d 25 rel32
	code = append(code, 0x48, 0x8d, 0x25)
	code = append(code, rel(size, len(code)+4)...)
	// lgdt [rip + gdtr]               0f 01 15 rel32
	code = append(code, 0x0f, 0x01, 0x15)
	code = append(code, rel(gdtrOff, len(code)+4)...)
	// push 0x10 (code selector)       6a 10
	code = append(code, 0x6a, 0x10)
	// lea rax, [rip + reload]         48 8d 05 rel32  (reload = after lretq)
	code = append(code, 0x48, 0x8d, 0x05)
	reload := len(code) + 4 + 1 + 2 // rel32, push rax, lretq
	code = append(code, rel(reload, len(code)+4)...)
	// push rax                        50
	code = append(code, 0x50)
	// lretq                           48 cb
	code = append(code, 0x48, 0xcb)
	// reload: mov eax, 0x18           b8 18 00 00 00
	code = append(code, 0xb8, 0x18, 0, 0, 0)
	// mov ds/es/ss/fs/gs, eax         8e d8 / 8e c0 / 8e d0 / 8e e0 / 8e e8
	code = append(code, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8)
	// mov rsi, imm64                  48 be imm64
	code = append(code, 0x48, 0xbe)
	code = binary.LittleEndian.AppendUint64(code, bootParams)
	// mov rax, imm64                  48 b8 imm64
	code = append(code, 0x48, 0xb8)
	code = binary.LittleEndian.AppendUint64(code, entry)
	// jmp rax                         ff e0
	code = append(code, 0xff, 0xe0)
	if len(code) > gdtOff {
		panic("bzimage: trampoline code overruns its GDT") // a programming error, not input
	}
	// GDT: null, null, 64-bit code (0x10), data (0x18).
	le := binary.LittleEndian
	le.PutUint64(b[gdtOff+0x10:], 0x00af9a000000ffff)
	le.PutUint64(b[gdtOff+0x18:], 0x00cf92000000ffff)
	le.PutUint16(b[gdtrOff:], 4*8-1)
	le.PutUint64(b[gdtrOff+2:], at+gdtOff)
	return b
}
