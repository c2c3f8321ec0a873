package ima

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

// mixedList builds three boots; sha384 is extended SHA-1-padded in the
// first and last and per-bank in the middle, as a Debian 6.1 -> 6.12 -> 6.1
// chain does. Field lengths are in order.
func mixedList(t *testing.T, order binary.ByteOrder) ([]Entry, PCRValues, []Method) {
	t.Helper()
	var es []Entry
	entry := func(pcr uint32, name string, digest []byte) Entry {
		return mkEntry(pcr, "ima-ng", fieldBytes(order, digestNG("", crypto.SHA256, digest), append([]byte(name), 0)))
	}
	for b := 0; b < 3; b++ {
		d := sha256.Sum256([]byte(fmt.Sprint("boot", b)))
		es = append(es, entry(10, "boot_aggregate", d[:]))
		for i := 0; i < 5; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(b, i)))
			es = append(es, entry(uint32(10+i%2), fmt.Sprintf("/f%d-%d", b, i), d[:]))
		}
	}
	want := []Method{MethodSHA1Padded, MethodPerBank, MethodSHA1Padded}
	starts := BootStartsOrder(es, order)
	q := PCRValues{
		crypto.SHA1:   replayBoots(es, crypto.SHA1, []Method{0, 0, 0}, starts),
		crypto.SHA256: replayBoots(es, crypto.SHA256, []Method{0, 0, 0}, starts),
		crypto.SHA384: replayBoots(es, crypto.SHA384, want, starts),
	}
	return es, q, want
}

// The boots of a big-endian list are found with its byte order.
func TestVerifyMixedBootMethodsBigEndian(t *testing.T) {
	order := binary.BigEndian
	es, q, want := mixedList(t, order)
	if got := BootStartsOrder(es, order); len(got) != 3 || got[1] != 6 || got[2] != 12 {
		t.Fatalf("BootStartsOrder %v", got)
	}
	if got := BootStarts(es); len(got) != 1 {
		t.Fatalf("BootStarts read big-endian lengths as little-endian and found %v", got)
	}
	r, _, err := VerifyList(AppendList(nil, es, order), order, q)
	if err != nil {
		t.Fatal(err)
	}
	r2 := VerifyOrder(es, q, order)
	for name, res := range map[string]VerifyResult{"VerifyList": r, "VerifyOrder": r2} {
		if !res.Consistent || res.Prefix != len(es) {
			t.Fatalf("%s: consistent %v prefix %d problems %v", name, res.Consistent, res.Prefix, res.Problems)
		}
		for _, b := range res.Banks {
			if b.Hash == crypto.SHA384 && fmt.Sprint(b.BootMethods) != fmt.Sprint(want) {
				t.Fatalf("%s: sha384 boot methods %v", name, b.BootMethods)
			}
		}
	}
}

func TestVerifyMixedBootMethods(t *testing.T) {
	es, q, want := mixedList(t, binary.LittleEndian)
	if got := BootStarts(es); len(got) != 3 || got[1] != 6 || got[2] != 12 {
		t.Fatalf("BootStarts %v", got)
	}
	ms, ok := BootMethods(es, crypto.SHA384, q[crypto.SHA384])
	if !ok || fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("BootMethods %v %v, want %v", ms, ok, want)
	}
	for name, res := range map[string]VerifyResult{
		"Verify": Verify(es, q),
		"VerifyList": func() VerifyResult {
			r, _, err := VerifyList(AppendList(nil, es, binary.LittleEndian), binary.LittleEndian, q)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}(),
	} {
		if !res.Consistent || res.Prefix != len(es) {
			t.Fatalf("%s: consistent %v prefix %d problems %v", name, res.Consistent, res.Prefix, res.Problems)
		}
		for _, b := range res.Banks {
			switch b.Hash {
			case crypto.SHA384:
				if fmt.Sprint(b.BootMethods) != fmt.Sprint(want) {
					t.Fatalf("%s: sha384 boot methods %v", name, b.BootMethods)
				}
			default:
				if b.BootMethods != nil || b.Method == nil || *b.Method != MethodPerBank {
					t.Fatalf("%s: bank %s: %+v", name, b.Bank, b)
				}
			}
		}
	}
	// A wrong sha256 value is not rescued by the search.
	q[crypto.SHA256][10] = make([]byte, 32)
	if r := Verify(es, q); r.Consistent && r.Prefix == len(es) {
		t.Fatal("a wrong PCR was accepted")
	}
	// Nor is a sha384 value no per-boot choice explains.
	es2, q2, _ := mixedList(t, binary.LittleEndian)
	q2[crypto.SHA384][11] = make([]byte, 48)
	if r := Verify(es2, q2); r.Consistent && r.Prefix == len(es2) {
		t.Fatal("an unexplained sha384 value was accepted")
	}
}
