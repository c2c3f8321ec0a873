package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
)

// AgentPackage is the import path of the guest agent, relative to the
// repository root, as BuildGuestBinaries takes it.
const AgentPackage = "./qemu/agent"

var buildCache = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// BuildGuestBinaries builds the given main packages (paths relative to the
// repository root, like "./qemu/agent" or "./cmd/gokexec") for amd64 guests:
// static (CGO_ENABLED=0), -trimpath, stripped. It returns package -> binary
// path. Results are cached for the life of the process; a package built once
// is not rebuilt (its binary stays where it was first written).
func BuildGuestBinaries(ctx context.Context, outDir string, pkgs ...string) (map[string]string, error) {
	return BuildGuest(ctx, "amd64", outDir, pkgs...)
}

// BuildGuest is BuildGuestBinaries for a given GOARCH ("amd64", "arm64").
func BuildGuest(ctx context.Context, arch, outDir string, pkgs ...string) (map[string]string, error) {
	gobin, err := lookTool("go")
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: build: %w", err)
	}
	buildCache.Lock()
	defer buildCache.Unlock()
	out := map[string]string{}
	for _, pkg := range pkgs {
		key := arch + " " + pkg
		if p, ok := buildCache.m[key]; ok {
			if _, err := os.Stat(p); err == nil {
				out[pkg] = p
				continue
			}
		}
		bin, err := filepath.Abs(filepath.Join(outDir, arch+"-"+path.Base(pkg)))
		if err != nil {
			return nil, fmt.Errorf("qemu: build: %w", err)
		}
		c := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if b, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu: go build %s for %s: %w\n%s", pkg, arch, err, b)
		}
		buildCache.m[key] = bin
		out[pkg] = bin
	}
	return out, nil
}
