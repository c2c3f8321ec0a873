package arm64

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/internal/dtctest"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cacheKernel returns a kernel fetched by scripts/setup.sh.
func cacheKernel(t testing.TB, name string) []byte {
	t.Helper()
	dir := os.Getenv("GOKEXEC_CACHE")
	if dir == "" {
		dir = filepath.Join("..", "build", "cache")
	}
	p := filepath.Join(dir, "kernels", name, "vmlinuz")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run scripts/setup.sh to fetch the Debian kernels)", err)
	}
	return b
}

// The golden header is the first 64 bytes of Debian's
// linux-image-6.1.0-56-cloud-arm64 vmlinuz (see the .txt next to it).
func TestParseDebianHeader(t *testing.T) {
	// The header followed by filler: the header alone is a truncated Image.
	im, err := ParseImage(append(readFile(t, "testdata/deb61-arm64-Image-header.bin"), make([]byte, 4096)...))
	if err != nil {
		t.Fatal(err)
	}
	if im.TextOffset != 0 || im.ImageSize != 0x1ab0000 || im.Flags != 0xa || im.PEOffset != 0x40 {
		t.Errorf("header = text_offset %#x image_size %#x flags %#x pe %#x", im.TextOffset, im.ImageSize, im.Flags, im.PEOffset)
	}
	if im.Code0 != 0xfa405a4d { // "MZ" + a branch-compatible instruction (EFI stub)
		t.Errorf("code0 = %#x", im.Code0)
	}
	if im.PageSize() != 4096 || !im.AnyPlacement() || im.BigEndian() || im.Compression != "" {
		t.Errorf("page %d any %v be %v comp %q", im.PageSize(), im.AnyPlacement(), im.BigEndian(), im.Compression)
	}
	p, err := im.Placement()
	if err != nil {
		t.Fatal(err)
	}
	if p != (KernelPlacement{Align: 2 << 20, TextOffset: 0, Size: 0x1ab0000, Max: 1 << 48, BottomUp: false}) {
		t.Errorf("placement = %+v", p)
	}
	if err := im.CheckPageSize(4096); err != nil {
		t.Error(err)
	}
	if err := im.CheckPageSize(64 << 10); !errors.Is(err, ErrPageSize) {
		t.Errorf("4K Image on a 64K-only target: %v", err)
	}
}

func TestParseDebianKernel(t *testing.T) {
	raw := cacheKernel(t, "deb61-arm64")
	im, err := ParseImage(raw)
	if err != nil {
		t.Fatal(err)
	}
	// 6.1 has no TEXT_OFFSET; Debian builds 4K pages; the file is smaller
	// than image_size (which includes .bss).
	if im.TextOffset != 0 || im.PageSize() != 4096 || uint64(len(raw)) >= im.ImageSize || !bytes.Equal(im.Kernel, raw) {
		t.Errorf("text_offset %#x page %d len %#x image_size %#x", im.TextOffset, im.PageSize(), len(raw), im.ImageSize)
	}

	// The same Image compressed by GNU gzip, as Image.gz is shipped.
	cmd := exec.Command("gzip", "-c", "-n", "-1")
	cmd.Stdin = bytes.NewReader(raw)
	gz, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	img, err := ParseImage(gz)
	if err != nil {
		t.Fatal(err)
	}
	if img.Compression != "gzip" || !bytes.Equal(img.Kernel, raw) || img.ImageSize != im.ImageSize {
		t.Errorf("gzip: compression %q, kernel equal %v", img.Compression, bytes.Equal(img.Kernel, raw))
	}
}

