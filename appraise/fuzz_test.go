package appraise

import (
	"bytes"
	"crypto"
	"errors"
	"testing"
)

// Seeds live in testdata/fuzz/<Target>/ (committed, from the golden files);
// these functions only state the properties.

// FuzzParseSignature: never panics; a parsed signature re-marshals to the
// same bytes; every failure is ErrMalformed; Verify agrees with the parser
// and never panics either.
func FuzzParseSignature(f *testing.F) {
	kr, err := LoadCerts(readTD(f, "openssl/bundle.pem"))
	if err != nil {
		f.Fatal(err)
	}
	dg := digestOf(f, crypto.SHA256, readTD(f, "data/hello.txt"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignature(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error not ErrMalformed: %v", err)
			}
			if verr := kr.Verify(dg, crypto.SHA256, b); !errors.Is(verr, ErrMalformed) {
				t.Fatalf("Verify accepted what ParseSignature refused: %v", verr)
			}
			return
		}
		if !bytes.Equal(s.Marshal(), b) {
			t.Fatalf("round trip: %x != %x", s.Marshal(), b)
		}
		_ = kr.Verify(dg, crypto.SHA256, b)
	})
}

// FuzzParseChecksums: never panics; every failure is ErrMalformed; every
// listed path has at least one digest of a supported size.
func FuzzParseChecksums(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseChecksums(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		for p, ds := range a.digests {
			if p == "" || len(ds) == 0 {
				t.Fatalf("empty entry %q", p)
			}
			for _, d := range ds {
				if _, ok := hashBySize[len(d)]; !ok {
					t.Fatalf("%q: digest of %d bytes", p, len(d))
				}
			}
		}
	})
}

// FuzzParseKeylimePolicy: never panics; failures are ErrMalformed or
// ErrUnsupported; Check on a parsed policy never panics.
func FuzzParseKeylimePolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseKeylimePolicy(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v", err)
			}
			return
		}
		for _, p := range a.Paths() {
			_ = a.Check(p, crypto.SHA256, make([]byte, 32))
		}
		_ = a.Check("/tmp/x", crypto.SHA1, make([]byte, 20))
	})
}

// FuzzLoadCerts: never panics; a loaded keyring has key ids for every key.
func FuzzLoadCerts(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		kr, err := LoadCerts(b)
		if err != nil {
			return
		}
		for _, k := range kr.keys {
			if len(k.ids) == 0 {
				t.Fatalf("certificate %s without key ids", k.cert.Subject)
			}
		}
	})
}
