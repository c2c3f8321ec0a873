package appraise

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// MinRSABits is the smallest RSA modulus a signature may be verified with
// in ModeEnforce.
const MinRSABits = 2048

// ParseCertificate parses one DER certificate with crypto/x509. The
// certificate's own signature, validity period and chain are not checked:
// a certificate given to LoadCerts is trusted because the operator named
// it, as the kernel trusts the keys on its .ima keyring. Errors wrap
// ErrMalformed.
func ParseCertificate(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrMalformed, err)
	}
	return c, nil
}

// keyStrength says why a certificate's key is too weak for enforce, or "".
func keyStrength(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return fmt.Sprintf("RSA key of %d bits (at least %d required)", n, MinRSABits)
		}
	case *ecdsa.PublicKey:
	}
	return ""
}
