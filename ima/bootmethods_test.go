package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// mixedList builds three boots; sha384 is extended SHA-1-padded in the
// first and last and per-bank in the middle, as a Debian 6.1 -> 6.12 -> 6.1
// chain does. Field lengths are in order.
func mixedList(t *testing.T, order binary.ByteOrder) ([]Entry, PCRValues, []Method) {
	t.Helper()
	es := bootsList(order, 3, 5)
	want := []Method{MethodSHA1Padded, MethodPerBank, MethodSHA1Padded}
	q := PCRValues{
		crypto.SHA1:   ReplayBootMethods(es, order, crypto.SHA1, []Method{0, 0, 0}),
		crypto.SHA256: ReplayBootMethods(es, order, crypto.SHA256, []Method{0, 0, 0}),
		crypto.SHA384: ReplayBootMethods(es, order, crypto.SHA384, want),
	}
	return es, q, want
}

// bootsList is boots boots of perBoot file entries after a boot_aggregate,
// in PCRs 10 and 11.
func bootsList(order binary.ByteOrder, boots, perBoot int) []Entry {
	var es []Entry
	entry := func(pcr uint32, name string, digest []byte) Entry {
		return mkEntry(pcr, "ima-ng", fieldBytes(order, digestNG("", crypto.SHA256, digest), append([]byte(name), 0)))
	}
	for b := 0; b < boots; b++ {
		d := sha256.Sum256([]byte(fmt.Sprint("boot", b)))
		es = append(es, entry(10, "boot_aggregate", d[:]))
		for i := 0; i < perBoot; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(b, i)))
			es = append(es, entry(uint32(10+i%2), fmt.Sprintf("/f%d-%d", b, i), d[:]))
		}
	}
	return es
}

// The boots of a big-endian list are found with its byte order.
func TestVerifyMixedBootMethodsBigEndian(t *testing.T) {
	order := binary.BigEndian
	es, q, want := mixedList(t, order)
	if got := BootStarts(es, order); len(got) != 3 || got[1] != 6 || got[2] != 12 {
		t.Fatalf("BootStarts %v", got)
	}
	if got := BootStarts(es, binary.LittleEndian); len(got) != 1 {
		t.Fatalf("BootStarts read big-endian lengths as little-endian and found %v", got)
	}
	raw := AppendList(nil, es, order)
	r, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2 := Verify(es, order, q, VerifyOptions{})
	for name, res := range map[string]VerifyResult{"VerifyReaderAt": r, "Verify": r2} {
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
	order := binary.LittleEndian
	es, q, want := mixedList(t, order)
	ms, ok := BootMethods(es, order, crypto.SHA384, q[crypto.SHA384])
	if !ok || fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("BootMethods %v %v, want %v", ms, ok, want)
	}
	for _, reads := range []Reads{ReadsInstant, ReadsPerBank} {
		res := Verify(es, order, q, VerifyOptions{Reads: reads})
		if !res.Consistent || res.Prefix != len(es) || !strings.HasPrefix(res.MethodSearch, "found") {
			t.Fatalf("%v: consistent %v prefix %d problems %v search %q", reads, res.Consistent, res.Prefix, res.Problems, res.MethodSearch)
		}
		for _, b := range res.Banks {
			switch b.Hash {
			case crypto.SHA384:
				if fmt.Sprint(b.BootMethods) != fmt.Sprint(want) {
					t.Fatalf("sha384 boot methods %v", b.BootMethods)
				}
			default:
				if b.BootMethods != nil || b.Method == nil || *b.Method != MethodPerBank {
					t.Fatalf("bank %s: %+v", b.Bank, b)
				}
			}
		}
	}
	// A wrong sha256 value is not rescued by the search.
	q[crypto.SHA256][10] = make([]byte, 32)
	if r := Verify(es, order, q, VerifyOptions{}); r.Consistent {
		t.Fatal("a wrong PCR was accepted")
	}
	// Nor is a sha384 value no per-boot choice explains.
	es2, q2, _ := mixedList(t, order)
	q2[crypto.SHA384][11] = make([]byte, 48)
	r := Verify(es2, order, q2, VerifyOptions{})
	if r.Consistent || !strings.Contains(r.MethodSearch, "no method per boot reproduces") {
		t.Fatalf("an unexplained sha384 value: consistent %v, search %q", r.Consistent, r.MethodSearch)
	}
}

// The reproducer of the unbounded search: a 1.9 MB list with 12
// boot_aggregates against a wrong sha256 PCR 10 took 40 s. The search now
// runs only for a bank that fails both methods, within a budget, and says
// when it gives up.
func TestMethodSearchBounded(t *testing.T) {
	order := binary.LittleEndian
	es := bootsList(order, 12, 1700) // ~20,000 entries
	raw := AppendList(nil, es, order)
	if len(raw) < 1_800_000 {
		t.Fatalf("list of %d bytes, want ~1.9 MB", len(raw))
	}
	q := PCRValues{
		crypto.SHA1:   Replay(es, crypto.SHA1, MethodPerBank),
		crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank),
	}
	q[crypto.SHA256][10] = bytes.Repeat([]byte{0x5a}, 32)
	// The bound is on the work (the search gives up and says so), not on
	// time: tests assert no timings, and -race runs this too.
	r, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Consistent || !strings.HasPrefix(r.MethodSearch, "gave up") {
		t.Fatalf("consistent %v, search %q", r.Consistent, r.MethodSearch)
	}
	t.Logf("%d entries, %d bytes, 12 boots; %s", len(es), len(raw), r.MethodSearch)

	// A list whose banks match at a prefix does not search at all.
	q2 := PCRValues{
		crypto.SHA1:   Replay(es[:100], crypto.SHA1, MethodPerBank),
		crypto.SHA256: Replay(es[:100], crypto.SHA256, MethodPerBank),
	}
	r2 := Verify(es, order, q2, VerifyOptions{})
	if !r2.Consistent || r2.Prefix != 100 || r2.MethodSearch != "" {
		t.Fatalf("prefix list: consistent %v prefix %d search %q", r2.Consistent, r2.Prefix, r2.MethodSearch)
	}
}
