package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Input size caps. A TPMS_ATTEST quote is at most a few hundred bytes, a
// TPMT_SIGNATURE at most an RSA-4096 signature plus its header, an AK a
// few kilobytes even as PEM.
const (
	MaxMessage   = 4 << 10
	MaxSignature = 4 << 10
	MaxAK        = 64 << 10
)

// Selection limits: tpm2-tss's TPM2_NUM_PCR_BANKS and TPM2_PCR_SELECT_MAX.
const (
	MaxBanks     = 16
	MaxSelectLen = 4 // bytes of a pcrSelect bitmap: PCRs 0..31
)

// Selection is one bank of a quote's TPML_PCR_SELECTION.
type Selection struct {
	Bank crypto.Hash
	Alg  tpm2.TPMIAlgHash
	PCRs []uint32 // ascending
}

// Quote is a parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE.
type Quote struct {
	Message         []byte // the signed bytes, exactly as received
	Signer          []byte // qualifiedSigner (a TPM2B_NAME's contents)
	ExtraData       []byte // the caller's qualifying data: the nonce
	Clock           uint64
	ResetCount      uint32
	RestartCount    uint32
	Safe            bool
	FirmwareVersion uint64
	Selection       []Selection // in the quote's order
	PCRDigest       []byte
}

// Signature is a parsed TPMT_SIGNATURE of a scheme the package verifies.
type Signature struct {
	Scheme tpm2.TPMAlgID // TPMAlgRSASSA, TPMAlgRSAPSS or TPMAlgECDSA
	Hash   crypto.Hash
	RSA    []byte   // RSASSA, RSAPSS
	R, S   *big.Int // ECDSA
}

// AK is an attestation key's public part.
type AK struct {
	Public crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
	// From a TPM public area only (nil/zero for PEM keys):
	Area        *tpm2.TPMTPublic
	Name        []byte        // nameAlg || H(TPMT_PUBLIC)
	Attributes  bool          // the fields below are known
	Restricted  bool          // restricted attribute
	Sign        bool          // sign attribute
	FixedTPM    bool          // fixedTPM attribute
	FixedScheme tpm2.TPMAlgID // the scheme the key is limited to (TPMAlgNull: any)
	FixedHash   crypto.Hash   // with FixedScheme, its hash
}

// unmarshalExact parses b as T with go-tpm, behind a recover, and insists
// that marshalling the result gives b back: no trailing or non-canonical
// bytes.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](what string, b []byte) (v *T, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, malformed(what, fmt.Errorf("go-tpm: %v", r))
		}
	}()
	v, err = tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, malformed(what, err)
	}
	if !bytes.Equal(tpm2.Marshal(*v), b) {
		return nil, malformed(what, errors.New("trailing or non-canonical bytes"))
	}
	return v, nil
}

func bankHash(alg tpm2.TPMIAlgHash) (crypto.Hash, error) {
	h, err := alg.Hash()
	if err != nil || !h.Available() {
		return 0, fmt.Errorf("hash algorithm 0x%04x: %w", uint16(alg), ErrUnsupported)
	}
	return h, nil
}

// parseSelection turns TPMS_PCR_SELECTIONs into Selections, bounding the
// bank count and bitmap sizes.
func parseSelection(sels []tpm2.TPMSPCRSelection) ([]Selection, error) {
	if len(sels) > MaxBanks {
		return nil, malformed("PCR selection", fmt.Errorf("%d banks, at most %d", len(sels), MaxBanks))
	}
	out := make([]Selection, 0, len(sels))
	for _, s := range sels {
		if len(s.PCRSelect) > MaxSelectLen {
			return nil, malformed("PCR selection", fmt.Errorf("a %d-byte bitmap, at most %d", len(s.PCRSelect), MaxSelectLen))
		}
		h, err := bankHash(s.Hash)
		if err != nil {
			return nil, fmt.Errorf("PCR selection: %w", err)
		}
		out = append(out, Selection{Bank: h, Alg: s.Hash, PCRs: bitmapPCRs(s.PCRSelect)})
	}
	return out, nil
}

func bitmapPCRs(bm []byte) []uint32 {
	var pcrs []uint32
	for i, b := range bm {
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				pcrs = append(pcrs, uint32(8*i+j))
			}
		}
	}
	return pcrs
}

