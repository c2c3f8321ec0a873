package attest_test

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/attest"
)

// golden is one quote tpm2_quote made on swtpm (testdata/swtpm-KIND,
// written by TestCheckquoteDifferential with ATTEST_WRITE_GOLDEN).
type golden struct {
	kind                     string
	msg, sig, pcrs, pub, pem []byte
	nonce                    []byte
}

func loadGoldens(t *testing.T) []golden {
	t.Helper()
	dirs, err := filepath.Glob("testdata/swtpm-*")
	if err != nil || len(dirs) < 5 {
		t.Fatalf("want 5 golden quotes, got %v (%v)", dirs, err)
	}
	var gs []golden
	for _, d := range dirs {
		rd := func(n string) []byte {
			b, err := os.ReadFile(filepath.Join(d, n))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		n, err := hex.DecodeString(strings.TrimSpace(string(rd("nonce"))))
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, golden{strings.TrimPrefix(filepath.Base(d), "swtpm-"), rd("q.msg"), rd("q.sig"), rd("q.pcrs"), rd("ak.pub"), rd("ak.pem"), n})
	}
	return gs
}

func (g golden) parts(t *testing.T) (*attest.Quote, *attest.Signature, *attest.AK, attest.PCRValues) {
	t.Helper()
	q, err := attest.ParseQuote(g.msg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := attest.ParseSignature(g.sig)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := attest.ParseAK(g.pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.ParsePCRFile(g.pcrs, q.Selection)
	if err != nil {
		t.Fatal(err)
	}
	return q, s, ak, v
}

func TestGoldenQuotes(t *testing.T) {
	for _, g := range loadGoldens(t) {
		t.Run(g.kind, func(t *testing.T) {
			q, sig, ak, v := g.parts(t)
			if !ak.Attributes || !ak.Restricted || !ak.Sign || !ak.FixedTPM {
				t.Errorf("tpm2_createak made an AK with restricted=%v sign=%v fixedTPM=%v", ak.Restricted, ak.Sign, ak.FixedTPM)
			}
			if len(ak.Name) != 34 || ak.FixedScheme != sig.Scheme {
				t.Errorf("AK name %x, fixed scheme %v, signature scheme %v", ak.Name, ak.FixedScheme, sig.Scheme)
			}
			// the selection TestCheckquoteDifferential asked for
			if len(q.Selection) != 2 || q.Selection[0].Bank != crypto.SHA1 || !equalU32(q.Selection[0].PCRs, 10, 16) ||
				q.Selection[1].Bank != crypto.SHA256 || !equalU32(q.Selection[1].PCRs, 0, 10, 16) {
				t.Fatalf("selection %+v", q.Selection)
			}
			if !bytes.Equal(q.ExtraData, g.nonce) {
				t.Errorf("extraData %x, nonce %x", q.ExtraData, g.nonce)
			}
			for _, akb := range [][]byte{g.pub, g.pem} {
				ak, err := attest.ParseAK(akb)
				if err != nil {
					t.Fatal(err)
				}
				r, err := attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: v, RequireRestricted: ak.Attributes})
				if err != nil {
					t.Fatalf("a good quote refused: %v", err)
				}
				if r.Ignored != 0 || len(r.Values[crypto.SHA256]) != 3 || len(r.Values[crypto.SHA1]) != 2 {
					t.Errorf("result %+v", r)
				}
			}
			if _, err := attest.Verify(g.msg, sig, mustAK(t, g.pem), attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: v, RequireRestricted: true}); !errors.Is(err, attest.ErrNotRestricted) {
				t.Errorf("a PEM AK's attributes are unknown: got %v", err)
			}
			// an extra value outside the selection is ignored, not attested
			extra := attest.PCRValues{crypto.SHA256: {7: make([]byte, 32)}}
			for b, m := range v {
				for p, val := range m {
					if extra[b] == nil {
						extra[b] = map[uint32][]byte{}
					}
					extra[b][p] = val
				}
			}
			r, err := attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: extra})
			if err != nil || r.Ignored != 1 || r.Values[crypto.SHA256][7] != nil {
				t.Errorf("extra PCR: %v, %+v", err, r)
			}
			// a selected value missing
			delete(extra[crypto.SHA1], 16)
			_, err = attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: extra})
			var me *attest.MissingPCRError
			if !errors.As(err, &me) || me.Bank != crypto.SHA1 || me.PCR != 16 {
				t.Errorf("missing PCR: %v", err)
			}
			// the nonce
			_, err = attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: []byte("old"), PCRs: v})
			var ne *attest.NonceError
			if !errors.As(err, &ne) || !bytes.Equal(ne.Got, g.nonce) || !errors.Is(err, attest.ErrNonceMismatch) {
				t.Errorf("wrong nonce: %v", err)
			}
			// a PCR value
			v[crypto.SHA256][10][0] ^= 1
			_, err = attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: v})
			var de *attest.DigestError
			if !errors.As(err, &de) || !bytes.Equal(de.Quoted, q.PCRDigest) || de.Hash != sig.Hash {
				t.Errorf("changed PCR: %v", err)
			}
			v[crypto.SHA256][10][0] ^= 1
			// every byte of the message is signed
			for i := range g.msg {
				m := bytes.Clone(g.msg)
				m[i] ^= 0x80
				if _, err := attest.Verify(m, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: v}); !errors.Is(err, attest.ErrBadSignature) {
					t.Fatalf("message byte %d changed: %v", i, err)
				}
			}
			// CheckSelected
			if err := q.CheckSelected([]uint32{10, 16, 0}); err != nil {
				t.Error(err)
			}
			var nse *attest.NotSelectedError
			if err := q.CheckSelected([]uint32{10, 11, 11, 2}); !errors.As(err, &nse) || !equalU32(nse.PCRs, 2, 11) {
				t.Errorf("CheckSelected: %v", err)
			}
		})
	}
}

