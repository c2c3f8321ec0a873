package appraise

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func readTD(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var hashByName = map[string]crypto.Hash{
	"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512,
}

func digestOf(t testing.TB, h crypto.Hash, data []byte) []byte {
	t.Helper()
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

// sigCase is one golden signature file: <file>.<key>.<hash>.sig.
type sigCase struct {
	path, file, key string
	hash            crypto.Hash
}

func goldenSigs(t *testing.T, dir string) []sigCase {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join("testdata", dir, "*.sig"))
	if err != nil || len(ms) == 0 {
		t.Fatalf("no golden signatures in %s: %v", dir, err)
	}
	var out []sigCase
	for _, m := range ms {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(m), ".sig"), ".")
		// file names have one dot themselves: hello.txt, blob.bin
		if len(parts) != 4 {
			t.Fatalf("unexpected golden name %s", m)
		}
		h, ok := hashByName[parts[3]]
		if !ok {
			t.Fatalf("unknown hash in %s", m)
		}
		out = append(out, sigCase{path: m, file: parts[0] + "." + parts[1], key: parts[2], hash: h})
	}
	return out
}

func certOf(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	k, err := LoadCerts(readTD(t, "openssl/"+name+".der"))
	if err != nil {
		t.Fatal(err)
	}
	return k.keys[0].cert
}

func TestVerifyEvmctlSignatures(t *testing.T) {
	for _, dir := range []string{"evmctl", "openssl-sigv3"} {
		for _, c := range goldenSigs(t, dir) {
			t.Run(filepath.Base(c.path), func(t *testing.T) {
				sig, err := os.ReadFile(c.path)
				if err != nil {
					t.Fatal(err)
				}
				data := readTD(t, "data/"+c.file)
				dg := digestOf(t, c.hash, data)
				// The key alone, as DER and as PEM.
				for _, form := range []string{".der", ".pem"} {
					kr, err := LoadCerts(readTD(t, "openssl/"+c.key+form))
					if err != nil {
						t.Fatal(err)
					}
					if err := kr.Verify(dg, c.hash, sig); err != nil {
						t.Fatalf("%s cert: %v", form, err)
					}
				}
				// The key id the producer wrote is one of ours for the cert.
				s, err := ParseSignature(sig)
				if err != nil {
					t.Fatal(err)
				}
				if ids := KeyIDs(certOf(t, c.key)); ids[0] != s.KeyID {
					t.Fatalf("signature key id %08x, certificate's primary id %08x (all %x)", s.KeyID, ids[0], ids)
				}
				wantType, wantVer := uint8(XattrDigSig), uint8(2)
				if dir == "openssl-sigv3" {
					wantType, wantVer = XattrVeritySig, 3
				}
				if s.Type != wantType || s.Version != wantVer {
					t.Fatalf("type/version = %#x/%d, want %#x/%d", s.Type, s.Version, wantType, wantVer)
				}
				if !bytes.Equal(s.Marshal(), sig) {
					t.Fatal("Marshal does not reproduce the producer's bytes")
				}
				// Tampered file: one byte changed.
				bad := bytes.Clone(data)
				bad[len(bad)/2] ^= 1
				kr, _ := LoadCerts(readTD(t, "openssl/bundle.pem"), readTD(t, "openssl/collide.pem"))
				if err := kr.Verify(digestOf(t, c.hash, bad), c.hash, sig); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("tampered file: err = %v, want ErrBadSignature", err)
				}
				// Wrong key: only "other" in the keyring.
				other, _ := LoadCerts(readTD(t, "openssl/other.pem"))
				if err := other.Verify(dg, c.hash, sig); !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("wrong key: err = %v, want ErrUnknownKey", err)
				}
				// Truncated: last byte dropped; header only.
				if err := kr.Verify(dg, c.hash, sig[:len(sig)-1]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated: err = %v, want ErrMalformed", err)
				}
				if err := kr.Verify(dg, c.hash, sig[:SigHeaderSize]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("header only: err = %v, want ErrMalformed", err)
				}
				// A flipped signature byte.
				flip := bytes.Clone(sig)
				flip[len(flip)-5] ^= 0x40
				if err := kr.Verify(dg, c.hash, flip); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("flipped byte: err = %v, want ErrBadSignature", err)
				}
				// The digest of another hash.
				other512 := crypto.SHA512
				if c.hash == crypto.SHA512 {
					other512 = crypto.SHA256
				}
				if err := kr.Verify(digestOf(t, other512, data), other512, sig); !errors.Is(err, ErrHashMismatch) {
					t.Fatalf("other hash: err = %v, want ErrHashMismatch", err)
				}
				// v2 and v3 are not interchangeable: relabel and fail.
				re := bytes.Clone(sig)
				if s.Version == 2 {
					re[0], re[1] = XattrVeritySig, 3
				} else {
					re[0], re[1] = XattrDigSig, 2
				}
				if err := kr.Verify(dg, c.hash, re); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("relabelled v%d: err = %v, want ErrBadSignature", s.Version, err)
				}
			})
		}
	}
}

