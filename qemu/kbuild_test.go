package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
)

// The self-built kernel is what the issue-18 scenarios rely on: built from
// a Debian linux-source package, with the hand-over and the guest plumbing
// configured in, and a bootable bzImage whose version is the package's.
func TestIMAKexecKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the built kernel (scripts/setup.sh); skipped with -short")
	}
	k, err := IMAKexecKernel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.SourcePackage, "linux-source-") || k.SourceVersion == "" || len(k.ConfigDigest) != 12 {
		t.Fatalf("package line: %+v", k)
	}
	want := map[string]string{
		"CONFIG_IMA_KEXEC": "y", "CONFIG_KEXEC_FILE": "y", "CONFIG_KEXEC": "y", "CONFIG_IMA": "y",
		"CONFIG_TCG_TIS": "y", "CONFIG_TCG_CRB": "y", "CONFIG_SECURITYFS": "y", "CONFIG_SERIAL_8250_CONSOLE": "y",
		"CONFIG_BLK_DEV_INITRD": "y", "CONFIG_KALLSYMS": "y", "CONFIG_IMA_DEFAULT_TEMPLATE": `"ima-sig"`,
		"CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB": "0", "CONFIG_IMA_MEASURE_PCR_IDX": "10",
	}
	for opt, v := range want {
		if got := k.Config[opt]; got != v {
			t.Errorf("%s=%q, want %q", opt, got, v)
		}
	}
	if _, set := k.Config["CONFIG_MODULES"]; set {
		t.Error("CONFIG_MODULES is set; the test kernel has everything built in")
	}
	b, err := os.ReadFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	im, err := bzimage.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", k.Path, err)
	}
	// The setup header's version string starts with the upstream version
	// the Debian package carries (7.2.13 for 7.2.13-1).
	upstream, _, _ := strings.Cut(k.SourceVersion, "-")
	if v := kernelVersionString(b, im); !strings.HasPrefix(v, upstream) {
		t.Errorf("bzImage version %q, package version %s", v, k.SourceVersion)
	}
	real, _ := filepath.EvalSymlinks(k.Path)
	t.Logf("%s %s (config %s): %s, %d bytes, cold build %ds", k.SourcePackage, k.SourceVersion, k.ConfigDigest, real, len(b), k.BuildSeconds)
}

// kernelVersionString reads the NUL-terminated string the setup header's
// kernel_version field (0x20e) points to (offset + 0x200).
func kernelVersionString(b []byte, _ *bzimage.Image) string {
	if len(b) < 0x210 {
		return ""
	}
	off := int(b[0x20e]) | int(b[0x20f])<<8
	off += 0x200
	if off >= len(b) {
		return ""
	}
	end := off
	for end < len(b) && b[end] != 0 && end-off < 256 {
		end++
	}
	return string(b[off:end])
}
