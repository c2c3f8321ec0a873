package appraise

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	// Register the hashes signatures may use.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrMalformed: bytes that do not parse as the format claims.
	ErrMalformed = errors.New("appraise: malformed input")
	// ErrUnsupported: a well-formed input using an algorithm or key type
	// this package does not verify.
	ErrUnsupported = errors.New("appraise: unsupported algorithm")
	// ErrUnknownKey: no certificate in the keyring has the signature's key id.
	ErrUnknownKey = errors.New("appraise: unknown signing key")
	// ErrBadSignature: a key with the right id does not verify the signature.
	ErrBadSignature = errors.New("appraise: signature verification failed")
	// ErrHashMismatch: the digest given is not of the signature's hash.
	ErrHashMismatch = errors.New("appraise: digest algorithm differs from signature's")
	// ErrNoCertificates: LoadCerts found no certificate at all.
	ErrNoCertificates = errors.New("appraise: no certificates")
	// ErrWeak: a signature or digest that verifies, but with an algorithm
	// or key too weak to vouch for a kernel (SHA-1, RSA under MinRSABits);
	// such a file fails appraisal.
	ErrWeak = errors.New("appraise: algorithm or key too weak")
)

// HashAlgo is the kernel's enum hash_algo (include/uapi/linux/hash_info.h),
// the value of the hash_algo byte in signature headers.
type HashAlgo uint8

// Kernel hash_algo values.
const (
	HashMD4         HashAlgo = 0
	HashMD5         HashAlgo = 1
	HashSHA1        HashAlgo = 2
	HashRIPEMD160   HashAlgo = 3
	HashSHA256      HashAlgo = 4
	HashSHA384      HashAlgo = 5
	HashSHA512      HashAlgo = 6
	HashSHA224      HashAlgo = 7
	HashRIPEMD128   HashAlgo = 8
	HashRIPEMD256   HashAlgo = 9
	HashRIPEMD320   HashAlgo = 10
	HashWP256       HashAlgo = 11
	HashWP384       HashAlgo = 12
	HashWP512       HashAlgo = 13
	HashTGR128      HashAlgo = 14
	HashTGR160      HashAlgo = 15
	HashTGR192      HashAlgo = 16
	HashSM3256      HashAlgo = 17
	HashStreebog256 HashAlgo = 18
	HashStreebog512 HashAlgo = 19
	HashSHA3256     HashAlgo = 20
	HashSHA3384     HashAlgo = 21
	HashSHA3512     HashAlgo = 22
	hashAlgoLast    HashAlgo = 23
)

var hashAlgoNames = [...]string{
	"md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224",
	"rmd128", "rmd256", "rmd320", "wp256", "wp384", "wp512", "tgr128",
	"tgr160", "tgr192", "sm3", "streebog256", "streebog512", "sha3-256",
	"sha3-384", "sha3-512",
}

// String returns the kernel's name for the algorithm.
func (a HashAlgo) String() string {
	if int(a) < len(hashAlgoNames) {
		return hashAlgoNames[a]
	}
	return fmt.Sprintf("hash_algo(%d)", uint8(a))
}

var algoToCrypto = map[HashAlgo]crypto.Hash{
	HashSHA1:   crypto.SHA1,
	HashSHA224: crypto.SHA224,
	HashSHA256: crypto.SHA256,
	HashSHA384: crypto.SHA384,
	HashSHA512: crypto.SHA512,
}

// CryptoHash maps the algorithm to a crypto.Hash this package can verify
// with; ok is false for the others (md5, sm3, streebog, sha3, ...).
func (a HashAlgo) CryptoHash() (h crypto.Hash, ok bool) {
	h, ok = algoToCrypto[a]
	return h, ok
}

// HashAlgoOf returns the kernel hash_algo value for h.
func HashAlgoOf(h crypto.Hash) (HashAlgo, bool) {
	for a, c := range algoToCrypto {
		if c == h {
			return a, true
		}
	}
	return 0, false
}

// Signature header constants.
const (
	XattrDigSig       = 0x03 // EVM_IMA_XATTR_DIGSIG, with version 2
	XattrVeritySig    = 0x06 // IMA_VERITY_DIGSIG, with version 3
	SigHeaderSize     = 9
	maxSignatureBytes = 1 << 16 // sig_size is a be16
)

// Signature is a parsed IMA signature (security.ima value or .sig file).
type Signature struct {
	Type     uint8    // XattrDigSig or XattrVeritySig
	Version  uint8    // 2 with XattrDigSig, 3 with XattrVeritySig
	HashAlgo HashAlgo // kernel hash_algo
	KeyID    uint32   // big-endian on the wire
	Sig      []byte   // the raw signature (PKCS#1 v1.5 block or DER ECDSA)
}

