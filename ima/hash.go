package ima

import (
	"crypto"
	_ "crypto/md5"    // register for d-ng digests and NewFileEntry
	_ "crypto/sha1"   // register
	_ "crypto/sha256" // register
	_ "crypto/sha3"   // register
	_ "crypto/sha512" // register
	"fmt"
	"strings"
)

// kernelHashNames maps Go hashes to the kernel's hash_algo_name strings.
var kernelHashNames = map[crypto.Hash]string{
	crypto.MD5:      "md5",
	crypto.SHA1:     "sha1",
	crypto.SHA224:   "sha224",
	crypto.SHA256:   "sha256",
	crypto.SHA384:   "sha384",
	crypto.SHA512:   "sha512",
	crypto.SHA3_256: "sha3-256",
	crypto.SHA3_384: "sha3-384",
	crypto.SHA3_512: "sha3-512",
}

// HashName returns the kernel's name of h ("sha256"), or "" if unknown.
func HashName(h crypto.Hash) string { return kernelHashNames[h] }

// ParseHashName maps a kernel or TPM tool bank name ("sha256", "SHA256",
// "sha3_256") to a crypto.Hash.
func ParseHashName(s string) (crypto.Hash, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-")
	for h, name := range kernelHashNames {
		if name == n {
			return h, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupportedHash, s)
}

// bankForSize guesses a PCR bank from a digest size (evmctl's rule when no
// bank is named).
func bankForSize(n int) (crypto.Hash, bool) {
	switch n {
	case 20:
		return crypto.SHA1, true
	case 32:
		return crypto.SHA256, true
	case 48:
		return crypto.SHA384, true
	case 64:
		return crypto.SHA512, true
	}
	return 0, false
}

func checkBank(h crypto.Hash) error {
	if HashName(h) == "" || !h.Available() {
		return fmt.Errorf("%w: bank %v", ErrUnsupportedHash, h)
	}
	return nil
}
