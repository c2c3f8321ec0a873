package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// Files: the command line's way to make Inputs and an appraisal policy
// from paths. Nothing in Load, Finalize or Exec uses these; a bootloader
// that has its inputs in memory (or as open files) never needs them.

// resolve returns path made absolute with every symbolic link resolved.
func resolve(what, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err == nil {
		var r string
		if r, err = filepath.EvalSymlinks(abs); err == nil {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: path, Err: err})
}

// FileInput reads the file at path as an Input: the path is resolved
// (filepath.Abs, filepath.EvalSymlinks) and the resolved file read once,
// through one descriptor that does not follow a link in its last
// component, from a regular file of at most max bytes (kexec.ReadResolved).
// The resolved name is the Input's Name and Path. With signature set, the
// file's IMA signature is looked up (security.ima, else PATH.sig) for
// appraisal. what names the input in errors ("kernel", "--initrd").
func FileInput(what, path string, max int64, signature bool) (Input, error) {
	r, err := resolve(what, path)
	if err != nil {
		return Input{}, err
	}
	b, err := kexec.ReadResolved(what, r, max)
	if err != nil {
		return Input{}, fmt.Errorf("%w: %w", plan.ErrInput, err)
	}
	in := Input{Name: r, Path: r, R: bytes.NewReader(b)}
	if signature {
		if in.Signature, err = SignatureOf(r); err != nil {
			return Input{}, err
		}
	}
	return in, nil
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
	for _, a := range allowlists {
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

// FileImage reads kernel, initrd and dtb (either may be "") as FileInput
// does, with signatures looked up when sign is set.
func FileImage(kernel, initrd, dtb, cmdline string, sign bool) (Image, error) {
	img := Image{Cmdline: cmdline}
	if kernel == "" {
		return img, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	var err error
	if img.Kernel, err = FileInput("kernel", kernel, kexec.MaxKernelBytes, sign); err != nil {
		return img, err
	}
	if initrd != "" {
		if img.Initrd, err = FileInput("--initrd", initrd, kexec.MaxInitrdBytes, sign); err != nil {
			return img, err
		}
	}
	if dtb != "" {
		if img.DTB, err = FileInput("--dtb", dtb, kexec.MaxDTBBytes, sign); err != nil {
			return img, err
		}
	}
	return img, nil
}
