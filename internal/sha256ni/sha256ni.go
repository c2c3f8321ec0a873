// Package sha256ni computes SHA-256 digests of short inputs with the x86
// SHA extensions, without the per-call work of crypto/sha256 that
// dominates for inputs of one or two blocks.
//
// IMA replay hashes every entry's template data (typically 100-200 bytes)
// and extends every PCR with a 64-byte value: millions of tiny digests,
// for which crypto/sha256.Sum256 spends about as long in its generic
// Write/Sum bookkeeping (state copies, buffering, padding through Write,
// a feature test per block) as in the compression function itself. Sum256
// here pads the input in one stack buffer and compresses it in one call.
// Sum256x2 hashes two inputs at once: one message's SHA256RNDS2 chain is
// latency-bound, and a second, independent one runs in its gaps.
//
// Invariants:
//   - Sum256(p) == crypto/sha256.Sum256(p) for every p, and Sum256x2(a, b)
//     == (Sum256(a), Sum256(b)), on every machine: without the SHA
//     extensions (or with the purego build tag, or on other architectures)
//     they are crypto/sha256.Sum256. Tests compare them on every length up
//     to several blocks (every pair of lengths for Sum256x2), on random
//     inputs, and by fuzzing; the round constants are checked against
//     their definition.
//   - Pure: no allocation, no system calls; the CPU features are read
//     once with CPUID.
//   - Only the compression function, for one message and for two, is in
//     assembly (block_amd64.s); the padding and the byte order of the
//     result are Go.
package sha256ni

import (
	"crypto/sha256"
	"encoding/binary"
)

// Size is the size of a SHA-256 digest in bytes.
const Size = 32

// iv is SHA-256's initial hash value (FIPS 180-4 §5.3.3).
var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

// k is SHA-256's round constants (FIPS 180-4 §4.2.2): the first 32 bits of
// the fractional parts of the cube roots of the first 64 primes.
var k = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

// Accelerated reports whether Sum256 uses the SHA extensions here.
func Accelerated() bool { return useSHANI }

// Sum256 returns the SHA-256 digest of p.
func Sum256(p []byte) [Size]byte {
	if !useSHANI {
		return sha256.Sum256(p)
	}
	h := iv
	var buf [128]byte
	full, end := pad(&buf, p)
	if full > 0 {
		blocks(&h, p[:full])
	}
	blocks(&h, buf[:end])
	return digest(&h)
}

// Sum256x2 returns the SHA-256 digests of a and b. When both split alike
// into whole blocks and padded tail (see pad), which inputs of similar
// length do, the two are compressed together, each block of a interleaved
// with the same block of b: about 1.5 times the throughput of two Sum256.
func Sum256x2(a, b []byte) (da, db [Size]byte) {
	if !useSHANI {
		return sha256.Sum256(a), sha256.Sum256(b)
	}
	var bufA, bufB [128]byte
	fullA, endA := pad(&bufA, a)
	fullB, endB := pad(&bufB, b)
	if fullA != fullB || endA != endB {
		return Sum256(a), Sum256(b)
	}
	ha, hb := iv, iv
	if fullA > 0 {
		blockSHANI2(&ha, &hb, &a[0], &b[0], fullA/64, &k)
	}
	blockSHANI2(&ha, &hb, &bufA[0], &bufB[0], endA/64, &k)
	return digest(&ha), digest(&hb)
}

// pad splits p into whole blocks compressed in place (full bytes) and the
// rest, which it writes to buf followed by 0x80, zero bytes and the length
// in bits: one or two blocks, end bytes. An input of one block or less
// goes whole into buf, so that one call does everything; longer ones are
// compressed in place up to their last whole block (copying more than a
// block costs more than a call: the block loads then straddle the copy's
// overlapping stores).
func pad(buf *[128]byte, p []byte) (full, end int) {
	full = len(p) &^ 63
	if len(p) <= 64 {
		full = 0
	}
	r := copy(buf[:], p[full:])
	buf[r] = 0x80
	end = (r + 9 + 63) &^ 63
	binary.BigEndian.PutUint64(buf[end-8:end], uint64(len(p))<<3)
	return full, end
}

func digest(h *[8]uint32) (out [Size]byte) {
	for i, v := range h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return out
}

// blocks compresses p (a multiple of 64 bytes, not empty) into h.
func blocks(h *[8]uint32, p []byte) {
	blockSHANI(h, &p[0], len(p)/64, &k)
}
