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
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/hashfloor"
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
	cpu0 := cpuTime()
	start := time.Now()
	p1, p256 := hashfloor.Hash(es)
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	fmt.Printf("%.1f %.1f %x %x\n", float64(took.Microseconds())/1000, float64(cpu.Microseconds())/1000, p1, p256)
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
