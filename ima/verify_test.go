package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// quote replays the first k entries and fills every PCR the whole list uses
// (zero when the prefix does not reach it), as a TPM would report.
func quote(es []Entry, k int, bank crypto.Hash, m Method) map[uint32][]byte {
	v := Replay(es[:k], bank, m)
	for _, e := range es {
		if p := e.PCR; v[p] == nil {
			v[p] = make([]byte, bank.Size())
		}
	}
	return v
}

func TestVerifyMethodsAndPrefix(t *testing.T) {
	es := synthList(t, binary.LittleEndian)
	n := len(es)
	for _, k := range []int{n, n - 3, 5, 1} {
		q := PCRValues{
			crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
			crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank),
			crypto.SHA384: quote(es, k, crypto.SHA384, MethodSHA1Padded),
		}
		r := Verify(es, binary.LittleEndian, q, VerifyOptions{})
		if !r.Consistent || r.Prefix != k {
			t.Fatalf("k=%d: consistent %v prefix %d problems %v", k, r.Consistent, r.Prefix, r.Problems)
		}
		for _, b := range r.Banks {
			want := MethodPerBank
			if b.Hash == crypto.SHA384 {
				want = MethodSHA1Padded
			}
			if b.Method == nil || *b.Method != want || b.OwnPrefix != k {
				t.Errorf("k=%d bank %s: method %v own %d", k, b.Bank, methodStr(b.Method), b.OwnPrefix)
			}
			if !slices.Equal(b.PCRs, []uint32{10, 11, 12}) {
				t.Errorf("bank %s checked PCRs %v", b.Bank, b.PCRs)
			}
		}
	}
}

func methodStr(m *Method) string {
	if m == nil {
		return "nil"
	}
	return m.String()
}

func TestVerifyInconsistent(t *testing.T) {
	es := synthList(t, binary.LittleEndian)
	n := len(es)
	good := func() PCRValues {
		return PCRValues{crypto.SHA256: quote(es, n, crypto.SHA256, MethodPerBank), crypto.SHA1: quote(es, n, crypto.SHA1, MethodPerBank)}
	}
	// one flipped bit in one quoted PCR
	q := good()
	q[crypto.SHA256][10][0] ^= 0x80
	r := Verify(es, binary.LittleEndian, q, VerifyOptions{})
	if r.Consistent || r.Prefix != -1 {
		t.Errorf("corrupted quote: %+v", r)
	}
	// banks that disagree on the prefix: no common prefix
	q = good()
	q[crypto.SHA1] = quote(es, n-2, crypto.SHA1, MethodPerBank)
	if r := Verify(es, binary.LittleEndian, q, VerifyOptions{}); r.Consistent {
		t.Errorf("banks at different prefixes verified: %+v", r)
	}
	// a tampered template data byte inside the prefix
	bad := slices.Clone(es)
	td := slices.Clone(bad[3].TemplateData)
	td[len(td)-1] ^= 1
	bad[3].TemplateData = td
	r = Verify(bad, binary.LittleEndian, good(), VerifyOptions{})
	if r.Consistent || !slices.Contains(r.DigestMismatches, 3) {
		t.Errorf("tampered data: %+v", r)
	}
	// tampering with the stored digest only: PCRs still match, but the
	// list lies about its digest
	bad = slices.Clone(es)
	bad[2].TemplateDigest[5] ^= 1
	r = Verify(bad, binary.LittleEndian, good(), VerifyOptions{})
	if r.Consistent || !slices.Contains(r.DigestMismatches, 2) {
		t.Errorf("tampered digest: %+v", r)
	}
	// a bank that quotes none of the list's PCRs
	r = Verify(es, binary.LittleEndian, PCRValues{crypto.SHA256: {0: make([]byte, 32)}}, VerifyOptions{})
	if r.Consistent || len(r.Problems) == 0 {
		t.Errorf("unrelated PCRs verified: %+v", r)
	}
	// all-zero PCRs match only the empty prefix
	r = Verify(es, binary.LittleEndian, PCRValues{crypto.SHA256: quote(es, 0, crypto.SHA256, MethodPerBank)}, VerifyOptions{})
	if r.Consistent || r.Prefix != 0 {
		t.Errorf("empty prefix: %+v", r)
	}
	if r := Verify(es, binary.LittleEndian, nil, VerifyOptions{}); r.Consistent {
		t.Error("no quote verified")
	}
}

