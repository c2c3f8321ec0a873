package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// ErrNoRelease is wrapped when a kernel image carries no version string
// that KernelRelease understands.
var ErrNoRelease = errors.New("qemu: no kernel release in image")

// KernelRelease returns the release (what `uname -r` prints in a guest booted
// from it) of an x86 bzImage, read from the setup header's kernel_version
// pointer. For other images it looks for the "Linux version " banner.
func KernelRelease(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	return kernelRelease(b)
}

func kernelRelease(b []byte) (string, error) {
	// bzImage: "HdrS" at 0x202, protocol >= 2.00, kernel_version (u16) at
	// 0x20e is an offset from 0x200 to a NUL-terminated string.
	if len(b) >= 0x210 && string(b[0x202:0x206]) == "HdrS" {
		off := int(binary.LittleEndian.Uint16(b[0x20e:])) + 0x200
		if off > 0x200 && off < len(b) {
			s := b[off:]
			if i := bytes.IndexAny(s, " \x00"); i > 0 {
				return string(s[:i]), nil
			}
		}
	}
	if i := bytes.Index(b, []byte("Linux version ")); i >= 0 {
		s := b[i+len("Linux version "):]
		if j := bytes.IndexAny(s, " \x00"); j > 0 {
			return string(s[:j]), nil
		}
	}
	return "", ErrNoRelease
}
