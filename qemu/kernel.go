package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// ErrNoModule is wrapped when a kernel's module cannot be found: no modules
// tree beside the kernel and no package to take it from.
var ErrNoModule = errors.New("qemu: kernel module not found")

// ModulesTree returns the lib/modules/<release> directory that belongs to a
// kernel given as a path, when one is beside it as in an unpacked package
// (dpkg-deb -x linux-image-*.deb X: X/boot/vmlinuz-<rel> and
// X/lib/modules/<rel> or X/usr/lib/modules/<rel>) or in the kernel's own
// directory (DIR/vmlinuz and DIR/lib/modules/<rel>). It returns "" and no
// error when there is none.
func ModulesTree(kernel, release string) (string, error) {
	dir := filepath.Dir(kernel)
	var cands []string
	for _, base := range []string{dir, filepath.Dir(dir)} {
		cands = append(cands, filepath.Join(base, "lib", "modules", release), filepath.Join(base, "usr", "lib", "modules", release))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c, nil
		}
	}
	return "", nil
}

// KernelConfigValue returns the value of CONFIG_<name> ("y", "m", or "" when
// unset) from the configuration beside a kernel (DIR/config, as
// scripts/setup.sh leaves it, or DIR/config-<release>, as a package's
// boot/ directory holds it), and whether a configuration was found.
func KernelConfigValue(kernel, release, name string) (string, bool) {
	dir := filepath.Dir(kernel)
	for _, p := range []string{filepath.Join(dir, "config"), filepath.Join(dir, "config-"+release)} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "CONFIG_"+name+"="); ok {
				return v, true
			}
		}
		return "", true
	}
	return "", false
}

// FindModule returns a kernel's module file (e.g. "fs/efivarfs/efivarfs.ko",
// relative to lib/modules/<release>/kernel) uncompressed, for busybox insmod
// (which takes neither .xz nor .zst). It looks in the modules tree beside
// the kernel (ModulesTree) first, then, for a kernel scripts/setup.sh
// fetched (a "package" file beside it), in that Debian package, downloaded
// with apt-get. The uncompressed copy is cached under
// CacheDir()/modules/<release>/. Without either it returns an error
// wrapping ErrNoModule that says where it looked.
func FindModule(kernel, release, rel string) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(cache, "modules", release, filepath.Base(rel))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	tree, err := ModulesTree(kernel, release)
	if err != nil {
		return "", err
	}
	if tree != "" {
		return FindModuleIn(kernel, release, rel, out)
	}
	pb, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), "package"))
	if err != nil {
		return "", fmt.Errorf("%w: %s for %s: no lib/modules/%s beside it and no package file naming its Debian package", ErrNoModule, rel, kernel, release)
	}
	pkg, _, _ := strings.Cut(strings.TrimSpace(string(pb)), ":")
	tmp, err := os.MkdirTemp("", "gkt-module-")
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", pkg)
	dl.Dir = tmp
	if b, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("qemu: apt-get download %s: %v\n%s", pkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("qemu: apt-get download %s: %d packages", pkg, len(debs))
	}
	x := exec.Command("dpkg-deb", "-x", debs[0], filepath.Join(tmp, "x"))
	if b, err := x.CombinedOutput(); err != nil {
		return "", fmt.Errorf("qemu: dpkg-deb -x %s: %v\n%s", debs[0], err, b)
	}
	// The unpacked package is a tree with boot/ and lib/modules/ side by side.
	return FindModuleIn(filepath.Join(tmp, "x", "boot", "vmlinuz"), release, rel, out)
}

// FindModuleIn is FindModule's modules-tree path for a kernel whose tree is
// known to be beside it, writing the uncompressed module to out.
func FindModuleIn(kernel, release, rel, out string) (string, error) {
	tree, _ := ModulesTree(kernel, release)
	if tree == "" {
		return "", fmt.Errorf("%w: no lib/modules/%s beside %s", ErrNoModule, release, kernel)
	}
	src := filepath.Join(tree, "kernel", rel)
	for _, c := range []struct{ ext, cmd string }{{"", "cat"}, {".xz", "xz -dc"}, {".zst", "zstd -qdc"}, {".gz", "gzip -dc"}} {
		if _, err := os.Stat(src + c.ext); err != nil {
			continue
		}
		x := exec.Command("sh", "-c", c.cmd+` "$1" >"$2.tmp" && mv "$2.tmp" "$2"`, "sh", src+c.ext, out)
		if b, err := x.CombinedOutput(); err != nil {
			return "", fmt.Errorf("qemu: uncompressing %s: %v: %s", src+c.ext, err, b)
		}
		return out, nil
	}
	return "", fmt.Errorf("%w: %s has no kernel/%s", ErrNoModule, tree, rel)
}
