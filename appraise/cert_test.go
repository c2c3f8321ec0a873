package appraise

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sameAsX509 checks ParseCertificate against crypto/x509 on one DER
// certificate that crypto/x509 accepts.
func sameAsX509(t *testing.T, der []byte, want *x509.Certificate) {
	t.Helper()
	got, err := ParseCertificate(der)
	if err != nil {
		t.Fatalf("crypto/x509 parses it, ParseCertificate: %v", err)
	}
	if !bytes.Equal(got.Raw, want.Raw) || !bytes.Equal(got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo) {
		t.Fatal("raw bytes differ from crypto/x509's")
	}
	if !bytes.Equal(got.SubjectKeyId, want.SubjectKeyId) {
		t.Fatalf("SKID %x, crypto/x509 %x", got.SubjectKeyId, want.SubjectKeyId)
	}
	if got.Subject != want.Subject.String() {
		t.Fatalf("subject %q, crypto/x509 %q", got.Subject, want.Subject.String())
	}
	switch w := want.PublicKey.(type) {
	case *rsa.PublicKey:
		if !w.Equal(got.PublicKey) {
			t.Fatalf("RSA key differs from crypto/x509's")
		}
	case *ecdsa.PublicKey:
		if !w.Equal(got.PublicKey) {
			t.Fatalf("ECDSA key differs from crypto/x509's")
		}
	default:
		if got.PublicKey != nil {
			t.Fatalf("key %T where crypto/x509 has %T", got.PublicKey, want.PublicKey)
		}
	}
}

// TestCertificatesAsX509: every certificate openssl made for the tests
// parses as crypto/x509 parses it.
func TestCertificatesAsX509(t *testing.T) {
	files, err := filepath.Glob("testdata/openssl/*.der")
	if err != nil || len(files) < 5 {
		t.Fatalf("test certificates: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			der, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			sameAsX509(t, der, want)
		})
	}
}

// selfSigned makes a certificate for pub signed by priv with crypto/x509.
func selfSigned(t *testing.T, pub, priv any, tmpl *x509.Certificate) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestCertificateKinds covers what openssl's test set does not: other key
// types, no SKID, multi-valued subjects and broken encodings.
func TestCertificateKinds(t *testing.T) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0),
		Subject: pkix.Name{CommonName: "kinds", Organization: []string{"a", "b"}, Country: []string{"DE"}}}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := selfSigned(t, edPub, edPriv, tmpl)
	want, _ := x509.ParseCertificate(der)
	sameAsX509(t, der, want)
	c, _ := ParseCertificate(der)
	var k Keyring
	if err := k.Add(c); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Ed25519") {
		t.Fatalf("Ed25519 certificate: Add = %v, want ErrUnsupported naming Ed25519", err)
	}

	for _, name := range []string{"rsa", "ec384"} {
		block, _ := pem.Decode(readTD(t, "openssl/"+name+".key"))
		if block == nil {
			t.Fatalf("%s.key: no PEM", name)
		}
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var pub any
		switch p := priv.(type) {
		case *rsa.PrivateKey:
			pub = &p.PublicKey
		case *ecdsa.PrivateKey:
			pub = &p.PublicKey
		}
		tmpl.SubjectKeyId = []byte{1, 2, 3, 4, 5}
		der := selfSigned(t, pub, priv, tmpl)
		want, _ := x509.ParseCertificate(der)
		sameAsX509(t, der, want)
	}

	for _, bad := range []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"trailing", append(append([]byte{}, der...), 0)},
		{"truncated", der[:len(der)-1]},
	} {
		if _, err := ParseCertificate(bad.der); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", bad.name, err)
		}
	}
}

// FuzzParseCertificate: never panics, and whatever crypto/x509 accepts with
// an RSA or ECDSA key is parsed to the same fields.
func FuzzParseCertificate(f *testing.F) {
	for _, n := range []string{"rsa", "ec", "noskid", "skid"} {
		f.Add(readTD(f, "openssl/"+n+".der"))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		got, err := ParseCertificate(der)
		want, werr := x509.ParseCertificate(der)
		if werr != nil {
			return
		}
		switch want.PublicKey.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return
		}
		if err != nil {
			t.Fatalf("crypto/x509 accepts, ParseCertificate: %v", err)
		}
		if !bytes.Equal(got.SubjectKeyId, want.SubjectKeyId) || !bytes.Equal(got.RawSubjectPublicKeyInfo, want.RawSubjectPublicKeyInfo) {
			t.Fatal("fields differ from crypto/x509's")
		}
		if k, ok := want.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && !k.Equal(got.PublicKey) {
			t.Fatal("key differs from crypto/x509's")
		}
	})
}
