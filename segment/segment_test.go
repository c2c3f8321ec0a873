package segment

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseSysfsMemmapDevhost(t *testing.T) {
	m, err := ParseSysfsMemmap(os.DirFS("testdata/sysfs-memmap-devhost"))
	if err != nil {
		t.Fatal(err)
	}
	want := Map{
		{Range{0, 0x9fc00}, TypeRAM},
		{Range{0x9fc00, 0x100000}, TypeReserved},
		{Range{0x100000, 0xc0000000}, TypeRAM},
		{Range{0xeec00000, 0xfec00000}, TypeReserved},
		{Range{0x100000000, 0x640000000}, TypeRAM},
	}
	if len(m) != len(want) {
		t.Fatalf("got\n%v", m)
	}
	for i := range want {
		if m[i] != want[i] {
			t.Fatalf("entry %d: got %v %v, want %v %v", i, m[i].Range, m[i].Type, want[i].Range, want[i].Type)
		}
	}
}

func TestParseIomemDevhost(t *testing.T) {
	f, err := os.Open("testdata/iomem-devhost.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ParseIomem(f)
	if err != nil {
		t.Fatal(err)
	}
	ram := m.RAM()
	want := []Range{{0x1000, 0x9fc00}, {0x100000, 0xc0000000}, {0x100000000, 0x640000000}}
	if len(ram) != len(want) {
		t.Fatalf("RAM %v", ram)
	}
	for i := range want {
		if ram[i] != want[i] {
			t.Fatalf("RAM %d: %v, want %v", i, ram[i], want[i])
		}
	}
}

func TestParseIomemErrors(t *testing.T) {
	cases := map[string]string{
		"unprivileged": "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n",
		"no separator": "00100000-bfffffff System RAM\n",
		"bad hex":      "0010000g-bfffffff : System RAM\n",
		"inverted":     "bfffffff-00100000 : System RAM\n",
		"no memory":    "c0001000-eebfffff : PCI Bus 0000:00\n",
		"conflict":     "00100000-bfffffff : System RAM\n00200000-002fffff : Reserved\n",
	}
	for name, in := range cases {
		if _, err := ParseIomem(strings.NewReader(in)); !errors.Is(err, ErrBadMap) {
			t.Errorf("%s: err = %v, want ErrBadMap", name, err)
		}
	}
}

func ram(rs ...Range) []Range { return rs }

func TestPlaceTopDown(t *testing.T) {
	a, err := NewAllocator(ram(Range{0x1000, 0x9f000}, Range{0x100000, 0x4000_0000}), 4096)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Place(Request{Name: "k", Size: 0x3378000, Align: 2 << 20, Min: 16 << 20, Max: 512<<20 + 0x3378000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Start != 512<<20 || r.Size() != 0x3378000 {
		t.Fatalf("kernel at %v", r)
	}
	b, err := a.Place(Request{Name: "ima", Size: 5000, Min: 1 << 20, Max: r.Start})
	if err != nil {
		t.Fatal(err)
	}
	if b.End != r.Start || b.Size() != 0x2000 {
		t.Fatalf("buffer at %v, want right below the kernel, two pages", b)
	}
	c, err := a.Place(Request{Name: "low", Size: 1, BottomUp: true})
	if err != nil || c.Start != 0x1000 {
		t.Fatalf("bottom-up %v %v", c, err)
	}
	if _, err := a.Place(Request{Name: "huge", Size: 0x4000_0000}); !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "huge") {
		t.Fatalf("huge: %v", err)
	}
	if _, err := a.Place(Request{Name: "fixed", Fixed: true, FixedAt: r.Start, Size: 4096}); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("fixed over the kernel: %v", err)
	}
	if f, err := a.Place(Request{Name: "fixed", Fixed: true, FixedAt: 0x200000, Size: 4096}); err != nil || f.Start != 0x200000 {
		t.Fatalf("fixed: %v %v", f, err)
	}
	if _, err := a.Place(Request{Name: "odd", Size: 1, Align: 3 << 12}); !errors.Is(err, ErrBadSegment) {
		t.Fatalf("non-power-of-two alignment: %v", err)
	}
}

func TestReserveSplits(t *testing.T) {
	a, _ := NewAllocator(ram(Range{0, 0x10000}), 4096)
	a.Reserve(Range{0x3001, 0x5000})
	free := a.Free()
	if len(free) != 2 || free[0] != (Range{0, 0x3000}) || free[1] != (Range{0x5000, 0x10000}) {
		t.Fatalf("free %v", free)
	}
}

func TestValidate(t *testing.T) {
	r := ram(Range{0x100000, 0x1000000})
	ok := []Segment{{Name: "a", Buf: make([]byte, 10), Mem: 0x100000, Memsz: 0x1000}, {Name: "b", Mem: 0x200000, Memsz: 0x2000, Buf: []byte{1}}}
	if err := Validate(ok, r, 4096); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]Segment{
		"unaligned mem":   {{Name: "x", Mem: 0x100800, Memsz: 0x1000}},
		"unaligned memsz": {{Name: "x", Mem: 0x100000, Memsz: 0x800}},
		"bufsz > memsz":   {{Name: "x", Mem: 0x100000, Memsz: 0x1000, Buf: make([]byte, 0x1001)}},
		"overlap":         {{Name: "x", Mem: 0x100000, Memsz: 0x2000}, {Name: "y", Mem: 0x101000, Memsz: 0x1000}},
		"outside RAM":     {{Name: "x", Mem: 0xff000, Memsz: 0x2000}},
		"wraps":           {{Name: "x", Mem: 0xfffffffffffff000, Memsz: 0x2000}},
		"empty":           {},
		"too many":        make([]Segment, 17),
	}
	for name, segs := range bad {
		err := Validate(segs, r, 4096)
		if !errors.Is(err, ErrBadSegment) && !errors.Is(err, ErrOverflow) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestAlign(t *testing.T) {
	if v, ok := AlignUp(0x1001, 0x1000); !ok || v != 0x2000 {
		t.Fatal(v)
	}
	if _, ok := AlignUp(^uint64(0), 0x1000); ok {
		t.Fatal("overflow not reported")
	}
	if AlignDown(0x1fff, 0x1000) != 0x1000 {
		t.Fatal("AlignDown")
	}
}
