package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
)

// Actions of -p (kexec -p): load a crash kernel, plan one, unload it. -S
// -p is actStatus, which reads the crash image's state unless -l is given.
const (
	actCrashLoad = 100 + iota
	actCrashDryRun
	actCrashUnload
)

// crashAction checks the flags of a -p command line.
func (c *cli) crashAction(pos []string) (int, error) {
	switch {
	case c.status:
		return actStatus, nil
	case c.unload:
		return actCrashUnload, nil
	case c.exec || c.finalize || c.force:
		return 0, usageErr("-p: a crash kernel boots when the running kernel panics; -e, -f and --finalize are for kernels loaded with -l")
	case c.load:
		return 0, usageErr("-p (crash kernel) and -l exclude each other")
	case len(pos) == 0:
		return 0, usageErr("-p needs a kernel image")
	case c.dryRun:
		return actCrashDryRun, nil
	case c.jsonOut:
		return 0, usageErr("--json goes with --dry-run")
	}
	return actCrashLoad, nil
}

// crash runs a -p action.
func crash(ctx context.Context, c *cli, act int, pos []string, stdout, stderr io.Writer, warn func(string)) error {
	if act == actCrashUnload {
		return loader.UnloadCrash(ctx, c.hostFor())
	}
	h, img, o, err := c.options(pos[0])
	if err != nil {
		return err
	}
	if act == actCrashDryRun {
		p, err := loader.PlanCrash(ctx, h, img, o)
		if err != nil {
			return err
		}
		return printPlan(p, c.jsonOut, stdout)
	}
	o.Warn = warn
	p, err := loader.LoadCrash(ctx, h, img, o)
	if err != nil {
		return err
	}
	reportLoaded(p, c.debug, warn, stderr)
	return nil
}

// captureCrash adds to a capture-host tree what a crash plan reads besides
// /proc/iomem: /sys/kernel/vmcoreinfo, every CPU's crash_notes and
// crash_notes_size, and /proc/kcore's headers (no memory). Files the host
// lacks (no CONFIG_CRASH_DUMP, no root) are left out.
func captureCrash(src, dir string) error {
	put := func(rel string, b []byte) error {
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	}
	copyIf := func(rel string) error {
		b, err := kexec.ReadInput("capture-host", filepath.Join(src, rel), kexec.MaxSmallBytes)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return put(rel, b)
	}
	if err := copyIf("sys/kernel/vmcoreinfo"); err != nil {
		return err
	}
	cpus := "sys/devices/system/cpu"
	ents, err := os.ReadDir(filepath.Join(src, cpus))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "cpu")
		if _, err := strconv.Atoi(n); !ok || err != nil || !e.IsDir() {
			continue
		}
		for _, f := range []string{"crash_notes", "crash_notes_size"} {
			if err := copyIf(filepath.Join(cpus, e.Name(), f)); err != nil {
				return err
			}
		}
	}
	if h, err := kexec.KcoreHeaders(filepath.Join(src, "proc/kcore")); err == nil {
		return put("proc/kcore", h)
	}
	return nil
}