// ParseSignature parses an IMA signature as the kernel does: the type and
// version must pair up, sig_size must equal the bytes that follow the
// header, and hash_algo must be a kernel hash algorithm. It does not check
// that the algorithm is one Verify supports.
func ParseSignature(b []byte) (*Signature, error) {
	if len(b) <= SigHeaderSize {
		return nil, fmt.Errorf("%w: IMA signature of %d bytes is shorter than its %d-byte header plus data", ErrMalformed, len(b), SigHeaderSize)
	}
	s := &Signature{
		Type:     b[0],
		Version:  b[1],
		HashAlgo: HashAlgo(b[2]),
		KeyID:    binary.BigEndian.Uint32(b[3:7]),
	}
	switch {
	case s.Type == XattrDigSig && s.Version == 2:
	case s.Type == XattrVeritySig && s.Version == 3:
	case s.Type != XattrDigSig && s.Type != XattrVeritySig:
		return nil, fmt.Errorf("%w: IMA xattr type 0x%02x is not a signature", ErrMalformed, s.Type)
	default:
		return nil, fmt.Errorf("%w: IMA signature type 0x%02x with version %d", ErrMalformed, s.Type, s.Version)
	}
	if s.HashAlgo >= hashAlgoLast {
		return nil, fmt.Errorf("%w: hash_algo %d", ErrMalformed, uint8(s.HashAlgo))
	}
	n := int(binary.BigEndian.Uint16(b[7:9]))
	if n != len(b)-SigHeaderSize {
		return nil, fmt.Errorf("%w: sig_size %d but %d signature bytes follow the header", ErrMalformed, n, len(b)-SigHeaderSize)
	}
	s.Sig = bytes.Clone(b[SigHeaderSize:])
	return s, nil
}

// Marshal returns the wire form; ParseSignature(s.Marshal()) round-trips.
func (s *Signature) Marshal() []byte {
	out := make([]byte, SigHeaderSize, SigHeaderSize+len(s.Sig))
	out[0], out[1], out[2] = s.Type, s.Version, uint8(s.HashAlgo)
	binary.BigEndian.PutUint32(out[3:7], s.KeyID)
	binary.BigEndian.PutUint16(out[7:9], uint16(len(s.Sig)))
	return append(out, s.Sig...)
}

// Hash returns the crypto.Hash of the signature's hash_algo, or an
// ErrUnsupported error.
func (s *Signature) Hash() (crypto.Hash, error) {
	h, ok := s.HashAlgo.CryptoHash()
	if !ok {
		return 0, fmt.Errorf("%w: hash %s", ErrUnsupported, s.HashAlgo)
	}
	return h, nil
}

// signedDigest returns what the signature was made over for fileDigest:
// the digest itself (v2) or the hash of the ima_file_id struct (v3).
func (s *Signature) signedDigest(h crypto.Hash, fileDigest []byte) []byte {
	if s.Version != 3 {
		return fileDigest
	}
	d := h.New()
	d.Write([]byte{XattrVeritySig, uint8(s.HashAlgo)})
	d.Write(fileDigest)
	return d.Sum(nil)
}

// key is one certificate's public key in a Keyring.
type key struct {
	cert    *x509.Certificate
	ids     []uint32
	hasSKID bool // ids[0] comes from the SKID extension
}

// Keyring holds verification certificates indexed by IMA key id.
type Keyring struct {
	byID map[uint32][]*key
	keys []*key
	// SKIDOnly restricts key-id matching to what the kernel does: only the
	// tail of a certificate's Subject Key Identifier extension counts, so a
	// certificate without one matches no signature.
	SKIDOnly bool
}

// LoadCerts builds a keyring from certificates. Each argument is either one
// DER certificate or PEM text holding any number of CERTIFICATE blocks
// (other PEM blocks, such as private keys, are skipped). At least one
// certificate must be found; RSA and ECDSA keys are accepted.
func LoadCerts(data ...[]byte) (*Keyring, error) {
	k := &Keyring{byID: map[uint32][]*key{}}
	for i, d := range data {
		certs, err := parseCerts(d)
		if err != nil {
			return nil, fmt.Errorf("certificate input %d: %w", i, err)
		}
		for _, c := range certs {
			if err := k.Add(c); err != nil {
				return nil, fmt.Errorf("certificate input %d (%s): %w", i, c.Subject.String(), err)
			}
		}
	}
	if len(k.keys) == 0 {
		return nil, ErrNoCertificates
	}
	return k, nil
}

