// Command gokexec loads and boots another Linux kernel, carrying the running
// kernel's IMA measurement list across the soft reboot. It accepts
// kexec-tools' options so it can be installed as kexec.
//
// It is a thin shell over package loader. options.go is the one option
// table: kexec-tools' getopt_long rules, and the --help text. action.go
// turns a parsed command line into an Action as kexec-tools' main() would
// (the last action option wins). flags.go makes the library's Host, Image
// and Options; perform.go runs the Action's steps (unload, load, finalize,
// shutdown, exec), a dry run over a loader.DryRun that acts on nothing.
// Between -l and -e the load is kept in a loader.StateDir.
//
// Invariants: --dry-run never loads, unloads, extends a PCR, reboots,
// writes the state directory, syncs or runs the shutdown command; errors
// are matched with errors.Is/As, never by text.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/gokexec/gokexec/internal/buildinfo"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
)

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
	c := newCLI()
	pos, err := parseArgs(c, args)
	if err != nil {
		fmt.Fprintf(stderr, "gokexec: %v (see gokexec --help)\n", errOf(err))
		return 2
	}
	if c.help {
		printHelp(stdout)
		return 0
	}
	if c.showVersion {
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	err = dispatch(context.Background(), c, pos, stdout, stderr)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil { // nil: a status answer (-S), nothing to say
			fmt.Fprintf(stderr, "gokexec: %v\n", withAdvice(ee.err))
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "gokexec: %v\n", withAdvice(err))
	return 1
}

func errOf(err error) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.err != nil {
		return ee.err
	}
	return err
}

// geteuid is a seam for tests.
var geteuid = os.Geteuid

// withAdvice adds "run as root" where missing privilege is the cause: the
// loader's ErrPrivilege, a permission error (a file only root reads, a syscall refused with EPERM
// or EACCES) while not running as root. Lockdown's EPERM is its own case.
func withAdvice(err error) error {
	if geteuid() == 0 || errors.Is(err, kexec.ErrLockdown) {
		return err
	}
	if errors.Is(err, loader.ErrPrivilege) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w (run as root)", err)
	}
	return err
}

// versionLine is gokexec's version and the commit it was built from.
func versionLine() string { return buildinfo.Line("gokexec") }

func dispatch(ctx context.Context, c *cli, pos []string, stdout, stderr io.Writer) error {
	a, err := c.action(pos)
	if err != nil {
		return err
	}
	for _, n := range c.ignoredNotes(a, pos) {
		fmt.Fprintf(stderr, "gokexec: note: %s\n", n)
	}
	if c.imaPCR > 23 {
		return usageErr("--ima-pcr %d: PCRs are 0-23", c.imaPCR)
	}
	if _, err := parseSize(c.imaExtra); err != nil {
		return usageErr("--ima-extra: %v", err)
	}
	err = perform(ctx, c, a, stdout, stderr)
	if !a.DryRun {
		return err
	}
	var ee *exitError
	switch {
	case err == nil || errors.As(err, &ee) && ee.err == nil:
		fmt.Fprintf(stderr, "gokexec: dry run (%s): nothing was loaded, unloaded, extended or rebooted\n", a)
		return err
	case errors.As(err, &ee):
		return &exitError{ee.code, fmt.Errorf("dry run: %w", ee.err)}
	}
	return fmt.Errorf("dry run: %w", err)
}
