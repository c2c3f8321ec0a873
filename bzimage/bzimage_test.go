package bzimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/segment"
)

func fixture(t testing.TB, name string) []byte { return testkernel.Bytes(t, name, 0x90) }

var fixtures = testkernel.Names

func TestParseDebianKernels(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			im, err := Parse(fixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if im.Version < 0x020f || im.SetupSects != 39 || !im.Relocatable {
				t.Fatalf("version %#x setup_sects %d relocatable %v", im.Version, im.SetupSects, im.Relocatable)
			}
			if im.Xloadflags&(XLFKernel64|XLFCanBeLoadedAbove4G) != XLFKernel64|XLFCanBeLoadedAbove4G {
				t.Fatalf("xloadflags %#x", im.Xloadflags)
			}
			if im.KernelAlignment != 2<<20 || im.CmdlineSize != 2047 || im.InitSize < 32<<20 {
				t.Fatalf("alignment %#x cmdline_size %d init_size %#x", im.KernelAlignment, im.CmdlineSize, im.InitSize)
			}
			if im.MemSize() != uint64(im.InitSize) {
				t.Fatalf("MemSize %#x, want init_size %#x", im.MemSize(), im.InitSize)
			}
			if im.InitrdMax() != 0 {
				t.Fatalf("InitrdMax %#x, want no limit", im.InitrdMax())
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := fixture(t, fixtures[0])
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		img  []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrNotBzImage, "too short"},
		{"ELF", mod(func(b []byte) []byte { copy(b, "\x7fELF"); copy(b[offHeader:], "\x7fELF"); return b }), ErrNotBzImage, "HdrS"},
		{"boot flag", mod(func(b []byte) []byte { b[offBootFlag] = 0; return b }), ErrNotBzImage, "boot flag"},
		{"too old", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[offVersion:], 0x0209); return b }), ErrUnsupported, "2.09"},
		{"32-bit only", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[offXloadflags:], 0); return b }), ErrUnsupported, "32-bit"},
		{"zImage", mod(func(b []byte) []byte { b[offLoadflags] &^= 1; return b }), ErrUnsupported, "zImage"},
		{"truncated", good[:len(good)/2], ErrNotBzImage, "truncated"},
		{"setup only", good[:20480], ErrNotBzImage, "no protected-mode"},
		{"bad alignment", mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[offKernelAlignment:], 3); return b }), ErrUnsupported, "power of two"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.img)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func TestBuildParams(t *testing.T) {
	im, err := Parse(fixture(t, fixtures[1]))
	if err != nil {
		t.Fatal(err)
	}
	e820 := segment.Map{
		{Range: segment.Range{Start: 0, End: 0x9fc00}, Type: segment.TypeRAM},
		{Range: segment.Range{Start: 0x9fc00, End: 0x100000}, Type: segment.TypeReserved},
		{Range: segment.Range{Start: 0x100000, End: 0x1_4000_0000}, Type: segment.TypeRAM},
	}
	const base = 0x7000_0000
	seed := bytes.Repeat([]byte{0xab}, 32)
	p := &Params{E820: e820, Cmdline: "console=ttyS0 quiet", InitrdAddr: 0x1_2345_6000, InitrdSize: 0x1_0000_1000,
		ACPIRSDP: 0xf5a10, SetupData: []SetupData{IMASetupData(0x2000000, 0x5000), {Type: SetupRNGSeed, Data: seed}}}
	buf, nodes, err := BuildParams(im, base, p)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := ParamsSize(p)
	if uint64(len(buf)) != size {
		t.Fatalf("len %d, ParamsSize %d", len(buf), size)
	}
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(buf[off:]) }
	if string(buf[offHeader:offHeader+4]) != "HdrS" || buf[offTypeOfLoader] != 0xff || buf[0x1ef] != 0 {
		t.Fatal("setup header not copied, loader id not set, or sentinel not zero")
	}
	cmd := uint64(u32(offCmdLinePtr)) | uint64(u32(offExtCmdLinePtr))<<32
	if cmd != base+BootParamsSize || string(buf[BootParamsSize:BootParamsSize+19]) != p.Cmdline || buf[BootParamsSize+19] != 0 {
		t.Fatalf("command line at %#x: %q", cmd, buf[BootParamsSize:BootParamsSize+20])
	}
	if rd := uint64(u32(offRamdiskImage)) | uint64(u32(offExtRamdiskImage))<<32; rd != p.InitrdAddr {
		t.Fatalf("ramdisk %#x, want %#x (ext_ramdisk_image carries the high half)", rd, p.InitrdAddr)
	}
	if rs := uint64(u32(offRamdiskSize)) | uint64(u32(offExtRamdiskSize))<<32; rs != p.InitrdSize {
		t.Fatalf("ramdisk size %#x, want %#x", rs, p.InitrdSize)
	}
	if le.Uint64(buf[offACPIRSDP:]) != 0xf5a10 {
		t.Fatal("acpi_rsdp_addr not set")
	}
	if buf[offE820Entries] != 3 || le.Uint64(buf[offE820Table+2*20:]) != 0x100000 || le.Uint64(buf[offE820Table+2*20+8:]) != 0x1_3ff0_0000 || u32(offE820Table+20+16) != 2 {
		t.Fatalf("e820 table wrong: %x", buf[offE820Table:offE820Table+60])
	}
	walked, err := SetupDataAt(buf, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(walked) != 2 || walked[0] != nodes[0] || walked[1] != nodes[1] || walked[0].Type != SetupIMA || walked[1].Type != SetupRNGSeed {
		t.Fatalf("chain %+v, built %+v", walked, nodes)
	}
	ima := buf[walked[0].Addr-base+SetupDataHeaderSize:]
	if le.Uint64(ima) != 0x2000000 || le.Uint64(ima[8:]) != 0x5000 || walked[0].Len != 16 {
		t.Fatalf("ima_setup_data %x", ima[:16])
	}
	if !bytes.Equal(buf[walked[1].Addr-base+SetupDataHeaderSize:][:32], seed) {
		t.Fatal("rng seed payload")
	}
	for _, n := range walked {
		if n.Addr%16 != 0 {
			t.Fatalf("node at %#x not 16-byte aligned", n.Addr)
		}
	}
}

