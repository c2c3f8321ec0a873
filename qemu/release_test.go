package qemu

import (
	"errors"
	"strings"
	"testing"
)

func TestKernelRelease(t *testing.T) {
	for _, name := range []string{Deb61AMD64, Deb612AMD64} {
		k, err := Kernel(name)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := KernelPackage(name)
		if err != nil {
			t.Fatal(err)
		}
		rel, err := KernelRelease(k)
		if err != nil {
			t.Fatal(err)
		}
		// Debian names the image package after the release.
		if want := strings.TrimPrefix(pkg, "linux-image-"); rel != want {
			t.Errorf("%s: release %q, package says %q", name, rel, want)
		}
	}
	if _, err := kernelRelease([]byte("not a kernel")); !errors.Is(err, ErrNoRelease) {
		t.Errorf("garbage: got %v, want ErrNoRelease", err)
	}
}
