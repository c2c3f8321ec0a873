package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// URootCore are the u-root commands every u-root guest holds: u-root's
// core command set (github.com/u-root/u-root/cmds/core/*) at the version
// go.mod requires, init included.
const URootCore = "github.com/u-root/u-root/cmds/core/*"

// URoot describes a u-root initramfs built by u-root's own builder
// (mkuimage's uimage, as the u-root command of the pinned release uses it):
// one busybox binary holding u-root's core commands and Commands, with
// u-root's init as /init.
type URoot struct {
	// Commands are further Go main packages for the busybox, as import
	// paths or paths relative to the repository root ("./cmd/gokexec").
	Commands []string
	// Uinit is the command u-root's init runs (a busybox command name),
	// with UinitArgs.
	Uinit     string
	UinitArgs []string
	// Files are host files to add: guest path (relative or absolute) ->
	// host path.
	Files map[string]string
	// NoCore leaves u-root's core commands out (only init and Commands).
	NoCore bool
}

// uroot builds are serialized: the builder runs the go command in the
// repository and writes under one temporary directory per build.
var urootMu sync.Mutex

// BuildURoot writes the initramfs described by u to out (an uncompressed
// newc cpio) for amd64. The build's log is returned with an error.
func BuildURoot(ctx context.Context, u URoot, out string) error {
	urootMu.Lock()
	defer urootMu.Unlock()
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "gokexec-uroot-")
	if err != nil {
		return fmt.Errorf("qemu: u-root: %w", err)
	}
	defer os.RemoveAll(tmp)
	var log bytes.Buffer
	l := llog.New(slog.LevelInfo, func(format string, v ...any) { fmt.Fprintf(&log, format+"\n", v...) })
	cmds := []string{"github.com/u-root/u-root/cmds/core/init"}
	if !u.NoCore {
		cmds = []string{URootCore}
	}
	for _, c := range u.Commands {
		if rel, ok := strings.CutPrefix(c, "./"); ok {
			c = modulePath + "/" + rel
		}
		cmds = append(cmds, c)
	}
	mod, err := urootModule(ctx, root, cmds)
	if err != nil {
		return err
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.WithWorkingDir(mod))
	var files []string
	for _, g := range sortedKeys(u.Files) {
		files = append(files, u.Files[g]+":"+strings.TrimPrefix(g, "/"))
	}
	mods := []uimage.Modifier{
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithCPIOOutput(out),
		uimage.WithInit("init"),
		uimage.WithBusyboxCommands(cmds...),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
	}
	if u.Uinit != "" {
		mods = append(mods, uimage.WithUinit(u.Uinit, u.UinitArgs...))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := uimage.Create(l, mods...); err != nil {
		return fmt.Errorf("qemu: u-root: %w\n%s", err, lastN(log.String(), 40))
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// modulePath is this repository's module; localVersion is the version
// the u-root module requires it at (replaced by the working tree).
const (
	modulePath   = "github.com/gokexec/gokexec"
	localVersion = "v0.0.0-00010101000000-000000000000"
)

// urootModule returns a module directory from which every package of cmds
// resolves: it requires u-root at the version this repository's go.mod
// requires and this repository itself (replaced by the working tree), and
// holds the go.sum entries of every module the commands import (fetched
// through the Go module proxy once, then cached under CacheDir, keyed by
// the u-root version, go.mod and the command list). This repository's
// go.mod stays free of the requirements of u-root's commands.
func urootModule(ctx context.Context, root string, cmds []string) (string, error) {
	gobin, err := lookTool("go")
	if err != nil {
		return "", err
	}
	goCmd := func(dir string, args ...string) (string, error) {
		c := exec.CommandContext(ctx, gobin, args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		b, err := c.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("qemu: u-root: go %s: %w\n%s", strings.Join(args, " "), err, lastN(string(b), 20))
		}
		return strings.TrimSpace(string(b)), nil
	}
	uver, err := goCmd(root, "list", "-m", "-f", "{{.Version}}", "github.com/u-root/u-root")
	if err != nil {
		return "", err
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	goVer, err := goCmd(root, "list", "-m", "-f", "{{.GoVersion}}", modulePath)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", uver, gomod, strings.Join(cmds, "\n"))
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "uroot-module", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	modfile := fmt.Sprintf("module gokexec.test/uroot\n\ngo %s\n\nrequire (\n\tgithub.com/u-root/u-root %s\n\t%s %s\n)\n\nreplace %s => %s\n",
		goVer, uver, modulePath, localVersion, modulePath, root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(modfile), 0o644); err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	args := []string{"get"}
	for _, c := range cmds {
		switch {
		case strings.HasSuffix(c, "/*"):
			c = strings.TrimSuffix(c, "/*") + "/..."
		}
		if strings.HasPrefix(c, modulePath+"/") {
			continue // resolved through the replace; its sums come below
		}
		if strings.HasPrefix(c, "github.com/u-root/u-root/") {
			c += "@" + uver
		}
		args = append(args, c)
	}
	if _, err := goCmd(dir, args...); err != nil {
		return "", err
	}
	// This repository's packages need the modules of its own go.sum.
	ours, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	theirs, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), append(append(theirs, '\n'), ours...), 0o644); err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("qemu: u-root: %w", err)
	}
	return dir, nil
}
