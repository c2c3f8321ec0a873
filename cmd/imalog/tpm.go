package main

import (
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/tpm"
)

// readTPM reads PCRs 0..tpm.MaxPCR of every active bank from the TPM at dev
// ("" tries the default devices).
func readTPM(dev string) (ima.PCRValues, error) {
	pcrs := make([]uint32, 0, tpm.MaxPCR+1)
	for p := uint32(0); p <= tpm.MaxPCR; p++ {
		pcrs = append(pcrs, p)
	}
	t, err := tpm.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("--tpm: %w", err)
	}
	defer t.Close()
	v, err := t.ReadPCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("--tpm: %w", err)
	}
	return ima.PCRValues(v), nil
}
