// Package testkernel builds stand-in x86 kernel images for tests: the real
// setup sectors of a Debian kernel (committed under bzimage/testdata)
// followed by as many filler bytes as its header says the compressed kernel
// has. The boot-protocol code never reads those bytes, so the result parses
// exactly as the real kernel does. Test-only; never linked into a command.
package testkernel

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Debian kernels whose setup sectors are committed.
const (
	Deb61  = "debian-6.1.0-56-cloud-amd64.setup"
	Deb612 = "debian-6.12.117+deb12-cloud-amd64.setup"
)

// Names lists every committed setup-sector file.
var Names = []string{Deb61, Deb612}

func dir() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..", "bzimage", "testdata")
}

// Bytes returns the stand-in image for name, filled with fill.
func Bytes(t testing.TB, name string, fill byte) []byte {
	t.Helper()
	setup, err := os.ReadFile(filepath.Join(dir(), name))
	if err != nil {
		t.Fatal(err)
	}
	sys := binary.LittleEndian.Uint32(setup[0x1f4:]) * 16
	return append(append([]byte(nil), setup...), bytes.Repeat([]byte{fill}, int(sys))...)
}

// File writes the stand-in image for name into a temporary directory and
// returns its path.
func File(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(p, Bytes(t, name, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
