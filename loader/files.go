package loader

import (
	"fmt"
	"path/filepath"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// Files: the command line's way to make Inputs from paths. Nothing in Load, Finalize or Exec uses these; a bootloader
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
// The resolved name is the Input's Name and Path. what names the input in
// errors ("kernel", "initrd").
func FileInput(what, path string, max int64) (Input, error) {
	r, err := resolve(what, path)
	if err != nil {
		return Input{}, err
	}
	b, err := kexec.ReadResolved(what, r, max)
	if err != nil {
		return Input{}, fmt.Errorf("%w: %w", plan.ErrInput, err)
	}
	in := Bytes(r, b) // read once, used as read
	in.Path = r
	return in, nil
}

// FileImage reads kernel, initrd and dtb (either may be "") as FileInput
// does.
func FileImage(kernel, initrd, dtb, cmdline string) (Image, error) {
	return imageOf(kernel, initrd, dtb, cmdline, func(what, path, _ string, max int64) (Input, error) {
		return FileInput(what, path, max)
	})
}

// imageOf makes an Image of the files kernel, initrd and dtb (either of
// the last two may be ""), each made an Input by input with what names
// it in errors, the name of its kept file in a StateDir, and its size
// bound.
func imageOf(kernel, initrd, dtb, cmdline string, input func(what, path, kept string, max int64) (Input, error)) (Image, error) {
	img := Image{Cmdline: cmdline}
	if kernel == "" {
		return img, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	var err error
	if img.Kernel, err = input("kernel", kernel, kernelFile, kexec.MaxKernelBytes); err != nil {
		return img, err
	}
	if initrd != "" {
		if img.Initrd, err = input("initrd", initrd, initrdFile, kexec.MaxInitrdBytes); err != nil {
			return img, err
		}
	}
	if dtb != "" {
		if img.DTB, err = input("device tree", dtb, dtbFile, kexec.MaxDTBBytes); err != nil {
			return img, err
		}
	}
	return img, nil
}
