package fdt

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/internal/dtctest"
)

// readGolden reads a testdata blob, gunzipping *.gz.
func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func goldenNames(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, pat := range []string{"*.dtb", "*.dtb.gz"} {
		m, err := filepath.Glob(filepath.Join("testdata", pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	if len(names) < 7 {
		t.Fatalf("found %d golden blobs, want at least 7 (run testdata/regen.sh)", len(names))
	}
	return names
}

func mustParse(t testing.TB, b []byte) *Tree {
	t.Helper()
	tr, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustMarshal(t testing.TB, tr *Tree) []byte {
	t.Helper()
	b, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripGolden(t *testing.T) {
	for _, name := range goldenNames(t) {
		t.Run(name, func(t *testing.T) {
			in := readGolden(t, name)
			out := mustMarshal(t, mustParse(t, in))
			if !bytes.Equal(in, out) {
				i := 0
				for i < len(in) && i < len(out) && in[i] == out[i] {
					i++
				}
				t.Fatalf("round trip differs: in %d bytes, out %d bytes, first difference at %#x", len(in), len(out), i)
			}
		})
	}
}

func TestBoardContents(t *testing.T) {
	tr := mustParse(t, readGolden(t, "dtc-board.dtb"))
	if want := []Range{{0x48000000, 0x100000}, {0x80000000, 0x1000}}; !slices.Equal(tr.Reservations, want) {
		t.Errorf("reservations = %v, want %v", tr.Reservations, want)
	}
	mem, err := tr.MemoryRanges()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Range{{0x40000000, 0x40000000}, {0x100000000, 0x80000000}, {0x200000000, 0x10000000}}; !slices.Equal(mem, want) {
		t.Errorf("memory = %v, want %v", mem, want)
	}
	res, err := tr.ReservedRanges()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Range{{0x48000000, 0x100000}, {0x80000000, 0x1000}, {0x7f000000, 0x200000}}; !slices.Equal(res, want) {
		t.Errorf("reserved = %v, want %v", res, want)
	}
	ch, ok := tr.Lookup("/chosen")
	if !ok {
		t.Fatal("no /chosen")
	}
	if s, err := ch.String("bootargs"); err != nil || s != "console=ttyAMA0 root=/dev/vda1 ima_policy=tcb" {
		t.Errorf("bootargs = %q, %v", s, err)
	}
	if v, err := ch.U64("kaslr-seed"); err != nil || v != 0x0123456789abcdef {
		t.Errorf("kaslr-seed = %#x, %v", v, err)
	}
	if v, err := ch.Number("linux,initrd-end"); err != nil || v != 0x48100000 {
		t.Errorf("initrd-end = %#x, %v", v, err)
	}
	if _, err := ch.U32("bootargs"); !errors.Is(err, ErrValue) {
		t.Errorf("U32(bootargs) error = %v, want ErrValue", err)
	}
	if _, err := ch.String("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("String(nope) error = %v, want ErrNotFound", err)
	}
	root := tr.Root()
	if ss, err := root.Strings("compatible"); err != nil || !slices.Equal(ss, []string{"gokexec,test-board", "arm,armv8"}) {
		t.Errorf("compatible = %q, %v", ss, err)
	}
	// Unit-address-less lookup matches the first memory node.
	if n, ok := tr.Lookup("/memory"); !ok || n.Name() != "memory@40000000" {
		t.Errorf("Lookup(/memory) = %v, %v", n, ok)
	}
	cpu, ok := tr.Lookup("/cpus/cpu@0")
	if !ok {
		t.Fatal("no cpu@0")
	}
	if cpu.Path() != "/cpus/cpu@0" {
		t.Errorf("path = %q", cpu.Path())
	}
	if r, err := cpu.Reg(); err != nil || !slices.Equal(r, []Range{{0, 0}}) {
		t.Errorf("cpu reg = %v, %v", r, err)
	}
	if ac, sc, err := cpu.RegCells(); err != nil || ac != 1 || sc != 0 {
		t.Errorf("cpu RegCells = %d, %d, %v; want 1, 0 from /cpus", ac, sc, err)
	}
	uart, _ := tr.Lookup("/soc/pl011@9000000")
	if r, err := uart.Reg(); err != nil || !slices.Equal(r, []Range{{0x9000000, 0x1000}}) {
		t.Errorf("uart reg = %v, %v", r, err)
	}
	if ac, _ := tr.Root().AddressCells(); ac != 2 {
		t.Errorf("root #address-cells = %d", ac)
	}
	chosenAC, _ := ch.AddressCells()
	chosenSC, _ := ch.SizeCells()
	if chosenAC != DefaultAddressCells || chosenSC != DefaultSizeCells {
		t.Errorf("defaults = %d/%d, want 2/1", chosenAC, chosenSC)
	}
	b1 := mustParse(t, readGolden(t, "dtc-board-R3-S8192-b1.dtb"))
	if b1.BootCPUIDPhys != 1 {
		t.Errorf("boot_cpuid_phys = %d, want 1 (dtc -b 1)", b1.BootCPUIDPhys)
	}
}

func TestMemoryRanges(t *testing.T) {
	_, err := mustParse(t, readGolden(t, "dtc-uefi-nomem.dtb")).MemoryRanges()
	if !errors.Is(err, ErrNoMemory) {
		t.Errorf("UEFI tree: error = %v, want ErrNoMemory", err)
	}
	mem, err := mustParse(t, readGolden(t, "dtc-cells32.dtb")).MemoryRanges()
	if err != nil {
		t.Fatal(err)
	}
	// memory@0 is status = "disabled".
	if want := []Range{{0x80000000, 0x20000000}, {0xc0000000, 0x10000000}}; !slices.Equal(mem, want) {
		t.Errorf("memory = %v, want %v", mem, want)
	}
	mem, err = mustParse(t, readGolden(t, "qemu-virt-cortex-a57.dtb.gz")).MemoryRanges()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Range{{0x40000000, 1 << 30}}; !slices.Equal(mem, want) {
		t.Errorf("QEMU virt -m 1024 memory = %v, want %v", mem, want)
	}
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		ac, sc uint32
		rs     []Range
		hex    string // expected encoding as cells
		err    bool
	}{
		{2, 2, []Range{{0x1_2345_6789, 0x1000}}, "00000001 23456789 00000000 00001000", false},
		{2, 1, []Range{{0x40000000, 0x200000}}, "00000000 40000000 00200000", false},
		{1, 1, []Range{{0x80000000, 0x100}, {0x1000, 0x10}}, "80000000 00000100 00001000 00000010", false},
		{1, 0, []Range{{0x7, 0}}, "00000007", false},
		{1, 1, []Range{{0x1_0000_0000, 1}}, "", true}, // address does not fit
		{2, 1, []Range{{0, 0x1_0000_0000}}, "", true}, // size does not fit
		{1, 0, []Range{{0, 1}}, "", true},             // size with 0 cells
		{3, 1, []Range{{0, 1}}, "", true},             // 3 cells not encodable
	} {
		b, err := EncodeRanges(tc.ac, tc.sc, tc.rs)
		if tc.err {
			if !errors.Is(err, ErrValue) {
				t.Errorf("Encode(%d,%d,%v) error = %v, want ErrValue", tc.ac, tc.sc, tc.rs, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Encode(%d,%d,%v): %v", tc.ac, tc.sc, tc.rs, err)
		}
		if got := cellsHex(b); got != tc.hex {
			t.Errorf("Encode(%d,%d,%v) = %s, want %s", tc.ac, tc.sc, tc.rs, got, tc.hex)
		}
		back, err := DecodeRanges(tc.ac, tc.sc, b)
		if err != nil || !slices.Equal(back, tc.rs) {
			t.Errorf("Decode(Encode(%v)) = %v, %v", tc.rs, back, err)
		}
	}
	// Three cells with a zero high cell decode (PCI-style), nonzero do not.
	if r, err := DecodeRanges(3, 1, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}); err != nil || !slices.Equal(r, []Range{{0x1_0000_0002, 3}}) {
		t.Errorf("3-cell decode = %v, %v", r, err)
	}
	if _, err := DecodeRanges(3, 1, []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrValue) {
		t.Errorf("3-cell overflow error = %v", err)
	}
	if _, err := DecodeRanges(2, 1, make([]byte, 8)); !errors.Is(err, ErrValue) {
		t.Errorf("short entry error = %v", err)
	}
}

func cellsHex(b []byte) string {
	var parts []string
	for i := 0; i+4 <= len(b); i += 4 {
		parts = append(parts, strings.ToLower(strings.TrimSpace(hex8(binary.BigEndian.Uint32(b[i:])))))
	}
	return strings.Join(parts, " ")
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	var s [8]byte
	for i := 7; i >= 0; i-- {
		s[i] = digits[v&0xf]
		v >>= 4
	}
	return string(s[:])
}

// TestDifferentialDtc edits a dtc-produced tree, serializes it, and checks
// that dtc reads back exactly the tree that dtc itself compiles from the
// expected source.
func TestDifferentialDtc(t *testing.T) {
	tr := mustParse(t, readGolden(t, "dtc-board.dtb"))
	ch, _ := tr.Lookup("/chosen")
	must(t, ch.SetString("bootargs", "console=ttyAMA0 ima_policy=critical_data"))
	if !ch.DeleteProperty("kaslr-seed") {
		t.Fatal("kaslr-seed missing")
	}
	must(t, ch.SetU64("kaslr-seed", 0xfeedfacecafebeef))
	must(t, ch.SetProperty("rng-seed", []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	imaBuf, err := EncodeRanges(2, 2, []Range{{0x7e000000, 0x10000}})
	must(t, err)
	must(t, ch.SetProperty("linux,ima-kexec-buffer", imaBuf))
	must(t, tr.AddReservation(Range{0x7e000000, 0x10000}))
	if !tr.RemoveReservation(Range{0x48000000, 0x100000}) {
		t.Fatal("initrd reservation missing")
	}
	must(t, tr.DeleteNode("/reserved-memory/cma"))
	n, err := tr.CreateNode("/soc/virtio_mmio@a000000")
	must(t, err)
	must(t, n.SetString("compatible", "virtio,mmio"))
	must(t, n.SetCells("reg", 0xa000000, 0x200))
	must(t, n.SetEmpty("dma-coherent"))
	out := mustMarshal(t, tr)

	// The result parses and round-trips with this package too.
	if again := mustMarshal(t, mustParse(t, out)); !bytes.Equal(again, out) {
		t.Fatal("re-marshal of edited tree differs")
	}
	got := dtctest.Source(t, out)
	want := dtctest.Source(t, dtctest.Compile(t, filepath.Join("testdata", "board-edited.dts")))
	if got != want {
		t.Errorf("dtc sees a different tree.\n--- got\n%s\n--- want\n%s", got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// nopProperty overwrites a property's tokens with FDT_NOP, as libfdt's
// fdt_nop_property does (the kernel does this to /chosen/rng-seed in the
// blob it later exports as /sys/firmware/fdt).
func nopProperty(t *testing.T, blob []byte, name string) []byte {
	t.Helper()
	b := bytes.Clone(blob)
	be := binary.BigEndian
	st, strOff := int(be.Uint32(b[8:])), int(be.Uint32(b[12:]))
	strs := b[strOff : strOff+int(be.Uint32(b[32:]))]
	end := st + int(be.Uint32(b[36:]))
	for off := st; off < end; {
		switch be.Uint32(b[off:]) {
		case tokenBeginNode:
			nul := bytes.IndexByte(b[off+4:], 0)
			off = align4(off + 4 + nul + 1)
		case tokenProp:
			l, no := int(be.Uint32(b[off+4:])), int(be.Uint32(b[off+8:]))
			next := align4(off + 12 + l)
			if strings.HasPrefix(string(strs[no:]), name+"\x00") {
				for i := off; i < next; i += 4 {
					be.PutUint32(b[i:], tokenNop)
				}
				return b
			}
			off = next
		default:
			off += 4
		}
	}
	t.Fatalf("property %q not found", name)
	return nil
}

func TestNopPreserved(t *testing.T) {
	orig := readGolden(t, "qemu-virt-cortex-a57.dtb.gz")
	in := nopProperty(t, orig, "rng-seed")
	tr := mustParse(t, in)
	ch, _ := tr.Lookup("/chosen")
	if ch.HasProperty("rng-seed") {
		t.Fatal("NOPed rng-seed still visible")
	}
	out := mustMarshal(t, tr)
	if !bytes.Equal(in, out) {
		t.Fatal("blob with NOPs does not round-trip")
	}
	// dtc sees the same tree in the NOPed blob and in our packed,
	// edited-and-restored output.
	tr.Pack()
	packed := mustMarshal(t, tr)
	if len(packed) >= len(in) {
		t.Errorf("Pack did not shrink the 1 MiB QEMU blob: %d bytes", len(packed))
	}
	if dtctest.Source(t, packed) != dtctest.Source(t, in) {
		t.Error("packed blob decompiles differently")
	}
	// Setting a new rng-seed appends it; the NOPs stay where they were.
	must(t, ch.SetProperty("rng-seed", make([]byte, 32)))
	out = mustMarshal(t, tr)
	if !strings.Contains(dtctest.Source(t, out), "rng-seed = <0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00>;") {
		t.Error("new rng-seed not visible to dtc")
	}
}

func TestStringsSuffixReuse(t *testing.T) {
	in := readGolden(t, "dtc-board.dtb")
	tr := mustParse(t, in)
	n, _ := tr.Lookup("/chosen")
	// "cells" is a suffix of "#address-cells" in the strings block: no new
	// string is appended for it.
	must(t, n.SetU32("cells", 1))
	out := mustMarshal(t, tr)
	if got, want := binary.BigEndian.Uint32(out[32:]), binary.BigEndian.Uint32(in[32:]); got != want {
		t.Errorf("size_dt_strings = %d, want %d (suffix reuse)", got, want)
	}
	must(t, n.SetU32("gokexec,new", 1))
	out = mustMarshal(t, tr)
	if got, want := binary.BigEndian.Uint32(out[32:]), binary.BigEndian.Uint32(in[32:])+uint32(len("gokexec,new\x00")); got != want {
		t.Errorf("size_dt_strings = %d, want %d", got, want)
	}
	back := mustParse(t, out)
	c, _ := back.Lookup("/chosen")
	if v, err := c.U32("cells"); err != nil || v != 1 {
		t.Errorf("cells = %v, %v", v, err)
	}
	if v, err := c.U32("gokexec,new"); err != nil || v != 1 {
		t.Errorf("gokexec,new = %v, %v", v, err)
	}
}

func TestNewTree(t *testing.T) {
	tr := New()
	must(t, tr.Root().SetU32("#address-cells", 2))
	must(t, tr.Root().SetU32("#size-cells", 2))
	m, err := tr.CreateNode("/memory@40000000")
	must(t, err)
	must(t, m.SetString("device_type", "memory"))
	reg, err := EncodeRanges(2, 2, []Range{{0x40000000, 0x8000000}})
	must(t, err)
	must(t, m.SetProperty("reg", reg))
	must(t, tr.AddReservation(Range{0x40000000, 0x1000}))
	out := mustMarshal(t, tr)
	got := dtctest.Source(t, out)
	want := "/dts-v1/;\n\n/memreserve/\t0x0000000040000000 0x0000000000001000;\n/ {\n\t#address-cells = <0x02>;\n\t#size-cells = <0x02>;\n\n\tmemory@40000000 {\n\t\tdevice_type = \"memory\";\n\t\treg = <0x00 0x40000000 0x00 0x8000000>;\n\t};\n};\n"
	if got != want {
		t.Errorf("dtc reads:\n%s\nwant:\n%s", got, want)
	}
	if _, err := tr.CreateNode("/a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Lookup("/a/b/c"); !ok {
		t.Error("CreateNode did not create ancestors")
	}
	if err := tr.DeleteNode("/"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("delete root: %v", err)
	}
	if err := tr.DeleteNode("/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := tr.Root().AddChild("a"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("duplicate child: %v", err)
	}
	if err := tr.Root().SetProperty("", nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("empty property name: %v", err)
	}
	if err := tr.AddReservation(Range{1, 0}); !errors.Is(err, ErrValue) {
		t.Errorf("zero-size reservation: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	good := readGolden(t, "dtc-board.dtb")
	be := binary.BigEndian
	set32 := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		be.PutUint32(b[off:], v)
		return b
	}
	st := int(be.Uint32(good[8:]))
	deep := New()
	n := deep.Root()
	for range MaxDepth {
		n = &Node{name: "n", parent: n}
		n.parent.children = append(n.parent.children, n)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"empty", nil, "shorter than a header"},
		{"magic", set32(0, 0xfeedd00d), "magic"},
		{"totalsize", set32(4, uint32(len(good)+1)), "exceeds"},
		{"truncated", good[:len(good)-1], "exceeds"},
		{"struct misaligned", set32(8, uint32(st+2)), "not 4-byte aligned"},
		{"struct outside", set32(8, 0xfffffff0), "outside"},
		{"strings outside", set32(32, 0xffff), "strings block"},
		{"rsvmap misaligned", set32(16, 0x2c), "not 8-byte aligned"},
		{"rsvmap in header", set32(16, 8), "outside"},
		{"old version", set32(20, 3), "older than 16"},
		{"future", set32(24, 18), "last_comp_version"},
		{"struct size", set32(36, uint32(len(good))), "exceeds totalsize"},
		{"first token", set32(st, 7), "unknown token"},
		{"end first", set32(st, tokenEnd), "no root node"},
		{"end node first", set32(st, tokenEndNode), "without a matching"},
		{"prop first", set32(st, tokenProp), "outside any node"},
		{"nameoff", set32(st+8+8, 0xffffff), "name offset"},
		{"prop len", set32(st+8+4, 0xffffff), "value length"},
	} {
		_, err := Parse(tc.b)
		var pe *ParseError
		if !errors.Is(err, ErrMalformed) || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error = %v, want ErrMalformed mentioning %q", tc.name, err, tc.msg)
		}
	}
	if _, err := deep.Marshal(); !errors.Is(err, ErrValue) {
		t.Errorf("too deep marshal: %v", err)
	}
	// A too-deep blob built by hand.
	var s []byte
	for range MaxDepth + 1 {
		s = be.AppendUint32(s, tokenBeginNode)
		s = be.AppendUint32(s, 0)
	}
	blob := handBlob(s)
	if _, err := Parse(blob); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Errorf("deep blob: %v", err)
	}
}

// handBlob wraps a structure block in a minimal v17 header.
func handBlob(st []byte) []byte {
	be := binary.BigEndian
	total := 40 + 16 + len(st)
	b := make([]byte, 0, total)
	for _, v := range []uint32{Magic, uint32(total), 56, uint32(total), 40, 17, 16, 0, 0, uint32(len(st))} {
		b = be.AppendUint32(b, v)
	}
	b = append(b, make([]byte, 16)...)
	return append(b, st...)
}

func TestPropertyAfterSubnode(t *testing.T) {
	be := binary.BigEndian
	var s []byte
	s = be.AppendUint32(s, tokenBeginNode)
	s = be.AppendUint32(s, 0)
	s = be.AppendUint32(s, tokenBeginNode)
	s = append(s, 'a', 0, 0, 0)
	s = be.AppendUint32(s, tokenEndNode)
	s = be.AppendUint32(s, tokenProp)
	s = be.AppendUint32(s, 0)
	s = be.AppendUint32(s, 0)
	s = be.AppendUint32(s, tokenEndNode)
	s = be.AppendUint32(s, tokenEnd)
	b := handBlob(s)
	// give it a strings block "x\0" after the struct
	b = append(b, 'x', 0)
	be.PutUint32(b[4:], uint32(len(b)))
	be.PutUint32(b[32:], 2)
	if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "follows a subnode") {
		t.Errorf("error = %v", err)
	}
}

func BenchmarkParseMarshalQEMU(b *testing.B) {
	in := readGolden(b, "qemu-virt-cortex-a57.dtb.gz")
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		tr, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tr.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKernelSysfsFDT checks the blob Debian's 6.1 arm64 kernel exported as
// /sys/firmware/fdt on QEMU virt (testdata/regen-sysfs-fdt.sh): the kernel
// NOPed /chosen/rng-seed in place and zeroed kaslr-seed; both survive a
// round trip (TestRoundTripGolden) and read as the kernel left them.
func TestKernelSysfsFDT(t *testing.T) {
	in := readGolden(t, "linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz")
	tr := mustParse(t, in)
	ch, ok := tr.Lookup("/chosen")
	if !ok {
		t.Fatal("no /chosen")
	}
	if ch.HasProperty("rng-seed") {
		t.Error("rng-seed visible, the kernel NOPs it")
	}
	if v, err := ch.U64("kaslr-seed"); err != nil || v != 0 {
		t.Errorf("kaslr-seed = %#x, %v; the kernel zeroes it", v, err)
	}
	if s, err := ch.String("bootargs"); err != nil || s != "console=ttyAMA0 panic=-1 quiet" {
		t.Errorf("bootargs = %q, %v", s, err)
	}
	// QEMU writes initrd addresses below 4 GiB as one cell.
	if v, err := ch.Number("linux,initrd-start"); err != nil || v != 0x48000000 {
		t.Errorf("initrd-start = %#x, %v", v, err)
	}
	nops := 0
	for _, p := range ch.Properties() {
		nops += p.nopsBefore
	}
	nops += ch.nopsBeforeEnd
	// rng-seed was 32 bytes: 3 words of header + 8 of value.
	if nops != 11 {
		t.Errorf("/chosen holds %d NOP tokens, want 11 (a NOPed 32-byte property)", nops)
	}
	if mem, err := tr.MemoryRanges(); err != nil || !slices.Equal(mem, []Range{{0x40000000, 1 << 30}}) {
		t.Errorf("memory = %v, %v", mem, err)
	}
}

// TestDifferentialLibfdt makes the same edits with fdtput (libfdt, the
// library the kernel and QEMU use) and with this package, and compares the
// trees dtc reads back, sorted (libfdt inserts new properties and nodes
// first, this package appends them; order carries no meaning there).
func TestDifferentialLibfdt(t *testing.T) {
	if _, err := exec.LookPath("fdtput"); err != nil {
		t.Fatalf("fdtput not found (device-tree-compiler; run scripts/setup.sh): %v", err)
	}
	for _, golden := range []string{"dtc-board.dtb", "linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz"} {
		t.Run(golden, func(t *testing.T) {
			in := readGolden(t, golden)
			path := filepath.Join(t.TempDir(), "x.dtb")
			if err := os.WriteFile(path, in, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"-t", "s", path, "/chosen", "bootargs", "console=ttyAMA0 gokexec=1"},
				{"-t", "x", path, "/chosen", "linux,ima-kexec-buffer", "0", "7e000000", "0", "10000"},
				{"-t", "x", path, "/chosen", "kaslr-seed", "11223344", "55667788"},
				{"-t", "bx", path, "/chosen", "rng-seed", "de", "ad", "be", "ef", "01"},
				{"-p", "-t", "s", path, "/gokexec/deep/node", "compatible", "gokexec,test", "second"},
				{"-d", path, "/chosen", "stdout-path"},
				{"-r", path, "/cpus"},
			} {
				if out, err := exec.Command("fdtput", args...).CombinedOutput(); err != nil {
					t.Fatalf("fdtput %v: %v: %s", args, err, out)
				}
			}
			libfdt := readFile(t, path)

			tr := mustParse(t, in)
			ch, _ := tr.Lookup("/chosen")
			must(t, ch.SetString("bootargs", "console=ttyAMA0 gokexec=1"))
			must(t, ch.SetCells("linux,ima-kexec-buffer", 0, 0x7e000000, 0, 0x10000))
			must(t, ch.SetCells("kaslr-seed", 0x11223344, 0x55667788))
			must(t, ch.SetProperty("rng-seed", []byte{0xde, 0xad, 0xbe, 0xef, 0x01}))
			n, err := tr.CreateNode("/gokexec/deep/node")
			must(t, err)
			must(t, n.SetStrings("compatible", "gokexec,test", "second"))
			ch.DeleteProperty("stdout-path")
			must(t, tr.DeleteNode("/cpus"))
			ours := mustMarshal(t, tr)

			sorted := func(b []byte) string { return dtctest.Run(t, b, "-s", "-I", "dtb", "-O", "dts", "-") }
			if got, want := sorted(ours), sorted(libfdt); got != want {
				t.Errorf("this package and libfdt disagree.\n--- ours\n%s\n--- libfdt\n%s", got, want)
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKernelBuiltDTBs reads two of the DTBs Debian's linux-image-6.1.0-56-arm64
// ships (built by the kernel's dtc): a memreserve and two memory banks on
// the Arm Foundation model; on the Raspberry Pi 4 an empty memory node (the
// firmware fills it) and a /reserved-memory with 2/1 cells.
func TestKernelBuiltDTBs(t *testing.T) {
	fv := mustParse(t, readGolden(t, "linux-6.1.192-build-foundation-v8.dtb"))
	if want := []Range{{0x80000000, 0x10000}}; !slices.Equal(fv.Reservations, want) {
		t.Errorf("foundation reservations = %v", fv.Reservations)
	}
	if mem, err := fv.MemoryRanges(); err != nil || !slices.Equal(mem, []Range{{0x80000000, 0x80000000}, {0x8_8000_0000, 0x80000000}}) {
		t.Errorf("foundation memory = %v, %v", mem, err)
	}
	rpi := mustParse(t, readGolden(t, "linux-6.1.192-build-bcm2711-rpi-4-b.dtb"))
	if _, err := rpi.MemoryRanges(); !errors.Is(err, ErrNoMemory) {
		t.Errorf("rpi4 memory: %v, want ErrNoMemory (reg size 0 until the firmware fills it)", err)
	}
	rm, ok := rpi.Lookup("/reserved-memory")
	if !ok {
		t.Fatal("no /reserved-memory")
	}
	if ac, _ := rm.AddressCells(); ac != 2 {
		t.Errorf("#address-cells = %d", ac)
	}
	if sc, _ := rm.SizeCells(); sc != 1 {
		t.Errorf("#size-cells = %d", sc)
	}
	// Only the /memreserve/ of the spin tables: the CMA pool has no reg,
	// nvram@0 is disabled with an empty reg.
	if r, err := rpi.ReservedRanges(); err != nil || !slices.Equal(r, []Range{{0, 0x1000}}) {
		t.Errorf("rpi4 reserved = %v, %v; want [0, +0x1000)", r, err)
	}
}

func TestClone(t *testing.T) {
	in := readGolden(t, "qemu-virt-cortex-a57.dtb.gz")
	tr := mustParse(t, in)
	c := tr.Clone()
	ch, _ := c.Lookup("/chosen")
	must(t, ch.SetString("bootargs", "changed"))
	must(t, c.AddReservation(Range{0x1000, 0x1000}))
	must(t, c.DeleteNode("/psci"))
	if out := mustMarshal(t, tr); !bytes.Equal(out, in) {
		t.Error("editing the clone changed the original")
	}
	if n, ok := c.Lookup("/chosen"); !ok || n.Parent() != c.Root() {
		t.Error("clone's parent links point outside the clone")
	}
	if out := mustMarshal(t, c); bytes.Equal(out, in) {
		t.Error("clone edits lost")
	}
}
