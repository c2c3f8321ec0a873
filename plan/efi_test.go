package plan

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/segment"
)

// ovmfHost is an EFI host shaped like a Debian 6.1 guest under OVMF.
func ovmfHost() *efi.Host {
	si := make([]byte, efi.ScreenInfoSize)
	si[0x0f] = efi.VideoTypeEFI
	binary.LittleEndian.PutUint16(si[0x12:], 1280)
	binary.LittleEndian.PutUint16(si[0x14:], 800)
	binary.LittleEndian.PutUint16(si[0x16:], 32)
	binary.LittleEndian.PutUint32(si[0x18:], 0x80000000)
	return &efi.Host{
		EFI: true,
		BootParams: &efi.BootParams{EFI: efi.Info{LoaderSignature: "EL64", Systab: 0x3f8ee018, MemdescSize: 48, MemdescVersion: 1,
			Memmap: 0x3e6a3018, MemmapSize: 48 * 97}, SecureBoot: 2, ScreenInfo: si},
		FwVendor: 0x3f8ee098, Runtime: 0x3f8edb98, ConfigTable: 0x3f8ed118,
		Systab: efi.Systab{ACPI20: 0x3fb7e014, ACPI: 0x3fb7e000, SMBIOS: 0x3f9ac000},
		RuntimeMap: []efi.Descriptor{
			{Type: 5, Phys: 0x3f8a0000, Virt: 0xfffffffeffc00000, Pages: 0x40, Attribute: efi.MemoryRuntime | 0xf},
			{Type: 6, Phys: 0x3f8e0000, Virt: 0xfffffffeffb80000, Pages: 0x40, Attribute: efi.MemoryRuntime | 0xf},
		},
	}
}