func TestParseErrors(t *testing.T) {
	hdr := readFile(t, "testdata/deb61-arm64-Image-header.bin")
	with := func(off int, v uint64) []byte {
		b := bytes.Clone(hdr)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	xz, err := exec.Command("xz", "-c", "testdata/deb61-arm64-Image-header.bin").Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	var gzJunk bytes.Buffer
	zw := gzip.NewWriter(&gzJunk)
	fmt.Fprint(zw, "not a kernel at all, but long enough to hold a header: ..............")
	zw.Close()
	amd64 := cacheKernel(t, "deb61-amd64")
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrNotImage, "empty"},
		{"short", hdr[:40], ErrNotImage, "shorter than"},
		{"x86", amd64, ErrNotImage, "x86 bzImage"},
		{"elf", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...), ErrNotImage, "ELF"},
		{"xz", xz, ErrNotImage, "xz-compressed"},
		{"gzip junk", gzJunk.Bytes(), ErrNotImage, "gzip-compressed"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, ErrNotImage, "gzip"},
		{"magic", append([]byte("MY"), with(0x38-4, 0)[2:]...), ErrNotImage, "found 0x00000000 at 0x38"},
		{"big endian", with(24, 0xb), ErrBigEndian, "bit 0"},
		{"legacy", with(16, 0), ErrLegacyImage, "image_size 0"},
		{"text_offset", with(8, 0x80001), ErrImageHeader, "text_offset"},
		{"image_size small", with(16, 32), ErrImageHeader, "image_size is only"},
	} {
		_, err := ParseImage(tc.b)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error = %v, want %v mentioning %q", tc.name, err, tc.err, tc.msg)
		}
	}
	// PE without the Image magic (magic cleared but MZ kept).
	pe := with(0x38-4, 0)
	if _, err := ParseImage(pe); err == nil || !strings.Contains(err.Error(), "PE/COFF") {
		t.Errorf("PE: %v", err)
	}
	// Legacy text offset 0x80000 with a real image_size is fine.
	if im, err := ParseImage(append(with(8, 0x80000), make([]byte, 4096)...)); err != nil || im.TextOffset != 0x80000 {
		t.Errorf("text_offset 0x80000: %v", err)
	}
}

func TestGzipBomb(t *testing.T) {
	hdr := readFile(t, "testdata/deb61-arm64-Image-header.bin")
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(hdr)
	zw.Write(make([]byte, 4<<20))
	zw.Close()
	// 64 bytes + 4 MiB of zeros: over a 4 MiB limit, and under it +64.
	if _, err := parseImage(buf.Bytes(), 4<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("error = %v, want ErrTooLarge", err)
	}
	if im, err := parseImage(buf.Bytes(), 4<<20+64); err != nil || len(im.Kernel) != 4<<20+64 {
		t.Errorf("at the limit: %v", err)
	}
	if _, err := parseImage(hdr, 63); !errors.Is(err, ErrTooLarge) {
		t.Errorf("raw over limit: %v", err)
	}
}

