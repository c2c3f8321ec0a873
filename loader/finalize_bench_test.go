package loader

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/plan"
)

// memTPM is a TPM in memory: three banks, extends computed with the
// standard library's hashes.
type memTPM struct {
	v map[crypto.Hash]map[uint32][]byte
}

func (m *memTPM) ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error) {
	out := map[crypto.Hash]map[uint32][]byte{}
	for bank, vals := range m.v {
		out[bank] = map[uint32][]byte{}
		for _, p := range pcrs {
			v := vals[p]
			if v == nil {
				v = make([]byte, bank.Size())
			}
			out[bank][p] = append([]byte(nil), v...)
		}
	}
	return out, nil
}

func (m *memTPM) Extend(pcr uint32, d map[crypto.Hash][]byte) error {
	for bank, vals := range m.v {
		h := bank.New()
		cur := vals[pcr]
		if cur == nil {
			cur = make([]byte, bank.Size())
		}
		h.Write(cur)
		h.Write(d[bank])
		vals[pcr] = h.Sum(nil)
	}
	return nil
}

func (m *memTPM) Close() error { return nil }

// cpuTime is the process's user and system CPU time: machines shared
// with other work make wall time noisy, CPU time much less so.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchFinalizeList is an n-entry ima-sig list like a real one (sha256
// file digests, paths of typical length, PCR 10).
func benchFinalizeList(n int) ([]ima.Entry, []byte) {
	es := make([]ima.Entry, 0, n)
	d := sha256.Sum256([]byte("boot_aggregate"))
	e, _ := ima.NewFileEntry(10, "ima-sig", "boot_aggregate", d[:], crypto.SHA256, []byte{})
	es = append(es, e)
	for i := 1; i < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, _ := ima.NewFileEntry(10, "ima-sig", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%07d.so.1", i), d[:], crypto.SHA256, []byte{})
		es = append(es, e)
	}
	return es, ima.AppendList(nil, es, binary.LittleEndian)
}

var benchBanks = []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384}

// benchFinalize is Finalize of a kexec_load hand-over of an n-entry list
// with a TPM of three banks (sha1, sha256, sha384, each bank's own hash)
// that the list replays to. Only Finalize is timed.
func benchFinalize(b *testing.B, n int) {
	// The timer runs from the call: making and replaying the list below
	// (longer than a finalize at 1M entries) is set-up, not finalize's.
	b.StopTimer()
	es, raw := benchFinalizeList(n)
	quoted := map[crypto.Hash]map[uint32][]byte{}
	for _, bank := range benchBanks {
		quoted[bank] = ima.Replay(es, bank, ima.MethodPerBank)
	}
	img := Image{Kernel: Bytes("/boot/vmlinuz", testkernel.Bytes(b, testkernel.Deb61, 0xcc)), Initrd: Bytes("/boot/initrd.img", []byte("initrd")), Cmdline: "console=ttyS0"}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	ctx := context.Background()
	var cpu time.Duration
	defer func() { b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := newFake(b, raw)
		t := &memTPM{v: map[crypto.Hash]map[uint32][]byte{}}
		for bank, v := range quoted {
			t.v[bank] = map[uint32][]byte{}
			for p, x := range v {
				t.v[bank][p] = bytes.Clone(x)
			}
		}
		h.TPM, h.TPMName = t, "mem"
		l, err := Load(ctx, h, img, Options{Arch: plan.ArchAMD64, Mode: plan.ModeLoad, IMAExtra: 64 << 10})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC() // the set-up's garbage is not finalize's to collect
		b.StartTimer()
		c0 := cpuTime()
		rep, err := l.Finalize(ctx)
		cpu += cpuTime() - c0
		if err != nil {
			b.Fatal(err)
		}
		if rep.Count != n+5 {
			b.Fatalf("%d entries handed over", rep.Count)
		}
	}
}

func BenchmarkFinalize1k(b *testing.B)   { benchFinalize(b, 1_000) }
func BenchmarkFinalize100k(b *testing.B) { benchFinalize(b, 100_000) }
func BenchmarkFinalize1M(b *testing.B)   { benchFinalize(b, 1_000_000) }

// benchFloor is the hashing floor of replaying an n-entry list in the
// three banks, the least any finalize must do per entry: each entry's
// template data hashed once per bank (SHA-1 too: the SHA-1 bank is
// extended with the stored digest, and that the stored digest is the
// template data's SHA-1 is what lets the next kernel restore the entry
// unchanged, so it must be computed) and one extend per bank. It is one
// goroutine's work; the metric is CPU time, like benchFinalize's.
func benchFloor(b *testing.B, n int) {
	es, raw := benchFinalizeList(n)
	b.SetBytes(int64(len(raw)))
	var p1 [20]byte
	var p256 [32]byte
	var p384 [48]byte
	var buf [96]byte
	c0, n0 := cpuTime(), 0
	defer func() { b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(n0), "cpu-ns/op") }()
	for b.Loop() {
		n0++
		for i := range es {
			d1 := sha1.Sum(es[i].TemplateData)
			d256 := sha256.Sum256(es[i].TemplateData)
			d384 := sha512.Sum384(es[i].TemplateData)
			if d1 != es[i].TemplateDigest {
				b.Fatalf("entry %d: stored digest is not the SHA-1 of its template data", i)
			}
			copy(buf[:20], p1[:])
			copy(buf[20:40], d1[:])
			p1 = sha1.Sum(buf[:40])
			copy(buf[:32], p256[:])
			copy(buf[32:], d256[:])
			p256 = sha256.Sum256(buf[:64])
			copy(buf[:48], p384[:])
			copy(buf[48:], d384[:])
			p384 = sha512.Sum384(buf[:96])
		}
	}
}

func BenchmarkFinalizeFloor1k(b *testing.B)   { benchFloor(b, 1_000) }
func BenchmarkFinalizeFloor100k(b *testing.B) { benchFloor(b, 100_000) }
func BenchmarkFinalizeFloor1M(b *testing.B)   { benchFloor(b, 1_000_000) }