func TestBuildParamsManyE820(t *testing.T) {
	im, err := Parse(fixture(t, fixtures[0]))
	if err != nil {
		t.Fatal(err)
	}
	var m segment.Map
	for i := uint64(0); i < 130; i++ {
		typ := segment.TypeRAM
		if i%2 == 1 {
			typ = segment.TypeReserved
		}
		m = append(m, segment.Region{Range: segment.Range{Start: 0x100000 * (i + 1), End: 0x100000 * (i + 2)}, Type: typ})
	}
	buf, nodes, err := BuildParams(im, 0x1000000, &Params{E820: m, Cmdline: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if buf[offE820Entries] != E820Max || len(nodes) != 1 || nodes[0].Type != SetupE820Ext || nodes[0].Len != 2*20 {
		t.Fatalf("entries %d, nodes %+v: the 2 entries past 128 belong in a SETUP_E820_EXT node", buf[offE820Entries], nodes)
	}
}

// TestBuildParamsClearsLoaderFields is the fuzzer's reproducer (FuzzParse,
// CI stop 28): an image whose header holds a setup_data pointer (0x52) and
// an initrd must not pass either on; the block's chain holds only the
// nodes this loader built, and no initrd is announced without one.
func TestBuildParamsClearsLoaderFields(t *testing.T) {
	b := bytes.Clone(fixture(t, fixtures[0]))
	le := binary.LittleEndian
	le.PutUint64(b[offSetupData:], 0x52)
	le.PutUint32(b[offRamdiskImage:], 0x7000000)
	le.PutUint32(b[offRamdiskSize:], 0x1000)
	im, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	m := segment.Map{{Range: segment.Range{Start: 0x100000, End: 0x4000_0000}, Type: segment.TypeRAM}}
	const base = 0x10_0000
	buf, _, err := BuildParams(im, base, &Params{E820: m, Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := le.Uint64(buf[offSetupData:]); got != 0 {
		t.Errorf("setup_data %#x carried over from the image; want 0 with no nodes", got)
	}
	if img, size := le.Uint32(buf[offRamdiskImage:]), le.Uint32(buf[offRamdiskSize:]); img != 0 || size != 0 {
		t.Errorf("initrd %#x+%#x carried over from the image; want none", img, size)
	}
	buf, nodes, err := BuildParams(im, base, &Params{E820: m, Cmdline: "x", SetupData: []SetupData{IMASetupData(0x1000, 0x2000)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := SetupDataAt(buf, base)
	if err != nil || len(got) != 1 || got[0] != nodes[0] {
		t.Fatalf("chain %+v (%v); want exactly %+v", got, err, nodes)
	}
}

func TestCmdlineLimits(t *testing.T) {
	im, err := Parse(fixture(t, fixtures[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.CheckCmdline(strings.Repeat("a", 2047)); err != nil {
		t.Fatal(err)
	}
	if err := im.CheckCmdline(strings.Repeat("a", 2048)); !errors.Is(err, ErrCmdline) {
		t.Fatalf("2048-byte command line: %v", err)
	}
	if err := im.CheckCmdline("a\x00b"); !errors.Is(err, ErrCmdline) {
		t.Fatalf("NUL in command line: %v", err)
	}
}

// TestTrampolineDisassembly checks the hand-assembled trampoline against GNU
// objdump's reading of the same bytes.
func TestTrampolineDisassembly(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Fatal("objdump not found: install binutils (scripts/setup.sh)")
	}
	const at, bp, entry = 0x7fffd000, 0x7fffe000, 0x1e000200
	code := Trampoline(at, bp, entry)
	if len(code) != 4096 {
		t.Fatalf("trampoline is %d bytes, want one page", len(code))
	}
	f := filepath.Join(t.TempDir(), "tr.bin")
	if err := os.WriteFile(f, code[:0x40], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", "--adjust-vma=0x7fffd000", f).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump: %v\n%s", err, out)
	}
	dis := string(out)
	for _, want := range []string{
		"lea    rsp,[rip+0xff9]        # 0x7fffe000",
		"lgdt   [rip+0x52]        # 0x7fffd060",
		"push   0x10",
		"push   rax",
		"mov    ds,eax", "mov    es,eax", "mov    ss,eax", "mov    fs,eax", "mov    gs,eax",
		"movabs rsi,0x7fffe000",
		"movabs rax,0x1e000200",
		"jmp    rax",
	} {
		if !strings.Contains(dis, want) {
			t.Errorf("disassembly lacks %q:\n%s", want, dis)
		}
	}
	le := binary.LittleEndian
	if le.Uint16(code[0x60:]) != 31 || le.Uint64(code[0x62:]) != at+0x40 {
		t.Fatalf("GDTR limit %d base %#x", le.Uint16(code[0x60:]), le.Uint64(code[0x62:]))
	}
	if le.Uint64(code[0x50:]) != 0x00af9a000000ffff || le.Uint64(code[0x58:]) != 0x00cf92000000ffff {
		t.Fatal("GDT descriptors for selectors 0x10/0x18")
	}
}
