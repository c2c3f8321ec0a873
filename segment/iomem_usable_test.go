package segment

import (
	"os"
	"strings"
	"testing"
)

// TestParseIomemUsableKeepsEFITables is TestARM64UEFI's finding: under
// AAVMF gokexec placed the initrd over the UEFI memory attributes table
// (MEMATTR=0x7e80b518, a nested "reserved" entry in System RAM of the
// first kernel's /proc/iomem, captured here) and the second kernel said
// "efi: memattr: Unexpected EFI Memory Attributes descriptor size". The
// usable map leaves every nested reserved range out of RAM, and keeps the
// rest.
func TestParseIomemUsableKeepsEFITables(t *testing.T) {
	b, err := os.ReadFile("testdata/iomem-aavmf-arm64")
	if err != nil {
		t.Fatal(err)
	}
	top, err := ParseIomem(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseIomemUsable(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	ram := m.RAM()
	inRAM := func(r Range) bool {
		for _, x := range ram {
			if x.Overlaps(r) {
				return true
			}
		}
		return false
	}
	for name, r := range map[string]Range{
		"memory attributes table (MEMATTR=0x7e80b518)": {0x7e80b000, 0x7e80c000},
		"ACPI tables, UEFI memory map, TPM event log":  {0x79bc0000, 0x79bd0000},
		"memreserve list (MEMRESERVE=0x79bd7f98)":      {0x79bd7000, 0x79bd8000},
		"the stub's allocations at the top of RAM":     {0x7ffe0000, 0x80000000},
	} {
		if inRAM(r) {
			t.Errorf("%s %v is usable RAM", name, r)
		}
		if !m.contains(r, TypeReserved) {
			t.Errorf("%s %v is not Reserved", name, r)
		}
	}
	for _, r := range []Range{{0x40000000, 0x76f20000}, {0x7c730000, 0x7dc00000}} {
		if !inRAM(r) || m.contains(r, TypeReserved) {
			t.Errorf("%v: free RAM lost", r)
		}
	}
	// ParseIomem's top-level view (crash dumps) is unchanged.
	if got := top.RAM(); len(got) != 4 || got[0] != (Range{0x40000000, 0x79ba0000}) || got[3] != (Range{0x7ffe0000, 0x80000000}) {
		t.Fatalf("top-level RAM %v", got)
	}
	// A map with no nested reserved entries comes out as ParseIomem's.
	dev, err := os.ReadFile("testdata/iomem-devhost.txt")
	if err != nil {
		t.Fatal(err)
	}
	a, err1 := ParseIomem(strings.NewReader(string(dev)))
	u, err2 := ParseIomemUsable(strings.NewReader(string(dev)))
	if err1 != nil || err2 != nil || a.String() != u.String() {
		t.Fatalf("devhost map changed:\n%v\n%v", a, u)
	}
}

// contains tells whether some region of m of type typ covers r.
func (m Map) contains(r Range, typ Type) bool {
	for _, x := range m {
		if x.Type == typ && x.Contains(r) {
			return true
		}
	}
	return false
}
