package appraise

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
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
// ErrUnsupported; and an accepted policy agrees with an independent
// reading of the same JSON (encoding/json into a generic map): Paths() is
// exactly the paths that list a digest, every listed digest passes Check
// for its path, a digest that differs in one bit fails with
// ErrDigestMismatch unless the policy also lists it, and a path the policy
// does not list fails with ErrNotListed.
func FuzzParseKeylimePolicy(f *testing.F) {
	f.Add([]byte(`{"meta":{"version":1},"digests":{"/usr/bin/a":["` + strings.Repeat("ab", 32) + `"," ` + strings.Repeat("CD", 20) + `"]},"excludes":["/tmp"]}`))
	f.Add([]byte(`{"meta":{"version":1},"hashes":{"/x":["` + strings.Repeat("01", 48) + `"]},"digests":{"/x":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseKeylimePolicy(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v", err)
			}
			return
		}
		var raw struct {
			Digests map[string][]string `json:"digests"`
			Hashes  map[string][]string `json:"hashes"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatalf("policy accepted, but encoding/json refuses it: %v", err)
		}
		listed := map[string][][]byte{}
		for _, m := range []map[string][]string{raw.Digests, raw.Hashes} {
			for p, hs := range m {
				for _, h := range hs {
					d, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(h)))
					if err != nil {
						continue // a prefixed or otherwise spelled digest: not judged here
					}
					listed[p] = append(listed[p], d)
				}
			}
		}
		paths := map[string]bool{}
		for _, p := range a.Paths() {
			paths[p] = true
		}
		for p, ds := range listed {
			if len(ds) > 0 && !paths[p] {
				t.Fatalf("%q lists digests but is not among Paths()", p)
			}
			for _, d := range ds {
				h, ok := hashBySize[len(d)]
				if !ok {
					t.Fatalf("accepted a %d-byte digest for %q", len(d), p)
				}
				if err := a.Check(p, h, d); err != nil {
					t.Fatalf("listed digest %x of %q: %v", d, p, err)
				}
				other := append([]byte(nil), d...)
				other[0] ^= 1
				also := false
				for _, x := range ds {
					also = also || bytes.Equal(x, other)
				}
				if err := a.Check(p, h, other); !also && !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("unlisted digest %x of %q: %v", other, p, err)
				}
			}
		}
		for p := range paths {
			if _, ok := raw.Digests[p]; !ok {
				if _, ok := raw.Hashes[p]; !ok {
					t.Fatalf("Paths() has %q, which the policy does not name", p)
				}
			}
		}
		const absent = "/gokexec-fuzz/not-listed"
		if !paths[absent] {
			if err := a.Check(absent, crypto.SHA256, make([]byte, 32)); !errors.Is(err, ErrNotListed) {
				t.Fatalf("a path the policy does not name: %v", err)
			}
		}
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