// ParseQuote parses a quote message (tpm2_quote -m): a TPMS_ATTEST whose
// magic is TPM_GENERATED_VALUE and whose type is TPM_ST_ATTEST_QUOTE.
func ParseQuote(msg []byte) (*Quote, error) {
	if len(msg) > MaxMessage {
		return nil, fmt.Errorf("quote message: %d bytes: %w", len(msg), ErrTooLarge)
	}
	if len(msg) < 6 {
		return nil, malformed("quote message", errors.New("shorter than its header"))
	}
	if m := binary.BigEndian.Uint32(msg); m != uint32(tpm2.TPMGeneratedValue) {
		return nil, fmt.Errorf("quote message: magic 0x%08x, want TPM_GENERATED_VALUE: %w", m, ErrNotQuote)
	}
	if t := binary.BigEndian.Uint16(msg[4:]); t != uint16(tpm2.TPMSTAttestQuote) {
		return nil, fmt.Errorf("quote message: attestation type 0x%04x, want TPM_ST_ATTEST_QUOTE: %w", t, ErrNotQuote)
	}
	att, err := unmarshalExact[tpm2.TPMSAttest]("quote message", msg)
	if err != nil {
		return nil, err
	}
	qi, err := att.Attested.Quote()
	if err != nil {
		return nil, malformed("quote message", err)
	}
	sel, err := parseSelection(qi.PCRSelect.PCRSelections)
	if err != nil {
		return nil, fmt.Errorf("quote message: %w", err)
	}
	return &Quote{
		Message:         bytes.Clone(msg),
		Signer:          bytes.Clone(att.QualifiedSigner.Buffer),
		ExtraData:       bytes.Clone(att.ExtraData.Buffer),
		Clock:           att.ClockInfo.Clock,
		ResetCount:      att.ClockInfo.ResetCount,
		RestartCount:    att.ClockInfo.RestartCount,
		Safe:            att.ClockInfo.Safe,
		FirmwareVersion: att.FirmwareVersion,
		Selection:       sel,
		PCRDigest:       bytes.Clone(qi.PCRDigest.Buffer),
	}, nil
}

// ParseSignature parses a TPMT_SIGNATURE (tpm2_quote -s in its default
// "tss" format) of scheme RSASSA, RSAPSS or ECDSA.
func ParseSignature(b []byte) (*Signature, error) {
	if len(b) > MaxSignature {
		return nil, fmt.Errorf("signature: %d bytes: %w", len(b), ErrTooLarge)
	}
	if len(b) < 2 {
		return nil, malformed("signature", errors.New("shorter than its algorithm"))
	}
	switch alg := tpm2.TPMAlgID(binary.BigEndian.Uint16(b)); alg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS, tpm2.TPMAlgECDSA:
	default:
		return nil, fmt.Errorf("signature: scheme 0x%04x: %w", uint16(alg), ErrUnsupported)
	}
	ts, err := unmarshalExact[tpm2.TPMTSignature]("signature", b)
	if err != nil {
		return nil, err
	}
	s := &Signature{Scheme: ts.SigAlg}
	var alg tpm2.TPMIAlgHash
	switch ts.SigAlg {
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		var r *tpm2.TPMSSignatureRSA
		if ts.SigAlg == tpm2.TPMAlgRSASSA {
			r, err = ts.Signature.RSASSA()
		} else {
			r, err = ts.Signature.RSAPSS()
		}
		if err != nil {
			return nil, malformed("signature", err)
		}
		if len(r.Sig.Buffer) == 0 {
			return nil, malformed("signature", errors.New("empty RSA signature"))
		}
		alg, s.RSA = r.Hash, bytes.Clone(r.Sig.Buffer)
	case tpm2.TPMAlgECDSA:
		e, err := ts.Signature.ECDSA()
		if err != nil {
			return nil, malformed("signature", err)
		}
		if len(e.SignatureR.Buffer) == 0 || len(e.SignatureS.Buffer) == 0 {
			return nil, malformed("signature", errors.New("empty ECDSA r or s"))
		}
		alg = e.Hash
		s.R = new(big.Int).SetBytes(e.SignatureR.Buffer)
		s.S = new(big.Int).SetBytes(e.SignatureS.Buffer)
	}
	if s.Hash, err = bankHash(alg); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return s, nil
}

