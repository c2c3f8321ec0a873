package plan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/internal/dtctest"
	"github.com/gokexec/gokexec/segment"
)

// ovmfCapture is `gokexec capture-host` run in a Debian 6.1 cloud guest
// booted by OVMF (QEMU q35, 1 GiB, TestUEFINoEFI's first boot).
const ovmfCapture = "testdata/host-qemu-q35-ovmf-1g-linux-image-6.1.0-57-cloud-amd64"

// capturedInputs plans the 6.1 test kernel against the capture: its memory
// map, IMA list and firmware.
func capturedInputs(t *testing.T) *Inputs {
	t.Helper()
	h, err := efi.ReadHost(os.DirFS(ovmfCapture))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := segment.ParseSysfsMemmap(os.DirFS(filepath.Join(ovmfCapture, "sys/firmware/memmap")))
	if err != nil {
		t.Fatal(err)
	}
	list, err := os.ReadFile(filepath.Join(ovmfCapture, "sys/kernel/security/ima/binary_runtime_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	return &Inputs{Arch: ArchAMD64, KernelPath: "vmlinuz", Kernel: kernelFixture(t), Cmdline: "console=ttyS0",
		Memory: mem, IMAList: list, IMAExtra: 64 << 10, RNGSeed: make([]byte, 32), EFI: h}
}

func TestPlanOVMFCapture(t *testing.T) {
	in := capturedInputs(t)
	h := in.EFI
	if !h.EFI || len(h.Missing) != 0 || h.BootParams == nil || !h.BootParams.EFIBoot() {
		t.Fatalf("capture: EFI %v, missing %v", h.EFI, h.Missing)
	}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings %q", p.Warnings)
	}
	e := p.BootParams.EFI
	if e == nil {
		t.Fatal("no EFI hand-over planned for an OVMF host")
	}
	// What the guest's own kernel said (serial log of that run): systab
	// from boot_params, SMBIOS=0x3f520000 and ACPI 2.0=0x3f77d014.
	if e.Systab != h.BootParams.EFI.Systab || e.SMBIOS != 0x3f520000 || p.BootParams.ACPIRSDP != 0x3f77d014 {
		t.Errorf("systab %#x smbios %#x rsdp %#x", e.Systab, e.SMBIOS, p.BootParams.ACPIRSDP)
	}
	if len(e.RuntimeMap) != 7 || e.ConventionalDescriptors == 0 || e.MemmapSize != uint32(7+e.ConventionalDescriptors)*efi.MemoryDescriptorSize {
		t.Errorf("runtime map: %d descriptors, %d bytes", len(e.RuntimeMap), e.MemmapSize)
	}
	for i, d := range e.RuntimeMap {
		if d.Attribute&efi.MemoryRuntime == 0 || d.Virt == 0 {
			t.Errorf("descriptor %d %+v: not a runtime region with a virtual address", i, d)
		}
	}
	if e.SecureBoot != h.BootParams.SecureBoot {
		t.Errorf("secure_boot %d, the running kernel had %d", e.SecureBoot, h.BootParams.SecureBoot)
	}
	if s := p.BootParams.Screen; s == nil || s.VideoType != efi.VideoTypeEFI || s.Width != 1280 || s.Height != 800 {
		t.Errorf("screen %+v, want OVMF's 1280x800 GOP framebuffer", s)
	}
	// The bytes: efi_info as the running kernel's, but with the rebuilt map.
	bp := seg(t, p, "boot_params")
	le := binary.LittleEndian
	if string(bp.Buf[0x1c0:0x1c4]) != "EL64" || le.Uint32(bp.Buf[0x1c8:]) != 40 || le.Uint32(bp.Buf[0x1cc:]) != 1 {
		t.Errorf("efi_info % x", bp.Buf[0x1c0:0x1e0])
	}
	nodes, err := bzimage.SetupDataAt(bp.Buf[:bp.Bufsz], bp.Mem)
	if err != nil {
		t.Fatal(err)
	}
	var types []uint32
	for _, n := range nodes {
		types = append(types, n.Type)
	}
	if len(types) == 0 || types[len(types)-1] != bzimage.SetupEFI {
		t.Errorf("setup_data types %v: SETUP_EFI not last", types)
	}
	// Planning is a function of the capture: the same inputs, the same plan.
	p2, err := Build(capturedInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(seg(t, p2, "boot_params").Buf, bp.Buf) {
		t.Error("two plans of the same capture differ")
	}
}

// setupDTB returns the payload of the plan's one SETUP_DTB node, checking
// the plan's setup_data list against the chain in boot_params.
func setupDTB(t *testing.T, p *Plan, without int) []byte {
	t.Helper()
	bp := seg(t, p, "boot_params").Buf
	nodes, err := bzimage.SetupDataAt(bp, p.BootParams.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	found := 0
	for i, n := range nodes {
		if n.Type != bzimage.SetupDTB {
			continue
		}
		found++
		off := n.Addr - p.BootParams.Addr + bzimage.SetupDataHeaderSize
		out = bp[off : off+uint64(n.Len)]
		if sd := p.BootParams.SetupData[i]; sd.Type != bzimage.SetupDTB || sd.Addr != n.Addr || sd.Len != n.Len {
			t.Fatalf("plan's setup_data %+v, chain %+v", sd, n)
		}
	}
	if found != 1 || len(nodes) != without+1 {
		t.Fatalf("%d SETUP_DTB nodes of %d (without a DTB: %d)", found, len(nodes), without)
	}
	return out
}

// Finding "--dtb on x86 is accepted, appraised and measured as loaded, but
// never passed": a device tree given for x86 is a SETUP_DTB (type 2)
// setup_data node, chained from boot_params, holding the tree given with
// /chosen/linux,ima-kexec-buffer naming the IMA segment (where an x86
// kernel with CONFIG_OF_FLATTREE looks for the list) and nothing else
// changed; without a hand-over the tree passes byte for byte, and a stale
// linux,ima-kexec-buffer in it is dropped.
func TestX86DTBPassedAsSetupDTB(t *testing.T) {
	dtb, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	in := capturedInputs(t)
	without, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	in = capturedInputs(t)
	in.DTB = dtb
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fdt.Parse(setupDTB(t, p, len(without.BootParams.SetupData)))
	if err != nil {
		t.Fatal(err)
	}
	ch, ok := got.Lookup("/chosen")
	if !ok {
		t.Fatal("no /chosen in the tree passed")
	}
	v, _ := ch.Property("linux,ima-kexec-buffer")
	rs, err := fdt.DecodeRanges(2, 2, v)
	if err != nil || len(rs) != 1 || rs[0] != (fdt.Range{Start: p.IMA.Addr, Size: p.IMA.Size}) {
		t.Fatalf("linux,ima-kexec-buffer %x (%v): want the IMA segment %#x +%#x", v, err, p.IMA.Addr, p.IMA.Size)
	}
	// Nothing else changed: without the property, dtc reads the tree as
	// the one given (the strings block keeps the name, as libfdt's would).
	ch.DeleteProperty("linux,ima-kexec-buffer")
	given, err := fdt.Parse(dtb)
	if err != nil {
		t.Fatal(err)
	}
	if _, had := given.Lookup("/chosen"); !had {
		if err := got.DeleteNode("/chosen"); err != nil {
			t.Fatal(err)
		}
	}
	a, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if da, dg := dtctest.Source(t, a), dtctest.Source(t, dtb); da != dg {
		t.Fatalf("the tree passed differs from the one given beyond linux,ima-kexec-buffer:\n%s\n---\n%s", da, dg)
	}

	// No hand-over: byte for byte; a stale property is dropped.
	in = capturedInputs(t)
	in.IMAList = nil
	noIMA, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	in = capturedInputs(t)
	in.IMAList, in.DTB = nil, dtb
	if p, err = Build(in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(setupDTB(t, p, len(noIMA.BootParams.SetupData)), dtb) {
		t.Fatal("without a hand-over the tree passed differs from the one given")
	}
	stale, err := fdt.Parse(dtb)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := stale.CreateNode("/chosen")
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.SetProperty("linux,ima-kexec-buffer", make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	in = capturedInputs(t)
	in.IMAList = nil
	if in.DTB, err = stale.Marshal(); err != nil {
		t.Fatal(err)
	}
	if p, err = Build(in); err != nil {
		t.Fatal(err)
	}
	passed, err := fdt.Parse(setupDTB(t, p, len(noIMA.BootParams.SetupData)))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := passed.Lookup("/chosen"); !ok || c.HasProperty("linux,ima-kexec-buffer") {
		t.Fatal("a stale linux,ima-kexec-buffer was passed on")
	}
}

// Finding "--dtb on x86 is ... measured as loaded, but never passed", the
// kexec_file_load half: that syscall has no device tree argument (the
// running kernel passes on the tree it booted with, if any), so FileLoad
// refuses a given tree by name instead of planning a load that drops it;
// auto takes kexec_load for it, with no kexec_file_load fallback, whatever
// it would have chosen; -s and lockdown are refused by FileLoad.
func TestX86FileLoadRefusesDTB(t *testing.T) {
	dtb, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	in := capturedInputs(t)
	if _, err := FileLoad(in); err != nil {
		t.Fatalf("precondition: FileLoad without a tree: %v", err)
	}
	in.DTB = dtb
	if p, err := FileLoad(in); !errors.Is(err, ErrFileLoadDTB) || !errors.Is(err, ErrInput) {
		t.Fatalf("FileLoad with a device tree: plan %v, error %v", p != nil, err)
	}
	for _, f := range []Facts{
		{}, // no list: file load by default
		{IMAList: true, HandoverWanted: true, KernelHandsOver: true}, // the kernel hands over on file load
		{IMAList: true, HandoverWanted: true},                        // gokexec hands over: load, file load on EPERM
	} {
		d := Decide(ModeAuto, f)
		chose := d.Syscall
		ImageDecision(&d, in)
		if d.Syscall != SyscallKexecLoad || d.Plan != nil || chose == SyscallKexecFileLoad && !strings.Contains(d.Reason, "device tree") {
			t.Errorf("auto with %+v and a device tree: %s (%s), fallbacks %q", f, d.Syscall, d.Reason, d.Plan)
		}
		without := Decide(ModeAuto, f)
		ImageDecision(&without, capturedInputs(t))
		if want := Decide(ModeAuto, f); without.Syscall != want.Syscall || len(without.Plan) != len(want.Plan) {
			t.Errorf("auto with %+v and no device tree changed to %s %q", f, without.Syscall, without.Plan)
		}
	}
	for _, d := range []Decision{Decide(ModeFile, Facts{}), Decide(ModeAuto, Facts{Lockdown: "integrity"})} {
		ImageDecision(&d, in)
		if d.Syscall != SyscallKexecFileLoad {
			t.Errorf("%s (lockdown %q) with a device tree changed to %s", d.Mode, d.Facts.Lockdown, d.Syscall)
		}
	}
	if d := Decide(ModeLoad, Facts{}); d.Syscall != SyscallKexecLoad {
		t.Fatalf("-c chose %s", d.Syscall)
	}
}

// The crash kernel half of the --dtb finding: kexec_load of a crash
// kernel passes a given tree too (it was dropped without a word), byte
// for byte (no hand-over); kexec_file_load of one refuses it.
func TestX86CrashDTBPassedOrRefused(t *testing.T) {
	dtb, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	without, err := BuildCrash(crashInputs(t), crashFacts())
	if err != nil {
		t.Fatal(err)
	}
	in := crashInputs(t)
	in.DTB = dtb
	p, err := BuildCrash(in, crashFacts())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(setupDTB(t, p, len(without.BootParams.SetupData)), dtb) {
		t.Fatal("the crash kernel's SETUP_DTB differs from the tree given")
	}
	if _, err := FileLoadCrash(in, crashFacts()); !errors.Is(err, ErrFileLoadDTB) {
		t.Fatalf("kexec_file_load of a crash kernel with a tree: %v", err)
	}
}
