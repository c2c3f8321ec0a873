//go:build amd64 && !purego

#include "textflag.h"

// SHA-256 compression with the SHA extensions (SHA256RNDS2, SHA256MSG1,
// SHA256MSG2). Registers:
//   X1  state A,B,E,F (dwords 3..0: A B E F), the layout SHA256RNDS2 wants
//   X2  state C,D,G,H
//   X0  two rounds' message words plus constants (SHA256RNDS2's implicit
//       operand)
//   X3-X6  the message schedule, four words each, used in rotation: the
//       register of words 4i..4i+3 later holds SHA256MSG1's partial sum for
//       words 4i+16..4i+19, which SCHED completes
//   X7  scratch, X8 byte-swap mask, X9/X10 the state before the block
//   SI message, DX blocks left, AX round constants, DI state

// bswapMask reverses the bytes of each 32-bit word (the message is
// big-endian).
DATA bswapMask<>+0(SB)/8, $0x0405060700010203
DATA bswapMask<>+8(SB)/8, $0x0c0d0e0f08090a0b
GLOBL bswapMask<>(SB), RODATA|NOPTR, $16

// ROUNDS4 runs four rounds with message words m and the constants at
// byte offset off: two SHA256RNDS2, each on two words (the second takes
// the high half of X0), swapping the roles of X1 and X2.
#define ROUNDS4(m, off) \
	MOVOU off(AX), X0 \
	PADDD m, X0 \
	SHA256RNDS2 X0, X1, X2 \
	PSHUFD $0x0E, X0, X0 \
	SHA256RNDS2 X0, X2, X1

// SCHED completes the next four words in next (which holds SHA256MSG1 of
// the words 16 before and 12 before them): add the words 7 before (the
// last three of prev and the first of cur), then SHA256MSG2 with cur.
#define SCHED(prev, cur, next) \
	MOVO cur, X7 \
	PALIGNR $4, prev, X7 \
	PADDD X7, next \
	SHA256MSG2 cur, next

// LOAD reads four message words at byte offset off into m.
#define LOAD(off, m) \
	MOVOU off(SI), m \
	PSHUFB X8, m

// func blockSHANI(h *[8]uint32, p *byte, n int, k *[64]uint32)
TEXT ·blockSHANI(SB), NOSPLIT, $0-32
	MOVQ h+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), DX
	MOVQ k+24(FP), AX
	MOVOU bswapMask<>(SB), X8

	// h[0..3] = a b c d, h[4..7] = e f g h (dword 0 first) to
	// X1 = f e b a, X2 = h g d c.
	MOVOU 0(DI), X1
	MOVOU 16(DI), X2
	PSHUFD $0xB1, X1, X1 // b a d c
	PSHUFD $0x1B, X2, X2 // h g f e
	MOVO X1, X7
	PALIGNR $8, X2, X1   // f e b a
	PBLENDW $0xF0, X7, X2 // h g d c

loop:
	MOVO X1, X9
	MOVO X2, X10

	LOAD(0, X3)
	ROUNDS4(X3, 0)
	LOAD(16, X4)
	ROUNDS4(X4, 16)
	SHA256MSG1 X4, X3
	LOAD(32, X5)
	ROUNDS4(X5, 32)
	SHA256MSG1 X5, X4
	LOAD(48, X6)
	ROUNDS4(X6, 48)
	SCHED(X5, X6, X3)
	SHA256MSG1 X6, X5

	ROUNDS4(X3, 64)
	SCHED(X6, X3, X4)
	SHA256MSG1 X3, X6
	ROUNDS4(X4, 80)
	SCHED(X3, X4, X5)
	SHA256MSG1 X4, X3
	ROUNDS4(X5, 96)
	SCHED(X4, X5, X6)
	SHA256MSG1 X5, X4
	ROUNDS4(X6, 112)
	SCHED(X5, X6, X3)
	SHA256MSG1 X6, X5

	ROUNDS4(X3, 128)
	SCHED(X6, X3, X4)
	SHA256MSG1 X3, X6
	ROUNDS4(X4, 144)
	SCHED(X3, X4, X5)
	SHA256MSG1 X4, X3
	ROUNDS4(X5, 160)
	SCHED(X4, X5, X6)
	SHA256MSG1 X5, X4
	ROUNDS4(X6, 176)
	SCHED(X5, X6, X3)
	SHA256MSG1 X6, X5

	ROUNDS4(X3, 192)
	SCHED(X6, X3, X4)
	SHA256MSG1 X3, X6
	ROUNDS4(X4, 208)
	SCHED(X3, X4, X5)
	ROUNDS4(X5, 224)
	SCHED(X4, X5, X6)
	ROUNDS4(X6, 240)

	PADDD X9, X1
	PADDD X10, X2
	ADDQ $64, SI
	DECQ DX
	JNZ loop

	// Back to a b c d, e f g h.
	PSHUFD $0x1B, X1, X1 // a b e f
	PSHUFD $0xB1, X2, X2 // g h c d
	MOVO X1, X7
	PBLENDW $0xF0, X2, X1 // a b c d
	PALIGNR $8, X7, X2    // e f g h
	MOVOU X1, 0(DI)
	MOVOU X2, 16(DI)
	RET

