package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/hashfloor"
)

// benchMachines is how many machines BenchmarkMachines verifies
// (GOKEXEC_BENCH_MACHINES, default 1000), each with a 10,000-entry list.
func benchMachines() int {
	if n, err := strconv.Atoi(os.Getenv("GOKEXEC_BENCH_MACHINES")); err == nil && n > 0 {
		return n
	}
	return 1000
}

const (
	benchEntries   = 10_000
	distinctFleets = 8 // distinct lists, hard-linked across the machines
)

func writeEvmctlPCRFile(tb testing.TB, path string, v map[uint32][]byte, size int) {
	tb.Helper()
	var s strings.Builder
	for p := uint32(0); p < 24; p++ {
		d, ok := v[p]
		if !ok {
			d = make([]byte, size)
		}
		fmt.Fprintf(&s, "PCR-%02d:", p)
		for _, c := range d {
			fmt.Fprintf(&s, " %02X", c)
		}
		s.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(s.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// benchFleet writes n machines under a fixed directory (reused when it is
// complete): each a 10,000-entry ima-sig list in PCRs 10 and 11 and its
// sha1 and sha256 PCR values in evmctl's format.
func benchFleet(b *testing.B, n int) string {
	root := filepath.Join(os.TempDir(), fmt.Sprintf("gokexec-fleet-%d", n))
	fleet := filepath.Join(root, "fleet")
	if _, err := os.Stat(filepath.Join(root, "complete")); err == nil {
		return root
	}
	os.RemoveAll(root)
	type variant struct{ list, sha1, sha256 string }
	var vs []variant
	for k := 0; k < distinctFleets; k++ {
		es := make([]ima.Entry, 0, benchEntries)
		for i := 0; i < benchEntries; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(k, "/", i)))
			pcr := uint32(10)
			if i%50 == 49 {
				pcr = 11
			}
			e, err := ima.NewFileEntry(pcr, "ima-sig", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/lib%d-%06d.so.1", k, i), d[:], crypto.SHA256, []byte{})
			if err != nil {
				b.Fatal(err)
			}
			es = append(es, e)
		}
		d := filepath.Join(root, "lists", fmt.Sprint(k))
		os.MkdirAll(d, 0o755)
		v := variant{filepath.Join(d, "list"), filepath.Join(d, "pcr-sha1.txt"), filepath.Join(d, "pcr-sha256.txt")}
		if err := os.WriteFile(v.list, ima.AppendList(nil, es, binary.LittleEndian), 0o644); err != nil {
			b.Fatal(err)
		}
		writeEvmctlPCRFile(b, v.sha1, ima.Replay(es, crypto.SHA1, ima.MethodPerBank), 20)
		writeEvmctlPCRFile(b, v.sha256, ima.Replay(es, crypto.SHA256, ima.MethodPerBank), 32)
		vs = append(vs, v)
	}
	for m := 0; m < n; m++ {
		v := vs[m%len(vs)]
		d := filepath.Join(fleet, fmt.Sprintf("m%05d", m))
		os.MkdirAll(d, 0o755)
		for src, dst := range map[string]string{v.list: "binary_runtime_measurements", v.sha1: "pcr-sha1.txt", v.sha256: "pcr-sha256.txt"} {
			if err := os.Link(src, filepath.Join(d, dst)); err != nil {
				b.Fatal(err)
			}
		}
	}
	os.WriteFile(filepath.Join(root, "complete"), nil, 0o644)
	return root
}

// buildImalog builds the static imalog binary as shipped.
func buildImalog(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "imalog")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, filepath.Dir(self))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkMachines verifies a fleet of machines' 10,000-entry lists
// (sha1 and sha256 banks, bank by bank) side by side: imalog once for all
// of them (--machines, one process, one JSON verdict per machine), and
// evmctl ima_measurement once per machine. The metrics are machines/s
// (wall) and the CPU time (user + system) of the processes per machine,
// which a loaded machine disturbs less.
func BenchmarkMachines(b *testing.B) {
	n := benchMachines()
	root := benchFleet(b, n)
	fleet := filepath.Join(root, "fleet")
	bin := buildImalog(b, root)
	b.Run(fmt.Sprintf("imalog-one-process/%d", n), func(b *testing.B) {
		var cpu time.Duration
		for b.Loop() {
			c := exec.Command(bin, "verify", "--machines", fleet)
			out, err := c.Output()
			if err != nil {
				b.Fatalf("imalog: %v", err)
			}
			cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
			if c := strings.Count(string(out), `"reason":"ok"`); c != n {
				b.Fatalf("%d of %d machines ok", c, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "machines/s")
		b.ReportMetric(cpu.Seconds()*1000/float64(n*b.N), "cpu-ms/machine")
	})
	// The fleet's hashing floor: every machine's list read, parsed and
	// hashed (internal/hashfloor: the sha1 + sha256 replay's hashing),
	// one goroutine per CPU, in this process.
	b.Run(fmt.Sprintf("floor-in-process/%d", n), func(b *testing.B) {
		for b.Loop() {
			next := make(chan int)
			var wg sync.WaitGroup
			var failed atomic.Bool
			for range runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					for m := range next {
						raw, err := os.ReadFile(filepath.Join(fleet, fmt.Sprintf("m%05d", m), "binary_runtime_measurements"))
						if err != nil {
							failed.Store(true)
							continue
						}
						es, err := ima.ParseList(raw, binary.LittleEndian)
						if err != nil {
							failed.Store(true)
							continue
						}
						hashfloor.Hash(es)
					}
				})
			}
			for m := range n {
				next <- m
			}
			close(next)
			wg.Wait()
			if failed.Load() {
				b.Fatal("a machine's list did not parse")
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "machines/s")
	})
	ev, err := exec.LookPath("evmctl")
	if err != nil {
		b.Fatalf("evmctl (ima-evm-utils, scripts/setup.sh): %v", err)
	}
	b.Run(fmt.Sprintf("evmctl-per-machine/%d", n), func(b *testing.B) {
		var cpu time.Duration
		for b.Loop() {
			for m := 0; m < n; m++ {
				d := filepath.Join(fleet, fmt.Sprintf("m%05d", m))
				c := exec.Command(ev, "ima_measurement", "--ignore-violations",
					"--pcrs", "sha1,"+filepath.Join(d, "pcr-sha1.txt"), "--pcrs", "sha256,"+filepath.Join(d, "pcr-sha256.txt"),
					filepath.Join(d, "binary_runtime_measurements"))
				out, err := c.CombinedOutput()
				if err != nil {
					b.Fatalf("evmctl on %s: %v\n%.300s", d, err, out)
				}
				cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "machines/s")
		b.ReportMetric(cpu.Seconds()*1000/float64(n*b.N), "cpu-ms/machine")
	})
}
