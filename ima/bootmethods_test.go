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
// chain does.
func mixedList(t *testing.T) ([]Entry, PCRValues, []Method) {
	t.Helper()
	var es []Entry
	for b := 0; b < 3; b++ {
		d := sha256.Sum256([]byte(fmt.Sprint("boot", b)))
		e, err := NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
		for i := 0; i < 5; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(b, i)))
			e, _ := NewFileEntry(uint32(10+i%2), "ima-ng", fmt.Sprintf("/f%d-%d", b, i), d[:], crypto.SHA256, nil)
			es = append(es, e)
		}
	}
	want := []Method{MethodSHA1Padded, MethodPerBank, MethodSHA1Padded}
	q := PCRValues{
		crypto.SHA1:   ReplayBootMethods(es, crypto.SHA1, []Method{0, 0, 0}),
		crypto.SHA256: ReplayBootMethods(es, crypto.SHA256, []Method{0, 0, 0}),
		crypto.SHA384: ReplayBootMethods(es, crypto.SHA384, want),
	}
	return es, q, want
}

func TestVerifyMixedBootMethods(t *testing.T) {
	es, q, want := mixedList(t)
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
	es2, q2, _ := mixedList(t)
	q2[crypto.SHA384][11] = make([]byte, 48)
	if r := Verify(es2, q2); r.Consistent && r.Prefix == len(es2) {
		t.Fatal("an unexplained sha384 value was accepted")
	}
}