func TestPlacementRules(t *testing.T) {
	im := &Image{TextOffset: 0x80000, ImageSize: 0x1000000, Flags: 0x2}
	p, err := im.Placement()
	if err != nil || p != (KernelPlacement{Align: 2 << 20, TextOffset: 0x80000, Size: 0x1080000, BottomUp: true}) {
		t.Errorf("placement = %+v, %v", p, err)
	}
	if a, err := im.LoadAddress(0x40200000); err != nil || a != 0x40280000 {
		t.Errorf("LoadAddress = %#x, %v", a, err)
	}
	if _, err := im.LoadAddress(0x40100000); !errors.Is(err, ErrPlacement) {
		t.Errorf("unaligned base: %v", err)
	}
	im.Flags |= FlagAnyPlacement
	if _, err := im.LoadAddress(1<<48 - 2<<20); !errors.Is(err, ErrPlacement) {
		t.Errorf("above 2^48: %v", err)
	}
	if _, err := im.LoadAddress(^uint64(0) &^ (2<<20 - 1)); !errors.Is(err, ErrPlacement) {
		t.Errorf("overflow: %v", err)
	}

	const G = 1 << 30
	for _, tc := range []struct {
		kernel, initrd fdt.Range
		ok             bool
	}{
		{fdt.Range{Start: 0x40200000, Size: 0x2000000}, fdt.Range{Start: 0x48000000, Size: 0x1000000}, true},
		{fdt.Range{Start: 0x40200000, Size: 0x2000000}, fdt.Range{Start: 33 * G, Size: 0x1000}, false},       // window would be 0..34G
		{fdt.Range{Start: 0x40200000, Size: 0x2000000}, fdt.Range{Start: 32*G - 0x1000, Size: 0x1000}, true}, // window 0..32G
		{fdt.Range{Start: 40 * G, Size: 0x2000000}, fdt.Range{Start: 9 * G, Size: 0x1000}, true},             // initrd below: window 9G..41G
		{fdt.Range{Start: 40 * G, Size: 0x2000000}, fdt.Range{Start: 8*G + G/2, Size: 0x1000}, false},        // would need 8G..40G+32M
	} {
		err := CheckInitrd(tc.kernel, tc.initrd)
		if (err == nil) != tc.ok {
			t.Errorf("CheckInitrd(%v, %v) = %v, want ok=%v", tc.kernel, tc.initrd, err, tc.ok)
		}
	}
	w, err := InitrdWindow(fdt.Range{Start: 40*G + 0x200000, Size: 0x2000000})
	if err != nil || w != (fdt.Range{Start: 9 * G, Size: 63 * G}) {
		t.Errorf("InitrdWindow = %v, %v; want [9G, 72G)", w, err)
	}
	// Every window edge agrees with CheckInitrd.
	k := fdt.Range{Start: 40*G + 0x200000, Size: 0x2000000}
	end, _ := w.End()
	for _, r := range []fdt.Range{{Start: w.Start, Size: 0x1000}, {Start: end - 0x1000, Size: 0x1000}} {
		if err := CheckInitrd(k, r); err != nil {
			t.Errorf("initrd %v inside window %v rejected: %v", r, w, err)
		}
	}
	for _, r := range []fdt.Range{{Start: w.Start - 0x1000, Size: 0x1000}, {Start: end, Size: 0x1000}} {
		if err := CheckInitrd(k, r); err == nil {
			t.Errorf("initrd %v outside window %v accepted", r, w)
		}
	}
	if w, err := InitrdWindow(fdt.Range{Start: 0x40000000, Size: 0x1000}); err != nil || w != (fdt.Range{Start: 0, Size: 33 * G}) {
		t.Errorf("low kernel window = %v, %v", w, err)
	}

	for _, tc := range []struct {
		addr, size uint64
		err        error
	}{
		{0x7fe00000, 0x100000, nil},
		{0x7fe00000, 2 << 20, nil},
		{0x7fe00008, 2 << 20, ErrPlacement}, // crosses 2 MiB
		{0x7fe00004, 0x1000, ErrPlacement},  // not 8-aligned
		{0x7fe00000, 2<<20 + 1, ErrDTBTooLarge},
		{0x7fe00000, 0, ErrPlacement},
	} {
		if err := CheckDTB(tc.addr, tc.size); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("CheckDTB(%#x, %#x) = %v, want %v", tc.addr, tc.size, err, tc.err)
		}
	}
}

