package appraise

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
)

// Certificate is what appraisal needs from an X.509 certificate: its subject
// (for messages), its Subject Key Identifier and its public key.
//
// ParseCertificate reads only the structure around those fields (RFC 5280,
// section 4.1) with encoding/asn1. The certificate's own signature, validity
// period and chain are not checked: a certificate given to LoadCerts is
// trusted because the operator named it, as the kernel trusts the keys on
// its .ima keyring. crypto/x509 is not used because it costs the static
// loader about 180 KB, 4% of it (DESIGN.md section 7 caps the binary's
// size); the tests compare this parser with crypto/x509 on every test
// certificate and under fuzzing.
type Certificate struct {
	Raw                     []byte // the whole DER certificate
	RawSubjectPublicKeyInfo []byte
	Subject                 string // RFC 2253 form, as pkix.Name.String
	SubjectKeyId            []byte // nil without the extension
	// PublicKey is *rsa.PublicKey or *ecdsa.PublicKey; nil for other key
	// types, whose algorithm is then named by PublicKeyAlgorithm.
	PublicKey          crypto.PublicKey
	PublicKeyAlgorithm string
}

var (
	oidRSA      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEC       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidEd25519  = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidDSA      = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidSKID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidP224     = asn1.ObjectIdentifier{1, 3, 132, 0, 33}
	oidP256     = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384     = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521     = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	asn1NullDER = []byte{0x05, 0x00}
)

type certificateASN1 struct {
	TBS       tbsASN1
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

type tbsASN1 struct {
	Raw        asn1.RawContent
	Version    int `asn1:"optional,explicit,default:0,tag:0"`
	Serial     asn1.RawValue
	Algorithm  asn1.RawValue
	Issuer     asn1.RawValue
	Validity   asn1.RawValue
	Subject    asn1.RawValue
	SPKI       spkiASN1
	IssuerUID  asn1.BitString  `asn1:"optional,tag:1"`
	SubjectUID asn1.BitString  `asn1:"optional,tag:2"`
	Extensions []extensionASN1 `asn1:"optional,explicit,tag:3"`
}

type spkiASN1 struct {
	Raw       asn1.RawContent
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

type extensionASN1 struct {
	ID       asn1.ObjectIdentifier
	Critical bool `asn1:"optional"`
	Value    []byte
}

// ParseCertificate parses one DER certificate. Errors wrap ErrMalformed.
func ParseCertificate(der []byte) (*Certificate, error) {
	var c certificateASN1
	rest, err := asn1.Unmarshal(der, &c)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrMalformed, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the certificate", ErrMalformed, len(rest))
	}
	t := &c.TBS
	if t.Version < 0 || t.Version > 2 {
		return nil, fmt.Errorf("%w: certificate version %d", ErrMalformed, t.Version+1)
	}
	out := &Certificate{Raw: der[:len(der)-len(rest)], RawSubjectPublicKeyInfo: t.SPKI.Raw}

	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(t.Subject.FullBytes, &rdn); err == nil && len(rest) == 0 {
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		out.Subject = n.String()
	} else {
		// Name types encoding/asn1 cannot decode (T61String, BMPString)
		// only cost the message its subject.
		out.Subject = fmt.Sprintf("subject %x", t.Subject.FullBytes)
	}

	seen := map[string]bool{}
	for _, e := range t.Extensions {
		id := e.ID.String()
		if seen[id] {
			return nil, fmt.Errorf("%w: duplicate extension %s", ErrMalformed, id)
		}
		seen[id] = true
		if e.ID.Equal(oidSKID) {
			var skid []byte
			if rest, err := asn1.Unmarshal(e.Value, &skid); err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("%w: subject key identifier extension", ErrMalformed)
			}
			out.SubjectKeyId = skid
		}
	}

	if err := out.parseKey(&t.SPKI); err != nil {
		return nil, err
	}
	return out, nil
}

// parseKey fills PublicKey and PublicKeyAlgorithm from a SubjectPublicKeyInfo.
func (c *Certificate) parseKey(spki *spkiASN1) error {
	alg := spki.Algorithm.Algorithm
	bits := spki.PublicKey
	switch {
	case alg.Equal(oidRSA):
		c.PublicKeyAlgorithm = "RSA"
		// RFC 3279: the parameters are NULL; crypto/x509 also accepts them
		// absent.
		if p := spki.Algorithm.Parameters.FullBytes; len(p) != 0 && string(p) != string(asn1NullDER) {
			return fmt.Errorf("%w: RSA key parameters are not NULL", ErrMalformed)
		}
		var k struct {
			N *big.Int
			E int
		}
		if rest, err := asn1.Unmarshal(bits.RightAlign(), &k); err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: RSA public key", ErrMalformed)
		}
		if k.N.Sign() <= 0 || k.E <= 0 || k.E > 1<<31-1 {
			return fmt.Errorf("%w: RSA modulus or exponent not positive", ErrMalformed)
		}
		c.PublicKey = &rsa.PublicKey{N: k.N, E: k.E}
	case alg.Equal(oidEC):
		c.PublicKeyAlgorithm = "ECDSA"
		var curveID asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(spki.Algorithm.Parameters.FullBytes, &curveID); err != nil || len(rest) != 0 {
			return fmt.Errorf("%w: EC key without a named curve", ErrMalformed)
		}
		var curve elliptic.Curve
		switch {
		case curveID.Equal(oidP224):
			curve = elliptic.P224()
		case curveID.Equal(oidP256):
			curve = elliptic.P256()
		case curveID.Equal(oidP384):
			curve = elliptic.P384()
		case curveID.Equal(oidP521):
			curve = elliptic.P521()
		default:
			// A certificate crypto/x509 would parse with an unknown key;
			// Keyring.Add refuses it as unsupported.
			c.PublicKeyAlgorithm = "ECDSA curve " + curveID.String()
			return nil
		}
		if bits.BitLength%8 != 0 {
			return fmt.Errorf("%w: EC point is not whole bytes", ErrMalformed)
		}
		k, err := ecdsa.ParseUncompressedPublicKey(curve, bits.Bytes)
		if err != nil {
			return fmt.Errorf("%w: EC public key: %w", ErrMalformed, err)
		}
		c.PublicKey = k
	case alg.Equal(oidEd25519):
		c.PublicKeyAlgorithm = "Ed25519"
	case alg.Equal(oidDSA):
		c.PublicKeyAlgorithm = "DSA"
	default:
		c.PublicKeyAlgorithm = alg.String()
	}
	return nil
}
