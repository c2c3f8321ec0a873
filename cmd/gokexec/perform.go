package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// perform runs an Action's steps in kexec-tools' order (unload, load,
// finalize, shutdown or exec). Every step looks at a.DryRun: a dry run reads and
// plans what the step would do, prints it, and calls nothing that loads,
// unloads, extends a PCR or reboots.
func perform(ctx context.Context, c *cli, a Action, stdout, stderr io.Writer) error {
	// What a dry run would do goes to stdout, or to stderr when stdout
	// carries the plan as JSON (--json).
	dryOut := stdout
	if c.jsonOut {
		dryOut = stderr
	}
	dry := func(format string, args ...any) {
		fmt.Fprintf(dryOut, "dry run: "+format+"\n", args...)
	}
	switch {
	case a.Capture != "":
		if a.DryRun {
			dry("would copy the host files a plan reads from %s into %s", orRoot(c.host), a.Capture)
			return nil
		}
		return captureHost(c.host, a.Capture)
	case a.PrintCkr:
		return printCkrSize(c, stdout)
	case a.Status:
		loaded, err := c.hostFor().KexecLoaded(a.StatusCrash)
		if err != nil {
			return &exitError{2, err}
		}
		if a.DryRun {
			dry("status only reads: %s image loaded: %v", imageName(a.StatusCrash), loaded)
		}
		if loaded {
			return &exitError{1, nil}
		}
		return nil
	}
	dir := loader.StateDir(c.stateDir)
	warn := func(w string) { fmt.Fprintf(stderr, "gokexec: warning: %s\n", w) }
	// One path for real and dry runs: a dry run goes through the same
	// library calls over a loader.DryRun, which reads every fact from the
	// machine and records the acts (load, unload, TPM extends, reboot)
	// instead of making them. Only the state directory, sync and the
	// shutdown command are this command's own acts, and a dry run skips
	// them here.
	h := c.hostFor()
	var dr *loader.DryRun
	said := 0
	flush := func() { // what the DryRun recorded since the last flush
		if dr == nil {
			return
		}
		for _, act := range dr.Acts[said:] {
			dry("would %s", act)
		}
		said = len(dr.Acts)
	}
	if a.DryRun {
		dr = loader.NewDryRun(h)
		h = dr
		defer flush()
	}
	if a.Unload {
		var err error
		if a.Crash {
			err = loader.UnloadCrash(ctx, h)
		} else {
			err = loader.Unload(ctx, h)
		}
		if err != nil {
			return err
		}
		flush()
		switch {
		case a.DryRun && !a.Crash:
			dry("would forget the load recorded in %s", c.stateDir)
		case !a.Crash:
			if err := dir.Clear(); err != nil {
				return err
			}
		}
	}
	if a.Load {
		if err := c.checkType(a.Kernel); err != nil {
			return err
		}
		var keep loader.StateDir // a real load recorded for -e keeps its inputs
		if !a.DryRun && !a.Crash {
			keep = dir
		}
		_, img, o, release, err := c.options(a.Kernel, keep)
		if err != nil {
			return err
		}
		defer release() // what the state did not take
		var p *plan.Plan
		switch {
		case a.DryRun && a.Crash:
			p, err = loader.PlanCrash(ctx, h, img, o)
		case a.DryRun:
			p, err = loader.Plan(ctx, h, img, o)
		case a.Crash:
			o.Warn = warn
			p, err = loader.LoadCrash(ctx, h, img, o)
		default:
			o.Warn = warn
			var l *loader.Loaded
			if l, err = loader.Load(ctx, h, img, o); err == nil {
				if err = dir.Save(l.State()); err != nil {
					_ = l.Unload() // a later -e could not finalize it
				}
				p = l.Plan()
			}
		}
		if err != nil {
			return err
		}
		if err := writeDTB(c.dtbOut, p); err != nil {
			return err
		}
		if a.DryRun {
			if err := printPlan(p, c.jsonOut, stdout); err != nil {
				return err
			}
		} else {
			reportLoaded(p, c.debug, warn, stderr)
		}
	}
	if (a.Finalize || a.Exec) && a.DryRun && a.Load {
		// The dry load above only planned: there is no load to finalize.
		if a.Crash {
			return fmt.Errorf("only a crash kernel is planned above: %w", loader.ErrNothingLoaded)
		}
		then := ""
		if a.Exec {
			then = ", then reboot into it"
		}
		dry("would finalize the IMA hand-over of the kernel planned above (markers, measurements, TPM extend, self-check)%s", then)
		return nil
	}
	if a.Finalize {
		_, rep, err := finalizeRecorded(ctx, c, dir, h, !a.DryRun)
		if err != nil {
			return err
		}
		if rep != nil {
			reportFinalize(rep, c.debug, stderr)
		}
	}
	if a.Shutdown {
		argv := shutdownCommand()
		if a.DryRun {
			dry("would hand over to an orderly shutdown: %s (it boots the loaded kernel)", strings.Join(argv, " "))
			return nil
		}
		if loaded, err := h.KexecLoaded(false); err != nil {
			return err
		} else if !loaded {
			return loader.ErrNothingLoaded
		}
		return handOver(argv)
	}
	if a.Exec {
		return execLoaded(ctx, c, dir, h, a, stderr)
	}
	return nil
}

func imageName(crash bool) string {
	if crash {
		return "crash"
	}
	return "normal"
}

func orRoot(host string) string {
	if host == "" {
		return "/"
	}
	return host
}

// printCkrSize prints the bytes reserved for a crash kernel (the
// "Crash kernel" ranges of /proc/iomem, all of them: crashkernel=X,high
// adds a low range), as kexec-tools' --print-ckr-size prints its range.
func printCkrSize(c *cli, stdout io.Writer) error {
	f, err := kexec.ReadCrashFacts(c.host, c.memmap, false)
	if errors.Is(err, segment.ErrNoCrashRegion) {
		f, err = &kexec.CrashFacts{}, nil // nothing reserved: 0, as kexec-tools prints
	}
	if err != nil {
		return err
	}
	var n uint64
	for _, r := range f.Regions {
		n += r.Size()
	}
	fmt.Fprintln(stdout, n)
	return nil
}

// finalizeRecorded finalizes the load recorded in dir and, with save,
// records the result. No record while an image is loaded: another tool's
// load, nothing to finalize (nil Loaded and Report, no error).
func finalizeRecorded(ctx context.Context, c *cli, dir loader.StateDir, h loader.Host, save bool) (*loader.Loaded, *loader.Report, error) {
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
	if save && !rep.Skipped {
		if err := dir.Save(l.State()); err != nil {
			if rep.Extended {
				return nil, nil, fmt.Errorf("%w (%w)", err, loader.ErrExtended)
			}
			return nil, nil, err
		}
	}
	return l, rep, nil
}

// execLoaded is -e: finalize the recorded load, sync, reboot (a dry run:
// over h, a DryRun, which records the extends and the reboot; no sync).
func execLoaded(ctx context.Context, c *cli, dir loader.StateDir, h loader.Host, a Action, stderr io.Writer) error {
	l, rep, err := finalizeRecorded(ctx, c, dir, h, !a.DryRun)
	if err != nil {
		return fmt.Errorf("-e: %w; not rebooting", err)
	}
	if rep != nil {
		reportFinalize(rep, c.debug, stderr)
	}
	if a.Sync && !a.DryRun {
		syncAll()
	}
	if l != nil {
		return l.Exec()
	}
	return h.Reboot() // another tool's load
}
