package plan

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// Benchmark inputs: the real Debian 6.1 cloud kernel from the build cache
// (fetched by scripts/setup.sh; benchmarks skip without it), a 30 MB initrd of
// random bytes and a 5,000-entry ima-ng list after a boot_aggregate.
const (
	benchKernel     = "../build/cache/kernels/deb61-amd64/vmlinuz"
	benchInitrdSize = 30 << 20
	benchIMAEntries = 5000
)

func benchKernelBytes(b *testing.B) []byte {
	b.Helper()
	k, err := os.ReadFile(filepath.FromSlash(benchKernel))
	if err != nil {
		b.Skipf("real kernel not cached (run scripts/setup.sh): %v", err)
	}
	return k
}

func benchInitrd() []byte {
	buf := make([]byte, benchInitrdSize)
	r := rand.NewChaCha8([32]byte{'g', 'o', 'k', 'e', 'x', 'e', 'c'})
	_, _ = r.Read(buf)
	return buf
}

func benchIMAList(b *testing.B, n int) []byte {
	b.Helper()
	es := make([]ima.Entry, 0, n+1)
	d := sha256.Sum256([]byte("boot_aggregate"))
	e, err := ima.NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
	if err != nil {
		b.Fatal(err)
	}
	es = append(es, e)
	for i := 0; i < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/file-%05d.so", i), d[:], crypto.SHA256, nil)
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
	}
	return ima.AppendList(nil, es, binary.LittleEndian)
}

func benchInputs(b *testing.B) *Inputs {
	return &Inputs{Arch: ArchAMD64, KernelPath: "vmlinuz", Kernel: benchKernelBytes(b),
		InitrdPath: "initrd.img", Initrd: benchInitrd(), Cmdline: "console=ttyS0 root=/dev/vda1 ro",
		Memory: qemuMap(b), IMAList: benchIMAList(b, benchIMAEntries), IMAExtra: 64 << 10,
		RNGSeed: make([]byte, 32)}
}

// BenchmarkBuildX86 is the loader's whole user-space cost before the
// syscall: parse the bzImage, lay out the segments, wrap the IMA list and
// hash every input and segment. Bytes/s counts kernel + initrd + IMA list.
func BenchmarkBuildX86(b *testing.B) {
	in := benchInputs(b)
	b.SetBytes(int64(len(in.Kernel) + len(in.Initrd) + len(in.IMAList)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := Build(in)
		if err != nil {
			b.Fatal(err)
		}
		if p.IMA == nil || p.IMA.Entries != benchIMAEntries+1 {
			b.Fatalf("plan IMA %+v", p.IMA)
		}
	}
}

// BenchmarkBuildX86NoIMA is BenchmarkBuildX86 without the hand-over: the
// difference is the cost of parsing and re-marshalling the list.
func BenchmarkBuildX86NoIMA(b *testing.B) {
	in := benchInputs(b)
	in.IMAList = nil
	b.SetBytes(int64(len(in.Kernel) + len(in.Initrd)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Build(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHashFloorX86 hashes the kernel file and the initrd once each with
// SHA-256: the floor any loader that reports input digests pays. Build is
// expected to cost a small multiple of this.
func BenchmarkHashFloorX86(b *testing.B) {
	in := benchInputs(b)
	b.SetBytes(int64(len(in.Kernel) + len(in.Initrd) + len(in.IMAList)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = sha256.Sum256(in.Kernel)
		_ = sha256.Sum256(in.Initrd)
		_ = sha256.Sum256(in.IMAList)
	}
}
