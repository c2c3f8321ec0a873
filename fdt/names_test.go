package fdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// propBomb builds the reproducer of issue 11, finding 7: a root node with
// n empty properties that all name the one string name.
func propBomb(n int, name string) []byte {
	be := binary.BigEndian
	var st []byte
	st = be.AppendUint32(st, tokenBeginNode)
	st = append(st, 0, 0, 0, 0) // the root's empty name, padded
	for i := 0; i < n; i++ {
		st = be.AppendUint32(st, tokenProp)
		st = be.AppendUint32(st, 0) // empty value
		st = be.AppendUint32(st, 0) // name offset 0
	}
	st = be.AppendUint32(st, tokenEndNode)
	st = be.AppendUint32(st, tokenEnd)
	strs := append([]byte(name), 0)
	const hdr = 40
	rsv := make([]byte, 16)
	off := hdr + len(rsv)
	var h []byte
	h = be.AppendUint32(h, 0xd00dfeed)
	h = be.AppendUint32(h, uint32(off+len(st)+len(strs))) // totalsize
	h = be.AppendUint32(h, uint32(off))                   // off_dt_struct
	h = be.AppendUint32(h, uint32(off+len(st)))           // off_dt_strings
	h = be.AppendUint32(h, hdr)                           // off_mem_rsvmap
	h = be.AppendUint32(h, 17)
	h = be.AppendUint32(h, 16)
	h = be.AppendUint32(h, 0)
	h = be.AppendUint32(h, uint32(len(strs)))
	h = be.AppendUint32(h, uint32(len(st)))
	return bytes.Join([][]byte{h, rsv, st, strs}, nil)
}

// The 2 MiB blob whose 87,380 properties all name one 1 MiB string cost
// 2.4 GB and crashed: the name is now refused as longer than
// MaxPropertyName.
func TestPropertyNameBomb(t *testing.T) {
	b := propBomb(87380, strings.Repeat("n", 1<<20))
	if len(b) < 2<<20 {
		t.Fatalf("reproducer is %d bytes", len(b))
	}
	_, err := Parse(b)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "longer than 255") {
		t.Fatalf("Parse: %v", err)
	}
}

// Names up to the bound parse, and every property naming one offset shares
// one string: the parse costs a small multiple of the blob.
func TestPropertyNamesShared(t *testing.T) {
	name := strings.Repeat("n", MaxPropertyName)
	b := propBomb(87380, name)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr, err := Parse(b)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	props := tr.Root().props
	if len(props) != 87380 || props[0].Name != name {
		t.Fatalf("%d properties", len(props))
	}
	for _, p := range props[1:] {
		if unsafe.StringData(p.Name) != unsafe.StringData(props[0].Name) {
			t.Fatal("two properties with one name offset hold two copies of the name")
		}
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32*uint64(len(b)) {
		t.Fatalf("parsing %d bytes allocated %d", len(b), got)
	}
	long := propBomb(1, strings.Repeat("n", MaxPropertyName+1))
	if _, err := Parse(long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a %d-byte name: %v", MaxPropertyName+1, err)
	}
}
