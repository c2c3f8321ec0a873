package plan

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/segment"
)

func kernelFixture(t testing.TB) []byte { return testkernel.Bytes(t, testkernel.Deb61, 0xcc) }

func qemuMap(t testing.TB) segment.Map {
	t.Helper()
	f, err := os.Open("testdata/iomem-qemu-q35-1g-deb61.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := segment.ParseIomem(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// list builds a binary measurement list of n ima-ng file entries after a
// boot_aggregate.
func list(t testing.TB, n int) ([]byte, []ima.Entry) {
	t.Helper()
	var es []ima.Entry
	d := sha256.Sum256([]byte("boot"))
	e, err := ima.NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	es = append(es, e)
	for i := 0; i < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/bin/file-%d", i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return ima.AppendList(nil, es, binary.LittleEndian), es
}

func inputs(t testing.TB, entries int) *Inputs {
	raw, _ := list(t, entries)
	return &Inputs{Arch: ArchAMD64, KernelPath: "vmlinuz", Kernel: kernelFixture(t), InitrdPath: "initrd.img",
		Initrd: bytes.Repeat([]byte{7}, 3<<20+5), Cmdline: "console=ttyS0 gkt.step=2", Memory: qemuMap(t),
		IMAList: raw, IMAExtra: 64 << 10, RNGSeed: make([]byte, 32)}
}

func seg(t *testing.T, p *Plan, name string) Segment {
	t.Helper()
	for _, s := range p.Segments {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("plan has no %s segment", name)
	return Segment{}
}

func TestX86Layout(t *testing.T) {
	in := inputs(t, 500)
	_, entries := list(t, 500)
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	p.FillDigests()
	k, im, bp, tr := seg(t, p, "kernel"), seg(t, p, "ima"), seg(t, p, "boot_params"), seg(t, p, "trampoline")
	if k.Mem > 512<<20 || k.Mem%(2<<20) != 0 || k.Mem < 16<<20 {
		t.Fatalf("kernel at %#x: want 2 MiB aligned in [16 MiB, 512 MiB]", k.Mem)
	}
	if im.Mem < 1<<20 || im.Mem+im.Memsz > k.Mem {
		t.Fatalf("IMA segment [%#x, %#x) must lie in [1 MiB, kernel %#x)", im.Mem, im.Mem+im.Memsz, k.Mem)
	}
	if p.IMA.Headroom < in.IMAExtra || p.IMA.Entries != 501 || p.IMA.Size != im.Memsz || p.IMA.ListBytes != uint64(len(in.IMAList)) {
		t.Fatalf("IMA %+v", p.IMA)
	}
	got, err := ima.ParseKexecBuffer(im.Buf, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("buffer holds %d entries, want %d", len(got), len(entries))
	}
	requireHandoverBytes(t, im.Buf, in.IMAList, len(entries))
	if rep := ima.SimulateRestore(im.Buf, binary.LittleEndian); !rep.OK() {
		t.Fatalf("the restoring kernel would object: %+v", rep.Problems)
	}
	nodes, err := bzimage.SetupDataAt(bp.Buf, bp.Mem)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0].Type != bzimage.SetupIMA || nodes[1].Type != bzimage.SetupRNGSeed {
		t.Fatalf("setup_data %+v", nodes)
	}
	payload := bp.Buf[nodes[0].Addr-bp.Mem+bzimage.SetupDataHeaderSize:]
	if binary.LittleEndian.Uint64(payload) != im.Mem || binary.LittleEndian.Uint64(payload[8:]) != im.Memsz {
		t.Fatalf("SETUP_IMA says %x, segment is %#x+%#x", payload[:16], im.Mem, im.Memsz)
	}
	if p.Entry != tr.Mem || !bytes.Contains(tr.Buf, binary.LittleEndian.AppendUint64(nil, k.Mem+0x200)) || !bytes.Contains(tr.Buf, binary.LittleEndian.AppendUint64(nil, bp.Mem)) {
		t.Fatal("trampoline does not enter startup_64 with the zero page")
	}
	if fmt.Sprintf("%x", sha256.Sum256(k.Buf)) != k.SHA256 || k.Bufsz != uint64(len(k.Buf)) {
		t.Fatal("segment digest")
	}
}

// requireHandoverBytes checks a planned IMA segment byte for byte against
// the input list (issue 23: the buffer was checked by entry count only):
// the 24-byte ima_kexec_hdr (version 1, zero reserved fields, buffer_size
// = header + list, count = entries; DESIGN §3.2), then the input list
// verbatim, then nothing but zeros.
func requireHandoverBytes(t testing.TB, buf, list []byte, entries int) {
	t.Helper()
	le := binary.LittleEndian
	if len(buf) < 24+len(list) {
		t.Fatalf("IMA segment of %d bytes cannot hold the 24-byte header and the %d-byte list", len(buf), len(list))
	}
	if v, r0, r1 := le.Uint16(buf), le.Uint16(buf[2:]), le.Uint32(buf[4:]); v != 1 || r0 != 0 || r1 != 0 {
		t.Fatalf("header version %d reserved %d %d", v, r0, r1)
	}
	if size, count := le.Uint64(buf[8:]), le.Uint64(buf[16:]); size != uint64(24+len(list)) || count != uint64(entries) {
		t.Fatalf("header says buffer_size=%d count=%d; the list is %d bytes (+24) of %d entries", size, count, len(list), entries)
	}
	if !bytes.Equal(buf[24:24+len(list)], list) {
		i := 0
		for i < len(list) && buf[24+i] == list[i] {
			i++
		}
		t.Fatalf("the hand-over buffer differs from the input list at list byte %d of %d", i, len(list))
	}
	if rest := buf[24+len(list):]; len(bytes.Trim(rest, "\x00")) != 0 {
		t.Fatalf("%d bytes after the list are not all zero", len(rest))
	}
}

func TestDeterministic(t *testing.T) {
	a, err := Build(inputs(t, 50))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(inputs(t, 50))
	if err != nil {
		t.Fatal(err)
	}
	a.FillDigests()
	b.FillDigests()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("two plans from the same inputs differ:\n%s\n%s", ja, jb)
	}
	for _, key := range []string{`"arch":"amd64"`, `"entry":`, `"syscall":"kexec_load"`, `"segments":[`, `"sha256":"`, `"list_bytes":`, `"headroom":`, `"setup_data":[{"type":8,`} {
		if !strings.Contains(string(ja), key) {
			t.Errorf("plan JSON lacks %s", key)
		}
	}
}

// TestKeepLayout: finalize re-plans a grown list with the old segment size;
// every segment must stay where it was.
func TestKeepLayout(t *testing.T) {
	a, err := Build(inputs(t, 100))
	if err != nil {
		t.Fatal(err)
	}
	in := inputs(t, 130)
	in.IMASegment = a.IMA.Size
	b, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Segments {
		if a.Segments[i].Mem != b.Segments[i].Mem || a.Segments[i].Memsz != b.Segments[i].Memsz {
			t.Fatalf("segment %s moved: %#x+%#x -> %#x+%#x", a.Segments[i].Name, a.Segments[i].Mem, a.Segments[i].Memsz, b.Segments[i].Mem, b.Segments[i].Memsz)
		}
	}
	if b.IMA.Entries != 131 {
		t.Fatalf("entries %d", b.IMA.Entries)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(in *Inputs)
		want error
		msg  string
	}{
		{"not a kernel", func(in *Inputs) { in.Kernel = []byte("#!/bin/sh\n") }, bzimage.ErrNotBzImage, "kernel vmlinuz"},
		{"32-bit kernel", func(in *Inputs) { binary.LittleEndian.PutUint16(in.Kernel[0x236:], 0) }, bzimage.ErrUnsupported, "32-bit"},
		{"empty initrd", func(in *Inputs) { in.Initrd = []byte{} }, ErrInput, "initrd.img is empty"},
		{"headroom too big", func(in *Inputs) { in.IMAExtra = 600 << 20 }, segment.ErrNoRoom, "IMA buffer"},
		{"headroom overflow", func(in *Inputs) { in.IMAExtra = ^uint64(0) }, ErrInput, "IMA headroom"},
		{"no room", func(in *Inputs) {
			in.Memory = segment.Map{{Range: segment.Range{Start: 0x100000, End: 0x2000000}, Type: segment.TypeRAM}}
		}, segment.ErrNoRoom, "kernel"},
		{"garbage list", func(in *Inputs) { in.IMAList = []byte("garbage garbage garbage") }, ErrIMAList, ""},
		{"truncated list", func(in *Inputs) { in.IMAList = in.IMAList[:len(in.IMAList)-3] }, ErrIMAList, ""},
		{"cmdline too long", func(in *Inputs) { in.Cmdline = strings.Repeat("x", 4096) }, bzimage.ErrCmdline, "command line"},
		{"arch", func(in *Inputs) { in.Arch = "riscv64" }, ErrInput, "riscv64"},
		{"mem-max too low", func(in *Inputs) { in.MemMax = 8 << 20 }, segment.ErrNoRoom, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := inputs(t, 10)
			c.mod(in)
			_, err := Build(in)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v; want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func TestLegacyTemplateRefused(t *testing.T) {
	in := inputs(t, 3)
	legacy := ima.Entry{PCR: 10, TemplateName: "ima", TemplateData: append(make([]byte, 20), 4, 0, 0, 0, 'a', 'b', 'c', 'd')}
	h := ima.TemplateDigest(legacy, crypto.SHA1, ima.MethodPerBank)
	copy(legacy.TemplateDigest[:], h)
	in.IMAList = ima.AppendList(in.IMAList, []ima.Entry{legacy}, binary.LittleEndian)
	_, err := Build(in)
	if !errors.Is(err, ErrIMAList) || !errors.Is(err, ima.ErrNotRestorable) {
		t.Fatalf("a legacy 'ima' entry must be refused (the next kernel drops it): %v", err)
	}
}

func TestMemBounds(t *testing.T) {
	in := inputs(t, 10)
	in.MemMin, in.MemMax = 64<<20, 256<<20
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Segments {
		if s.Mem < in.MemMin || s.Mem+s.Memsz > in.MemMax {
			t.Fatalf("%s at [%#x, %#x) outside --mem-min/--mem-max", s.Name, s.Mem, s.Mem+s.Memsz)
		}
	}
}

// TestHandoverBufferIsTheInputList (issue 23: "the planned hand-over
// buffer is checked by entry count only"): for lists of one entry, a few
// and thousands, with and without headroom, the IMA segment is the
// 24-byte header and the input list byte for byte; a buffer missing its
// last entry, or with one entry rewritten, would fail here.
func TestHandoverBufferIsTheInputList(t *testing.T) {
	for _, n := range []int{0, 1, 37, 3000} {
		for _, extra := range []uint64{0, 64 << 10} {
			in := inputs(t, n)
			in.IMAExtra = extra
			_, es := list(t, n)
			p, err := Build(in)
			if err != nil {
				t.Fatalf("%d entries, extra %d: %v", n, extra, err)
			}
			im := seg(t, p, "ima")
			requireHandoverBytes(t, im.Buf, in.IMAList, len(es))
			if im.Memsz < uint64(24+len(in.IMAList))+extra || im.Memsz%4096 != 0 {
				t.Fatalf("%d entries: segment of %d bytes for a %d-byte buffer and %d headroom", n, im.Memsz, 24+len(in.IMAList), extra)
			}
		}
	}
}
