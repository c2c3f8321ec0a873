package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/swtpmtest"
)

// syntheticList builds a boot_aggregate and n file measurements in pcr.
func syntheticList(t *testing.T, n int, pcr uint32, tag string) []ima.Entry {
	t.Helper()
	es := make([]ima.Entry, 0, n+1)
	agg := sha256.Sum256([]byte("boot " + tag))
	e, err := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, agg[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	es = append(es, e)
	for i := 0; i < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprintf("%s file %d", tag, i)))
		e, err := ima.NewFileEntry(pcr, "ima-sig", fmt.Sprintf("/usr/bin/%s-%d", tag, i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

// extendInto extends the entries' template digests into the TPM's sha1,
// sha256 and sha384 banks, as the kernel does.
func extendInto(t *testing.T, tpm *swtpmtest.TPM, es []ima.Entry) {
	t.Helper()
	for _, e := range es {
		var parts []string
		for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384} {
			parts = append(parts, ima.HashName(b)+"="+hex.EncodeToString(ima.TemplateDigest(e, b, ima.MethodPerBank)))
		}
		tpm.Must(t, "tpm2_pcrextend", fmt.Sprintf("%d:%s", e.PCR, strings.Join(parts, ",")))
	}
}

func writeQuoteList(t *testing.T, path string, es []ima.Entry) {
	t.Helper()
	if err := os.WriteFile(path, ima.AppendList(nil, es, binary.LittleEndian), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testVerdict reads a Verdict back (ima's result types only marshal).
type testVerdict struct {
	Verdict
	Verify *struct {
		Consistent bool `json:"consistent"`
		Prefix     int  `json:"prefix"`
		Unbound    int  `json:"unbound"`
		Entries    int  `json:"entries"`
	} `json:"verify"`
	Timeline *struct {
		Verdict string `json:"verdict"`
	} `json:"timeline"`
}

func verdictOf(t *testing.T, args ...string) (int, testVerdict, string) {
	t.Helper()
	code, out, errs := imalog(t, append(args, "--json")...)
	var v testVerdict
	if code != exitBad {
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, out, errs)
		}
	}
	return code, v, out + errs
}

// TestVerifyQuote verifies a list against a quote swtpm made after the
// list's entries were extended into it, and refuses each way it can go
// wrong.
func TestVerifyQuote(t *testing.T) {
	a, b := swtpmtest.Start(t), swtpmtest.Start(t)
	k := swtpmtest.AKSpecs[0]
	a.MakeAK(t, k)
	b.MakeAK(t, k)
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	es := syntheticList(t, 12, 10, "a")
	extendInto(t, a, es)
	extendInto(t, b, es[:len(es)-1]) // another machine, other values
	nonce := "00112233445566778899aabbccddeeff"
	a.Quote(t, k, "q", "sha1:10+sha256:0,10", nonce)
	b.Quote(t, k, "other", "sha1:10+sha256:0,10", nonce)
	for _, f := range []string{"q.msg", "q.sig", "q.pcrs", "other.msg", "other.sig", "other.pcrs", k.Name + ".pub", k.Name + ".pem"} {
		data, err := os.ReadFile(a.Path(f))
		if strings.HasPrefix(f, "other") {
			data, err = os.ReadFile(b.Path(f))
		}
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p(f), data, 0o644)
	}
	writeQuoteList(t, p("list"), es)
	// the list went on after the quote: a prefix is quoted
	more := append(append([]ima.Entry(nil), es...), syntheticList(t, 3, 10, "later")[1:]...)
	writeQuoteList(t, p("longer"), more)
	// a tampered list: one file's digest changed, its template digest
	// recomputed (what a list rewritten by an attacker looks like)
	bad := append([]ima.Entry(nil), es...)
	d := sha256.Sum256([]byte("evil"))
	bad[5], _ = ima.NewFileEntry(10, "ima-sig", "/usr/bin/a-4", d[:], crypto.SHA256, nil)
	writeQuoteList(t, p("tampered"), bad)
	// entries in PCR 11 that the quote does not select
	pcr11 := append(append([]ima.Entry(nil), es...), syntheticList(t, 2, 11, "p11")[1:]...)
	writeQuoteList(t, p("pcr11"), pcr11)

	quote := func(list, msg, sig, pcrs, ak, nonce string) []string {
		args := []string{"verify", p(list), "--quote", p(msg), "--sig", p(sig), "--ak", p(ak), "--pcrs", p(pcrs)}
		if nonce != "" {
			args = append(args, "--nonce", nonce)
		}
		return args
	}
	pub, pem := k.Name+".pub", k.Name+".pem"
	cases := []struct {
		name   string
		args   []string
		code   int
		reason string
	}{
		{"good", quote("list", "q.msg", "q.sig", "q.pcrs", pub, nonce), 0, ReasonOK},
		{"good, PEM AK", quote("list", "q.msg", "q.sig", "q.pcrs", pem, nonce), 0, ReasonOK},
		{"list longer than the quote", quote("longer", "q.msg", "q.sig", "q.pcrs", pub, nonce), 0, ReasonOK},
		{"tampered list", quote("tampered", "q.msg", "q.sig", "q.pcrs", pub, nonce), 1, ReasonListMismatch},
		{"replayed quote", quote("list", "q.msg", "q.sig", "q.pcrs", pub, "ffee"), 1, ReasonWrongNonce},
		{"no nonce given", quote("list", "q.msg", "q.sig", "q.pcrs", pub, ""), 1, ReasonWrongNonce},
		{"another TPM", quote("list", "other.msg", "other.sig", "other.pcrs", pub, nonce), 1, ReasonBadSignature},
		{"another TPM's values", quote("list", "q.msg", "q.sig", "other.pcrs", pub, nonce), 1, ReasonDigestMismatch},
		{"PCR 11 not quoted", quote("pcr11", "q.msg", "q.sig", "q.pcrs", pub, nonce), 1, ReasonPCRNotSelected},
	}
	for _, c := range cases {
		code, v, out := verdictOf(t, c.args...)
		if code != c.code || v.Reason != c.reason || v.Exit != code || v.Schema != VerdictSchema {
			t.Errorf("%s: exit %d reason %q, want %d %q\n%s", c.name, code, v.Reason, c.code, c.reason, out)
		}
		// text output agrees
		tcode, text, _ := imalog(t, c.args...)
		if tcode != code || (code == 0) != strings.Contains(text, "verdict: consistent (one instant)") {
			t.Errorf("%s: text exit %d:\n%s", c.name, tcode, text)
		}
	}
	_, v, _ := verdictOf(t, quote("longer", "q.msg", "q.sig", "q.pcrs", pub, nonce)...)
	if v.Verify.Prefix != len(es) || v.Verify.Unbound != 3 || !v.Quote.Verified || v.Quote.Nonce != nonce {
		t.Errorf("longer: prefix %d unbound %d quote %+v", v.Verify.Prefix, v.Verify.Unbound, v.Quote)
	}
	_, text, _ := imalog(t, quote("pcr11", "q.msg", "q.sig", "q.pcrs", pub, nonce)...)
	if strings.Count(text, "verdict:") != 1 || !strings.Contains(text, "verdict: inconsistent: PCR 11 has entries that the quote does not attest") {
		t.Errorf("pcr11 text:\n%s", text)
	}
	// bad input is exit 2
	if code, _, _ := imalog(t, "verify", p("list"), "--quote", p("list"), "--sig", p("q.sig"), "--ak", p(pub), "--pcrs", p("q.pcrs")); code != exitBad {
		t.Errorf("a list as the quote: exit %d", code)
	}
	if code, _, _ := imalog(t, "verify", p("list"), "--quote", p("q.msg"), "--sig", p("q.sig"), "--ak", p(pub)); code != exitBad {
		t.Errorf("no --pcrs: exit %d", code)
	}
}
