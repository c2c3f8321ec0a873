package appraise

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// Issue 11, finding 4: a keylime policy whose excludes cover /var/tmp/.*
// (or an empty exclude, which matches every path) let a kernel through
// enforce. Excludes no longer admit anything.
func TestExcludesNeverAdmit(t *testing.T) {
	dig := sha256.Sum256([]byte("kernel"))
	for _, policy := range []string{
		`{"meta": {"version": 1}, "digests": {}, "excludes": ["/var/tmp/.*"]}`,
		`{"meta": {"version": 1}, "digests": {}, "excludes": [""]}`,
		`{"meta": {"version": 1}, "digests": {}, "excludes": [".*", "/home/.*"]}`,
	} {
		al, err := ParseAllowlist([]byte(policy))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/var/tmp/../../home/x/kernel", "/var/tmp/kernel", "/home/x/kernel"} {
			d := Policy{Mode: ModeEnforce, Allowlist: al}.Decide(File{Path: path, Digests: map[crypto.Hash][]byte{crypto.SHA256: dig[:]}})
			if d.Pass || d.Allowed() || !errors.Is(d.Err, ErrNotListed) {
				t.Errorf("%s under %s: pass=%v method=%q err=%v", path, policy, d.Pass, d.Method, d.Err)
			}
			if err := al.Check(path, crypto.SHA256, dig[:]); !errors.Is(err, ErrNotListed) {
				t.Errorf("Check(%s): %v", path, err)
			}
		}
	}
}

// SHA-1 signatures verify but are refused: in enforce the file may not be
// used, in log mode it is reported as failing.
func TestSHA1SignatureRefused(t *testing.T) {
	kr := mustCerts(t, "openssl/bundle.pem")
	data := readTD(t, "data/hello.txt")
	sig := readTD(t, "evmctl/hello.txt.rsa.sha1.sig")
	digs := map[crypto.Hash][]byte{crypto.SHA1: digestOf(t, crypto.SHA1, data), crypto.SHA256: digestOf(t, crypto.SHA256, data)}
	if err := kr.Verify(digs[crypto.SHA1], crypto.SHA1, sig); err != nil {
		t.Fatalf("the fixture must verify, so that only its hash is refused: %v", err)
	}
	d := Policy{Mode: ModeEnforce, Keyring: kr}.Decide(File{Path: "/boot/vmlinuz", Digests: digs, Signature: sig})
	if d.Pass || d.Allowed() || !errors.Is(d.Err, ErrWeak) || !strings.Contains(d.Reason, "SHA-1") {
		t.Fatalf("enforce: pass=%v err=%v (%s)", d.Pass, d.Err, d.Reason)
	}
	d = Policy{Mode: ModeLog, Keyring: kr}.Decide(File{Path: "/boot/vmlinuz", Digests: digs, Signature: sig})
	if d.Pass || !d.Allowed() || !errors.Is(d.Err, ErrWeak) {
		t.Fatalf("log: pass=%v allowed=%v err=%v", d.Pass, d.Allowed(), d.Err)
	}
}

// SHA-1 digests in an allowlist do not vouch for a file either.
func TestSHA1AllowlistDigestRefused(t *testing.T) {
	data := []byte("kernel")
	al, err := ParseChecksums([]byte(strings.Repeat("", 0) + hexOf(digestOf(t, crypto.SHA1, data)) + "  /boot/vmlinuz\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := Policy{Mode: ModeEnforce, Allowlist: al}.Decide(File{Path: "/boot/vmlinuz", Digests: map[crypto.Hash][]byte{
		crypto.SHA1: digestOf(t, crypto.SHA1, data), crypto.SHA256: digestOf(t, crypto.SHA256, data)}})
	if d.Pass || !errors.Is(d.Err, ErrWeak) {
		t.Fatalf("pass=%v err=%v", d.Pass, d.Err)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// selfSigned makes a certificate with a Subject Key Identifier for key.
func selfSigned(t *testing.T, pub, priv any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "issue 11"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0), SubjectKeyId: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// An RSA key under 2048 bits verifies a good signature, which is refused
// as weak.
func TestSmallRSAKeyRefused(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Skipf("this Go refuses to make a 1024-bit key: %v", err)
	}
	der := selfSigned(t, &k.PublicKey, k)
	kr, err := LoadCerts(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("kernel")
	dg := digestOf(t, crypto.SHA256, data)
	raw, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, dg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Signature{Type: XattrDigSig, Version: 2, HashAlgo: HashSHA256, KeyID: 0x05060708, Sig: raw}
	if err := kr.Verify(dg, crypto.SHA256, s.Marshal()); err != nil {
		t.Fatalf("the signature must verify, so that only the key size is refused: %v", err)
	}
	d := Policy{Mode: ModeEnforce, Keyring: kr}.Decide(File{Path: "/boot/vmlinuz", Digests: map[crypto.Hash][]byte{crypto.SHA256: dg}, Signature: s.Marshal()})
	if d.Pass || d.Allowed() || !errors.Is(d.Err, ErrWeak) || !strings.Contains(d.Reason, "1024 bits") {
		t.Fatalf("pass=%v err=%v (%s)", d.Pass, d.Err, d.Reason)
	}
}

// Certificates are read by crypto/x509: garbage is ErrMalformed, a key type
// IMA signatures cannot use is ErrUnsupported.
func TestCertificatesByX509(t *testing.T) {
	if _, err := LoadCerts([]byte{0x30, 0x03, 0x02, 0x01, 0x00}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage DER: %v", err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := LoadCerts(selfSigned(t, pub, priv)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Ed25519: %v", err)
	}
	der := readTD(t, "openssl/rsa.der")
	c, err := ParseCertificate(der)
	want, _ := x509.ParseCertificate(der)
	if err != nil || !c.Equal(want) || len(KeyIDs(c)) == 0 {
		t.Fatalf("%v", err)
	}
}
