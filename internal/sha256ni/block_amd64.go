//go:build amd64 && !purego

package sha256ni

// useSHANI: the CPU has the SHA extensions and the SSSE3 and SSE4.1
// instructions the block function also uses.
var useSHANI = hasSHANI()

// hasSHANI reads the CPU's features with CPUID.
//
//go:noescape
func hasSHANI() bool

// blockSHANI compresses n 64-byte blocks at p into h, with the round
// constants at k.
//
//go:noescape
func blockSHANI(h *[8]uint32, p *byte, n int, k *[64]uint32)

func setAccelerated(on bool) { useSHANI = on && hasSHANI() }

// blockSHANI2 compresses n 64-byte blocks at pa into ha and n at pb into
// hb, the two messages interleaved.
//
//go:noescape
func blockSHANI2(ha, hb *[8]uint32, pa, pb *byte, n int, k *[64]uint32)
