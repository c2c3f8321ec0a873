// Package hashfloor is the hashing floor of a sha1 + sha256 verification
// of an IMA list: the SHA-256 template digest of every entry and one
// extend per bank per entry (the SHA-1 bank extends the stored digests),
// with the standard library's one-shot functions, on one goroutine. The
// benchmarks (ima/internal/hashfloor, cmd/imalog BenchmarkMachines)
// compare imalog with it. Pure; no allocation per entry.
package hashfloor

import (
	"crypto/sha1"
	"crypto/sha256"

	"github.com/gokexec/gokexec/ima"
)

// Hash replays es into PCRs 0-31 of both banks and returns PCR 10's
// values (so the work cannot be optimized away).
func Hash(es []ima.Entry) ([20]byte, [32]byte) {
	var p1 [32][20]byte
	var p256 [32][32]byte
	var buf [64]byte
	ff := [32]byte{}
	for i := range ff {
		ff[i] = 0xff
	}
	for i := range es {
		e := &es[i]
		p := e.PCR % 32
		var d256 [32]byte
		d1 := e.TemplateDigest[:]
		if e.Violation() {
			d256, d1 = ff, ff[:20]
		} else {
			d256 = sha256.Sum256(e.TemplateData)
		}
		copy(buf[:20], p1[p][:])
		copy(buf[20:40], d1)
		p1[p] = sha1.Sum(buf[:40])
		copy(buf[:32], p256[p][:])
		copy(buf[32:], d256[:])
		p256[p] = sha256.Sum256(buf[:64])
	}
	return p1[10], p256[10]
}
