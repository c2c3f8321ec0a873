package attest

import (
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sentinels. Every error the package returns wraps exactly one of them.
var (
	// ErrMalformed: the bytes are not the structure they should be
	// (truncated, trailing bytes, a count or length out of range).
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge: the input exceeds the parser's size cap.
	ErrTooLarge = errors.New("input too large")
	// ErrNotQuote: a well-formed TPMS_ATTEST that is not a TPM-generated
	// quote (wrong magic, or an attestation type other than
	// TPM_ST_ATTEST_QUOTE).
	ErrNotQuote = errors.New("not a TPM2 quote")
	// ErrUnsupported: an algorithm, curve, scheme or key type the
	// package does not verify (HMAC, ECDAA, SM2, SM3, ...).
	ErrUnsupported = errors.New("unsupported algorithm")
	// ErrSchemeMismatch: the signature's scheme cannot come from this
	// key (an ECDSA signature for an RSA key, or a scheme other than the
	// one the key's public area fixes).
	ErrSchemeMismatch = errors.New("signature scheme does not match the key")
	// ErrBadSignature: the signature does not verify with the key over the
	// message.
	ErrBadSignature = errors.New("bad signature")
	// ErrNonceMismatch: the quote's extraData is not the expected nonce
	// (a replayed or foreign quote).
	ErrNonceMismatch = errors.New("wrong nonce")
	// ErrDigestMismatch: the digest of the given PCR values is not the
	// quote's pcrDigest.
	ErrDigestMismatch = errors.New("PCR digest mismatch")
	// ErrPCRMissing: the quote selects a PCR no value was given for.
	ErrPCRMissing = errors.New("selected PCR without a value")
	// ErrPCRNotSelected: a PCR the caller relies on is not in the quote's
	// selection (in any bank).
	ErrPCRNotSelected = errors.New("PCR not selected by the quote")
	// ErrNotRestricted: Options.RequireRestricted and the AK is not a
	// restricted signing key (or its attributes are unknown: a PEM key).
	ErrNotRestricted = errors.New("AK is not a restricted signing key")
)

// NonceError is an ErrNonceMismatch with both values.
type NonceError struct {
	Want, Got []byte
}

func (e *NonceError) Error() string {
	return fmt.Sprintf("%v: quote has extraData %q, want %q", ErrNonceMismatch, hex.EncodeToString(e.Got), hex.EncodeToString(e.Want))
}

func (e *NonceError) Unwrap() error { return ErrNonceMismatch }

// DigestError is an ErrDigestMismatch with both digests.
type DigestError struct {
	Hash           crypto.Hash
	Quoted, Values []byte
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("%v: quote's %s pcrDigest %s, the given values digest to %s", ErrDigestMismatch, hashName(e.Hash),
		hex.EncodeToString(e.Quoted), hex.EncodeToString(e.Values))
}

func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

// MissingPCRError is an ErrPCRMissing naming the first PCR without a value.
type MissingPCRError struct {
	Bank crypto.Hash
	PCR  uint32
}

func (e *MissingPCRError) Error() string {
	return fmt.Sprintf("%v: %s PCR %d", ErrPCRMissing, hashName(e.Bank), e.PCR)
}

func (e *MissingPCRError) Unwrap() error { return ErrPCRMissing }

// NotSelectedError is an ErrPCRNotSelected naming the PCRs no bank of the
// quote selects.
type NotSelectedError struct {
	PCRs []uint32
}

func (e *NotSelectedError) Error() string {
	s := make([]string, len(e.PCRs))
	for i, p := range e.PCRs {
		s[i] = fmt.Sprint(p)
	}
	return fmt.Sprintf("%v: PCR %s", ErrPCRNotSelected, strings.Join(s, ","))
}

func (e *NotSelectedError) Unwrap() error { return ErrPCRNotSelected }

func malformed(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", what, ErrMalformed)
	}
	return fmt.Errorf("%s: %w: %v", what, ErrMalformed, err)
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return h.String()
}
