package attest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/gokexec/gokexec/attest"
	"github.com/google/go-tpm/tpm2"
)

// TestWeakKeysRefused: a 512-bit RSA AK verified a quote when the
// environment held GODEBUG=rsa1024min=0, and a P-224 AK (no TPM has one)
// passed. Each good swtpm quote is re-signed with such a key: the
// signature is valid, and Verify refuses it naming the rule.
func TestWeakKeysRefused(t *testing.T) {
	t.Setenv("GODEBUG", "rsa1024min=0")
	weak, err := rsa.GenerateKey(rand.Reader, 512)
	if err != nil {
		t.Fatalf("GODEBUG=rsa1024min=0 should let a 512-bit key be made: %v", err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range loadGoldens(t) {
		_, _, _, v := g.parts(t)
		d := sha256.Sum256(g.msg)
		rs, err := rsa.SignPKCS1v15(rand.Reader, weak, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		r, s, err := ecdsa.Sign(rand.Reader, p224, d[:])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			sig  *attest.Signature
			ak   *attest.AK
			rule string
		}{
			{"rsa-512", &attest.Signature{Scheme: tpm2.TPMAlgRSASSA, Hash: crypto.SHA256, RSA: rs}, &attest.AK{Public: &weak.PublicKey, FixedScheme: tpm2.TPMAlgNull}, attest.RuleRSABits},
			{"ecdsa-p224", &attest.Signature{Scheme: tpm2.TPMAlgECDSA, Hash: crypto.SHA256, R: r, S: s}, &attest.AK{Public: &p224.PublicKey, FixedScheme: tpm2.TPMAlgNull}, attest.RuleECDSACurve},
		} {
			// The signature itself is good: only the policy can refuse it.
			if err := attest.VerifySignature(g.msg, c.sig, c.ak); err != nil {
				t.Fatalf("%s: the re-signed quote's signature: %v", c.name, err)
			}
			_, err := attest.Verify(g.msg, c.sig, c.ak, attest.Options{Nonce: g.nonce, PCRs: v, AllowSHA1: true})
			var pe *attest.KeyPolicyError
			if !errors.Is(err, attest.ErrKeyPolicy) || !errors.As(err, &pe) || pe.Rule != c.rule {
				t.Errorf("%s/%s: %v, want rule %s", g.kind, c.name, err, c.rule)
			}
		}
		// a SHA-1 signature needs AllowSHA1
		_, sig, ak, _ := g.parts(t)
		if sig.Hash == crypto.SHA1 {
			_, err := attest.Verify(g.msg, sig, ak, attest.Options{Nonce: g.nonce, PCRs: v})
			var pe *attest.KeyPolicyError
			if !errors.As(err, &pe) || pe.Rule != attest.RuleSigHash {
				t.Errorf("%s: a SHA-1 signature without AllowSHA1: %v", g.kind, err)
			}
		}
	}
}
