// Command hashfloor measures the hashing floor of `imalog verify` with
// sha1 and sha256 quotes on a list: the SHA-256 template digest of every
// entry and one extend per bank per entry (the SHA-1 bank extends the
// stored digests), with the standard library's one-shot functions, on one
// goroutine, after the list is parsed. It prints the hashing's wall time
// and CPU time (user+system, from getrusage) in milliseconds, then the
// final PCR 10 values, so that the work cannot be optimized away.
// ima/bench-vs-evmctl.sh runs it in every round.
//
//	hashfloor LIST
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/gokexec/gokexec/ima"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hashfloor LIST")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	es, err := ima.ParseList(b, binary.LittleEndian)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var p1 [32][20]byte
	var p256 [32][32]byte
	var buf [64]byte
	ff := [32]byte{}
	for i := range ff {
		ff[i] = 0xff
	}
	cpu0 := cpuTime()
	start := time.Now()
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
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	fmt.Printf("%.1f %.1f %x %x\n", float64(took.Microseconds())/1000, float64(cpu.Microseconds())/1000, p1[10], p256[10])
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