// func hasSHANI() bool
TEXT ·hasSHANI(SB), NOSPLIT, $0-1
	MOVL $0, AX
	MOVL $0, CX
	CPUID
	CMPL AX, $7
	JB no
	MOVL $1, AX
	MOVL $0, CX
	CPUID
	MOVL CX, R8
	MOVL $7, AX
	MOVL $0, CX
	CPUID
	BTL $29, BX // SHA
	JCC no
	BTL $9, R8 // SSSE3
	JCC no
	BTL $19, R8 // SSE4.1
	JCC no
	MOVB $1, ret+0(FP)
	RET
no:
	MOVB $0, ret+0(FP)
	RET

// Two independent messages at once. SHA256RNDS2 is latency-bound for one
// message (each pair of rounds waits for the previous); interleaving a
// second message fills the gaps. Message A uses the registers above (X1,
// X2, X3-X6); message B uses X9, X10 (state) and X11-X14 (schedule). X15
// holds B's message words plus constants while X0 serves A; X7 is the
// scratch register; the states before the block are kept on the stack.

// ROUNDS4X2 is ROUNDS4 for both messages, alternating their SHA256RNDS2.
#define ROUNDS4X2(ma, mb, off) \
	MOVOU off(AX), X0 \
	MOVO X0, X15 \
	PADDD ma, X0 \
	PADDD mb, X15 \
	SHA256RNDS2 X0, X1, X2 \
	PSHUFD $0x0E, X0, X7 \
	MOVO X15, X0 \
	SHA256RNDS2 X0, X9, X10 \
	PSHUFD $0x0E, X15, X15 \
	MOVO X7, X0 \
	SHA256RNDS2 X0, X2, X1 \
	MOVO X15, X0 \
	SHA256RNDS2 X0, X10, X9

// LOAD2 reads four message words of each message.
#define LOAD2(off, ma, mb) \
	MOVOU off(SI), ma \
	PSHUFB X8, ma \
	MOVOU off(R8), mb \
	PSHUFB X8, mb

// LOADSTATE and STORESTATE convert between h[0..7] at r and the
// SHA256RNDS2 layout in abef, cdgh (see blockSHANI).
#define LOADSTATE(r, abef, cdgh) \
	MOVOU 0(r), abef \
	MOVOU 16(r), cdgh \
	PSHUFD $0xB1, abef, abef \
	PSHUFD $0x1B, cdgh, cdgh \
	MOVO abef, X7 \
	PALIGNR $8, cdgh, abef \
	PBLENDW $0xF0, X7, cdgh

#define STORESTATE(r, abef, cdgh) \
	PSHUFD $0x1B, abef, abef \
	PSHUFD $0xB1, cdgh, cdgh \
	MOVO abef, X7 \
	PBLENDW $0xF0, cdgh, abef \
	PALIGNR $8, X7, cdgh \
	MOVOU abef, 0(r) \
	MOVOU cdgh, 16(r)