func TestParsePCRFileForms(t *testing.T) {
	var evm strings.Builder
	for i := 0; i < 24; i++ {
		fmt.Fprintf(&evm, "PCR-%02d:", i)
		for j := 0; j < 32; j++ {
			fmt.Fprintf(&evm, " %02X", i)
		}
		evm.WriteString("\n")
	}
	v, err := ParsePCRFile([]byte(evm.String()), 0)
	if err != nil || len(v[crypto.SHA256]) != 24 || v[crypto.SHA256][10][31] != 10 {
		t.Fatalf("evmctl form: %v %v", err, v)
	}
	if _, err := ParsePCRFile([]byte(evm.String()), crypto.SHA1); err == nil {
		t.Error("32-byte values accepted as sha1")
	}
	yaml := `  sha1:
    0 : 0x0000000000000000000000000000000000000000
    10: 0xAABBCCDDEEFF00112233445566778899AABBCCDD
  sha256:
    10: 0x` + strings.Repeat("ab", 32) + "\n"
	v, err = ParsePCRFile([]byte(yaml), 0)
	if err != nil || v[crypto.SHA1][10][0] != 0xaa || v[crypto.SHA256][10][31] != 0xab || len(v) != 2 {
		t.Fatalf("yaml form: %v %v", err, v)
	}
	v, err = ParsePCRFile([]byte(yaml), crypto.SHA256)
	if err != nil || len(v) != 1 {
		t.Fatalf("yaml bank selection: %v %v", err, v)
	}
	js, _ := MarshalPCRJSON(PCRValues{crypto.SHA384: {10: make([]byte, 48), 11: append(make([]byte, 47), 1)}})
	v, err = ParsePCRFile(js, 0)
	if err != nil || v[crypto.SHA384][11][47] != 1 {
		t.Fatalf("json form: %v %s", err, js)
	}
	for _, bad := range []string{"", "PCR-10: zz", "PCR-99999999999: 00", "garbage", `{"sha256":{"10":"00"}}`, "PCR-10: " + strings.Repeat("00 ", 21)} {
		if _, err := ParsePCRFile([]byte(bad), 0); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestTimeline(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)
	tl := BuildTimeline(es, binary.LittleEndian)
	if len(tl.Boots) != 2 || tl.Verdict != VerdictSoftReboots || tl.Boots[0].Exit != "soft-reboot" || tl.Boots[1].Exit != "running" {
		t.Fatalf("timeline %+v", tl)
	}
	if len(tl.Boots[0].Markers) != 2 || !tl.Boots[0].Markers[0].Decoded || tl.Boots[0].Markers[0].Count != 13 || tl.Boots[0].Violations != 1 {
		t.Errorf("markers %+v", tl.Boots[0])
	}
	// drop kexec_execute: events lost
	var noExec []Entry
	for i := range es {
		if es[i].EventName(order) != MarkerKexecExec {
			noExec = append(noExec, es[i])
		}
	}
	if tl := BuildTimeline(noExec, binary.LittleEndian); tl.Verdict != VerdictEventsLost || tl.Boots[0].Exit != "events-lost" {
		t.Errorf("no execute: %+v", tl)
	}
	// drop both markers: unmarked hand-over
	var none []Entry
	for i := range noExec {
		if noExec[i].EventName(order) != MarkerKexecLoad {
			none = append(none, noExec[i])
		}
	}
	if tl := BuildTimeline(none, binary.LittleEndian); tl.Verdict != VerdictUnmarked {
		t.Errorf("unmarked: %+v", tl)
	}
	if tl := BuildTimeline(es[:5], binary.LittleEndian); tl.Verdict != VerdictColdBoot || len(tl.Boots) != 1 {
		t.Errorf("single boot: %+v", tl)
	}
	if tl := BuildTimeline(nil, binary.LittleEndian); tl.Verdict != VerdictEmpty {
		t.Errorf("empty: %+v", tl)
	}
}

// A tpm2_pcrread YAML file captured from swtpm after known extends (see
// testdata/pcrfiles/README.md).
func TestParsePCRFileTpm2Tools(t *testing.T) {
	b, err := os.ReadFile("testdata/pcrfiles/tpm2_pcrread-swtpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParsePCRFile(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	extend := func(h crypto.Hash, fill byte) []byte {
		x := h.New()
		x.Write(make([]byte, h.Size()))
		x.Write(bytes.Repeat([]byte{fill}, h.Size()))
		return x.Sum(nil)
	}
	want := PCRValues{
		crypto.SHA1:   {10: extend(crypto.SHA1, 0xaa), 11: make([]byte, 20)},
		crypto.SHA256: {10: extend(crypto.SHA256, 0xbb), 11: extend(crypto.SHA256, 0x11)},
		crypto.SHA384: {10: extend(crypto.SHA384, 0xcc), 11: make([]byte, 48)},
	}
	for h, m := range want {
		for p, w := range m {
			if !bytes.Equal(v[h][p], w) {
				t.Errorf("%s PCR %d: %x, want %x", HashName(h), p, v[h][p], w)
			}
		}
	}
	if len(v) != 3 {
		t.Errorf("%d banks", len(v))
	}
}

// A bank that quotes none of the list's PCRs binds nothing (and says so),
// rather than every prefix.
func TestBankWithoutCheckedPCRs(t *testing.T) {
	es := synthList(t, binary.LittleEndian)
	q := PCRValues{
		crypto.SHA1:   quote(es, len(es), crypto.SHA1, MethodPerBank),
		crypto.SHA256: {23: make([]byte, 32)},
	}
	for _, reads := range []Reads{ReadsInstant, ReadsPerBank} {
		r := Verify(es, binary.LittleEndian, q, VerifyOptions{Reads: reads})
		if r.Consistent || r.Banks[1].OwnPrefix != -1 || r.Banks[1].Method != nil || r.Some != -1 {
			t.Errorf("%v: consistent %v, sha256 own prefix %d, some %d, problems %v", reads, r.Consistent, r.Banks[1].OwnPrefix, r.Some, r.Problems)
		}
	}
}