func TestPlanEFI(t *testing.T) {
	in := inputs(t, 10)
	in.EFI = ovmfHost()
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings: %q", p.Warnings)
	}
	e := p.BootParams.EFI
	if e == nil {
		t.Fatal("no EFI state in the plan")
	}
	if e.Systab != 0x3f8ee018 || e.MemdescSize != 40 || e.MemdescVersion != 1 || e.SecureBoot != 2 || e.SMBIOS != 0x3f9ac000 ||
		e.ConventionalDescriptors == 0 || e.MemmapSize != uint32(40*(2+e.ConventionalDescriptors)) {
		t.Errorf("efi %+v", e)
	}
	if p.BootParams.ACPIRSDP != 0x3fb7e014 {
		t.Errorf("acpi_rsdp %#x, want ACPI20's", p.BootParams.ACPIRSDP)
	}
	var efiNode *SetupData
	for i := range p.BootParams.SetupData {
		if p.BootParams.SetupData[i].Type == bzimage.SetupEFI {
			efiNode = &p.BootParams.SetupData[i]
		}
	}
	if efiNode == nil || efiNode.Len != bzimage.EFISetupDataSize {
		t.Fatalf("setup_data %+v: no SETUP_EFI node", p.BootParams.SetupData)
	}
	// The memory map lies in the boot_params segment, which lies below the
	// kernel (out of the decompressor's reach), and decodes to the runtime map.
	bp := seg(t, p, "boot_params")
	if bp.Mem+bp.Memsz > p.KernelAddr {
		t.Errorf("boot_params [%#x,%#x) not below the kernel at %#x", bp.Mem, bp.Mem+bp.Memsz, p.KernelAddr)
	}
	if e.Memmap < bp.Mem || e.Memmap+uint64(e.MemmapSize) > bp.Mem+bp.Bufsz {
		t.Fatalf("memmap %#x+%d outside boot_params [%#x,+%d)", e.Memmap, e.MemmapSize, bp.Mem, bp.Bufsz)
	}
	off := e.Memmap - bp.Mem
	ds, err := efi.DecodeMemmap(bp.Buf[off:off+uint64(e.MemmapSize)], e.MemdescSize)
	if err != nil || len(ds) != 2+e.ConventionalDescriptors || ds[1] != in.EFI.RuntimeMap[1] {
		t.Fatalf("memmap decodes to %+v, %v", ds, err)
	}
	// The conventional descriptors are the RAM: inside a RAM range, page
	// aligned, clear of the runtime regions, and together all of the RAM
	// that is not runtime.
	ram := in.Memory.RAM()
	var conv uint64
	for _, d := range ds[2:] {
		end, _ := d.End()
		inRAM := false
		for _, r := range ram {
			if d.Phys >= r.Start && end <= r.End {
				inRAM = true
			}
		}
		for _, rt := range ds[:2] {
			rtEnd, _ := rt.End()
			if d.Phys < rtEnd && rt.Phys < end {
				t.Errorf("conventional %+v overlaps runtime %+v", d, rt)
			}
		}
		if d.Type != efi.ConventionalMemory || d.Phys%4096 != 0 || !inRAM || d.Attribute&efi.MemoryRuntime != 0 {
			t.Errorf("conventional descriptor %+v", d)
		}
		conv += d.Pages << 12
	}
	var total uint64
	for _, r := range ram {
		total += r.Size()
	}
	if conv == 0 || conv > total {
		t.Errorf("conventional memory %#x of RAM %#x", conv, total)
	}
	le := binary.LittleEndian
	if got := uint64(le.Uint32(bp.Buf[0x1d0:])) | uint64(le.Uint32(bp.Buf[0x1dc:]))<<32; got != e.Memmap {
		t.Errorf("efi_info.efi_memmap %#x, plan says %#x", got, e.Memmap)
	}
	if p.BootParams.Screen == nil || p.BootParams.Screen.Width != 1280 || bp.Buf[0x0f] != efi.VideoTypeEFI {
		t.Errorf("screen_info %+v", p.BootParams.Screen)
	}
	// JSON: integers, the field names the CLI contract promises.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BootParams struct {
			EFI       map[string]any `json:"efi"`
			SetupData []struct {
				Type uint32 `json:"type"`
			} `json:"setup_data"`
		} `json:"boot_params"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"systab", "memmap", "memmap_size", "memdesc_size", "memdesc_version"} {
		v, ok := doc.BootParams.EFI[k].(float64)
		if !ok || v == 0 || v != float64(uint64(v)) {
			t.Errorf("boot_params.efi.%s = %v", k, doc.BootParams.EFI[k])
		}
	}
	if !strings.Contains(string(b), `"systab":1066328088`) {
		t.Errorf("systab not a JSON integer: %s", b)
	}
}

func TestPlanEFIRefusals(t *testing.T) {
	cases := []struct {
		name string
		edit func(in *Inputs)
		want string // in the warning; "" means no warning
	}{
		{"noefi", func(in *Inputs) { in.NoEFI = true }, ""},
		{"bios host", func(in *Inputs) { in.EFI.EFI = false }, ""},
		{"no runtime-map", func(in *Inputs) { in.EFI.RuntimeMap = nil; in.EFI.Missing = []string{efi.PathRuntimeMap} }, "/sys/firmware/efi/runtime-map"},
		{"descriptor version", func(in *Inputs) { in.EFI.BootParams.EFI.MemdescVersion = 2 }, "version 2"},
		{"not an EFI boot", func(in *Inputs) { in.EFI.BootParams.EFI.LoaderSignature = "\x00\x00\x00\x00" }, "not booted by EFI"},
		{"32-bit EFI", func(in *Inputs) { in.EFI.BootParams.EFI.LoaderSignature = "EL32" }, "32-bit"},
		{"kernel without XLF_EFI_KEXEC", func(in *Inputs) {
			k := append([]byte(nil), in.Kernel...)
			binary.LittleEndian.PutUint16(k[0x236:], binary.LittleEndian.Uint16(k[0x236:])&^bzimage.XLFEFIKexec)
			in.Kernel = k
		}, "XLF_EFI_KEXEC"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := inputs(t, 3)
			in.EFI = ovmfHost()
			c.edit(in)
			p, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if p.BootParams.EFI != nil {
				t.Fatal("EFI state handed over")
			}
			for _, n := range p.BootParams.SetupData {
				if n.Type == bzimage.SetupEFI {
					t.Fatal("SETUP_EFI node without EFI state")
				}
			}
			bp := seg(t, p, "boot_params")
			for _, b := range bp.Buf[0x1c0:0x1e0] {
				if b != 0 {
					t.Fatalf("efi_info not zero: % x", bp.Buf[0x1c0:0x1e0])
				}
			}
			switch {
			case c.want == "" && len(p.Warnings) != 0:
				t.Fatalf("warnings %q", p.Warnings)
			case c.want != "" && (len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], c.want) || !strings.HasSuffix(p.Warnings[0], NoEFIConsequence)):
				t.Fatalf("warnings %q, want one naming %q and what the next kernel lacks", p.Warnings, c.want)
			}
			// The ACPI root pointer still goes over: a non-EFI kernel on an
			// EFI machine cannot find it by scanning.
			if c.name != "bios host" && p.BootParams.ACPIRSDP != 0x3fb7e014 {
				t.Errorf("acpi_rsdp %#x", p.BootParams.ACPIRSDP)
			}
		})
	}
}

func TestConventional(t *testing.T) {
	ram := []segment.Range{{Start: 0x1000, End: 0xa0000}, {Start: 0x100000, End: 0x4000_0123}}
	rt := []efi.Descriptor{
		{Type: 5, Phys: 0x3000_0000, Pages: 0x10, Attribute: efi.MemoryRuntime},              // splits the second range
		{Type: 11, Phys: 0xffc0_0000, Pages: 0x400, Attribute: efi.MemoryRuntime | 1},        // MMIO outside RAM
		{Type: 6, Phys: 0xffff_ffff_ffff_f000, Pages: 1 << 60, Attribute: efi.MemoryRuntime}, // overflows: ignored
	}
	got := conventional(ram, rt)
	want := []efi.Descriptor{
		{Type: 7, Phys: 0x1000, Pages: 0x9f, Attribute: 0xf},
		{Type: 7, Phys: 0x100000, Pages: (0x3000_0000 - 0x100000) >> 12, Attribute: 0xf},
		{Type: 7, Phys: 0x3001_0000, Pages: (0x4000_0000 - 0x3001_0000) >> 12, Attribute: 0xf}, // end rounded down
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("descriptor %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
