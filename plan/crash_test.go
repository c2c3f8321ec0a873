package plan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/segment"
)

// crashRegion is where a 1 GiB QEMU guest booted with crashkernel=256M
// has its reservation.
var crashRegion = segment.Range{Start: 0x2b000000, End: 0x3b000000}

func crashFacts() *Crash {
	return &Crash{
		Regions:    []segment.Range{crashRegion},
		CPUNotes:   []elfcore.Note{{Addr: 0x3fc1d000, Size: 0x170}},
		VMCoreInfo: elfcore.Note{Addr: 0x2c2a000, Size: 0x1000},
		PageOffset: 0xffff9b0000000000,
	}
}

func crashInputs(t *testing.T) *Inputs {
	return &Inputs{Arch: ArchAMD64, KernelPath: "/boot/vmlinuz", Kernel: kernelFixture(t),
		InitrdPath: "/boot/initrd.img", Initrd: bytes.Repeat([]byte{7}, 20<<20),
		Cmdline: "console=ttyS0 reset_devices nr_cpus=1 irqpoll", Memory: qemuMap(t), RNGSeed: make([]byte, 32)}
}

func TestBuildCrash(t *testing.T) {
	p, err := BuildCrash(crashInputs(t), crashFacts())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]Segment{}
	for _, s := range p.Segments {
		names[s.Name] = s
		if !crashRegion.Contains(segment.Range{Start: s.Mem, End: s.Mem + s.Memsz}) {
			t.Errorf("segment %s [%#x, %#x) is outside the crash region %v", s.Name, s.Mem, s.Mem+s.Memsz, crashRegion)
		}
	}
	for _, n := range []string{"kernel", "elfcorehdr", "initrd", "boot_params", "trampoline"} {
		if _, ok := names[n]; !ok {
			t.Fatalf("no %s segment in %+v", n, p.Segments)
		}
	}
	hdr := names["elfcorehdr"]
	if p.Crash == nil || p.Crash.ElfCoreHdr != hdr.Mem {
		t.Fatalf("crash plan %+v, elfcorehdr segment at %#x", p.Crash, hdr.Mem)
	}
	if want := fmt.Sprintf("elfcorehdr=%#x", hdr.Mem); !strings.HasSuffix(p.Cmdline, want) || !strings.HasPrefix(p.Cmdline, "console=ttyS0 reset_devices") {
		t.Fatalf("cmdline %q, want the user's followed by %s", p.Cmdline, want)
	}

	// The header reads back with debug/elf: notes first, then RAM without
	// the low MiB and the crash region.
	f, err := elf.NewFile(bytes.NewReader(hdr.Buf))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != elf.ET_CORE || f.Machine != elf.EM_X86_64 {
		t.Fatalf("type %v machine %v", f.Type, f.Machine)
	}
	var loads []segment.Range
	notes := 0
	for _, ph := range f.Progs {
		switch ph.Type {
		case elf.PT_NOTE:
			notes++
		case elf.PT_LOAD:
			r := segment.Range{Start: ph.Paddr, End: ph.Paddr + ph.Memsz}
			loads = append(loads, r)
			if r.Overlaps(crashRegion) || r.Start < 1<<20 {
				t.Errorf("PT_LOAD %v dumps the crash region or the low MiB", r)
			}
			if ph.Vaddr != 0xffff9b0000000000+ph.Paddr || ph.Off != ph.Paddr {
				t.Errorf("PT_LOAD %+v: vaddr or offset wrong", ph.ProgHeader)
			}
		}
	}
	if notes != 2 {
		t.Fatalf("%d notes, want 2 (one CPU, VMCOREINFO)", notes)
	}
	want := []segment.Range{{Start: 0x100000, End: 0x2b000000}, {Start: 0x3b000000, End: 0x3ffcf000}}
	if !reflect.DeepEqual(loads, want) {
		t.Fatalf("PT_LOADs %v, want %v", loads, want)
	}

	// boot_params: the e820 is the crash kernel's map, the header excluded.
	bp := names["boot_params"].Buf
	n := int(bp[0x1e8])
	var ram []segment.Range
	for i := 0; i < n; i++ {
		e := bp[0x2d0+20*i:]
		start, size, typ := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:]), binary.LittleEndian.Uint32(e[16:])
		if typ == uint32(segment.TypeRAM) {
			ram = append(ram, segment.Range{Start: start, End: start + size})
		}
	}
	hr := segment.Range{Start: hdr.Mem, End: hdr.Mem + hdr.Memsz}
	wantRAM := append([]segment.Range{{Start: 0x1000, End: 0x9fc00}}, segment.Subtract([]segment.Range{crashRegion}, []segment.Range{hr})...)
	if !reflect.DeepEqual(ram, wantRAM) {
		t.Fatalf("crash kernel RAM %v, want %v", ram, wantRAM)
	}
	if nodes, err := bzimage.SetupDataAt(bp, names["boot_params"].Mem); err != nil || len(nodes) != 1 || nodes[0].Type != bzimage.SetupRNGSeed {
		t.Fatalf("setup_data %v %v: want the RNG seed only (no IMA)", nodes, err)
	}
	if p.IMA != nil {
		t.Fatal("a crash plan hands an IMA list over")
	}

	// Pure: the same inputs give the same bytes.
	q, err := BuildCrash(crashInputs(t), crashFacts())
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Segments {
		if !bytes.Equal(p.Segments[i].Buf, q.Segments[i].Buf) || p.Segments[i].Mem != q.Segments[i].Mem {
			t.Fatalf("segment %s differs between two builds", p.Segments[i].Name)
		}
	}
}

