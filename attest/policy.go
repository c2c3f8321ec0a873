package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
)

// ErrKeyPolicy: the AK or the signature's hash is below the key policy
// (KeyPolicyError names the rule).
var ErrKeyPolicy = errors.New("below the key policy")

// The key policy, applied by Verify whatever the environment says
// (GODEBUG=rsa1024min=0 lets crypto/rsa verify with 512-bit keys; the
// policy does not): RSA keys of at least MinRSABits bits; ECDSA keys on
// the curves TPMs implement, P-256 and P-384; signature hashes of at
// least SHA-256 unless Options.AllowSHA1 (an older TPM's AK may sign with
// SHA-1).
const MinRSABits = 2048

// Rules named by KeyPolicyError.
const (
	RuleRSABits    = "rsa-min-2048-bits"
	RuleECDSACurve = "ecdsa-curve-p256-p384"
	RuleSigHash    = "signature-hash-min-sha256"
	RuleKeyType    = "key-type-rsa-or-ecdsa"
)

// KeyPolicyError is an ErrKeyPolicy naming the rule the key or the
// signature breaks.
type KeyPolicyError struct {
	Rule   string // one of the Rule constants
	Detail string // what was found
}

func (e *KeyPolicyError) Error() string {
	return fmt.Sprintf("%v: rule %s: %s", ErrKeyPolicy, e.Rule, e.Detail)
}

func (e *KeyPolicyError) Unwrap() error { return ErrKeyPolicy }

// CheckKeyPolicy applies the key policy to ak and the hash of sig.
func CheckKeyPolicy(ak *AK, sig *Signature, allowSHA1 bool) error {
	if ak == nil {
		return fmt.Errorf("no key: %w", ErrUnsupported)
	}
	switch k := ak.Public.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < MinRSABits {
			bits := 0
			if k.N != nil {
				bits = k.N.BitLen()
			}
			return &KeyPolicyError{RuleRSABits, fmt.Sprintf("a %d-bit RSA key", bits)}
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			name := "unknown"
			if k.Curve != nil {
				name = k.Curve.Params().Name
			}
			return &KeyPolicyError{RuleECDSACurve, "an ECDSA key on curve " + name}
		}
	default:
		return &KeyPolicyError{RuleKeyType, fmt.Sprintf("a %T key", ak.Public)}
	}
	if sig != nil {
		switch sig.Hash {
		case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		case crypto.SHA1:
			if !allowSHA1 {
				return &KeyPolicyError{RuleSigHash, "a SHA-1 signature (allow it explicitly)"}
			}
		default:
			return &KeyPolicyError{RuleSigHash, "a signature with hash " + hashName(sig.Hash)}
		}
	}
	return nil
}
