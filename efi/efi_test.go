package efi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"
)

// bootParams builds a 4096-byte boot_params with the given efi_info fields.
func bootParams(sig string, systab uint64, descSize, descVer uint32, memmap uint64, mapSize uint32, sb uint8) []byte {
	b := make([]byte, BootParamsSize)
	le := binary.LittleEndian
	e := b[OffEFIInfo:]
	copy(e, sig)
	le.PutUint32(e[4:], uint32(systab))
	le.PutUint32(e[8:], descSize)
	le.PutUint32(e[12:], descVer)
	le.PutUint32(e[16:], uint32(memmap))
	le.PutUint32(e[20:], mapSize)
	le.PutUint32(e[24:], uint32(systab>>32))
	le.PutUint32(e[28:], uint32(memmap>>32))
	b[OffSecureBoot] = sb
	return b
}

// ovmfHost is a host tree shaped like a Debian 6.1 guest under OVMF.
func ovmfHost() fstest.MapFS {
	m := fstest.MapFS{
		PathBootParams:  {Data: bootParams("EL64", 0x1_3f8e_e018, 48, 1, 0x3e6a_3018, 48*97, 2)},
		PathFwVendor:    {Data: []byte("0x3f8ee098\n")},
		PathRuntime:     {Data: []byte("0x3f8edb98\n")},
		PathConfigTable: {Data: []byte("0x3f8ed118\n")},
		PathSystab:      {Data: []byte("ACPI20=0x3fb7e014\nACPI=0x3fb7e000\nSMBIOS=0x3f9ac000\nSMBIOS3=0x3f9aa000\n")},
	}
	descs := []Descriptor{
		{Type: 5, Phys: 0x3f8a0000, Virt: 0xfffffffeffc00000, Pages: 0x40, Attribute: MemoryRuntime | 0xf},
		{Type: 6, Phys: 0x3f8e0000, Virt: 0xfffffffeffb80000, Pages: 0x40, Attribute: MemoryRuntime | 0xf},
		{Type: 11, Phys: 0xffc00000, Virt: 0xfffffffeff800000, Pages: 0x400, Attribute: MemoryRuntime | 0x1},
	}
	for i, d := range descs {
		dir := fmt.Sprintf("%s/%d/", PathRuntimeMap, i)
		m[dir+"type"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("0x%x\n", d.Type))}
		m[dir+"phys_addr"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("0x%x\n", d.Phys))}
		m[dir+"virt_addr"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("0x%x\n", d.Virt))}
		m[dir+"num_pages"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("0x%x\n", d.Pages))}
		m[dir+"attribute"] = &fstest.MapFile{Data: []byte(fmt.Sprintf("0x%x\n", d.Attribute))}
	}
	return m
}

func TestReadHostOVMF(t *testing.T) {
	h, err := ReadHost(ovmfHost())
	if err != nil {
		t.Fatal(err)
	}
	if !h.EFI || len(h.Missing) != 0 {
		t.Fatalf("EFI %v, missing %v", h.EFI, h.Missing)
	}
	bp := h.BootParams
	if bp.EFI.LoaderSignature != "EL64" || bp.EFI.Systab != 0x1_3f8e_e018 || bp.EFI.MemdescSize != 48 ||
		bp.EFI.MemdescVersion != 1 || bp.EFI.Memmap != 0x3e6a3018 || bp.EFI.MemmapSize != 48*97 || bp.SecureBoot != 2 {
		t.Errorf("efi_info = %+v, secure_boot %d", bp.EFI, bp.SecureBoot)
	}
	if !bp.EFIBoot() {
		t.Error("EL64 boot_params not seen as an EFI boot")
	}
	if h.FwVendor != 0x3f8ee098 || h.Runtime != 0x3f8edb98 || h.ConfigTable != 0x3f8ed118 {
		t.Errorf("fw_vendor %#x runtime %#x config_table %#x", h.FwVendor, h.Runtime, h.ConfigTable)
	}
	if h.Systab.RSDP() != 0x3fb7e014 || h.Systab.SMBIOS != 0x3f9ac000 || h.Systab.SMBIOS3 != 0x3f9aa000 {
		t.Errorf("systab %+v", h.Systab)
	}
	if len(h.RuntimeMap) != 3 || h.RuntimeMap[2].Type != 11 || h.RuntimeMap[2].Phys != 0xffc00000 || h.RuntimeMap[0].Virt != 0xfffffffeffc00000 {
		t.Errorf("runtime map %+v", h.RuntimeMap)
	}
}

func TestReadHostBIOS(t *testing.T) {
	h, err := ReadHost(fstest.MapFS{PathBootParams: {Data: make([]byte, BootParamsSize)}})
	if err != nil || h == nil || h.EFI || h.BootParams == nil {
		t.Fatalf("BIOS host: %+v, %v", h, err)
	}
	if h, err := ReadHost(fstest.MapFS{"proc/iomem": {}}); h != nil || err != nil {
		t.Fatalf("empty host: %+v, %v", h, err)
	}
}

