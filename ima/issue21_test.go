package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
)

// tamperedExcusedList is issue 21's first finding: a boot_aggregate,
// junk entries in PCR 10 whose stored SHA-1 digests are junk (the sha256
// bank binds their data, so those mismatches are excused), then a PCR-11
// entry whose data was rewritten after it was measured (its stored SHA-1,
// the only thing the sha1 bank binds, is the original's). The quote:
// sha256 PCR 10 only, sha1 PCR 11 only.
func tamperedExcusedList(t testing.TB, junk int) ([]Entry, PCRValues) {
	t.Helper()
	var es []Entry
	agg, _ := NewFileEntry(10, "ima-ng", BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es = append(es, agg)
	for i := range junk {
		d := sha256.Sum256(fmt.Appendf(nil, "junk %d", i))
		e, err := NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/bin/j%d", i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.TemplateDigest[0] ^= 0xff // a junk stored digest
		es = append(es, e)
	}
	d := sha256.Sum256([]byte("the real /etc/secret"))
	orig, err := NewFileEntry(11, "ima-ng", "/etc/secret", d[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	es = append(es, orig)
	q := PCRValues{
		crypto.SHA256: {10: Replay(es, crypto.SHA256, MethodPerBank)[10]},
		crypto.SHA1:   {11: Replay(es, crypto.SHA1, MethodPerBank)[11]},
	}
	forged := sha256.Sum256([]byte("what the attacker wants seen"))
	fe, err := NewFileEntry(11, "ima-ng", "/etc/secret", forged[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	fe.TemplateDigest = orig.TemplateDigest // keeps the sha1 bank's replay
	es[len(es)-1] = fe
	return es, q
}

// TestTamperedListExcusedMismatchesEveryMode: with more than 64 excused
// mismatches before it, the rewritten PCR-11 entry was judged consistent
// from a stream and a checkpoint (and through them, the quote), while the
// file run said inconsistent. Every mode must say inconsistent, and
// count the mismatch.
func TestTamperedListExcusedMismatchesEveryMode(t *testing.T) {
	order := binary.LittleEndian
	for _, junk := range []int{3, 64, 65, 200} {
		es, q := tamperedExcusedList(t, junk)
		raw := AppendList(nil, es, order)
		for _, reads := range []Reads{ReadsInstant, ReadsPerBank} {
			opt := VerifyOptions{Reads: reads}
			what := fmt.Sprintf("%d junk, %v", junk, reads)
			check := func(mode string, res VerifyResult, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s %s: %v", what, mode, err)
				}
				if res.Consistent {
					t.Errorf("%s %s: a rewritten PCR-11 entry judged consistent (mismatches %v, problems %v)", what, mode, res.DigestMismatches, res.Problems)
				}
				if len(res.DigestMismatches) != 1 || res.DigestMismatches[0] != junk+1 {
					t.Errorf("%s %s: digest mismatches %v, want [%d]", what, mode, res.DigestMismatches, junk+1)
				}
			}
			check("entries", Verify(es, order, q, opt), nil)
			res, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, opt)
			check("file", res, err)
			res, err = VerifyReader(bytes.NewReader(raw), order, q, opt)
			check("stream", res, err)
			for split := 1; split < len(es); split += max(1, len(es)/7) {
				part := AppendList(nil, es[:split], order)
				_, info, err := VerifyFrom(bytes.NewReader(part), int64(len(part)), order, nil, quoteAt(es, split, crypto.SHA1, crypto.SHA256), opt)
				if err != nil || info.Next == nil {
					t.Fatalf("%s: checkpoint at %d: %v", what, split, err)
				}
				b, _ := MarshalCheckpoint(info.Next)
				cp, err := ParseCheckpoint(b)
				if err != nil {
					t.Fatal(err)
				}
				res, _, err = VerifyFrom(bytes.NewReader(raw), int64(len(raw)), order, cp, q, opt)
				check(fmt.Sprintf("checkpoint@%d", split), res, err)
			}
		}
	}
}

// TestJSONInvalidUTF8Exact: JSON output turned bytes that are not UTF-8
// into U+FFFD, so the payloads "\xff" and "\xef\xbf\xbd" printed the
// same. The two must print differently and read back exactly (the
// checkpoint's timeline goes through the same JSON).
func TestJSONInvalidUTF8Exact(t *testing.T) {
	var outs []string
	for _, p := range []string{"\xff", "\xef\xbf\xbd", "k=\xc0\x80;"} {
		m := Marker{Index: 3, PCR: 10, Name: "kexec_\xfe", Payload: p}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Marker
		if err := json.Unmarshal(b, &back); err != nil || back != m {
			t.Errorf("%q: %s read back as %+v (%v)", p, b, back, err)
		}
		outs = append(outs, string(b))
	}
	if outs[0] == outs[1] {
		t.Errorf("payloads \\xff and U+FFFD print the same: %s", outs[0])
	}
}