func TestCrashBadInputs(t *testing.T) {
	notRelocatable := func(in *Inputs) { in.Kernel = append([]byte(nil), in.Kernel...); in.Kernel[0x234] = 0 }
	oldProtocol := func(in *Inputs) {
		in.Kernel = append([]byte(nil), in.Kernel...)
		binary.LittleEndian.PutUint16(in.Kernel[0x206:], 0x020b)
	}
	no64 := func(in *Inputs) {
		in.Kernel = append([]byte(nil), in.Kernel...)
		binary.LittleEndian.PutUint16(in.Kernel[0x236:], 0)
	}
	cases := []struct {
		name string
		in   func(*Inputs)
		c    func(*Crash)
		want error
	}{
		{"no region", nil, func(c *Crash) { c.Regions = nil }, ErrNoCrashRegion},
		{"region too small", nil, func(c *Crash) { c.Regions = []segment.Range{{Start: 0x2b000000, End: 0x2c000000}} }, ErrCrashNoFit},
		{"initrd too large", func(in *Inputs) { in.Initrd = make([]byte, 300<<20) }, nil, ErrCrashNoFit},
		{"not relocatable", notRelocatable, nil, ErrNotCrashKernel},
		{"boot protocol 2.11", oldProtocol, nil, ErrNotCrashKernel},
		{"no 64-bit entry", no64, nil, ErrNotCrashKernel},
		{"not a bzImage", func(in *Inputs) { in.Kernel = []byte("ELF") }, nil, ErrNotCrashKernel},
		{"arm64", func(in *Inputs) { in.Arch = ArchARM64 }, nil, ErrInput},
	}
	for _, tc := range cases {
		for _, load := range []struct {
			name string
			fn   func(*Inputs, *Crash) (*Plan, error)
		}{{"kexec_load", BuildCrash}, {"kexec_file_load", FileLoadCrash}} {
			in, c := crashInputs(t), crashFacts()
			if tc.in != nil {
				tc.in(in)
			}
			if tc.c != nil {
				tc.c(c)
			}
			_, err := load.fn(in, c)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s (%s): %v, want %v", tc.name, load.name, err, tc.want)
			}
		}
	}
	// kexec_load alone needs the notes.
	c := crashFacts()
	c.CPUNotes = nil
	if _, err := BuildCrash(crashInputs(t), c); !errors.Is(err, ErrCrashFacts) {
		t.Errorf("no crash notes: %v", err)
	}
	if _, err := FileLoadCrash(crashInputs(t), c); err != nil {
		t.Errorf("kexec_file_load needs no notes from user space: %v", err)
	}
}

func TestDecideCrash(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		f    Facts
		want string
	}{
		{ModeAuto, Facts{IMAList: true, HandoverWanted: true}, SyscallKexecFileLoad},
		{ModeAuto, Facts{Lockdown: "integrity"}, SyscallKexecFileLoad},
		{ModeLoad, Facts{}, SyscallKexecLoad},
		{ModeFile, Facts{IMAList: true, HandoverWanted: true}, SyscallKexecFileLoad},
	} {
		d := DecideCrash(tc.mode, tc.f)
		if d.Syscall != tc.want {
			t.Errorf("%s %+v: %s, want %s", tc.mode, tc.f, d.Syscall, tc.want)
		}
		if d.Syscall == SyscallKexecFileLoad && d.Warning != "" {
			t.Errorf("%s %+v: warning %q for a crash load (no IMA list goes there)", tc.mode, tc.f, d.Warning)
		}
	}
	if d := DecideCrash(ModeLoad, Facts{Lockdown: "integrity"}); d.Warning == "" {
		t.Error("-c under lockdown: no warning")
	}
}

func TestCrashCmdline(t *testing.T) {
	if got := crashCmdline("  console=ttyS0 elfcorehdr=0x1000  irqpoll ", 0x2b000000); got != "console=ttyS0 irqpoll elfcorehdr=0x2b000000" {
		t.Fatalf("got %q", got)
	}
	if got := crashCmdline("", 0x1000); got != "elfcorehdr=0x1000" {
		t.Fatalf("empty: %q", got)
	}
}
