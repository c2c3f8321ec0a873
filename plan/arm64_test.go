package plan

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/arm64"
	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/segment"
)

// arm64Kernel is Debian 6.1's arm64 Image header followed by filler.
func arm64Kernel(t testing.TB) []byte {
	t.Helper()
	hdr, err := os.ReadFile("../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte(nil), hdr...), make([]byte, 4<<20)...)
}

// virtDTB is /sys/firmware/fdt of Debian 6.1 arm64 on QEMU virt.
func virtDTB(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open("../fdt/testdata/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func arm64Inputs(t testing.TB) *Inputs {
	raw, _ := list(t, 200)
	return &Inputs{Arch: ArchARM64, PageSize: 4096, KernelPath: "Image", Kernel: arm64Kernel(t), InitrdPath: "initrd.img",
		Initrd: bytes.Repeat([]byte{5}, 3<<20), Cmdline: "console=ttyAMA0 gkt.step=2", DTB: virtDTB(t), IMAList: raw, IMAExtra: 64 << 10,
		RNGSeed: make([]byte, 32)}
}

func TestARM64Layout(t *testing.T) {
	in := arm64Inputs(t)
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	k, im, rd, dt, tr := seg(t, p, "kernel"), seg(t, p, "ima"), seg(t, p, "initrd"), seg(t, p, "dtb"), seg(t, p, "trampoline")
	if k.Mem%(2<<20) != 0 || p.KernelAddr < k.Mem {
		t.Fatalf("kernel base %#x, load %#x", k.Mem, p.KernelAddr)
	}
	if err := arm64.CheckDTB(dt.Mem, dt.Bufsz); err != nil {
		t.Fatal(err)
	}
	if err := arm64.CheckInitrd(fdt.Range{Start: p.KernelAddr, Size: k.Memsz}, fdt.Range{Start: rd.Mem, Size: rd.Bufsz}); err != nil {
		t.Fatal(err)
	}
	if p.Entry != tr.Mem || !bytes.Equal(tr.Buf, arm64.Trampoline(dt.Mem, p.KernelAddr)) {
		t.Fatal("trampoline does not pass the DTB to the kernel")
	}
	tree, err := fdt.Parse(dt.Buf)
	if err != nil {
		t.Fatal(err)
	}
	chosen, ok := tree.Lookup("/chosen")
	if !ok {
		t.Fatal("no /chosen")
	}
	if s, _ := chosen.String("bootargs"); s != in.Cmdline {
		t.Fatalf("bootargs %q", s)
	}
	buf, _ := chosen.Property("linux,ima-kexec-buffer")
	rs, err := fdt.DecodeRanges(2, 2, buf)
	if err != nil || len(rs) != 1 || rs[0].Start != im.Mem || rs[0].Size != im.Memsz {
		t.Fatalf("linux,ima-kexec-buffer %x (%v), segment %#x+%#x", buf, err, im.Mem, im.Memsz)
	}
	found := false
	for _, r := range tree.Reservations {
		if r.Start == im.Mem && r.Size == im.Memsz {
			found = true
		}
	}
	if !found {
		t.Fatalf("no /memreserve/ for the IMA buffer: %v", tree.Reservations)
	}
	if s, _ := chosen.U64("linux,initrd-start"); s != rd.Mem {
		t.Fatalf("initrd-start %#x, segment %#x", s, rd.Mem)
	}
	if seed, _ := chosen.Property("rng-seed"); len(seed) != arm64.RNGSeedSize {
		t.Fatalf("rng-seed of %d bytes", len(seed))
	}
	if _, err := ima.ParseKexecBuffer(im.Buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.DTBBytes(), dt.Buf) {
		t.Fatal("DTBBytes")
	}
	// Deterministic, like every plan.
	q, _ := Build(arm64Inputs(t))
	if !bytes.Equal(q.DTBBytes(), p.DTBBytes()) || q.Entry != p.Entry {
		t.Fatal("two arm64 plans from the same inputs differ")
	}
}

func TestARM64Errors(t *testing.T) {
	nomem, err := os.ReadFile("../fdt/testdata/dtc-uefi-nomem.dtb")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(in *Inputs)
		want error
		msg  string
	}{
		{"x86 kernel", func(in *Inputs) { in.Kernel = kernelFixture(t) }, arm64.ErrNotImage, "bzImage"},
		{"no DTB", func(in *Inputs) { in.DTB = nil }, ErrInput, "device tree"},
		{"DTB too large", func(in *Inputs) { in.DTB = make([]byte, 3<<20) }, arm64.ErrDTBTooLarge, "limit"},
		{"DTB garbage", func(in *Inputs) { in.DTB = []byte("not a device tree at all") }, fdt.ErrMalformed, "device tree"},
		{"no memory nodes", func(in *Inputs) { in.DTB = nomem }, fdt.ErrNoMemory, "no memory map was given"},
		{"no room", func(in *Inputs) {
			in.Memory = segment.Map{{Range: segment.Range{Start: 0x40000000, End: 0x40800000}, Type: segment.TypeRAM}}
		}, segment.ErrNoRoom, "kernel"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := arm64Inputs(t)
			c.mod(in)
			_, err := Build(in)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v; want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
	// A UEFI DTB without /memory nodes plans fine with a memory map.
	in := arm64Inputs(t)
	in.DTB = nomem
	in.Memory = segment.Map{{Range: segment.Range{Start: 0x40000000, End: 0x80000000}, Type: segment.TypeRAM}}
	if _, err := Build(in); err != nil {
		t.Fatalf("with --memmap: %v", err)
	}
}
