package bzimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gokexec/gokexec/segment"
)

// TestBuildParamsEFI checks every EFI byte of a built block against the
// layout of struct boot_params and struct efi_setup_data
// (arch/x86/include/uapi/asm/bootparam.h): efi_info at 0x1c0 as eight u32
// (signature, systab, memdesc_size, memdesc_version, memmap, memmap_size,
// systab_hi, memmap_hi), secure_boot at 0x1ec, screen_info at 0, and a
// type-4 node holding fw_vendor, runtime, tables, smbios and eight reserved
// u64.
func TestBuildParamsEFI(t *testing.T) {
	im, err := Parse(fixture(t, fixtures[0]))
	if err != nil {
		t.Fatal(err)
	}
	if im.Xloadflags&XLFEFIKexec == 0 {
		t.Fatalf("Debian kernel without XLF_EFI_KEXEC: %#x", im.Xloadflags)
	}
	memmap := bytes.Repeat([]byte{0xa5}, 3*40)
	si := make([]byte, ScreenInfoSize)
	si[0x0f] = 0x70
	si[0x3f] = 0x5a
	p := &Params{
		E820:       segment.Map{{Range: segment.Range{Start: 0x100000, End: 0x4000_0000}, Type: segment.TypeRAM}},
		Cmdline:    "console=ttyS0",
		ACPIRSDP:   0x3fb7e014,
		SetupData:  []SetupData{IMASetupData(0x200000, 0x1000)},
		ScreenInfo: si,
		EFI: &EFI{LoaderSignature: "EL64", Systab: 0x1_3f8e_e018, MemdescSize: 40, MemdescVersion: 1, Memmap: memmap, SecureBoot: 3,
			FwVendor: 0x3f8ee098, Runtime: 0x3f8edb98, Tables: 0x3f8ed118, SMBIOS: 0x3f9ac000},
	}
	const base = 0x1_0000
	buf, pl, err := BuildParamsEFI(im, base, p)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := ParamsSize(p)
	if uint64(len(buf)) != size {
		t.Fatalf("block of %d bytes, ParamsSize %d", len(buf), size)
	}
	// Zero page (4096) + "console=ttyS0\0" rounded to 16, IMA node (16+16),
	// EFI node (16+96), then the memory map.
	wantNodeIMA := uint64(base + 4096 + 16)
	wantNodeEFI := wantNodeIMA + 32
	wantMemmap := wantNodeEFI + 16 + 96
	if len(pl.Nodes) != 2 || pl.Nodes[0].Addr != wantNodeIMA || pl.Nodes[1].Type != SetupEFI || pl.Nodes[1].Addr != wantNodeEFI || pl.Nodes[1].Len != 96 {
		t.Fatalf("nodes %+v", pl.Nodes)
	}
	if pl.MemmapAddr != wantMemmap || uint64(len(buf)) != wantMemmap-base+128 { // 120 bytes, rounded to 16
		t.Fatalf("memmap at %#x, want %#x; block %d bytes", pl.MemmapAddr, wantMemmap, len(buf))
	}
	golden := []byte{
		'E', 'L', '6', '4',
		0x18, 0xe0, 0x8e, 0x3f, // systab low
		40, 0, 0, 0, // memdesc_size
		1, 0, 0, 0, // memdesc_version
		byte(wantMemmap), byte(wantMemmap >> 8), byte(wantMemmap >> 16), byte(wantMemmap >> 24),
		120, 0, 0, 0, // memmap_size
		1, 0, 0, 0, // systab_hi
		0, 0, 0, 0, // memmap_hi
	}
	if got := buf[0x1c0:0x1e0]; !bytes.Equal(got, golden) {
		t.Errorf("efi_info\n% x\nwant\n% x", got, golden)
	}
	if buf[0x1ec] != 3 {
		t.Errorf("secure_boot %d", buf[0x1ec])
	}
	if !bytes.Equal(buf[:0x40], si) {
		t.Errorf("screen_info not copied")
	}
	if got := binary.LittleEndian.Uint64(buf[0x70:]); got != 0x3fb7e014 {
		t.Errorf("acpi_rsdp_addr %#x", got)
	}
	n := buf[wantNodeEFI-base:]
	le := binary.LittleEndian
	if le.Uint64(n) != 0 || le.Uint32(n[8:]) != 4 || le.Uint32(n[12:]) != 96 {
		t.Errorf("SETUP_EFI header % x", n[:16])
	}
	d := n[16:]
	if le.Uint64(d) != 0x3f8ee098 || le.Uint64(d[8:]) != 0x3f8edb98 || le.Uint64(d[16:]) != 0x3f8ed118 || le.Uint64(d[24:]) != 0x3f9ac000 {
		t.Errorf("efi_setup_data % x", d[:32])
	}
	if !bytes.Equal(d[32:96], make([]byte, 64)) {
		t.Errorf("reserved not zero")
	}
	if !bytes.Equal(buf[wantMemmap-base:wantMemmap-base+120], memmap) {
		t.Errorf("memory map not at its address")
	}
	// The chain reader finds both nodes.
	if got, err := SetupDataAt(buf, base); err != nil || len(got) != 2 || got[1].Type != SetupEFI {
		t.Errorf("SetupDataAt: %+v %v", got, err)
	}
}

func TestBuildParamsEFINeedsXLF(t *testing.T) {
	im, err := Parse(fixture(t, fixtures[0]))
	if err != nil {
		t.Fatal(err)
	}
	im.Xloadflags &^= XLFEFIKexec
	p := &Params{E820: segment.Map{{Range: segment.Range{Start: 0x100000, End: 0x4000_0000}, Type: segment.TypeRAM}},
		EFI: &EFI{LoaderSignature: "EL64", Systab: 1, MemdescSize: 40, MemdescVersion: 1}}
	if _, _, err := BuildParamsEFI(im, 0x10000, p); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("EFI state for a kernel without XLF_EFI_KEXEC: %v", err)
	}
	// Without EFI the same kernel gets a block with efi_info all zero.
	p.EFI = nil
	buf, _, err := BuildParams(im, 0x10000, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[0x1c0:0x1e0], make([]byte, 32)) || buf[0x1ec] != 0 {
		t.Fatal("efi_info or secure_boot set without EFI state")
	}
}
