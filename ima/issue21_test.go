package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
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

// TestPCRFileTpm2QuoteYAML: tpm2_quote and tpm2_checkquote print the
// values nested under "pcrs:" among other keys ("calcDigest:", "sig:"
// after them); such files were refused.
func TestPCRFileTpm2QuoteYAML(t *testing.T) {
	v10 := strings.Repeat("ab", 32)
	v0 := strings.Repeat("00", 32)
	s1 := strings.Repeat("cd", 20)
	for name, text := range map[string]string{
		"tpm2_quote": "quoted: ff54434780180022000b\nsignature:\n  alg: rsassa\n  sig: 0a0b0c\npcrs:\n  sha1:\n    10: 0x" + s1 +
			"\n  sha256:\n    0 : 0x" + v0 + "\n    10: 0x" + v10 + "\ncalcDigest: 1234abcd\n",
		"tpm2_checkquote": "pcrs:\n  sha1:\n    10: 0x" + s1 + "\n  sha256:\n    0 : 0x" + v0 + "\n    10: 0x" + v10 + "\nsig: 0a0b0c0d\n",
	} {
		v, err := ParsePCRFile([]byte(text), 0)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if hex.EncodeToString(v[crypto.SHA256][10]) != v10 || hex.EncodeToString(v[crypto.SHA1][10]) != s1 || len(v[crypto.SHA256]) != 2 {
			t.Errorf("%s: %v", name, v)
		}
	}
}

// TestSysfsBareHexPCR: a sysfs pcr-<bank>/<n> file holds bare upper-case
// hex and was refused.
func TestSysfsBareHexPCR(t *testing.T) {
	b := []byte(strings.ToUpper(strings.Repeat("3d", 32)) + "\n")
	if !IsBareHex(b) {
		t.Fatal("not bare hex")
	}
	v, err := ParseSysfsPCR(b, crypto.SHA256, 10)
	if err != nil || len(v[crypto.SHA256][10]) != 32 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := ParseSysfsPCR(b, crypto.SHA1, 10); err == nil {
		t.Error("a 32-byte value taken for sha1")
	}
}

// TestCheckpointWrittenIsAccepted: a list extending more PCRs than a
// checkpoint holds (or any other bound) gets no checkpoint, rather than
// one every later run refuses.
func TestCheckpointWrittenIsAccepted(t *testing.T) {
	var es []Entry
	agg, _ := NewFileEntry(10, "ima-ng", BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es = append(es, agg)
	for p := uint32(0); p < 70; p++ {
		e, _ := NewFileEntry(100+p, "ima-ng", fmt.Sprint("/f", p), make([]byte, 32), crypto.SHA256, nil)
		es = append(es, e)
	}
	raw := AppendList(nil, es, binary.LittleEndian)
	q := PCRValues{crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank)}
	res, info, err := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), binary.LittleEndian, nil, q, VerifyOptions{})
	if err != nil || !res.Consistent {
		t.Fatalf("%v %v", err, res.Problems)
	}
	if info.Next != nil || info.NoNext == "" {
		t.Errorf("a checkpoint of 71 PCRs handed out (%q)", info.NoNext)
	}
	es = es[:30]
	raw = AppendList(nil, es, binary.LittleEndian)
	q = PCRValues{crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank)}
	if _, info, _ := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), binary.LittleEndian, nil, q, VerifyOptions{}); info.Next == nil {
		t.Errorf("no checkpoint for 30 PCRs: %s", info.NoNext)
	}
}
