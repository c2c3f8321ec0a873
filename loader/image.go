package loader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// Image is what a bootloader asks to boot: a kernel, optionally an
// initramfs and a device tree, and the command line. Inputs are read
// through io.ReaderAt; nothing needs to be a file.
type Image struct {
	Kernel Input
	Initrd Input // zero: no initramfs
	// DTB is the device tree to start from (arm64); zero takes the
	// running machine's (Host.DeviceTree) when planning for this
	// machine's architecture.
	DTB     Input
	Cmdline string
}

// Input is one input of an Image.
type Input struct {
	// Name is what the input is appraised, recorded and measured as (a
	// path, normally). It must not be empty when R is set.
	Name string
	// R holds the bytes. Its size comes from a Size() int64 method
	// (bytes.Reader, strings.Reader, io.SectionReader) or Stat (os.File);
	// otherwise it is read to io.EOF. Every input has a size bound
	// (kexec.MaxKernelBytes, ...).
	R io.ReaderAt
	// Signature is the input's IMA signature (security.ima or an evmctl
	// --sigfile), for appraisal by signature; nil: none.
	Signature []byte
	// Path, when set, is the resolved file the bytes came from. A
	// kexec_file_load without appraisal then hands the kernel that file
	// (after checking it still holds the same bytes), so the kernel's own
	// IMA measures it under its name; otherwise it gets a sealed memfd.
	// A two-process load (State) re-reads inputs from their paths.
	Path string
}

// Bytes is an Input holding b. The loader uses b itself (no copy): the
// caller must not change it while the image is loaded.
func Bytes(name string, b []byte) Input {
	return Input{Name: name, R: held{bytes.NewReader(b), b}}
}

// held is a reader over bytes already in memory, which read takes as they
// are instead of copying them.
type held struct {
	*bytes.Reader
	b []byte
}

func (h held) heldBytes() []byte { return h.b }

// present reports whether the input was given.
func (in Input) present() bool { return in.R != nil }

// read reads the whole input, within max bytes.
func (in Input) read(what string, max int64) ([]byte, error) {
	if in.Name == "" {
		return nil, fmt.Errorf("%w: %s has no name", plan.ErrInput, what)
	}
	if h, ok := in.R.(interface{ heldBytes() []byte }); ok {
		b := h.heldBytes()
		if int64(len(b)) > max {
			return nil, fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: in.Name, Err: fmt.Errorf("%w (%d bytes at most)", kexec.ErrTooLarge, max)})
		}
		return b, nil
	}
	size := int64(-1)
	switch r := in.R.(type) {
	case interface{ Size() int64 }:
		size = r.Size()
	case *os.File:
		if st, err := r.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			size = st.Size()
		}
	}
	tooLarge := func() error {
		return fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: in.Name, Err: fmt.Errorf("%w (%d bytes at most)", kexec.ErrTooLarge, max)})
	}
	if size > max {
		return nil, tooLarge()
	}
	if size >= 0 {
		b := make([]byte, size)
		n, err := in.R.ReadAt(b, 0)
		if n == len(b) {
			return b, nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: in.Name, Err: err})
	}
	b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(in.R, 0, max+1), max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: in.Name, Err: err})
	}
	if int64(len(b)) > max {
		return nil, tooLarge()
	}
	return b, nil
}
