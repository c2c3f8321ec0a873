package segment

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const iomemCrash = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-3ffcefff : System RAM
  05000000-05ffffff : Crash kernel
  1ec00000-1fa01ef1 : Kernel code
  2b000000-3affffff : Crash kernel
3ffcf000-3fffffff : Reserved
`

func TestParseCrashRegions(t *testing.T) {
	got, err := ParseCrashRegions(strings.NewReader(iomemCrash))
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{0x05000000, 0x06000000}, {0x2b000000, 0x3b000000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := ParseCrashRegions(strings.NewReader("00100000-3ffcefff : System RAM\n")); !errors.Is(err, ErrNoCrashRegion) {
		t.Fatalf("no region: %v", err)
	}
	for _, bad := range []string{
		"  00000000-00000000 : Crash kernel\n",
		"  2b000000 : Crash kernel\n",
		"  3b000000-2b000000 : Crash kernel\n",
		"  2b000000-3affffff : Crash kernel\n  30000000-3fffffff : Crash kernel\n",
		"  0-ffffffffffffffff : Crash kernel\n",
	} {
		if _, err := ParseCrashRegions(strings.NewReader(bad)); !errors.Is(err, ErrBadMap) {
			t.Errorf("%q: %v, want ErrBadMap", bad, err)
		}
	}
}

func TestSubtractIntersect(t *testing.T) {
	ram := []Range{{0x100000, 0x3ffcf000}, {0x1000, 0x9fc00}}
	got := Subtract(ram, []Range{{0x2b000000, 0x3b000000}, {0, 0x100000}})
	want := []Range{{0x100000, 0x2b000000}, {0x3b000000, 0x3ffcf000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Subtract = %v, want %v", got, want)
	}
	if got := Subtract(ram, nil); len(got) != 2 || got[0].Start != 0x1000 {
		t.Fatalf("Subtract nothing = %v", got)
	}
	if got := Intersect(ram, Range{0, 0x100000}); !reflect.DeepEqual(got, []Range{{0x1000, 0x9fc00}}) {
		t.Fatalf("Intersect = %v", got)
	}
}
