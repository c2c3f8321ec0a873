package loader

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// benchOptions writes the inputs of scripts/bench-loader.sh (a 30 MiB random
// initrd and a 5,001-entry ima-ng list) into a temporary directory and
// returns dry-run options for them with the real Debian kernel from the
// build cache (the benchmarks skip without it). Plan then reads only files
// and /proc, /sys facts: a dry run calls no kexec syscall.
func benchOptions(b *testing.B) (Facts, Image, Options) {
	b.Helper()
	kernel := filepath.FromSlash("../build/cache/kernels/deb61-amd64/vmlinuz")
	if _, err := os.Stat(kernel); err != nil {
		b.Skipf("real kernel not cached (run scripts/setup.sh): %v", err)
	}
	dir := b.TempDir()
	initrd := make([]byte, 30<<20)
	r := rand.NewChaCha8([32]byte{'i', 'n', 'i', 't', 'r', 'd'})
	_, _ = r.Read(initrd)
	if err := os.WriteFile(filepath.Join(dir, "initrd"), initrd, 0o644); err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("boot_aggregate"))
	e, err := ima.NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
	if err != nil {
		b.Fatal(err)
	}
	es := []ima.Entry{e}
	for i := 0; i < 5000; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/file-%05d.so", i), d[:], crypto.SHA256, nil)
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
	}
	if err := os.WriteFile(filepath.Join(dir, "ima.list"), ima.AppendList(nil, es, binary.LittleEndian), 0o644); err != nil {
		b.Fatal(err)
	}
	img, err := FileImage(kernel, filepath.Join(dir, "initrd"), "", "console=ttyS0")
	if err != nil {
		b.Fatal(err)
	}
	h := &kexec.System{IMALog: filepath.Join(dir, "ima.list"), MemMap: filepath.FromSlash("../plan/testdata/iomem-qemu-q35-1g-deb61.txt")}
	return h, img, Options{Arch: plan.ArchAMD64, IMAExtra: 64 << 10}
}

func benchPlan(b *testing.B, mode plan.Mode) {
	h, img, o := benchOptions(b)
	o.Mode = mode
	st, _ := os.Stat(img.Kernel.Path)
	b.SetBytes(st.Size() + 30<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p, err := Plan(context.Background(), h, img, o)
		if err != nil {
			b.Fatal(err)
		}
		if p.IMA == nil {
			b.Fatal("no IMA hand-over planned")
		}
	}
}

// BenchmarkPlanDryRun is the in-process part of `gokexec -l K --initrd I
// --dry-run`: read the inputs, gather the decision facts, plan and hash.
// B/op includes the two input files themselves (~44 MiB).
func BenchmarkPlanDryRun(b *testing.B) { benchPlan(b, plan.ModeAuto) }

// BenchmarkPlanDryRunLoad is the same with -c (kexec_load requested).
func BenchmarkPlanDryRunLoad(b *testing.B) { benchPlan(b, plan.ModeLoad) }
