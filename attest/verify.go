package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

func algID(v uint16) tpm2.TPMIAlgHash { return tpm2.TPMIAlgHash(v) }

// Options are what the server expects of a quote.
type Options struct {
	// Nonce is the qualifying data the server sent. It is always
	// compared, as tpm2_checkquote does: nil or empty means the quote must
	// carry no extraData.
	Nonce []byte
	// PCRs are the values claimed for the selected PCRs (tpm2_quote -o);
	// every selected PCR needs one. Others are ignored and not returned.
	PCRs PCRValues
	// RequireRestricted refuses an AK that is not known to be a
	// restricted signing key (a PEM key's attributes are unknown).
	RequireRestricted bool
	// AllowSHA1 accepts a signature made with SHA-1 (the key policy
	// otherwise wants SHA-256 or stronger; see CheckKeyPolicy).
	AllowSHA1 bool
}

// Result is what a verified quote attests.
type Result struct {
	Quote *Quote
	Hash  crypto.Hash // the signature's hash, which also made pcrDigest
	Nonce []byte      // the quote's extraData, equal to Options.Nonce
	// Values holds the selected PCRs' values, now attested.
	Values PCRValues
	// Ignored counts given values the quote does not select.
	Ignored int
}

// VerifySignature checks sig over the message bytes with the AK.
func VerifySignature(msg []byte, sig *Signature, ak *AK) error {
	if sig != nil && ak != nil && ak.FixedScheme != tpm2.TPMAlgNull && (sig.Scheme != ak.FixedScheme || (ak.FixedHash != 0 && sig.Hash != ak.FixedHash)) {
		return fmt.Errorf("signature %s/%s, the key is limited to %s/%s: %w", SchemeName(sig.Scheme), hashName(sig.Hash),
			SchemeName(ak.FixedScheme), hashName(ak.FixedHash), ErrSchemeMismatch)
	}
	if sig == nil || ak == nil || !sig.Hash.Available() {
		return fmt.Errorf("signature or key missing, or hash %v: %w", hashOf(sig), ErrUnsupported)
	}
	h := sig.Hash.New()
	h.Write(msg)
	digest := h.Sum(nil)
	switch k := ak.Public.(type) {
	case *rsa.PublicKey:
		var err error
		switch sig.Scheme {
		case tpm2.TPMAlgRSASSA:
			err = rsa.VerifyPKCS1v15(k, sig.Hash, digest, sig.RSA)
		case tpm2.TPMAlgRSAPSS:
			err = rsa.VerifyPSS(k, sig.Hash, digest, sig.RSA, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		default:
			return fmt.Errorf("a %s signature for an RSA key: %w", SchemeName(sig.Scheme), ErrSchemeMismatch)
		}
		if err != nil {
			return fmt.Errorf("%s/%s: %w: %v", SchemeName(sig.Scheme), hashName(sig.Hash), ErrBadSignature, err)
		}
	case *ecdsa.PublicKey:
		if sig.Scheme != tpm2.TPMAlgECDSA {
			return fmt.Errorf("a %s signature for an ECC key: %w", SchemeName(sig.Scheme), ErrSchemeMismatch)
		}
		if sig.R == nil || sig.S == nil || k.Curve == nil || k.X == nil || k.Y == nil {
			return malformed("ECDSA signature or key", nil)
		}
		if !ecdsa.Verify(k, digest, sig.R, sig.S) {
			return fmt.Errorf("ecdsa/%s: %w", hashName(sig.Hash), ErrBadSignature)
		}
	default:
		return fmt.Errorf("key type %T: %w", ak.Public, ErrUnsupported)
	}
	return nil
}

// CheckNonce compares the quote's extraData with the nonce.
func (q *Quote) CheckNonce(nonce []byte) error {
	if !bytes.Equal(q.ExtraData, nonce) {
		return &NonceError{Want: bytes.Clone(nonce), Got: bytes.Clone(q.ExtraData)}
	}
	return nil
}

// PCRDigestOf computes the digest of the selected PCRs' values with h, as
// TPM2_Quote does: the values concatenated bank by bank in the
// selection's order, PCRs ascending within a bank.
func (q *Quote) PCRDigestOf(v PCRValues, h crypto.Hash) ([]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("PCR digest with hash %v: %w", h, ErrUnsupported)
	}
	d := h.New()
	for _, s := range q.Selection {
		for _, p := range s.PCRs {
			val, ok := v[s.Bank][p]
			if !ok {
				return nil, &MissingPCRError{Bank: s.Bank, PCR: p}
			}
			if len(val) != s.Bank.Size() {
				return nil, fmt.Errorf("%s PCR %d: a %d-byte value: %w", hashName(s.Bank), p, len(val), ErrMalformed)
			}
			d.Write(val)
		}
	}
	return d.Sum(nil), nil
}

