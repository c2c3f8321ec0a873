package efi

import (
	"testing"
	"testing/fstest"
)

// FuzzParse feeds arbitrary bytes to every parser here, as a boot_params
// block, a sysfs value, a systab and a memory map, and to ReadHost as the
// contents of a runtime-map field. None may panic; what parses must
// re-encode to the same bytes.
func FuzzParse(f *testing.F) {
	f.Add(bootParams("EL64", 0x3f8ee018, 48, 1, 0x3e6a3018, 48*97, 2), 40)
	f.Add([]byte("0x3f8ee098\n"), 48)
	f.Add([]byte("ACPI20=0x3fb7e014\nSMBIOS=0x3f9ac000\n"), 40)
	f.Add(EncodeMemmap([]Descriptor{{Type: 5, Phys: 0x3f8a0000, Pages: 1, Attribute: MemoryRuntime}}), 40)
	f.Fuzz(func(t *testing.T, b []byte, descSize int) {
		if bp, err := ParseBootParams(b); err == nil {
			_ = bp.EFIBoot()
			_, _ = Framebuffer(bp.ScreenInfo)
		}
		_, _ = ParseValue(b)
		_, _ = ParseSystab(b)
		_, _ = Framebuffer(b)
		if ds, err := DecodeMemmap(b, uint32(descSize)); err == nil && descSize == MemoryDescriptorSize {
			// Padding is not kept, so compare after clearing it.
			want := append([]byte(nil), b...)
			for i := 0; i+8 <= len(want); i += MemoryDescriptorSize {
				copy(want[i+4:i+8], []byte{0, 0, 0, 0})
			}
			if got := EncodeMemmap(ds); string(got) != string(want) {
				t.Fatal("memory map does not round-trip")
			}
		}
		m := ovmfHost()
		m[PathRuntimeMap+"/1/phys_addr"] = &fstest.MapFile{Data: b}
		m[PathSystab] = &fstest.MapFile{Data: b}
		if h, err := ReadHost(m); err == nil && len(h.RuntimeMap) != 3 {
			t.Fatalf("%d descriptors", len(h.RuntimeMap))
		}
	})
}
