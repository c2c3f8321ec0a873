package vmlinux

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"github.com/gokexec/gokexec/internal/testkernel"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cached returns a file of a test kernel built by scripts/build-kernel.sh
// (kept beside its Image or bzImage), skipping only under -short when the
// kernel has not been built.
func cached(t *testing.T, name, file string) []byte {
	t.Helper()
	dir := os.Getenv("GOKEXEC_CACHE")
	if dir == "" {
		dir = filepath.Join("..", "build", "cache")
	}
	p := filepath.Join(dir, "kernels", name, file)
	b, err := os.ReadFile(p)
	if err != nil && testing.Short() {
		t.Skipf("%v (the test command builds it: scripts/build-kernel.sh)", err)
	}
	if err != nil {
		t.Fatalf("%v (run scripts/build-kernel.sh)", err)
	}
	return b
}

// readelfLoads runs binutils' readelf -lW on b and returns its PT_LOAD
// rows as (offset, vaddr, paddr, filesz, memsz) and the entry point.
func readelfLoads(t *testing.T, tool string, b []byte) ([][5]uint64, uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "-lW", p).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
	var rows [][5]uint64
	var entry uint64
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "Entry" && f[1] == "point" {
			entry, _ = strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
		}
		if len(f) < 6 || f[0] != "LOAD" {
			continue
		}
		var r [5]uint64
		for i := 0; i < 5; i++ {
			r[i], err = strconv.ParseUint(strings.TrimPrefix(f[1+i], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("readelf row %q: %v", l, err)
			}
		}
		rows = append(rows, r)
	}
	return rows, entry
}

func checkAgainstReadelf(t *testing.T, tool string, b []byte, k *Kernel) {
	rows, entry := readelfLoads(t, tool, b)
	if entry != k.Entry {
		t.Errorf("entry %#x, readelf says %#x", k.Entry, entry)
	}
	var want []Segment
	for _, r := range rows {
		if r[4] == 0 {
			continue
		}
		want = append(want, Segment{Phys: r[2], Virt: r[1], Data: b[r[0] : r[0]+r[3]], MemSize: r[4]})
	}
	if len(want) != len(k.Segments) {
		t.Fatalf("%d segments, readelf lists %d", len(k.Segments), len(want))
	}
	for _, w := range want {
		found := false
		for _, s := range k.Segments {
			if s.Phys == w.Phys && s.Virt == w.Virt && s.MemSize == w.MemSize && bytes.Equal(s.Data, w.Data) {
				found = true
			}
		}
		if !found {
			t.Errorf("readelf's segment paddr %#x memsz %#x not parsed alike", w.Phys, w.MemSize)
		}
	}
}

// The x86 test kernel's vmlinux: segments and entry agree with readelf,
// the entry is startup_64's physical address inside the first segment.
func TestX86Vmlinux(t *testing.T) {
	// A real x86_64 vmlinux: the ELF inside Debian's 6.1 bzImage (its
	// payload is the stripped vmlinux, compressed), so no kernel build is
	// needed to have one.
	b, err := os.ReadFile(testkernel.Vmlinux(t, testkernel.Deb61BzImage))
	if err != nil {
		t.Fatal(err)
	}
	k, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if k.Machine != X86_64 {
		t.Fatalf("machine %s", k.Machine)
	}
	checkAgainstReadelf(t, "readelf", b, k)
	if k.Segments[0].Phys != 0x1000000 || k.Entry != k.Segments[0].Phys {
		t.Errorf("first segment at %#x, entry %#x: want both at 16 MiB (startup_64)", k.Segments[0].Phys, k.Entry)
	}
	if _, err := k.Image(); !errors.Is(err, ErrMachine) {
		t.Errorf("Image of an x86 kernel: %v", err)
	}
	t.Logf("%d segments, entry %#x", len(k.Segments), k.Entry)
}

// The arm64 test kernels' vmlinux flattens to exactly the Image the same
// build's objcopy wrote.
func TestARM64VmlinuxImage(t *testing.T) {
	for _, name := range []string{"restore-arm64", "imakexec-arm64"} {
		t.Run(name, func(t *testing.T) {
			b := cached(t, name, "vmlinux")
			want := cached(t, name, "vmlinuz")
			k, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if k.Machine != ARM64 {
				t.Fatalf("machine %s", k.Machine)
			}
			checkAgainstReadelf(t, "aarch64-linux-gnu-readelf", b, k)
			img, err := k.Image()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img, want) {
				n := 0
				for n < len(img) && n < len(want) && img[n] == want[n] {
					n++
				}
				t.Fatalf("flattened vmlinux (%d bytes) differs from the build's Image (%d bytes) at %#x", len(img), len(want), n)
			}
		})
	}
}