// CheckPCRs checks that v's selected values digest (with h) to the
// quote's pcrDigest, and returns those values and how many given values
// the quote does not select.
func (q *Quote) CheckPCRs(v PCRValues, h crypto.Hash) (PCRValues, int, error) {
	got, err := q.PCRDigestOf(v, h)
	if err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(got, q.PCRDigest) {
		return nil, 0, &DigestError{Hash: h, Quoted: bytes.Clone(q.PCRDigest), Values: got}
	}
	sel := PCRValues{}
	n := 0
	for _, s := range q.Selection {
		if sel[s.Bank] == nil {
			sel[s.Bank] = map[uint32][]byte{}
		}
		for _, p := range s.PCRs {
			if _, dup := sel[s.Bank][p]; !dup {
				n++
			}
			sel[s.Bank][p] = bytes.Clone(v[s.Bank][p])
		}
	}
	given := 0
	for _, m := range v {
		given += len(m)
	}
	return sel, given - n, nil
}

// Selects reports whether some bank of the quote selects pcr.
func (q *Quote) Selects(pcr uint32) bool {
	for _, s := range q.Selection {
		if slices.Contains(s.PCRs, pcr) {
			return true
		}
	}
	return false
}

// CheckSelected returns a *NotSelectedError naming the PCRs of pcrs that
// no bank of the quote selects.
func (q *Quote) CheckSelected(pcrs []uint32) error {
	var missing []uint32
	for _, p := range pcrs {
		if !q.Selects(p) && !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &NotSelectedError{PCRs: missing}
	}
	return nil
}

// Verify checks a quote: the AK's signature over msg, that msg is a quote,
// the nonce and the digest of opt.PCRs over
// the quote's selection. On success the Result holds the attested values.
func Verify(msg []byte, sig *Signature, ak *AK, opt Options) (*Result, error) {
	if opt.RequireRestricted && !(ak.Attributes && ak.Restricted && ak.Sign) {
		return nil, ErrNotRestricted
	}
	if len(msg) > MaxMessage {
		return nil, fmt.Errorf("quote message: %d bytes: %w", len(msg), ErrTooLarge)
	}
	if err := CheckKeyPolicy(ak, sig, opt.AllowSHA1); err != nil {
		return nil, err
	}
	if err := VerifySignature(msg, sig, ak); err != nil {
		return nil, err
	}
	q, err := ParseQuote(msg)
	if err != nil {
		return nil, err
	}
	r := &Result{Quote: q, Hash: sig.Hash, Nonce: q.ExtraData}
	if err := q.CheckNonce(opt.Nonce); err != nil {
		return nil, err
	}
	if r.Values, r.Ignored, err = q.CheckPCRs(opt.PCRs, sig.Hash); err != nil {
		return nil, err
	}
	return r, nil
}

// SchemeName names a signature scheme as tpm2-tools does (rsassa, rsapss, ecdsa).
func SchemeName(a tpm2.TPMAlgID) string {
	switch a {
	case tpm2.TPMAlgRSASSA:
		return "rsassa"
	case tpm2.TPMAlgRSAPSS:
		return "rsapss"
	case tpm2.TPMAlgECDSA:
		return "ecdsa"
	case tpm2.TPMAlgNull:
		return "null"
	}
	return fmt.Sprintf("0x%04x", uint16(a))
}

func hashOf(s *Signature) crypto.Hash {
	if s == nil {
		return 0
	}
	return s.Hash
}