// func blockSHANI2(ha, hb *[8]uint32, pa, pb *byte, n int, k *[64]uint32)
TEXT ·blockSHANI2(SB), NOSPLIT, $64-48
	MOVQ ha+0(FP), DI
	MOVQ hb+8(FP), BX
	MOVQ pa+16(FP), SI
	MOVQ pb+24(FP), R8
	MOVQ n+32(FP), DX
	MOVQ k+40(FP), AX
	MOVOU bswapMask<>(SB), X8
	LOADSTATE(DI, X1, X2)
	LOADSTATE(BX, X9, X10)

loop2:
	MOVOU X1, 0(SP)
	MOVOU X2, 16(SP)
	MOVOU X9, 32(SP)
	MOVOU X10, 48(SP)

	LOAD2(0, X3, X11)
	ROUNDS4X2(X3, X11, 0)
	LOAD2(16, X4, X12)
	ROUNDS4X2(X4, X12, 16)
	SHA256MSG1 X4, X3
	SHA256MSG1 X12, X11
	LOAD2(32, X5, X13)
	ROUNDS4X2(X5, X13, 32)
	SHA256MSG1 X5, X4
	SHA256MSG1 X13, X12
	LOAD2(48, X6, X14)
	ROUNDS4X2(X6, X14, 48)
	SCHED(X5, X6, X3)
	SCHED(X13, X14, X11)
	SHA256MSG1 X6, X5
	SHA256MSG1 X14, X13
	ROUNDS4X2(X3, X11, 64)
	SCHED(X6, X3, X4)
	SCHED(X14, X11, X12)
	SHA256MSG1 X3, X6
	SHA256MSG1 X11, X14
	ROUNDS4X2(X4, X12, 80)
	SCHED(X3, X4, X5)
	SCHED(X11, X12, X13)
	SHA256MSG1 X4, X3
	SHA256MSG1 X12, X11
	ROUNDS4X2(X5, X13, 96)
	SCHED(X4, X5, X6)
	SCHED(X12, X13, X14)
	SHA256MSG1 X5, X4
	SHA256MSG1 X13, X12
	ROUNDS4X2(X6, X14, 112)
	SCHED(X5, X6, X3)
	SCHED(X13, X14, X11)
	SHA256MSG1 X6, X5
	SHA256MSG1 X14, X13
	ROUNDS4X2(X3, X11, 128)
	SCHED(X6, X3, X4)
	SCHED(X14, X11, X12)
	SHA256MSG1 X3, X6
	SHA256MSG1 X11, X14
	ROUNDS4X2(X4, X12, 144)
	SCHED(X3, X4, X5)
	SCHED(X11, X12, X13)
	SHA256MSG1 X4, X3
	SHA256MSG1 X12, X11
	ROUNDS4X2(X5, X13, 160)
	SCHED(X4, X5, X6)
	SCHED(X12, X13, X14)
	SHA256MSG1 X5, X4
	SHA256MSG1 X13, X12
	ROUNDS4X2(X6, X14, 176)
	SCHED(X5, X6, X3)
	SCHED(X13, X14, X11)
	SHA256MSG1 X6, X5
	SHA256MSG1 X14, X13
	ROUNDS4X2(X3, X11, 192)
	SCHED(X6, X3, X4)
	SCHED(X14, X11, X12)
	SHA256MSG1 X3, X6
	SHA256MSG1 X11, X14
	ROUNDS4X2(X4, X12, 208)
	SCHED(X3, X4, X5)
	SCHED(X11, X12, X13)
	ROUNDS4X2(X5, X13, 224)
	SCHED(X4, X5, X6)
	SCHED(X12, X13, X14)
	ROUNDS4X2(X6, X14, 240)

	MOVOU 0(SP), X7
	PADDD X7, X1
	MOVOU 16(SP), X7
	PADDD X7, X2
	MOVOU 32(SP), X7
	PADDD X7, X9
	MOVOU 48(SP), X7
	PADDD X7, X10
	ADDQ $64, SI
	ADDQ $64, R8
	DECQ DX
	JNZ loop2

	STORESTATE(DI, X1, X2)
	STORESTATE(BX, X9, X10)
	RET