func parseCerts(d []byte) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(d)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		c, err := ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("DER certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	rest := trimmed
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: PEM input without a CERTIFICATE block", ErrMalformed)
	}
	return out, nil
}

// spkiBits returns the subjectPublicKey BIT STRING contents of a
// certificate: the bytes evmctl and OpenSSL hash for a key id.
func spkiBits(c *x509.Certificate) ([]byte, bool) {
	var spki struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki)
	if err != nil || len(rest) != 0 {
		return nil, false
	}
	return spki.PublicKey.Bytes, true
}

// KeyIDs returns the IMA key ids a certificate answers to: the last four
// bytes of its Subject Key Identifier (when it has one of at least four
// bytes) and the last four bytes of SHA-1 over its public key bits.
func KeyIDs(c *x509.Certificate) []uint32 {
	var ids []uint32
	if n := len(c.SubjectKeyId); n >= 4 {
		ids = append(ids, binary.BigEndian.Uint32(c.SubjectKeyId[n-4:]))
	}
	if bits, ok := spkiBits(c); ok {
		sum := sha1.Sum(bits)
		id := binary.BigEndian.Uint32(sum[16:])
		if len(ids) == 0 || ids[0] != id {
			ids = append(ids, id)
		}
	}
	return ids
}

// Add puts one certificate into the keyring.
func (k *Keyring) Add(c *x509.Certificate) error {
	switch c.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return fmt.Errorf("%w: public key type %v", ErrUnsupported, c.PublicKeyAlgorithm)
	}
	if k.byID == nil {
		k.byID = map[uint32][]*key{}
	}
	e := &key{cert: c, ids: KeyIDs(c), hasSKID: len(c.SubjectKeyId) >= 4}
	k.keys = append(k.keys, e)
	for _, id := range e.ids {
		k.byID[id] = append(k.byID[id], e)
	}
	return nil
}

// KeyIDList returns every key id in the keyring, ascending.
func (k *Keyring) KeyIDList() []uint32 {
	out := make([]uint32, 0, len(k.byID))
	for id := range k.byID {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Verify checks an IMA signature (security.ima bytes or a .sig file) over a
// file whose digest under hash is fileDigest. hash must be the signature's
// own hash algorithm (a caller learns it from ParseSignature). Errors:
// ErrMalformed, ErrUnsupported, ErrHashMismatch, ErrUnknownKey,
// ErrBadSignature.
func (k *Keyring) Verify(fileDigest []byte, hash crypto.Hash, sig []byte) error {
	s, err := ParseSignature(sig)
	if err != nil {
		return err
	}
	return k.VerifySignature(fileDigest, hash, s)
}

// VerifySignature is Verify for an already parsed signature.
func (k *Keyring) VerifySignature(fileDigest []byte, hash crypto.Hash, s *Signature) error {
	_, err := k.verify(fileDigest, hash, s)
	return err
}

// verify is VerifySignature returning the certificate that verified.
func (k *Keyring) verify(fileDigest []byte, hash crypto.Hash, s *Signature) (*x509.Certificate, error) {
	h, err := s.Hash()
	if err != nil {
		return nil, err
	}
	if h != hash {
		return nil, fmt.Errorf("%w: signature uses %s, digest is %v", ErrHashMismatch, s.HashAlgo, hash)
	}
	if len(fileDigest) != h.Size() {
		return nil, fmt.Errorf("%w: %v digest of %d bytes", ErrMalformed, h, len(fileDigest))
	}
	var cands []*key
	if k != nil {
		for _, c := range k.byID[s.KeyID] {
			if !k.SKIDOnly || (c.hasSKID && c.ids[0] == s.KeyID) {
				cands = append(cands, c)
			}
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("%w: key id %08x", ErrUnknownKey, s.KeyID)
	}
	signed := s.signedDigest(h, fileDigest)
	var errs []error
	for _, c := range cands {
		var ok bool
		switch pub := c.cert.PublicKey.(type) {
		case *rsa.PublicKey:
			ok = rsa.VerifyPKCS1v15(pub, h, signed, s.Sig) == nil
		case *ecdsa.PublicKey:
			ok = ecdsa.VerifyASN1(pub, signed, s.Sig)
		}
		if ok {
			return c.cert, nil
		}
		errs = append(errs, fmt.Errorf("%s", c.cert.Subject.String()))
	}
	return nil, fmt.Errorf("%w: key id %08x (tried %v)", ErrBadSignature, s.KeyID, errors.Join(errs...))
}
