package plan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/segment"
	"github.com/gokexec/gokexec/vmlinux"
)

// realVmlinux returns the ELF vmlinux inside Debian 6.1's bzImage and its path.
func realVmlinux(t *testing.T) ([]byte, string) {
	t.Helper()
	p := testkernel.Vmlinux(t, testkernel.Deb61BzImage)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

type readelfLoad struct{ phys, filesz, memsz uint64 }

// readelfProgramHeaders runs binutils' readelf -lhW, the external oracle:
// the PT_LOAD segments and the entry point.
func readelfProgramHeaders(t *testing.T, path string) ([]readelfLoad, uint64) {
	t.Helper()
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("readelf (binutils) is not installed")
	}
	out, err := exec.Command("readelf", "-lhW", path).Output()
	if err != nil {
		t.Fatalf("readelf: %v", err)
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
		if err != nil {
			t.Fatalf("readelf number %q: %v", s, err)
		}
		return v
	}
	var loads []readelfLoad
	// LOAD Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align
	re := regexp.MustCompile(`(?m)^\s*LOAD\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		loads = append(loads, readelfLoad{num(m[3]), num(m[4]), num(m[5])})
	}
	em := regexp.MustCompile(`Entry point address:\s+(\S+)`).FindStringSubmatch(string(out))
	if len(loads) == 0 || em == nil {
		t.Fatalf("readelf printed no PT_LOAD or entry:\n%s", out)
	}
	return loads, num(em[1])
}

// TestELFVmlinuxIsNotABzImage: issue 25 item 5 — an x86_64 ELF vmlinux
// (kexec-tools' elf-x86_64; kdump-config passes --args-linux for it) was
// refused as "not a bzImage". The plan of Debian 6.1's real vmlinux must load
// every PT_LOAD where readelf says, hand the IMA list over below the kernel,
// and enter e_entry with %rsi = a boot_params carrying a synthesized header.
func TestELFVmlinuxIsNotABzImage(t *testing.T) {
	b, path := realVmlinux(t)
	loads, entry := readelfProgramHeaders(t, path)
	in := inputs(t, 300)
	in.Kernel, in.KernelPath = b, path
	p, err := Build(in)
	if err != nil {
		t.Fatalf("plan of %s: %v", path, err)
	}
	p.FillDigests()
	var kernel []Segment
	for _, s := range p.Segments {
		if s.Name == "kernel" || strings.HasPrefix(s.Name, "kernel.") {
			kernel = append(kernel, s)
		}
	}
	if len(kernel) != len(loads) {
		t.Fatalf("%d kernel segments, readelf shows %d PT_LOAD", len(kernel), len(loads))
	}
	lowest := loads[0].phys
	for i, l := range loads {
		s := kernel[i]
		if s.Mem != l.phys || s.Bufsz != l.filesz || s.Memsz != alignUp(l.memsz, in.PageSize) {
			t.Errorf("segment %d: planned mem %#x bufsz %#x memsz %#x; readelf: paddr %#x filesz %#x memsz %#x (page-rounded %#x)",
				i, s.Mem, s.Bufsz, s.Memsz, l.phys, l.filesz, l.memsz, alignUp(l.memsz, in.PageSize))
		}
		lowest = min(lowest, l.phys)
	}
	if p.KernelAddr != lowest {
		t.Errorf("KernelAddr %#x, lowest paddr %#x", p.KernelAddr, lowest)
	}
	im, bp, tr := seg(t, p, "ima"), seg(t, p, "boot_params"), seg(t, p, "trampoline")
	if im.Mem < 1<<20 || im.Mem+im.Memsz > lowest {
		t.Fatalf("IMA segment [%#x, %#x) must lie in [1 MiB, %#x)", im.Mem, im.Mem+im.Memsz, lowest)
	}
	requireHandoverBytes(t, im.Buf, in.IMAList, 301)
	nodes, err := bzimage.SetupDataAt(bp.Buf, bp.Mem)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) == 0 || nodes[0].Type != bzimage.SetupIMA {
		t.Fatalf("setup_data %+v, want SETUP_IMA first", nodes)
	}
	payload := bp.Buf[nodes[0].Addr-bp.Mem+bzimage.SetupDataHeaderSize:]
	le := binary.LittleEndian
	if le.Uint64(payload) != im.Mem || le.Uint64(payload[8:]) != im.Memsz {
		t.Fatalf("SETUP_IMA says %x, segment is %#x+%#x", payload[:16], im.Mem, im.Memsz)
	}
	z := bp.Buf
	if string(z[0x202:0x206]) != "HdrS" || le.Uint16(z[0x1fe:]) != 0xaa55 || le.Uint16(z[0x206:]) != bzimage.VmlinuxVersion {
		t.Fatalf("synthesized header: magic %q flag %#x version %#x", z[0x202:0x206], le.Uint16(z[0x1fe:]), le.Uint16(z[0x206:]))
	}
	if cmd := uint64(le.Uint32(z[0x228:])) | uint64(le.Uint32(z[0x0c8:]))<<32; cmd != bp.Mem+bzimage.BootParamsSize ||
		!bytes.HasPrefix(z[bzimage.BootParamsSize:], append([]byte(in.Cmdline), 0)) {
		t.Fatalf("cmd_line_ptr %#x, want %#x holding %q", cmd, bp.Mem+bzimage.BootParamsSize, in.Cmdline)
	}
	ird := seg(t, p, "initrd")
	if a, n := uint64(le.Uint32(z[0x218:]))|uint64(le.Uint32(z[0x0c0:]))<<32, le.Uint32(z[0x21c:]); a != ird.Mem || uint64(n) != ird.Bufsz {
		t.Fatalf("ramdisk %#x+%#x, initrd segment %#x+%#x", a, n, ird.Mem, ird.Bufsz)
	}
	if n := int(z[0x1e8]); n == 0 || n != p.BootParams.E820Entries {
		t.Fatalf("e820 entries %d, plan says %d", n, p.BootParams.E820Entries)
	}
	if p.Entry != tr.Mem || !bytes.Contains(tr.Buf, le.AppendUint64(nil, entry)) || !bytes.Contains(tr.Buf, le.AppendUint64(nil, bp.Mem)) {
		t.Fatalf("trampoline does not enter e_entry %#x with %%rsi = %#x", entry, bp.Mem)
	}
	if !bytes.Equal(bzimage.Trampoline(tr.Mem, bp.Mem, entry), tr.Buf) {
		t.Fatal("trampoline is not the bzImage path's")
	}
}

// TestELFVmlinuxErrorsNameFileAndProblem: a vmlinux for another machine, one
// whose segments overlap and one that does not fit the RAM are refused with
// the file's name and the reason.
func TestELFVmlinuxErrorsNameFileAndProblem(t *testing.T) {
	b, path := realVmlinux(t)
	le := binary.LittleEndian
	build := func(k []byte, mem segment.Map) error {
		in := inputs(t, 3)
		in.Kernel, in.KernelPath = k, path
		if mem != nil {
			in.Memory = mem
		}
		_, err := Build(in)
		if err == nil {
			t.Fatal("planned")
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error does not name %s: %v", path, err)
		}
		return err
	}
	arm := append([]byte(nil), b...)
	le.PutUint16(arm[18:], 183) // e_machine = EM_AARCH64
	if err := build(arm, nil); !errors.Is(err, ErrInput) && !errors.Is(err, vmlinux.ErrMachine) && !errors.Is(err, vmlinux.ErrBad) {
		t.Errorf("arm64 ELF: %v", err)
	}
	i386 := append([]byte(nil), b...)
	le.PutUint16(i386[18:], 3) // EM_386
	if err := build(i386, nil); !errors.Is(err, vmlinux.ErrMachine) {
		t.Errorf("i386 ELF: %v", err)
	}
	ov := append([]byte(nil), b...)
	phoff := le.Uint64(ov[32:])
	le.PutUint64(ov[phoff+56+24:], le.Uint64(ov[phoff+24:])+0x1000) // 2nd PT_LOAD's p_paddr inside the 1st
	if err := build(ov, nil); !errors.Is(err, vmlinux.ErrBad) {
		t.Errorf("overlapping segments: %v", err)
	}
	small := segment.Map{{Range: segment.Range{Start: 0, End: 0x9fc00}, Type: segment.TypeRAM}, {Range: segment.Range{Start: 1 << 20, End: 40 << 20}, Type: segment.TypeRAM}}
	if err := build(b, small); !strings.Contains(err.Error(), "PT_LOAD") {
		t.Errorf("segment outside RAM: %v", err)
	}
}

// TestELFVmlinuxAutoTakesKexecLoad: with no IMA list auto chose
// kexec_file_load, which cannot take an x86_64 vmlinux (FileLoad said "not a
// bzImage"): auto takes kexec_load for it, a bzImage keeps kexec_file_load,
// and under lockdown FileLoad refuses the vmlinux by name.
func TestELFVmlinuxAutoTakesKexecLoad(t *testing.T) {
	b, path := realVmlinux(t)
	in := inputs(t, 1)
	in.Kernel, in.KernelPath = b, path
	d := Decide(ModeAuto, Facts{})
	if d.Syscall != SyscallKexecFileLoad {
		t.Fatalf("precondition: auto without an IMA list chose %s", d.Syscall)
	}
	ImageDecision(&d, in)
	if d.Syscall != SyscallKexecLoad {
		t.Fatalf("auto for a vmlinux: %s (%s)", d.Syscall, d.Reason)
	}
	bz := Decide(ModeAuto, Facts{})
	ImageDecision(&bz, inputs(t, 1))
	if bz.Syscall != SyscallKexecFileLoad {
		t.Fatalf("auto for a bzImage changed to %s", bz.Syscall)
	}
	ld := Decide(ModeAuto, Facts{Lockdown: "integrity"})
	ImageDecision(&ld, in)
	if ld.Syscall != SyscallKexecFileLoad {
		t.Fatalf("under lockdown: %s", ld.Syscall)
	}
	_, err := FileLoad(in)
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "vmlinux") {
		t.Fatalf("FileLoad of a vmlinux: %v", err)
	}
}

// TestELFVmlinuxCrashRefusedByName: kdump-config's -p --args-linux vmlinux
// was refused as "not a bzImage"; the crash planners now say why a vmlinux
// cannot be a gokexec crash kernel, naming the file.
func TestELFVmlinuxCrashRefusedByName(t *testing.T) {
	b, path := realVmlinux(t)
	for name, f := range map[string]func(*Inputs, *Crash) (*Plan, error){"BuildCrash": BuildCrash, "FileLoadCrash": FileLoadCrash} {
		in := crashInputs(t)
		in.Kernel, in.KernelPath = b, path
		_, err := f(in, crashFacts())
		if !errors.Is(err, ErrNotCrashKernel) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "ELF vmlinux") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