// ParseAK parses an attestation key: PEM ("PUBLIC KEY", i.e. PKIX, as
// tpm2_readpublic -f pem writes it, or "RSA PUBLIC KEY"), a TPM2B_PUBLIC
// (tpm2_createak -u, tpm2_readpublic -o) or a bare TPMT_PUBLIC.
func ParseAK(b []byte) (*AK, error) {
	if len(b) > MaxAK {
		return nil, fmt.Errorf("AK: %d bytes: %w", len(b), ErrTooLarge)
	}
	if blk, rest := pem.Decode(b); blk != nil {
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, malformed("AK", errors.New("bytes after the PEM block"))
		}
		var pub crypto.PublicKey
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		default:
			return nil, fmt.Errorf("AK: PEM block %q: %w", blk.Type, ErrUnsupported)
		}
		if err != nil {
			return nil, malformed("AK", err)
		}
		switch pub.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey:
		default:
			return nil, fmt.Errorf("AK: key type %T: %w", pub, ErrUnsupported)
		}
		return &AK{Public: pub, FixedScheme: tpm2.TPMAlgNull}, nil
	}
	// TPM2B_PUBLIC when its size field covers the rest, else TPMT_PUBLIC.
	area := b
	if len(b) >= 2 && int(binary.BigEndian.Uint16(b)) == len(b)-2 {
		area = b[2:]
	}
	pt, err := unmarshalExact[tpm2.TPMTPublic]("AK public area", area)
	if err != nil {
		return nil, err
	}
	return akFromArea(pt)
}

func akFromArea(pt *tpm2.TPMTPublic) (ak *AK, err error) {
	defer func() {
		if r := recover(); r != nil {
			ak, err = nil, malformed("AK public area", fmt.Errorf("go-tpm: %v", r))
		}
	}()
	ak = &AK{Area: pt, FixedScheme: tpm2.TPMAlgNull, Attributes: true,
		Restricted: pt.ObjectAttributes.Restricted, Sign: pt.ObjectAttributes.SignEncrypt,
		FixedTPM: pt.ObjectAttributes.FixedTPM}
	var scheme tpm2.TPMAlgID
	var details *tpm2.TPMUAsymScheme
	switch pt.Type {
	case tpm2.TPMAlgRSA:
		p, err := pt.Parameters.RSADetail()
		if err != nil {
			return nil, malformed("AK public area", err)
		}
		n, err := pt.Unique.RSA()
		if err != nil {
			return nil, malformed("AK public area", err)
		}
		if len(n.Buffer) == 0 {
			return nil, malformed("AK public area", errors.New("empty RSA modulus"))
		}
		k, err := tpm2.RSAPub(p, n)
		if err != nil {
			return nil, malformed("AK public area", err)
		}
		ak.Public = k
		scheme, details = p.Scheme.Scheme, &p.Scheme.Details
	case tpm2.TPMAlgECC:
		p, err := pt.Parameters.ECCDetail()
		if err != nil {
			return nil, malformed("AK public area", err)
		}
		pt2, err := pt.Unique.ECC()
		if err != nil {
			return nil, malformed("AK public area", err)
		}
		k, err := tpm2.ECDSAPub(p, pt2)
		if err != nil {
			return nil, fmt.Errorf("AK: curve 0x%04x: %w", uint16(p.CurveID), ErrUnsupported)
		}
		if _, err := k.ECDH(); err != nil { // the point is on the curve
			return nil, malformed("AK public area", err)
		}
		ak.Public = k
		scheme, details = p.Scheme.Scheme, &p.Scheme.Details
	default:
		return nil, fmt.Errorf("AK: key type 0x%04x: %w", uint16(pt.Type), ErrUnsupported)
	}
	if scheme != tpm2.TPMAlgNull {
		var sh *tpm2.TPMSSchemeHash
		switch scheme {
		case tpm2.TPMAlgRSASSA:
			if d, err := details.RSASSA(); err == nil {
				sh = (*tpm2.TPMSSchemeHash)(d)
			}
		case tpm2.TPMAlgRSAPSS:
			if d, err := details.RSAPSS(); err == nil {
				sh = (*tpm2.TPMSSchemeHash)(d)
			}
		case tpm2.TPMAlgECDSA:
			if d, err := details.ECDSA(); err == nil {
				sh = (*tpm2.TPMSSchemeHash)(d)
			}
		}
		ak.FixedScheme = scheme
		if sh != nil {
			if h, err := sh.HashAlg.Hash(); err == nil {
				ak.FixedHash = h
			}
		}
	}
	if name, err := tpm2.ObjectName(pt); err == nil {
		ak.Name = bytes.Clone(name.Buffer)
	}
	return ak, nil
}
