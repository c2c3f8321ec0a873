package attest_test

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/gokexec/gokexec/attest"
)

// The parsers must never panic and must refuse or accept consistently;
// an accepted input must survive the checks built on it.

func FuzzParseQuote(f *testing.F) {
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18})
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := attest.ParseQuote(b)
		if err != nil {
			return
		}
		if !bytes.Equal(q.Message, b) || len(q.Selection) > attest.MaxBanks {
			t.Fatalf("accepted %x as %+v", b, q)
		}
		q.CheckSelected([]uint32{10})
		q.PCRDigestOf(attest.PCRValues{}, crypto.SHA256)
	})
}

func FuzzParseSignature(f *testing.F) {
	f.Add([]byte{0x00, 0x14, 0x00, 0x0b, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := attest.ParseSignature(b)
		if err != nil {
			return
		}
		if s.Hash == 0 || (s.RSA == nil && (s.R == nil || s.S == nil)) {
			t.Fatalf("accepted %x as %+v", b, s)
		}
	})
}

func FuzzParseAK(f *testing.F) {
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ak, err := attest.ParseAK(b)
		if err != nil {
			return
		}
		if ak.Public == nil {
			t.Fatalf("accepted %x without a key", b)
		}
		attest.VerifySignature([]byte("m"), &attest.Signature{Scheme: ak.FixedScheme, Hash: crypto.SHA256, RSA: []byte{1}}, ak)
	})
}

func FuzzParsePCRFile(f *testing.F) {
	f.Add(make([]byte, 136), []byte{0x00, 0x0b, 0x03, 0x00, 0x04, 0x00})
	f.Fuzz(func(t *testing.T, b, msgTail []byte) {
		// a selection from a synthetic quote header, to read "values" by
		var sel []attest.Selection
		if q, err := attest.ParseQuote(append([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18}, msgTail...)); err == nil {
			sel = q.Selection
		}
		v, err := attest.ParsePCRFile(b, sel)
		if err != nil {
			return
		}
		for h, m := range v {
			for _, val := range m {
				if len(val) != h.Size() {
					t.Fatalf("a %d-byte %v value", len(val), h)
				}
			}
		}
	})
}
