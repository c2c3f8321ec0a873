// Command gokexec loads and boots another Linux kernel, carrying the running
// kernel's IMA measurement list across the soft reboot. It accepts
// kexec-tools' options so it can be installed as kexec.
//
// It is a thin shell over package loader: flags become a Host, an Image
// and loader.Options (options.go), the library does the work, and this
// file prints what it did. Between -l and -e the load is kept in a
// loader.StateDir.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gokexec/gokexec/loader"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func usageErr(format string, a ...any) error {
	return &exitError{2, fmt.Errorf(format, a...)}
}

func run(args []string, stdout, stderr io.Writer) int {
	var c cli
	fs := newFlags(&c)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "gokexec: %v (see gokexec --help)\n", err)
		return 2
	}
	if c.help {
		printHelp(stdout, fs)
		return 0
	}
	if c.showVersion {
		fmt.Fprintf(stdout, "gokexec %s\n", version)
		return 0
	}
	err := dispatch(context.Background(), &c, fs.Args(), stdout, stderr)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil { // nil: a status answer (-S), nothing to say
			fmt.Fprintf(stderr, "gokexec: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "gokexec: %v\n", err)
	return 1
}

func dispatch(ctx context.Context, c *cli, pos []string, stdout, stderr io.Writer) error {
	act, err := c.action(pos)
	if err != nil {
		return err
	}
	dir := loader.StateDir(c.stateDir)
	warn := func(w string) { fmt.Fprintf(stderr, "gokexec: warning: %s\n", w) }
	switch act {
	case actCapture:
		return captureHost(c.host, pos[1])
	case actStatus:
		loaded, err := c.hostFor().KexecLoaded(!c.load)
		if err != nil {
			return &exitError{2, err}
		}
		if loaded {
			return &exitError{1, nil}
		}
		return nil
	case actUnload:
		if err := loader.Unload(ctx, c.hostFor()); err != nil {
			return err
		}
		return dir.Clear()
	case actFinalize:
		_, rep, err := finalizeRecorded(ctx, c, dir, c.hostFor())
		if err != nil {
			return err
		}
		if rep != nil {
			reportFinalize(rep, c.debug, stderr)
		}
		return nil
	case actExec:
		return execLoaded(ctx, c, dir, stderr)
	case actCrashLoad, actCrashDryRun, actCrashUnload:
		return crash(ctx, c, act, pos, stdout, stderr, warn)
	}
	h, img, o, err := c.options(pos[0])
	if err != nil {
		return err
	}
	if act == actDryRun {
		p, err := loader.Plan(ctx, h, img, o)
		if err != nil {
			return err
		}
		if err := writeDTB(c.dtbOut, p); err != nil {
			return err
		}
		return printPlan(p, c.jsonOut, stdout)
	}
	o.Warn = warn
	l, err := loader.Load(ctx, h, img, o)
	if err != nil {
		return err
	}
	if err := dir.Save(l.State()); err != nil {
		_ = l.Unload() // a later -e could not finalize it
		return err
	}
	p := l.Plan()
	if err := writeDTB(c.dtbOut, p); err != nil {
		return err
	}
	reportLoaded(p, c.debug, warn, stderr)
	if act == actLoad {
		return nil
	}
	// No -l (plain "gokexec KERNEL", -f) or -l with -e: boot now.
	return execLoaded(ctx, c, dir, stderr)
}

// finalizeRecorded finalizes the load recorded in dir and records the
// result. No record while an image is loaded: another tool's load,
// nothing to finalize (nil Loaded and Report, no error).
func finalizeRecorded(ctx context.Context, c *cli, dir loader.StateDir, h loader.Host) (*loader.Loaded, *loader.Report, error) {
	loaded, err := h.KexecLoaded(false)
	if err != nil {
		return nil, nil, err
	}
	if !loaded {
		return nil, nil, fmt.Errorf("%w (load one with -l first)", loader.ErrNothingLoaded)
	}
	s, err := dir.Read()
	if errors.Is(err, loader.ErrNoState) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if c.noIMA {
		s.Options.NoIMA = true
	}
	l, err := loader.Resume(h, s)
	if err != nil {
		return nil, nil, err
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !rep.Skipped {
		if err := dir.Save(l.State()); err != nil {
			if rep.Extended {
				return nil, nil, fmt.Errorf("%w (%w)", err, loader.ErrExtended)
			}
			return nil, nil, err
		}
	}
	return l, rep, nil
}

// execLoaded is -e: finalize the recorded load, sync, reboot.
func execLoaded(ctx context.Context, c *cli, dir loader.StateDir, stderr io.Writer) error {
	h := c.hostFor()
	l, rep, err := finalizeRecorded(ctx, c, dir, h)
	if err != nil {
		return fmt.Errorf("-e: %w; not rebooting", err)
	}
	if rep != nil {
		reportFinalize(rep, c.debug, stderr)
	}
	if !c.noSync {
		syncAll()
	}
	if l != nil {
		return l.Exec()
	}
	return h.Reboot() // another tool's load
}
