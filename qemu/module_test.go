package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFindModuleBareKernel is issue 22's finding: a GOKEXEC_TEST_KERNEL that
// did not come from scripts/setup.sh (a bare vmlinuz from an unpacked
// package) made every UEFI scenario fail on a missing "package" file. The
// module is now taken from the modules tree beside the kernel, compressed
// or not; without a tree or a package the error says so (ErrNoModule).
func TestFindModuleBareKernel(t *testing.T) {
	t.Setenv("GOKEXEC_CACHE", t.TempDir())
	for _, c := range []struct{ ext, tool string }{{"", ""}, {".xz", "xz"}, {".zst", "zstd"}} {
		x := t.TempDir() // dpkg-deb -x linux-image-*.deb x
		rel := "7.2.13-test" + c.ext
		kernel := filepath.Join(x, "boot", "vmlinuz-"+rel)
		ko := filepath.Join(x, "lib", "modules", rel, "kernel", "fs", "efivarfs", "efivarfs.ko")
		for p, b := range map[string]string{kernel: "kernel", ko: "MODULE\n"} {
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if c.tool != "" {
			if b, err := exec.Command(c.tool, "-q", ko).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v %s (scripts/setup.sh test installs it)", c.tool, err, b)
			}
		}
		got, err := FindModule(kernel, rel, "fs/efivarfs/efivarfs.ko")
		if err != nil {
			t.Fatalf("%q: %v", c.ext, err)
		}
		if b, _ := os.ReadFile(got); string(b) != "MODULE\n" {
			t.Fatalf("%q: module %s holds %q", c.ext, got, b)
		}
	}
	// A bare kernel with no tree and no package: ErrNoModule, no download.
	k := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(k, []byte("kernel"), 0o644)
	if _, err := FindModule(k, "1.0", "fs/efivarfs/efivarfs.ko"); !errors.Is(err, ErrNoModule) {
		t.Fatalf("no tree, no package: %v, want ErrNoModule", err)
	}
	// A configuration beside the kernel tells a built-in efivarfs.
	os.WriteFile(filepath.Join(filepath.Dir(k), "config-1.0"), []byte("CONFIG_EFIVAR_FS=y\n"), 0o644)
	if v, ok := KernelConfigValue(k, "1.0", "EFIVAR_FS"); v != "y" || !ok {
		t.Fatalf("KernelConfigValue = %q, %v", v, ok)
	}
}
