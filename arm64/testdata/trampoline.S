/* The arm64 kexec entry trampoline, for GNU as. Assemble with
 *   aarch64-linux-gnu-as --defsym DTB=0x... --defsym ENTRY=0x... trampoline.S
 * and compare .text with arm64.Trampoline(DTB, ENTRY). */
	.text
	ldr	x0, dtb
	ldr	x4, entry
	mov	x1, xzr
	mov	x2, xzr
	mov	x3, xzr
	br	x4
	.balign	8
dtb:	.quad	DTB
entry:	.quad	ENTRY