// minimal builds a small ELF64 kernel-like executable with the given
// PT_LOAD rows (paddr, filesz, memsz), each linked at kernelMap + paddr as
// x86_64's vmlinux is, data after the headers.
func minimal(machine elf.Machine, entry uint64, loads [][3]uint64) []byte {
	return minimalAt(machine, entry, loads, kernelMap)
}

// kernelMap is x86_64's __START_KERNEL_map.
const kernelMap = 0xffffffff80000000

// minimalAt is minimal with each segment linked at base + paddr.
func minimalAt(machine elf.Machine, entry uint64, loads [][3]uint64, base uint64) []byte {
	le := binary.LittleEndian
	const ehsize, phsize = 64, 56
	off := uint64(ehsize + phsize*len(loads))
	b := make([]byte, ehsize)
	copy(b, elf.ELFMAG)
	b[4], b[5], b[6] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], entry)
	le.PutUint64(b[32:], ehsize)
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], uint16(len(loads)))
	le.PutUint16(b[58:], 64)
	var data []byte
	for _, l := range loads {
		ph := make([]byte, phsize)
		le.PutUint32(ph[0:], uint32(elf.PT_LOAD))
		le.PutUint64(ph[8:], off+uint64(len(data)))
		le.PutUint64(ph[16:], base+l[0])
		le.PutUint64(ph[24:], l[0])
		le.PutUint64(ph[32:], l[1])
		le.PutUint64(ph[40:], l[2])
		b = append(b, ph...)
		data = append(data, bytes.Repeat([]byte{0xcc}, int(l[1]))...)
	}
	return append(b, data...)
}

func TestParseBad(t *testing.T) {
	ok := minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{0x1000000, 0x100, 0x200}, {0x2000000, 0x10, 0x10}})
	if k, err := Parse(ok); err != nil || len(k.Segments) != 2 || k.Segments[0].MemSize != 0x200 {
		t.Fatalf("minimal x86 ELF: %v", err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrNotVmlinux},
		// A user-space executable (a static binary such as the guest's
		// /init) links nothing in the kernel half: not a kernel.
		{"user-space executable", minimalAt(elf.EM_X86_64, 0x401000, [][3]uint64{{0x400000, 0x100, 0x200}}, 0), ErrNotVmlinux},
		{"bzImage-ish", bytes.Repeat([]byte{0}, 1024), ErrNotVmlinux},
		{"riscv", minimal(elf.EM_RISCV, 0x1000000, [][3]uint64{{0x1000000, 0x10, 0x10}}), ErrMachine},
		{"no-load", minimal(elf.EM_X86_64, 0x1000000, nil), ErrNotVmlinux},
		{"filesz>memsz", minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{0x1000000, 0x20, 0x10}}), ErrBad},
		{"overlap", minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{0x1000000, 0x10, 0x2000}, {0x1001000, 0x10, 0x10}}), ErrBad},
		{"huge", minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{0x1000000, 0x10, 1 << 40}}), ErrBad},
		{"wrap", minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{^uint64(0) - 0x10, 0x10, 0x100}}), ErrBad},
		{"entry-outside", minimal(elf.EM_X86_64, 0x5000000, [][3]uint64{{0x1000000, 0x10, 0x10}}), ErrBad},
		{"truncated", ok[:len(ok)-8], ErrBad},
		{"header-only", ok[:40], ErrBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.in); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
}

// FuzzParse: never panics; what it accepts keeps its promises.
func FuzzParse(f *testing.F) {
	f.Add(minimal(elf.EM_X86_64, 0x1000000, [][3]uint64{{0x1000000, 0x100, 0x200}}))
	f.Add(minimal(elf.EM_AARCH64, 0x40000000, [][3]uint64{{0x40000000, 0x40, 0x1000}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := Parse(b)
		if err != nil {
			return
		}
		var prevEnd uint64
		for i, s := range k.Segments {
			if uint64(len(s.Data)) > s.MemSize || s.MemSize > MaxLoadSize || (i > 0 && s.Phys < prevEnd) {
				t.Fatalf("accepted a bad segment %d: %#x+%#x", i, s.Phys, s.MemSize)
			}
			prevEnd = s.Phys + s.MemSize
		}
		if img, err := k.Image(); err == nil && len(img) > MaxLoadSize {
			t.Fatal("Image beyond the limit")
		}
	})
}
