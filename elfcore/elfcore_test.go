package elfcore

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/segment"
)

// sample is a header like the one for a 1 GiB, 2-CPU QEMU guest with a
// 256 MiB crash region at 0x2b000000.
func sample() *Header {
	return &Header{
		Machine:    MachineX86,
		CPUNotes:   []Note{{0x3fc1d000, 0x170}, {0x3fc3d000, 0x170}},
		VMCoreInfo: Note{0x2c2a000, 0x1000},
		KernelText: &Load{Phys: 0x1ec00000, Virt: 0xffffffff9ec00000, Size: 0x2800000},
		PageOffset: 0xffff8a0000000000,
		RAM: segment.Subtract([]segment.Range{{Start: 0x1000, End: 0x9fc00}, {Start: 0x100000, End: 0x3ffcf000}},
			[]segment.Range{{Start: 0, End: 1 << 20}, {Start: 0x2b000000, End: 0x3b000000}}),
	}
}

func TestBuildReadsBackWithDebugELF(t *testing.T) {
	h := sample()
	b, err := Build(h)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(b)) != h.Size() {
		t.Fatalf("len %d, Size() %d", len(b), h.Size())
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 {
		t.Fatalf("header %v %v %v %v", f.Class, f.Data, f.Type, f.Machine)
	}
	if len(f.Progs) != 2+1+1+2 {
		t.Fatalf("%d program headers, want 6", len(f.Progs))
	}
	want := []elf.ProgHeader{
		{Type: elf.PT_NOTE, Off: 0x3fc1d000, Paddr: 0x3fc1d000, Filesz: 0x170, Memsz: 0x170},
		{Type: elf.PT_NOTE, Off: 0x3fc3d000, Paddr: 0x3fc3d000, Filesz: 0x170, Memsz: 0x170},
		{Type: elf.PT_NOTE, Off: 0x2c2a000, Paddr: 0x2c2a000, Filesz: 0x1000, Memsz: 0x1000},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W | elf.PF_X, Off: 0x1ec00000, Vaddr: 0xffffffff9ec00000, Paddr: 0x1ec00000, Filesz: 0x2800000, Memsz: 0x2800000},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W | elf.PF_X, Off: 0x100000, Vaddr: 0xffff8a0000100000, Paddr: 0x100000, Filesz: 0x2af00000, Memsz: 0x2af00000},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W | elf.PF_X, Off: 0x3b000000, Vaddr: 0xffff8a003b000000, Paddr: 0x3b000000, Filesz: 0x4fcf000, Memsz: 0x4fcf000},
	}
	for i, p := range f.Progs {
		if p.ProgHeader != want[i] {
			t.Errorf("phdr %d = %+v, want %+v", i, p.ProgHeader, want[i])
		}
	}
}

// TestReadelfAgrees runs binutils' readelf over the header: the oracle
// the crash scenario also uses on a real /proc/vmcore.
func TestReadelfAgrees(t *testing.T) {
	rd, err := exec.LookPath("readelf")
	if err != nil {
		// An oracle that is missing fails, as every other test's does
		// (issue 23); scripts/setup.sh installs binutils.
		t.Fatalf("readelf not installed (binutils; run scripts/setup.sh): %v", err)
	}
	b, err := Build(sample())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(rd, "-W", "-h", "-l", p).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf: %v\n%s", err, out)
	}
	s := string(out)
	for _, w := range []string{"CORE (Core file)", "Advanced Micro Devices X86-64", "Number of program headers:         6",
		"LOAD           0x100000 0xffff8a0000100000 0x0000000000100000 0x2af00000 0x2af00000 RWE"} {
		if !strings.Contains(s, w) {
			t.Errorf("readelf output lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, "Error") || strings.Contains(s, "Warning") {
		t.Errorf("readelf complains:\n%s", s)
	}
	if n := strings.Count(s, "  NOTE "); n != 3 {
		t.Errorf("%d NOTE headers, want 3:\n%s", n, s)
	}
}

func TestBuildRefuses(t *testing.T) {
	cases := map[string]func(h *Header){
		"no cpus":      func(h *Header) { h.CPUNotes = nil },
		"no vmcore":    func(h *Header) { h.VMCoreInfo = Note{} },
		"no ram":       func(h *Header) { h.RAM = nil },
		"machine":      func(h *Header) { h.Machine = 3 },
		"note wraps":   func(h *Header) { h.CPUNotes[0] = Note{^uint64(0) - 4, 0x170} },
		"empty range":  func(h *Header) { h.RAM = []segment.Range{{Start: 5, End: 5}} },
		"vaddr wraps":  func(h *Header) { h.PageOffset = ^uint64(0) - 0x1000 },
		"text wraps":   func(h *Header) { h.KernelText.Virt = ^uint64(0) },
		"too many":     func(h *Header) { h.RAM = make([]segment.Range, maxPhdrs) },
		"zero address": func(h *Header) { h.CPUNotes[1].Addr = 0 },
		// FuzzParseSysfs's reproducer (CI stop 28): a note at 1<<63 made a
		// header whose p_offset debug/elf (and /proc/vmcore) reads as negative.
		"note above 52 bits": func(h *Header) { h.CPUNotes[0] = Note{1 << 63, 0x170} },
		"text above 52 bits": func(h *Header) { h.KernelText.Phys = MaxPhysAddr },
		"ram above 52 bits":  func(h *Header) { h.RAM = []segment.Range{{Start: 0x1000, End: MaxPhysAddr + 0x1000}} },
	}
	for name, mut := range cases {
		h := sample()
		mut(h)
		if _, err := Build(h); err == nil {
			t.Errorf("%s: Build succeeded", name)
		} else if !errors.Is(err, ErrBadHeader) && !errors.Is(err, segment.ErrOverflow) {
			t.Errorf("%s: %v matches neither ErrBadHeader nor ErrOverflow", name, err)
		}
	}
}

func TestParseSysfs(t *testing.T) {
	n, err := ParseCrashNotes("3fc1d000\n", "368\n")
	if err != nil || n != (Note{0x3fc1d000, 368}) {
		t.Fatalf("crash_notes: %v %v", n, err)
	}
	if n, err = ParseCrashNotes("0x3fc1d000", ""); err != nil || n.Size != DefaultCrashNotesSize {
		t.Fatalf("crash_notes without size: %v %v", n, err)
	}
	v, err := ParseVMCoreInfo("2c2a000 1000\n")
	if err != nil || v != (Note{0x2c2a000, 0x1000}) {
		t.Fatalf("vmcoreinfo: %v %v", v, err)
	}
	for _, bad := range [][2]string{{"0", "368"}, {"zz", ""}, {"1000", "0"}, {"1000", "-1"}, {"", ""}, {"ffffffffffffffff", "368"}, {"8000000000000000", "368"}, {"fffffffffff000", ""}} {
		if _, err := ParseCrashNotes(bad[0], bad[1]); !errors.Is(err, ErrBadSysfs) {
			t.Errorf("crash_notes %q %q: %v", bad[0], bad[1], err)
		}
	}
	for _, bad := range []string{"", "0 1000", "1000", "1000 0", "x y", "1000 1000 1000", "8000000000000000 1000", strings.Repeat("1", 100) + " 1"} {
		if _, err := ParseVMCoreInfo(bad); !errors.Is(err, ErrBadSysfs) {
			t.Errorf("vmcoreinfo %q: %v", bad, err)
		}
	}
}
