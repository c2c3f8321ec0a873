package loader

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// Appraisal is the outcome for one input file, recorded in the state and
// shown by --dry-run.
type Appraisal struct {
	Path      string `json:"path"`
	Pass      bool   `json:"pass"`
	Method    string `json:"method,omitempty"`
	Reason    string `json:"reason"`
	Signature []byte `json:"signature,omitempty"` // the verified IMA signature, for the ima-sig entry
}

// policy builds the appraisal policy from the options (keys and allowlists
// are read here, once).
func (o *Options) policy() (appraise.Policy, error) {
	p := appraise.Policy{Mode: o.Appraise}
	if o.Appraise == appraise.ModeOff {
		return p, nil
	}
	var certs [][]byte
	for _, k := range o.Keys {
		b, err := kexec.ReadInput("--key", k, kexec.MaxKeyBytes)
		if err != nil {
			return p, fmt.Errorf("%w: %w", plan.ErrInput, err)
		}
		certs = append(certs, b)
	}
	if len(certs) > 0 {
		kr, err := appraise.LoadCerts(certs...)
		if err != nil {
			return p, fmt.Errorf("%w: --key: %w", plan.ErrInput, err)
		}
		p.Keyring = kr
	}
	for _, a := range o.Allowlists {
		b, err := kexec.ReadInput("--allowlist", a, kexec.MaxAllowlistBytes)
		if err != nil {
			return p, fmt.Errorf("%w: %w", plan.ErrInput, err)
		}
		al, err := appraise.ParseAllowlist(b)
		if err != nil {
			return p, fmt.Errorf("%w: --allowlist %s: %w", plan.ErrInput, a, err)
		}
		if p.Allowlist == nil {
			p.Allowlist = al
		} else {
			p.Allowlist.Merge(al)
		}
	}
	return p, nil
}

// signatureOf finds a file's IMA signature: its security.ima attribute if
// that holds a signature, else a detached PATH.sig as evmctl --sigfile
// writes it. path is already resolved; the signature itself is verified,
// so PATH.sig may be a link.
func signatureOf(path string) ([]byte, error) {
	x, err := kexec.IMAXattr(path)
	if err != nil {
		return nil, err
	}
	if len(x) > 0 && x[0] == 0x03 { // EVM_IMA_XATTR_DIGSIG; a bare hash (0x04) vouches for nothing
		return x, nil
	}
	b, err := kexec.ReadInput("signature", path+".sig", kexec.MaxSignatureBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plan.ErrInput, err)
	}
	return b, nil
}

// appraiseFile appraises the bytes that were read from path.
func appraiseFile(p appraise.Policy, path string, data []byte) (Appraisal, error) {
	sig, err := signatureOf(path)
	if err != nil {
		return Appraisal{}, err
	}
	digests := map[crypto.Hash][]byte{}
	for _, h := range append(p.Hashes(sig), crypto.SHA256) {
		if !h.Available() {
			continue
		}
		hh := h.New()
		hh.Write(data)
		digests[h] = hh.Sum(nil)
	}
	d := p.Decide(appraise.File{Path: path, Digests: digests, Signature: sig})
	a := Appraisal{Path: path, Pass: d.Pass, Method: d.Method, Reason: d.Reason}
	if d.Pass && d.Method == "signature" {
		a.Signature = sig
	}
	return a, d.Error()
}
