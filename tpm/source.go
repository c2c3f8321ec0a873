package tpm

import (
	"crypto"
	"errors"
	"fmt"
	"os"
)

// PCRs is the part of a TPM the loader's finalize uses. It is an alias of
// an interface literal, identical to package loader's TPM, so Source
// satisfies loader.TPMs without this package importing the loader.
type PCRs = interface {
	ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error)
	Extend(pcr uint32, digests map[crypto.Hash][]byte) error
	Close() error
}

// NoTPM is the device name of a machine without a TPM.
const NoTPM = "none"

// ErrUnavailable says the TPM a finalize must extend cannot be used.
var ErrUnavailable = errors.New("TPM unavailable")

// Source is the TPM of this machine, for package loader. Device names the
// TPM; "" takes /dev/tpmrm0, then /dev/tpm0, and only when neither exists
// does the machine count as having no TPM.
type Source struct {
	Device string
}

// TPMDevice is the named device (which must exist), the first default
// device that exists, or NoTPM.
func (s *Source) TPMDevice() (string, error) {
	if s.Device != "" {
		if _, err := os.Stat(s.Device); err != nil {
			return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return s.Device, nil
	}
	for _, p := range DefaultDevices {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return NoTPM, nil
}

// OpenTPM opens the TPM. A named device that cannot be opened is an error;
// so is a default device that exists but cannot be opened. It returns nil,
// NoTPM, nil only when the machine has no TPM at all.
func (s *Source) OpenTPM() (PCRs, string, error) {
	dev, err := s.TPMDevice()
	if err != nil || dev == NoTPM {
		return nil, dev, err
	}
	t, err := Open(dev)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s cannot be used: %w", ErrUnavailable, dev, err)
	}
	return t, dev, nil
}
