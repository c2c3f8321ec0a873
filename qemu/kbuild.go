package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// IMAKexecAMD64 is the cache name of the self-built test kernel: Debian
// unstable's newest linux-source-* package, tinyconfig plus
// scripts/kernel-imakexec.config, with CONFIG_IMA_KEXEC=y, so that the
// kernel hands its IMA list over across kexec_file_load and writes its own
// kexec_load/kexec_execute markers. scripts/build-kernel.sh builds it
// (scripts/setup.sh calls it) into KernelBuildCache and links it into the
// harness cache under this name, where Kernel finds it.
const IMAKexecAMD64 = "imakexec-amd64"

// KernelBuildCache is where built kernels are kept across clones and CI
// runs on the same machine: $GOKEXEC_KCACHE, default
// /var/cache/gokexec/kernels. Each build lives in a directory named by
// source package, version and a digest of the config inputs.
func KernelBuildCache() string {
	if d := os.Getenv("GOKEXEC_KCACHE"); d != "" {
		return d
	}
	return "/var/cache/gokexec/kernels"
}

// BuiltKernel describes a kernel made by scripts/build-kernel.sh.
type BuiltKernel struct {
	Path          string            // the bzImage
	SourcePackage string            // e.g. linux-source-7.2
	SourceVersion string            // e.g. 7.2.13-1
	ConfigDigest  string            // 12 hex digits of the config inputs' SHA-256
	Config        map[string]string // CONFIG_X -> value ("y", "0", `"ima-sig"`)
	BuildSeconds  int               // cold build: fetch, unpack, configure, compile
}

// ErrKernelBuild is wrapped when the test kernel cannot be built.
var ErrKernelBuild = errors.New("qemu: building the test kernel")

// IMAKexecKernel returns the self-built kernel, building it first with
// scripts/build-kernel.sh when it is not in the cache (a cached build
// returns at once; concurrent callers wait on the script's lock). The
// build needs the packages scripts/setup.sh installs and access to Debian's
// archive on a cold cache.
func IMAKexecKernel(ctx context.Context) (*BuiltKernel, error) {
	if k, err := LoadBuiltKernel(IMAKexecAMD64); err == nil {
		return k, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "build-kernel.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: scripts/build-kernel.sh: %w\n%s", ErrKernelBuild, err, lastLinesOf(out.String(), 30))
	}
	return LoadBuiltKernel(IMAKexecAMD64)
}

// LoadBuiltKernel reads a built kernel linked into the harness cache under
// name: its bzImage, the "package" line ("<source package> <version>
// <config digest>"), its .config and build-seconds.
func LoadBuiltKernel(name string) (*BuiltKernel, error) {
	p, err := Kernel(name)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(p)
	b, err := os.ReadFile(filepath.Join(dir, "package"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoKernel, name, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return nil, fmt.Errorf("%w: %s: package file %q is not \"<package> <version> <digest>\"", ErrNoKernel, name, bytes.TrimSpace(b))
	}
	k := &BuiltKernel{Path: p, SourcePackage: f[0], SourceVersion: f[1], ConfigDigest: f[2]}
	if k.Config, err = ReadKernelConfig(filepath.Join(dir, "config")); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoKernel, name, err)
	}
	if s, err := os.ReadFile(filepath.Join(filepath.Dir(real), "build-seconds")); err == nil {
		fmt.Sscan(string(s), &k.BuildSeconds)
	}
	return k, nil
}

// ReadKernelConfig parses a kernel .config: "CONFIG_X=v" lines into a map;
// "# CONFIG_X is not set" lines and comments are left out, so an option is
// set exactly when it is in the map.
func ReadKernelConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qemu: kernel config: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "CONFIG_") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("qemu: kernel config %s: %w", path, err)
	}
	return m, nil
}

func lastLinesOf(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
