package efi

import (
	"fmt"
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
		// A parsed value prints back to a value that parses the same
		// (decimal and hex agree: strconv is the second implementation).
		if v, err := ParseValue(b); err == nil {
			for _, f := range []string{"%d\n", "0x%x\n", "%#X"} {
				if w, err := ParseValue([]byte(fmt.Sprintf(f, v))); err != nil || w != v {
					t.Fatalf("%q parses to %#x; %q to %#x (%v)", b, v, fmt.Sprintf(f, v), w, err)
				}
			}
		}
		// A parsed systab, written back as sysfs does, parses the same.
		if st, err := ParseSystab(b); err == nil {
			txt := fmt.Sprintf("ACPI20=%#x\nACPI=%#x\nSMBIOS3=%#x\nSMBIOS=%#x\n", st.ACPI20, st.ACPI, st.SMBIOS3, st.SMBIOS)
			if st2, err := ParseSystab([]byte(txt)); err != nil || st2 != st {
				t.Fatalf("systab %+v does not round-trip: %+v %v", st, st2, err)
			}
		}
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
