package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ErrNoKernel is wrapped when a kernel is not in the cache.
var ErrNoKernel = errors.New("qemu: kernel not found")

// Kernel cache names fetched by scripts/setup.sh.
const (
	Deb61AMD64  = "deb61-amd64"
	Deb612AMD64 = "deb612-amd64"
	Deb61ARM64  = "deb61-arm64"
)

// RepoRoot finds the module root (the directory holding go.mod) from the
// current directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("qemu: no go.mod above the current directory")
		}
		dir = parent
	}
}

// CacheDir is $GOKEXEC_CACHE or <repo>/build/cache.
func CacheDir() (string, error) {
	if d := os.Getenv("GOKEXEC_CACHE"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "build", "cache"), nil
}

// Kernel returns the path of the cached vmlinuz for a cache name such as
// "deb61-amd64". A name that contains a path separator is taken as a path.
func Kernel(name string) (string, error) {
	if strings.ContainsRune(name, filepath.Separator) {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoKernel, err)
		}
		return name, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, "kernels", name, "vmlinuz")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: %s (run: bash scripts/setup.sh): %v", ErrNoKernel, name, err)
	}
	return p, nil
}

// KernelPackage returns the Debian package name recorded next to a cached
// kernel (the "package" file scripts/setup.sh writes), without any
// ":arch" qualifier.
func KernelPackage(name string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(cache, "kernels", name, "package"))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNoKernel, name, err)
	}
	pkg, _, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	return pkg, nil
}

// TestKernels returns the first kernel (GOKEXEC_TEST_KERNEL, default
// deb61-amd64) and the kexec target (GOKEXEC_TEST_KERNEL2, default
// deb612-amd64). Either variable may hold a cache name or a path.
func TestKernels() (first, second string, err error) {
	n1 := os.Getenv("GOKEXEC_TEST_KERNEL")
	if n1 == "" {
		n1 = Deb61AMD64
	}
	n2 := os.Getenv("GOKEXEC_TEST_KERNEL2")
	if n2 == "" {
		n2 = Deb612AMD64
	}
	if first, err = Kernel(n1); err != nil {
		return "", "", err
	}
	if second, err = Kernel(n2); err != nil {
		return "", "", err
	}
	return first, second, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ArtifactsDir returns $GOKEXEC_ARTIFACTS/<sanitized test name> (default
// <repo>/build/artifacts/...), removed and created fresh. Failures are fatal
// to the test.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("GOKEXEC_ARTIFACTS")
	if base == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(root, "build", "artifacts")
	}
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(base, name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("qemu: artifacts: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("qemu: artifacts: %v", err)
	}
	return dir
}

// ErrMissingTool is wrapped when a host program is not installed.
var ErrMissingTool = errors.New("qemu: missing host tool")

// toolPackages maps host programs to the Debian package that provides them.
var toolPackages = map[string]string{
	"qemu-system-x86_64":  "qemu-system-x86",
	"qemu-system-aarch64": "qemu-system-arm",
	"swtpm":               "swtpm",
	"swtpm_setup":         "swtpm-tools",
	"ldd":                 "libc-bin",
	"go":                  "golang (Go toolchain in PATH)",
}

// lookTool finds a host program or says which package to install.
func lookTool(name string) (string, error) {
	p, err := lookPath(name)
	if err != nil {
		pkg := toolPackages[name]
		if pkg == "" {
			pkg = "?"
		}
		return "", fmt.Errorf("%w: %s not in PATH; install Debian package %s (bash scripts/setup.sh does)", ErrMissingTool, name, pkg)
	}
	return p, nil
}
