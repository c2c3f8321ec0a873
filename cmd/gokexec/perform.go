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
// shutdown or exec). Every step looks at a.DryRun: a dry run reads and
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
	if a.Unload {
		h := c.hostFor()
		switch {
		case a.DryRun:
			now := "unknown"
			if loaded, err := h.KexecLoaded(a.Crash); err == nil {
				now = fmt.Sprint(loaded)
			}
			dry("would unload the %s image (loaded now: %s)%s", imageName(a.Crash), now, map[bool]string{false: " and forget the load recorded in " + c.stateDir, true: ""}[a.Crash])
		case a.Crash:
			if err := loader.UnloadCrash(ctx, h); err != nil {
				return err
			}
		default:
			if err := dir.Unload(ctx, h); err != nil {
				return err
			}
		}
	}
	if a.Load {
		if err := c.checkType(a.Kernel); err != nil {
			return err
		}
		h, img, o, err := c.options(a.Kernel)
		if err != nil {
			return err
		}
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
			if l, err = dir.LoadImage(ctx, h, img, o); err == nil {
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
	if a.Finalize {
		if a.DryRun {
			return dryExec(c, dir, a, false, dry)
		}
		rep, err := dir.Finalize(ctx, c.hostFor(), c.noIMA)
		if err != nil {
			return err
		}
		reportFinalize(rep, c.debug, stderr)
	}
	if a.Shutdown {
		argv := shutdownCommand()
		if a.DryRun {
			dry("would hand over to an orderly shutdown: %s (it boots the loaded kernel)", strings.Join(argv, " "))
			return nil
		}
		if loaded, err := c.hostFor().KexecLoaded(false); err != nil {
			return err
		} else if !loaded {
			return loader.ErrNothingLoaded
		}
		return handOver(argv)
	}
	if a.Exec {
		if a.DryRun {
			return dryExec(c, dir, a, true, dry)
		}
		return execLoaded(ctx, c, dir, stderr)
	}
	return nil
}

// dryExec tells what -e (reboot true) or --finalize would do with the
// load recorded in dir, reading the state and the kernel's
// kexec_loaded only.
func dryExec(c *cli, dir loader.StateDir, a Action, reboot bool, dry func(string, ...any)) error {
	then := ""
	if reboot {
		if a.Sync {
			then = ", sync file systems"
		}
		then += ", then reboot into it (reboot LINUX_REBOOT_CMD_KEXEC)"
	}
	if a.Load { // the image the dry load above planned
		if a.Crash {
			return fmt.Errorf("only a crash kernel is loaded above: %w", loader.ErrNothingLoaded)
		}
		dry("would finalize the IMA hand-over of the kernel planned above (markers, measurements, TPM extend, self-check)%s", then)
		return nil
	}
	loaded, err := c.hostFor().KexecLoaded(false)
	if err != nil {
		return err
	}
	if a.Unload && !a.Crash { // the dry unload above
		return fmt.Errorf("the unload above leaves nothing to boot: %w", loader.ErrNothingLoaded)
	}
	s, err := dir.Load()
	switch {
	case errors.Is(err, loader.ErrNoState) && loaded:
		dry("a kernel is loaded that gokexec did not record (another tool's): nothing to finalize%s", then)
		return nil
	case errors.Is(err, loader.ErrNoState):
		return loader.ErrNothingLoaded
	case err != nil:
		return err
	case !loaded:
		return fmt.Errorf("%s records a load, but the kernel has nothing loaded: %w", c.stateDir, loader.ErrNothingLoaded)
	}
	p := s.Plan
	ima := "no IMA hand-over"
	switch {
	case c.noIMA || s.Options.NoIMA:
		ima = "the IMA hand-over left as loaded (--no-ima)"
	case p.Syscall == plan.SyscallKexecFileLoad:
		ima = "the IMA hand-over left to the kernel (kexec_file_load)"
	case p.IMA != nil:
		ima = fmt.Sprintf("a fresh snapshot of the IMA list plus gokexec's markers and measurements (PCR %d) extended into the TPM, checked against the PCRs and written into the %#x-byte segment at %#x", s.Options.IMAPCR, p.IMA.Size, p.IMA.Addr)
	}
	dry("would finalize the load recorded in %s: kernel %s (sha256 %s), cmdline %q, %s; %s%s", c.stateDir, p.Kernel.Path, p.Kernel.SHA256, p.Cmdline, p.Syscall, ima, then)
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

// execLoaded is -e: finalize the recorded load, sync, reboot.
func execLoaded(ctx context.Context, c *cli, dir loader.StateDir, stderr io.Writer) error {
	var sync func()
	if !c.noSync {
		sync = syncAll
	}
	h := c.hostFor()
	err := dir.Exec(ctx, h, c.noIMA, sync, func(rep *loader.Report) { reportFinalize(rep, c.debug, stderr) })
	if errors.Is(err, loader.ErrNotRebooted) {
		return fmt.Errorf("-e: %w", err)
	}
	return err
}
