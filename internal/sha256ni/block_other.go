//go:build !amd64 || purego

package sha256ni

const useSHANI = false

func blockSHANI(h *[8]uint32, p *byte, n int, k *[64]uint32) {
	panic("sha256ni: no SHA extensions on this build")
}

func setAccelerated(bool) {}

func blockSHANI2(ha, hb *[8]uint32, pa, pb *byte, n int, k *[64]uint32) {
	panic("sha256ni: no SHA extensions on this build")
}
