// Package appraisal plugs package appraise (IMA signatures, digest
// allowlists) into package loader: Appraiser makes a loader.Appraiser of a
// policy, Sign finds the inputs' IMA signatures, and PolicyFiles reads a
// policy from certificate and allowlist files.
//
// It is a package of its own so that a bootloader importing loader
// without appraisal links no certificate or signature code (crypto/x509).
//
// Invariants: the bytes appraised are the bytes the loader read (it hands
// them over); an input is refused only through the policy's errors
// (appraise.ErrNotListed, appraise.ErrBadSignature, ...), which the
// loader wraps; a signature is handed back for the loader's ima-sig entry
// only when it was verified and is made over a sha256 digest.
package appraisal

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
)

// Appraiser is a loader.Appraiser of p; nil when p's mode is off.
func Appraiser(p appraise.Policy) loader.Appraiser {
	if p.Mode == appraise.ModeOff {
		return nil
	}
	return policy{p}
}

type policy struct{ p appraise.Policy }

// Appraise decides on data as p says.
func (a policy) Appraise(name string, data, sig []byte) (loader.Appraisal, error) {
	digests := map[crypto.Hash][]byte{}
	for _, h := range append(a.p.Hashes(sig), crypto.SHA256) {
		if !h.Available() {
			continue
		}
		hh := h.New()
		hh.Write(data)
		digests[h] = hh.Sum(nil)
	}
	d := a.p.Decide(appraise.File{Path: name, Digests: digests, Signature: sig})
	out := loader.Appraisal{Path: name, Pass: d.Pass, Method: d.Method, Reason: d.Reason}
	if d.Pass && d.Method == "signature" {
		// The loader's entries carry sha256 d-ng digests: only a
		// signature over a sha256 digest makes a self-consistent ima-sig.
		if ps, err := appraise.ParseSignature(sig); err == nil {
			if h, err := ps.Hash(); err == nil && h == crypto.SHA256 {
				out.Signature = sig
			}
		}
	}
	return out, d.Error()
}

// Sign looks up the IMA signatures of img's inputs that came from files
// (Input.Path): security.ima, else PATH.sig.
func Sign(img *loader.Image) error {
	for _, in := range []*loader.Input{&img.Kernel, &img.Initrd, &img.DTB} {
		if in.Path == "" {
			continue
		}
		sig, err := SignatureOf(in.Path)
		if err != nil {
			return err
		}
		in.Signature = sig
	}
	return nil
}

// SignatureOf finds a file's IMA signature: its security.ima attribute if
// that holds a signature, else a detached PATH.sig as evmctl --sigfile
// writes it; nil when it has neither. The signature itself is verified by
// appraisal, so PATH.sig may be a link.
func SignatureOf(path string) ([]byte, error) {
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

// PolicyFiles builds an appraisal policy from certificate files (PEM or
// DER) and allowlist files (sha256sum output or keylime runtime policy
// JSON), each read once within its bound.
func PolicyFiles(mode appraise.Mode, keys, allowlists []string) (appraise.Policy, error) {
	p := appraise.Policy{Mode: mode}
	if mode == appraise.ModeOff {
		return p, nil
	}
	var certs [][]byte
	for _, k := range keys {
		b, err := kexec.ReadInput("certificate", k, kexec.MaxKeyBytes)
		if err != nil {
			return p, fmt.Errorf("%w: %w", plan.ErrInput, err)
		}
		certs = append(certs, b)
	}
	if len(certs) > 0 {
		kr, err := appraise.LoadCerts(certs...)
		if err != nil {
			return p, fmt.Errorf("%w: certificates: %w", plan.ErrInput, err)
		}
		p.Keyring = kr
	}
	for _, a := range allowlists {
		b, err := kexec.ReadInput("allowlist", a, kexec.MaxAllowlistBytes)
		if err != nil {
			return p, fmt.Errorf("%w: %w", plan.ErrInput, err)
		}
		al, err := appraise.ParseAllowlist(b)
		if err != nil {
			return p, fmt.Errorf("%w: allowlist %s: %w", plan.ErrInput, a, err)
		}
		if p.Allowlist == nil {
			p.Allowlist = al
		} else {
			p.Allowlist.Merge(al)
		}
	}
	return p, nil
}