func TestReadHostNoRuntimeMap(t *testing.T) {
	m := ovmfHost()
	for k := range m {
		if len(k) > len(PathRuntimeMap) && k[:len(PathRuntimeMap)] == PathRuntimeMap {
			delete(m, k)
		}
	}
	h, err := ReadHost(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Missing) != 1 || h.Missing[0] != PathRuntimeMap || h.RuntimeMap != nil {
		t.Fatalf("missing %v, map %v", h.Missing, h.RuntimeMap)
	}
}

func TestTruncatedBootParams(t *testing.T) {
	m := ovmfHost()
	m[PathBootParams] = &fstest.MapFile{Data: make([]byte, 0x1c4)}
	_, err := ReadHost(m)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated boot_params: %v, want ErrTruncated", err)
	}
	if _, err := ParseBootParams(make([]byte, BootParamsSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized boot_params: %v", err)
	}
}

func TestRuntimeMapErrors(t *testing.T) {
	for name, edit := range map[string]func(fstest.MapFS){
		"gap in numbering": func(m fstest.MapFS) {
			for _, f := range []string{"type", "phys_addr", "virt_addr", "num_pages", "attribute"} {
				m[PathRuntimeMap+"/7/"+f] = m[PathRuntimeMap+"/1/"+f]
				delete(m, PathRuntimeMap+"/1/"+f)
			}
		},
		"bad number":     func(m fstest.MapFS) { m[PathRuntimeMap+"/0/phys_addr"] = &fstest.MapFile{Data: []byte("zz\n")} },
		"type too large": func(m fstest.MapFS) { m[PathRuntimeMap+"/0/type"] = &fstest.MapFile{Data: []byte("0x100000000\n")} },
		"overflow": func(m fstest.MapFS) {
			m[PathRuntimeMap+"/0/num_pages"] = &fstest.MapFile{Data: []byte("0xffffffffffffff\n")}
		},
		"missing field": func(m fstest.MapFS) { delete(m, PathRuntimeMap+"/2/attribute") },
		"huge value":    func(m fstest.MapFS) { m[PathFwVendor] = &fstest.MapFile{Data: make([]byte, 1000)} },
	} {
		m := ovmfHost()
		edit(m)
		if _, err := ReadHost(m); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "missing field" && (errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrMalformed)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMemmapLayout checks the encoding against efi_memory_desc_t: type at 0,
// 4 bytes of padding, then phys, virt, pages, attribute as u64 at 8, 16, 24, 32.
func TestMemmapLayout(t *testing.T) {
	d := Descriptor{Type: 0x0b, Phys: 0x1122334455667788, Virt: 0xfffffffe00000000, Pages: 0x10, Attribute: MemoryRuntime | 1}
	b := EncodeMemmap([]Descriptor{d, d})
	want := []byte{
		0x0b, 0, 0, 0, 0, 0, 0, 0,
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
		0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff,
		0x10, 0, 0, 0, 0, 0, 0, 0,
		1, 0, 0, 0, 0, 0, 0, 0x80,
	}
	if len(b) != 2*MemoryDescriptorSize || string(b[:40]) != string(want) || string(b[40:]) != string(want) {
		t.Fatalf("encoding\n% x\nwant\n% x", b[:40], want)
	}
	back, err := DecodeMemmap(b, MemoryDescriptorSize)
	if err != nil || len(back) != 2 || back[1] != d {
		t.Fatalf("decode: %+v %v", back, err)
	}
	if _, err := DecodeMemmap(b[:41], 40); !errors.Is(err, ErrMalformed) {
		t.Fatalf("odd length: %v", err)
	}
}

func TestFramebuffer(t *testing.T) {
	si := make([]byte, ScreenInfoSize)
	le := binary.LittleEndian
	si[offVideoIsVGA] = VideoTypeEFI
	le.PutUint16(si[offLFBWidth:], 1280)
	le.PutUint16(si[offLFBHeight:], 800)
	le.PutUint16(si[offLFBDepth:], 32)
	le.PutUint32(si[offLFBBase:], 0x80000000)
	le.PutUint32(si[offExtLFBBase:], 0x1)
	s, ok := Framebuffer(si)
	if !ok || s.Base != 0x80000000 || s.Width != 1280 {
		t.Fatalf("%+v %v", s, ok)
	}
	le.PutUint32(si[offCapabilities:], capability64Base)
	if s, _ := Framebuffer(si); s.Base != 0x1_8000_0000 {
		t.Fatalf("64-bit base: %#x", s.Base)
	}
	si[offVideoIsVGA] = 0x01 // VGA text
	if _, ok := Framebuffer(si); ok {
		t.Fatal("text mode taken as a framebuffer")
	}
}

func TestParseSystab(t *testing.T) {
	s, err := ParseSystab([]byte("ACPI=0xe0000\nUNKNOWN=zz\n"))
	if err != nil || s.RSDP() != 0xe0000 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ParseSystab([]byte("ACPI20=nope\n")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad ACPI20: %v", err)
	}
}