func mustAK(t *testing.T, b []byte) *attest.AK {
	t.Helper()
	ak, err := attest.ParseAK(b)
	if err != nil {
		t.Fatal(err)
	}
	return ak
}

func equalU32(got []uint32, want ...uint32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestCrossKinds checks a signature against every other kind's key: a
// scheme the key cannot make is ErrSchemeMismatch, a same-scheme key from
// elsewhere is ErrBadSignature.
func TestCrossKinds(t *testing.T) {
	gs := loadGoldens(t)
	for _, g := range gs {
		_, sig, _, v := g.parts(t)
		for _, o := range gs {
			if o.kind == g.kind {
				continue
			}
			for _, akb := range [][]byte{o.pub, o.pem} {
				ak := mustAK(t, akb)
				_, err := attest.Verify(g.msg, sig, ak, attest.Options{AllowSHA1: true, Nonce: g.nonce, PCRs: v})
				if !errors.Is(err, attest.ErrSchemeMismatch) && !errors.Is(err, attest.ErrBadSignature) {
					t.Errorf("%s quote, %s key: %v", g.kind, o.kind, err)
				}
			}
		}
	}
}

func TestPCRFileLayouts(t *testing.T) {
	g := loadGoldens(t)[0]
	q, _, _, v := g.parts(t)
	// "values": the digests alone in selection order
	var vals []byte
	for _, s := range q.Selection {
		for _, p := range s.PCRs {
			vals = append(vals, v[s.Bank][p]...)
		}
	}
	v2, err := attest.ParsePCRFile(vals, q.Selection)
	if err != nil {
		t.Fatal(err)
	}
	for b, m := range v {
		for p, val := range m {
			if !bytes.Equal(v2[b][p], val) {
				t.Errorf("%v PCR %d: %x vs %x", b, p, v2[b][p], val)
			}
		}
	}
	for _, bad := range [][]byte{vals[:len(vals)-1], append(bytes.Clone(vals), 0), g.pcrs[:len(g.pcrs)-1], nil} {
		if _, err := attest.ParsePCRFile(bad, q.Selection); !errors.Is(err, attest.ErrMalformed) {
			t.Errorf("%d bytes: %v", len(bad), err)
		}
	}
	// a serialized file whose bank count is out of range
	b := bytes.Clone(g.pcrs)
	b[0] = 17
	if _, err := attest.ParsePCRFile(b, nil); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("17 banks: %v", err)
	}
}

func TestParseRefusals(t *testing.T) {
	g := loadGoldens(t)[0]
	cases := []struct {
		name string
		err  error
		f    func() error
	}{
		{"message magic", attest.ErrNotQuote, func() error { m := bytes.Clone(g.msg); m[0] = 0; _, err := attest.ParseQuote(m); return err }},
		{"certify, not quote", attest.ErrNotQuote, func() error { m := bytes.Clone(g.msg); m[5] = 0x17; _, err := attest.ParseQuote(m); return err }},
		{"message trailing byte", attest.ErrMalformed, func() error { _, err := attest.ParseQuote(append(bytes.Clone(g.msg), 0)); return err }},
		{"message truncated", attest.ErrMalformed, func() error { _, err := attest.ParseQuote(g.msg[:len(g.msg)-1]); return err }},
		{"message too large", attest.ErrTooLarge, func() error { _, err := attest.ParseQuote(make([]byte, attest.MaxMessage+1)); return err }},
		{"signature trailing byte", attest.ErrMalformed, func() error { _, err := attest.ParseSignature(append(bytes.Clone(g.sig), 0)); return err }},
		{"HMAC signature", attest.ErrUnsupported, func() error { _, err := attest.ParseSignature([]byte{0x00, 0x05, 0, 0x0b}); return err }},
		{"null signature", attest.ErrUnsupported, func() error { _, err := attest.ParseSignature([]byte{0x00, 0x10}); return err }},
		{"AK trailing byte", attest.ErrMalformed, func() error { _, err := attest.ParseAK(append(bytes.Clone(g.pub), 0)); return err }},
		{"AK PEM private key", attest.ErrUnsupported, func() error {
			_, err := attest.ParseAK([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
			return err
		}},
		{"AK empty", attest.ErrMalformed, func() error { _, err := attest.ParseAK(nil); return err }},
	}
	for _, c := range cases {
		if err := c.f(); !errors.Is(err, c.err) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.err)
		}
	}
}
