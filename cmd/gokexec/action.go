package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// actionState is kexec-tools' main() switches (do_load, do_exec,
// do_shutdown, do_unload and KEXEC_ON_CRASH in kexec_flags) as the action
// options set them one after another (actOpt), so that the last action
// option wins exactly as it does there.
type actionState struct {
	hasLoad  bool // -l was given (for -S: the normal image)
	load     bool
	exec     bool
	shutdown bool
	unload   bool
	crash    bool
	finalize bool // gokexec's --finalize
	explicit bool // an action option was given
}

// Action is what a command line asks for, as steps run in this order:
// unload, load, finalize, shutdown, exec. A dry run goes through the same
// steps and acts on nothing.
type Action struct {
	Capture     string // capture-host DIR
	PrintCkr    bool   // --print-ckr-size
	Status      bool   // -S
	StatusCrash bool   // -S asks about the crash image
	Unload      bool
	Load        bool
	Crash       bool // the unload and load are the crash kernel's (-p)
	Finalize    bool // --finalize
	Shutdown    bool // orderly shutdown into the loaded kernel (KERNEL without -l, -f)
	Exec        bool // -e, -f: finalize, sync, reboot now
	Sync        bool // sync before the reboot (not -y)
	Kernel      string
	DryRun      bool
}

// String names the steps, for dry runs and tests: "unload crash, load
// crash /boot/vmlinuz".
func (a Action) String() string {
	var s []string
	crash := func(w string) string {
		if a.Crash {
			return w + " crash"
		}
		return w
	}
	switch {
	case a.Capture != "":
		s = append(s, "capture-host "+a.Capture)
	case a.PrintCkr:
		s = append(s, "print-ckr-size")
	case a.Status && a.StatusCrash:
		s = append(s, "status crash")
	case a.Status:
		s = append(s, "status")
	}
	if a.Unload {
		s = append(s, crash("unload"))
	}
	if a.Load {
		s = append(s, crash("load")+" "+a.Kernel)
	}
	if a.Finalize {
		s = append(s, "finalize")
	}
	if a.Shutdown {
		s = append(s, "shutdown")
	}
	if a.Exec && a.Sync {
		s = append(s, "sync")
	}
	if a.Exec {
		s = append(s, "exec")
	}
	return strings.Join(s, ", ")
}

// action turns a parsed command line into its Action, refusing what
// kexec-tools refuses (a loader's option when nothing is loaded) and what
// gokexec cannot tell apart.
func (c *cli) action(pos []string) (Action, error) {
	a := Action{DryRun: c.dryRun}
	if c.jsonOut && !c.dryRun {
		return a, usageErr("--json goes with --dry-run")
	}
	if len(pos) > 0 && pos[0] == "capture-host" {
		if len(pos) != 2 {
			return a, usageErr("capture-host DIR: one directory expected")
		}
		a.Capture = pos[1]
		return a, nil
	}
	if c.printCkr { // kexec-tools prints it as soon as it parses the option
		a.PrintCkr = true
		return a, nil
	}
	if len(pos) > 1 {
		return a, usageErr("one kernel image expected, got %d arguments: %s", len(pos), strings.Join(pos, " "))
	}
	s := c.act
	if c.status {
		// kexec-tools: -S reads the crash image unless -l was given or
		// kexec_flags is set (-p, and -d's KEXEC_DEBUG, which makes
		// "kexec -S -d" ask about the normal image; kept for parity).
		a.Status = true
		a.StatusCrash = s.crash || !s.hasLoad && !c.debug
		return a, nil
	}
	if !s.load {
		for _, o := range c.seen {
			if o.loadOnly {
				return a, usageErr("--%s applies to a kernel being loaded, and this command line loads none (kexec-tools refuses it too)", o.long)
			}
		}
	}
	if !s.explicit && len(pos) == 0 {
		return a, usageErr("nothing to do: give -l KERNEL, -e, -u, -p KERNEL or -S (see gokexec --help)")
	}
	if s.load && len(pos) == 0 {
		what := "-l"
		switch {
		case s.crash:
			what = "-p"
		case s.exec:
			what = "-f"
		}
		return a, usageErr("%s needs a kernel image", what)
	}
	if s.load {
		a.Kernel = pos[0]
	}
	a.Unload, a.Load, a.Crash = s.unload, s.load, s.crash
	a.Finalize = s.finalize && !s.exec
	a.Shutdown, a.Exec = s.shutdown, s.exec
	a.Sync = s.exec && !c.noSync
	return a, nil
}

// ignoredNotes are the one-line notes for the ignored options given, and
// for an operand an action does not use.
func (c *cli) ignoredNotes(a Action, pos []string) []string {
	var notes []string
	done := map[string]bool{}
	for _, o := range c.seen {
		if o.class == classIgnored && !done[o.long] {
			done[o.long] = true
			notes = append(notes, fmt.Sprintf("--%s ignored: %s", o.long, o.reason))
		}
	}
	if !a.Load && a.Capture == "" && len(pos) == 1 {
		notes = append(notes, fmt.Sprintf("%s ignored: this command line loads nothing (%s)", pos[0], a))
	}
	return notes
}

// shutdownCommand is the orderly shutdown a plain "gokexec KERNEL" hands
// over to, as kexec-tools execs shutdown(8): systemctl kexec when systemd
// runs the machine (it reboots into the loaded kernel through
// systemd-shutdown, whose hook finalizes the IMA hand-over), else
// shutdown -r now (whose init scripts run kexec -e, as Debian's
// /etc/init.d/kexec does).
func shutdownCommand() []string {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return []string{"systemctl", "kexec"}
	}
	return []string{"shutdown", "-r", "now"}
}

// handOver runs the shutdown command in place of gokexec (a seam: tests
// record the command instead). It returns only on failure.
var handOver = func(argv []string) error {
	paths := []string{argv[0]}
	if argv[0] == "shutdown" {
		paths = []string{"/sbin/shutdown", "/etc/shutdown", "/bin/shutdown"} // kexec-tools' order
	}
	var err error
	for _, p := range paths {
		if !strings.Contains(p, "/") {
			if p, err = exec.LookPath(p); err != nil {
				continue
			}
		}
		err = syscall.Exec(p, argv, os.Environ())
	}
	return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
}