// TestKeyIDs checks the id rules against what evmctl wrote: the SKID tail
// for a certificate with a custom SKID (evmctl --keyid-from-cert), and the
// SHA-1 of the public key for one without a SKID.
func TestKeyIDs(t *testing.T) {
	if ids := KeyIDs(certOf(t, "skid")); ids[0] != 0x44556677 || len(ids) != 2 {
		t.Fatalf("skid cert ids = %x, want 44556677 then the key hash id", ids)
	}
	noskid := certOf(t, "noskid")
	if len(noskid.SubjectKeyId) != 0 {
		t.Fatal("noskid certificate has a SKID; regenerate testdata")
	}
	s, err := ParseSignature(readTD(t, "evmctl/hello.txt.noskid.sha256.sig"))
	if err != nil {
		t.Fatal(err)
	}
	if ids := KeyIDs(noskid); len(ids) != 1 || ids[0] != s.KeyID {
		t.Fatalf("noskid ids = %x, evmctl wrote %08x", ids, s.KeyID)
	}
	// The kernel matches SKIDs only: with SKIDOnly the noskid signature has
	// no key, the others still verify.
	kr, err := LoadCerts(readTD(t, "openssl/bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	kr.SKIDOnly = true
	dg := digestOf(t, crypto.SHA256, readTD(t, "data/hello.txt"))
	if err := kr.Verify(dg, crypto.SHA256, readTD(t, "evmctl/hello.txt.noskid.sha256.sig")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("SKIDOnly noskid: err = %v, want ErrUnknownKey", err)
	}
	for _, n := range []string{"rsa", "ec", "skid"} {
		if err := kr.Verify(dg, crypto.SHA256, readTD(t, "evmctl/hello.txt."+n+".sha256.sig")); err != nil {
			t.Fatalf("SKIDOnly %s: %v", n, err)
		}
	}
	kr.SKIDOnly = false
	if err := kr.Verify(dg, crypto.SHA256, readTD(t, "evmctl/hello.txt.noskid.sha256.sig")); err != nil {
		t.Fatalf("noskid with key-hash fallback: %v", err)
	}
	// OpenSSL's default SKID is the same hash, so both ids coincide.
	if ids := KeyIDs(certOf(t, "rsa")); len(ids) != 1 {
		t.Fatalf("rsa cert ids = %x, want one (SKID = key hash)", ids)
	}
	// Cross-check with openssl's own SKID text for the rsa certificate.
	out, err := exec.Command("openssl", "x509", "-in", "testdata/openssl/rsa.pem", "-noout", "-ext", "subjectKeyIdentifier").Output()
	if err != nil {
		t.Fatalf("openssl: %v (install openssl: scripts/setup.sh)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	skid, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(lines[len(lines)-1]), ":", ""))
	if err != nil || !bytes.Equal(skid, certOf(t, "rsa").SubjectKeyId) {
		t.Fatalf("openssl SKID %x vs parsed %x (%v)", skid, certOf(t, "rsa").SubjectKeyId, err)
	}
}

// TestKeyIDCollision: two certificates share a key id; the signature
// verifies with the right one whichever order they were loaded in, and a
// keyring holding only the impostor says bad signature, not unknown key.
func TestKeyIDCollision(t *testing.T) {
	data := readTD(t, "data/hello.txt")
	dg := digestOf(t, crypto.SHA256, data)
	rsaSig := readTD(t, "evmctl/hello.txt.rsa.sha256.sig")
	colSig := readTD(t, "evmctl/hello.txt.collide.sha256.sig")
	a, b := readTD(t, "openssl/rsa.pem"), readTD(t, "openssl/collide.pem")
	for _, order := range [][][]byte{{a, b}, {b, a}} {
		kr, err := LoadCerts(order...)
		if err != nil {
			t.Fatal(err)
		}
		if len(kr.KeyIDList()) != 2 { // shared SKID id + collide's own key hash id
			t.Fatalf("key ids %x", kr.KeyIDList())
		}
		for _, s := range [][]byte{rsaSig, colSig} {
			if err := kr.Verify(dg, crypto.SHA256, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	only, _ := LoadCerts(b)
	if err := only.Verify(dg, crypto.SHA256, rsaSig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("impostor only: err = %v, want ErrBadSignature", err)
	}
}

func TestParseSignatureErrors(t *testing.T) {
	good := readTD(t, "evmctl/hello.txt.ec.sha256.sig")
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"header only", good[:9], ErrMalformed},
		{"digest xattr type", mod(func(b []byte) []byte { b[0] = 0x04; return b }), ErrMalformed},
		{"hmac type", mod(func(b []byte) []byte { b[0] = 0x02; return b }), ErrMalformed},
		{"v1", mod(func(b []byte) []byte { b[1] = 1; return b }), ErrMalformed},
		{"type 3 v3", mod(func(b []byte) []byte { b[1] = 3; return b }), ErrMalformed},
		{"type 6 v2", mod(func(b []byte) []byte { b[0] = 6; return b }), ErrMalformed},
		{"hash beyond enum", mod(func(b []byte) []byte { b[2] = 23; return b }), ErrMalformed},
		{"sig_size too big", mod(func(b []byte) []byte { b[8]++; return b }), ErrMalformed},
		{"sig_size too small", mod(func(b []byte) []byte { b[8]--; return b }), ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
	} {
		if _, err := ParseSignature(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A known but unverifiable hash parses, then Verify says unsupported.
	sm3 := mod(func(b []byte) []byte { b[2] = uint8(HashSM3256); return b })
	s, err := ParseSignature(sm3)
	if err != nil || s.HashAlgo.String() != "sm3" {
		t.Fatalf("sm3 header: %v %v", s, err)
	}
	kr, _ := LoadCerts(readTD(t, "openssl/ec.pem"))
	if err := kr.Verify(make([]byte, 32), crypto.SHA256, sm3); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("sm3: err = %v, want ErrUnsupported", err)
	}
	// Wrong digest length for the hash.
	if err := kr.Verify(make([]byte, 31), crypto.SHA256, good); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short digest: err = %v, want ErrMalformed", err)
	}
	// A nil keyring knows no keys.
	var none *Keyring
	if err := none.Verify(make([]byte, 32), crypto.SHA256, good); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("nil keyring: err = %v, want ErrUnknownKey", err)
	}
}

func TestLoadCertsErrors(t *testing.T) {
	if _, err := LoadCerts(); !errors.Is(err, ErrNoCertificates) {
		t.Fatalf("no input: %v", err)
	}
	if _, err := LoadCerts([]byte("not a certificate")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	// A PEM private key is not a certificate.
	if _, err := LoadCerts(readTD(t, "openssl/rsa.key")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("private key only: %v", err)
	}
	der := readTD(t, "openssl/ec.der")
	if _, err := LoadCerts(der[:len(der)-3]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated DER: %v", err)
	}
	// Key plus certificate in one PEM (evmctl's appended-cert layout) loads.
	mixed := append(readTD(t, "openssl/rsa.key"), readTD(t, "openssl/rsa.pem")...)
	kr, err := LoadCerts(mixed)
	if err != nil || len(kr.keys) != 1 {
		t.Fatalf("key+cert PEM: %v", err)
	}
	kr, err = LoadCerts(readTD(t, "openssl/bundle.pem"))
	if err != nil || len(kr.keys) != 6 {
		t.Fatalf("bundle: %d keys, %v", len(kr.keys), err)
	}
}

func TestHashAlgoMapping(t *testing.T) {
	for a, h := range map[HashAlgo]crypto.Hash{HashSHA1: crypto.SHA1, HashSHA256: crypto.SHA256, HashSHA384: crypto.SHA384, HashSHA512: crypto.SHA512, HashSHA224: crypto.SHA224} {
		got, ok := a.CryptoHash()
		if !ok || got != h {
			t.Errorf("%s → %v %v", a, got, ok)
		}
		back, ok := HashAlgoOf(h)
		if !ok || back != a {
			t.Errorf("%v → %s %v", h, back, ok)
		}
	}
	if _, ok := HashStreebog256.CryptoHash(); ok {
		t.Error("streebog256 should be unsupported")
	}
	if HashAlgo(200).String() != "hash_algo(200)" || HashSHA3256.String() != "sha3-256" {
		t.Error("names")
	}
}