func TestPrepareDTB(t *testing.T) {
	tr, err := fdt.Parse(readFile(t, "testdata/dtc-stale-chosen.dtb"))
	if err != nil {
		t.Fatal(err)
	}
	rng := make([]byte, 16)
	for i := range rng {
		rng[i] = 0xa0 + byte(i)
	}
	err = PrepareDTB(tr, ChosenOptions{
		Bootargs:  "console=ttyAMA0 ima_policy=critical_data",
		Initrd:    &fdt.Range{Start: 0x44000000, Size: 0x2345678},
		KASLRSeed: 0x0102030405060708,
		RNGSeed:   rng,
		IMABuffer: &fdt.Range{Start: 0xbff00000, Size: 0x3000},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := BuildDTB(tr)
	if err != nil {
		t.Fatal(err)
	}
	got := dtctest.Run(t, out, "-I", "dtb", "-O", "dts")
	wantBlob := dtctest.Run(t, readFile(t, "testdata/stale-chosen-prepared.dts"), "-I", "dts", "-O", "dtb")
	want := dtctest.Run(t, []byte(wantBlob), "-I", "dtb", "-O", "dts")
	if got != want {
		t.Errorf("prepared tree differs.\n--- got\n%s\n--- want\n%s", got, want)
	}
	// After preparation, the stale properties are gone for a second
	// preparation too, and it removes what the first one added.
	tr2, err := fdt.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := PrepareDTB(tr2, ChosenOptions{Bootargs: "x"}); err != nil {
		t.Fatal(err)
	}
	if want := []fdt.Range{{Start: 0x40000000, Size: 0x10000}, {Start: 0x7f000000, Size: 0x6000}}; !slices.Equal(tr2.Reservations, want) {
		t.Errorf("second preparation left reservations %v, want %v", tr2.Reservations, want)
	}
	ch, _ := tr2.Lookup("/chosen")
	for _, p := range []string{"linux,ima-kexec-buffer", "linux,initrd-start", "linux,initrd-end", "kaslr-seed", "rng-seed"} {
		if ch.HasProperty(p) {
			t.Errorf("%s survived a preparation without it", p)
		}
	}
}

// TestPrepareQEMU prepares QEMU's own virt tree (the one a guest kernel
// gets) and checks what the next kernel will read from it.
func TestPrepareQEMU(t *testing.T) {
	zb := readFile(t, "../fdt/testdata/qemu-virt-cortex-a57.dtb.gz")
	zr, err := gzip.NewReader(bytes.NewReader(zb))
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	tr, err := fdt.Parse(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	mem, err := tr.MemoryRanges()
	if err != nil || len(mem) != 1 {
		t.Fatalf("memory = %v, %v", mem, err)
	}
	err = PrepareDTB(tr, ChosenOptions{
		Bootargs:  "console=ttyAMA0",
		Initrd:    &fdt.Range{Start: 0x48000000, Size: 0x100000},
		KASLRSeed: 0x1122334455667788,
		RNGSeed:   make([]byte, RNGSeedSize),
		IMABuffer: &fdt.Range{Start: 0x7ff00000, Size: 0x2000},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := BuildDTB(tr)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) >= raw.Len() {
		t.Errorf("BuildDTB did not pack: %d bytes", len(out))
	}
	got := dtctest.Run(t, out, "-I", "dtb", "-O", "dts")
	for _, want := range []string{
		"/memreserve/\t0x0000000048000000 0x0000000000100000;",
		"/memreserve/\t0x000000007ff00000 0x0000000000002000;",
		"bootargs = \"console=ttyAMA0\";",
		"linux,initrd-start = <0x00 0x48000000>;",
		"linux,initrd-end = <0x00 0x48100000>;",
		"kaslr-seed = <0x11223344 0x55667788>;",
		"linux,ima-kexec-buffer = <0x00 0x7ff00000 0x00 0x2000>;",
		"stdout-path = \"/pl011@9000000\";",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("prepared QEMU tree lacks %q", want)
		}
	}
	if strings.Count(got, "kaslr-seed") != 1 || strings.Count(got, "rng-seed") != 1 {
		t.Error("seeds duplicated")
	}
}

func TestPrepareCells32(t *testing.T) {
	blob := dtctest.Run(t, readFile(t, "../fdt/testdata/cells32.dts"), "-I", "dts", "-O", "dtb")
	tr, err := fdt.Parse([]byte(blob))
	if err != nil {
		t.Fatal(err)
	}
	// An IMA buffer above 4 GiB cannot be named in 1 address cell.
	err = PrepareDTB(tr, ChosenOptions{IMABuffer: &fdt.Range{Start: 0x1_0000_0000, Size: 0x1000}})
	if !errors.Is(err, ErrChosenOption) || !errors.Is(err, fdt.ErrValue) {
		t.Errorf("IMA buffer above 4G with 1 cell: %v", err)
	}
	tr, _ = fdt.Parse([]byte(blob))
	err = PrepareDTB(tr, ChosenOptions{
		Initrd:    &fdt.Range{Start: 0x90000000, Size: 0x1000},
		IMABuffer: &fdt.Range{Start: 0x9f000000, Size: 0x1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := BuildDTB(tr)
	if err != nil {
		t.Fatal(err)
	}
	got := dtctest.Run(t, out, "-I", "dtb", "-O", "dts")
	for _, want := range []string{
		"linux,initrd-start = <0x90000000>;",
		"linux,initrd-end = <0x90001000>;",
		"linux,ima-kexec-buffer = <0x9f000000 0x1000>;",
		"bootargs = [00];", // an empty string; dtc prints it as bytes
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q in:\n%s", want, got)
		}
	}
	// Initrd above 4 GiB falls back to 2 cells.
	tr, _ = fdt.Parse([]byte(blob))
	if err := PrepareDTB(tr, ChosenOptions{Initrd: &fdt.Range{Start: 0x1_2000_0000, Size: 0x1000}}); err != nil {
		t.Fatal(err)
	}
	ch, _ := tr.Lookup("/chosen")
	if v, err := ch.Number("linux,initrd-end"); err != nil || v != 0x1_2000_1000 {
		t.Errorf("initrd-end = %#x, %v", v, err)
	}
}

func TestPrepareRoundedInitrdReserve(t *testing.T) {
	tr := fdt.New()
	root := tr.Root()
	must(t, root.SetU32("#address-cells", 2))
	must(t, root.SetU32("#size-cells", 2))
	ch, err := tr.CreateNode("/chosen")
	must(t, err)
	must(t, ch.SetU64("linux,initrd-start", 0x48000000))
	must(t, ch.SetU64("linux,initrd-end", 0x48123456))
	// Firmware reserved whole 4K pages.
	must(t, tr.AddReservation(fdt.Range{Start: 0x48000000, Size: 0x124000}))
	must(t, tr.AddReservation(fdt.Range{Start: 0x40000000, Size: 0x1000}))
	// A malformed stale property is removed without touching reservations.
	must(t, ch.SetProperty("linux,elfcorehdr", []byte{1, 2, 3}))
	must(t, PrepareDTB(tr, ChosenOptions{Bootargs: "a"}))
	if want := []fdt.Range{{Start: 0x40000000, Size: 0x1000}}; !slices.Equal(tr.Reservations, want) {
		t.Errorf("reservations = %v, want %v", tr.Reservations, want)
	}
	if ch.HasProperty("linux,elfcorehdr") {
		t.Error("malformed elfcorehdr kept")
	}
	if err := PrepareDTB(tr, ChosenOptions{Bootargs: "a\x00b"}); !errors.Is(err, ErrChosenOption) {
		t.Errorf("NUL in bootargs: %v", err)
	}
	if err := PrepareDTB(tr, ChosenOptions{Initrd: &fdt.Range{Start: ^uint64(0), Size: 2}}); !errors.Is(err, ErrChosenOption) {
		t.Errorf("wrapping initrd: %v", err)
	}
}

func TestBuildDTBTooLarge(t *testing.T) {
	tr := fdt.New()
	n, err := tr.CreateNode("/blob")
	must(t, err)
	must(t, n.SetProperty("data", make([]byte, MaxDTBSize)))
	_, err = BuildDTB(tr)
	if !errors.Is(err, ErrDTBTooLarge) || !errors.Is(err, fdt.ErrTooLarge) {
		t.Errorf("error = %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTrampolineGolden(t *testing.T) {
	want := readFile(t, "testdata/trampoline-gnu-as-dtb48000000-entry40200000.bin")
	if got := Trampoline(0x48000000, 0x40200000); !bytes.Equal(got, want) {
		t.Errorf("Trampoline = % x\nGNU as      = % x", got, want)
	}
}

// TestTrampolineGNUAs assembles testdata/trampoline.S with GNU as for
// several address pairs and compares the bytes.
func TestTrampolineGNUAs(t *testing.T) {
	as, objcopy := "aarch64-linux-gnu-as", "aarch64-linux-gnu-objcopy"
	for _, tool := range []string{as, objcopy} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (binutils-aarch64-linux-gnu; run scripts/setup.sh): %v", tool, err)
		}
	}
	dir := t.TempDir()
	for _, tc := range [][2]uint64{
		{0, 0},
		{0x48000000, 0x40200000},
		{0xffffffff_fffffff8, 0x8000_0000_0000},
		{0x1_2345_6788, 0xfedc_ba98_7654_3210},
	} {
		obj, bin := filepath.Join(dir, "t.o"), filepath.Join(dir, "t.bin")
		out, err := exec.Command(as, "--defsym", fmt.Sprintf("DTB=%#x", tc[0]), "--defsym", fmt.Sprintf("ENTRY=%#x", tc[1]),
			"-o", obj, "testdata/trampoline.S").CombinedOutput()
		if err != nil {
			t.Fatalf("as: %v: %s", err, out)
		}
		if out, err := exec.Command(objcopy, "-O", "binary", "-j", ".text", obj, bin).CombinedOutput(); err != nil {
			t.Fatalf("objcopy: %v: %s", err, out)
		}
		want := readFile(t, bin)
		if got := Trampoline(tc[0], tc[1]); !bytes.Equal(got, want) {
			t.Errorf("Trampoline(%#x, %#x) = % x\nGNU as = % x", tc[0], tc[1], got, want)
		}
		if len(want) != TrampolineSize {
			t.Errorf("GNU as produced %d bytes, TrampolineSize is %d", len(want), TrampolineSize)
		}
	}
}

func BenchmarkParseImageGzip(b *testing.B) {
	raw := cacheKernel(b, "deb61-arm64")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseImage(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPrepareKernelSysfs prepares the /sys/firmware/fdt that Debian's 6.1
// arm64 kernel exported on QEMU virt (NOPed rng-seed, zeroed kaslr-seed,
// one-cell initrd properties from QEMU): exactly what gokexec reads on a
// real system.
func TestPrepareKernelSysfs(t *testing.T) {
	zb := readFile(t, "../fdt/testdata/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz")
	zr, err := gzip.NewReader(bytes.NewReader(zb))
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	tr, err := fdt.Parse(raw.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.Repeat([]byte{0x5a}, RNGSeedSize)
	err = PrepareDTB(tr, ChosenOptions{
		Bootargs:  "console=ttyAMA0 ima_policy=tcb",
		Initrd:    &fdt.Range{Start: 0x7c000000, Size: 0x200000},
		KASLRSeed: 0xdeadbeef00c0ffee,
		RNGSeed:   seed,
		IMABuffer: &fdt.Range{Start: 0x7e000000, Size: 0x11000},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := BuildDTB(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckDTB(0x7fe00000, uint64(len(out))); err != nil {
		t.Error(err)
	}
	got := dtctest.Run(t, out, "-I", "dtb", "-O", "dts")
	var chosen string
	if i := strings.Index(got, "\tchosen {"); i >= 0 {
		chosen = got[i:]
		chosen = chosen[:strings.Index(chosen, "};")+2]
	}
	want := "\tchosen {\n" +
		"\t\tbootargs = \"console=ttyAMA0 ima_policy=tcb\";\n" +
		"\t\tstdout-path = \"/pl011@9000000\";\n" +
		"\t\tlinux,initrd-start = <0x00 0x7c000000>;\n" +
		"\t\tlinux,initrd-end = <0x00 0x7c200000>;\n" +
		"\t\tkaslr-seed = <0xdeadbeef 0xc0ffee>;\n" +
		"\t\trng-seed = <" + strings.TrimSpace(strings.Repeat("0x5a5a5a5a ", RNGSeedSize/4)) + ">;\n" +
		"\t\tlinux,ima-kexec-buffer = <0x00 0x7e000000 0x00 0x11000>;\n" +
		"\t};"
	if chosen != want {
		t.Errorf("/chosen:\n%s\nwant:\n%s", chosen, want)
	}
	if !strings.HasPrefix(got, "/dts-v1/;\n\n/memreserve/\t0x000000007c000000 0x0000000000200000;\n/memreserve/\t0x000000007e000000 0x0000000000011000;\n") {
		t.Errorf("memreserve block:\n%s", got[:min(len(got), 200)])
	}
}

// TestPrepareAgain: finalize may have to move the IMA buffer after the DTB
// was prepared. Preparing the prepared tree again with new ranges must give
// the same tree as preparing the original once with them.
func TestPrepareAgain(t *testing.T) {
	base, err := fdt.Parse(readFile(t, "testdata/dtc-stale-chosen.dtb"))
	if err != nil {
		t.Fatal(err)
	}
	first := ChosenOptions{Bootargs: "a", Initrd: &fdt.Range{Start: 0x44000000, Size: 0x1000}, KASLRSeed: 1, RNGSeed: []byte{1}, IMABuffer: &fdt.Range{Start: 0xb0000000, Size: 0x2000}}
	second := ChosenOptions{Bootargs: "b", Initrd: &fdt.Range{Start: 0x45000000, Size: 0x3000}, KASLRSeed: 2, RNGSeed: []byte{2, 2}, IMABuffer: &fdt.Range{Start: 0xb1000000, Size: 0x9000}}
	twice := base.Clone()
	must(t, PrepareDTB(twice, first))
	must(t, PrepareDTB(twice, second))
	once := base.Clone()
	must(t, PrepareDTB(once, second))
	a, err := BuildDTB(twice)
	must(t, err)
	b, err := BuildDTB(once)
	must(t, err)
	if sa, sb := dtctest.Run(t, a, "-s", "-I", "dtb", "-O", "dts"), dtctest.Run(t, b, "-s", "-I", "dtb", "-O", "dts"); sa != sb {
		t.Errorf("prepared twice:\n%s\nprepared once:\n%s", sa, sb)
	}
}

// Finding 7 of issue 11: a 100-byte gzip whose content is a truncated
// Image was planned as if it were a kernel.
func TestTruncatedImages(t *testing.T) {
	hdr := readFile(t, "testdata/deb61-arm64-Image-header.bin")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(hdr)
	zw.Close()
	if gz.Len() > 100 {
		t.Fatalf("reproducer is %d bytes", gz.Len())
	}
	if _, err := ParseImage(gz.Bytes()); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "after gunzip") {
		t.Errorf("gzip of a bare header: %v", err)
	}
	raw := cacheKernel(t, "deb61-arm64")
	for _, n := range []int{100, 4096, len(raw) / 2, len(raw) * 9 / 10} {
		if _, err := ParseImage(raw[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("Debian Image cut to %d of %d bytes: %v", n, len(raw), err)
		}
	}
	// A gzip stream cut short fails in gunzip.
	cmd := exec.Command("gzip", "-c", "-n", "-1")
	cmd.Stdin = bytes.NewReader(raw)
	full, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseImage(full[:len(full)-8]); !errors.Is(err, ErrNotImage) {
		t.Errorf("gzip without its trailer: %v", err)
	}
	if _, err := ParseImage(full); err != nil {
		t.Errorf("the whole Image.gz: %v", err)
	}
}
