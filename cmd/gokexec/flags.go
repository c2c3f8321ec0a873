package main

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/appraisal"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

const synopsis = `Usage: gokexec [OPTION]... [kernel]
Directly reboot into a new kernel, handing the running kernel's IMA
measurement list over to it.

  gokexec -l KERNEL [--initrd=FILE] [--append=STRING | --reuse-cmdline] [--ima-extra=SIZE]
  gokexec -e            boot the loaded kernel (finalizes the IMA hand-over first)
  gokexec -u            unload
  gokexec -S [-l]       status: exit 1 if loaded, 0 if not (kexec-tools semantics)
  gokexec KERNEL ...    load, then boot it (like -l followed by -e)
  gokexec -l KERNEL --dry-run --json [--memmap=PATH] [--ima-log=FILE] [--arch=ARCH] [--host=DIR]
                        print the plan; touch nothing, need no privileges
  gokexec capture-host DIR
                        copy the host files a plan reads into DIR (for --host=DIR)

Options:
`

type cli struct {
	load, exec, unload, force, noIfdown, noSync  bool
	fileSyscall, loadSyscall, autoSyscall        bool
	status, debug, noChecks, showVersion, help   bool
	reuseCmdline, noIMA, dryRun, jsonOut         bool
	loadPanic, finalize, argsLinux               bool
	noEFI                                        bool
	host                                         string
	imaPCR                                       uint32
	appraiseMode                                 appraise.Mode
	keys, allowlists                             []string
	tpmDevice                                    string
	appendStr, commandLine, initrd, ramdisk, dtb string
	memMin, memMax, imaExtra                     string
	memmap, imaLog, arch, stateDir, typ, dtbOut  string
}

// Value names in usage strings are back-quoted (pflag.UnquoteUsage).
func newFlags(c *cli) *flag.FlagSet {
	fs := flag.NewFlagSet("gokexec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.BoolVarP(&c.help, "help", "h", false, "Print this help.")
	fs.BoolVarP(&c.showVersion, "version", "v", false, "Print the version of gokexec.")
	fs.BoolVarP(&c.force, "force", "f", false, "Force an immediate kexec, don't call shutdown.")
	fs.BoolVarP(&c.noIfdown, "no-ifdown", "x", false, "Don't bring down network interfaces.")
	fs.BoolVarP(&c.noSync, "no-sync", "y", false, "Don't sync filesystems before kexec.")
	fs.BoolVarP(&c.load, "load", "l", false, "Load the new kernel into the current kernel.")
	fs.BoolVarP(&c.loadPanic, "load-panic", "p", false, "Load the new kernel for use on panic (kdump); with -u unload it.")
	fs.BoolVar(&c.argsLinux, "args-linux", false, "Accepted for kexec-tools compatibility (its option for ELF vmlinux images).")
	fs.BoolVarP(&c.unload, "unload", "u", false, "Unload the current kexec target kernel.")
	fs.BoolVarP(&c.exec, "exec", "e", false, "Execute a currently loaded kernel (after finalizing the IMA hand-over).")
	fs.BoolVarP(&c.status, "status", "S", false, "Return 1 if the type (by default crash) is loaded, 0 if not; -l: the normal kernel.")
	fs.StringVarP(&c.typ, "type", "t", "", "Specify the new kernel is of this `TYPE` (bzImage, Image); detected when omitted.")
	fs.BoolVarP(&c.fileSyscall, "kexec-file-syscall", "s", false, "Use file based syscall for kexec operation (the IMA list is carried only if the kernel does it).")
	fs.BoolVarP(&c.loadSyscall, "kexec-syscall", "c", false, "Use the kexec_load syscall.")
	fs.BoolVarP(&c.autoSyscall, "kexec-syscall-auto", "a", false, "Choose the syscall (the default; see README).")
	fs.BoolVarP(&c.debug, "debug", "d", false, "Print the plan and what finalize did to stderr.")
	fs.BoolVarP(&c.noChecks, "no-checks", "i", false, "Accepted for compatibility (gokexec has no purgatory checks).")
	fs.StringVar(&c.commandLine, "command-line", "", "Same as --append=`STRING`.")
	fs.StringVar(&c.appendStr, "append", "", "Append `STRING` to the kernel command line.")
	fs.BoolVar(&c.reuseCmdline, "reuse-cmdline", false, "Use the kernel command line from the running system.")
	fs.StringVar(&c.initrd, "initrd", "", "Use `FILE` as the kernel's initial ramdisk.")
	fs.StringVar(&c.ramdisk, "ramdisk", "", "Same as --initrd=`FILE`.")
	fs.StringVar(&c.dtb, "dtb", "", "Use `FILE` as the device tree blob to start from (arm64; default /sys/firmware/fdt).")
	fs.StringVar(&c.dtbOut, "dtb-out", "", "Write the device tree that is (or would be) loaded to `FILE` (arm64).")
	fs.StringVar(&c.memMin, "mem-min", "", "Specify the lowest memory `ADDRESS` to load code into.")
	fs.StringVar(&c.memMax, "mem-max", "", "Specify the highest memory `ADDRESS` to load code into.")
	fs.BoolVar(&c.noEFI, "noefi", false, "x86: hand no EFI state over; the next kernel boots as non-EFI.")
	fs.StringVar(&c.imaExtra, "ima-extra", "64K", "Headroom after the IMA list for entries added before -e (`SIZE`, K/M/G suffixes).")
	fs.BoolVar(&c.noIMA, "no-ima", false, "Don't hand the IMA measurement list over.")
	fs.Uint32Var(&c.imaPCR, "ima-pcr", 10, "`PCR` for gokexec's own measurements and markers.")
	fs.StringVar(&c.tpmDevice, "tpm-device", "", "TPM `DEVICE` to extend at -e (default /dev/tpmrm0, then /dev/tpm0).")
	fs.Var(&c.appraiseMode, "appraise", "Appraise kernel, initrd and DTB: `MODE` off, log or enforce.")
	fs.StringArrayVar(&c.keys, "key", nil, "X.509 certificate `FILE` (PEM or DER) for IMA signatures (repeatable).")
	fs.StringArrayVar(&c.allowlists, "allowlist", nil, "Allowed digests `FILE`: sha256sum output or keylime runtime policy JSON (repeatable).")
	fs.BoolVar(&c.finalize, "finalize", false, "Do everything -e does except the reboot (for shutdown hooks).")
	fs.BoolVar(&c.dryRun, "dry-run", false, "Plan only: print the plan, load nothing.")
	fs.BoolVar(&c.jsonOut, "json", false, "With --dry-run: print the plan as JSON.")
	fs.StringVar(&c.memmap, "memmap", "", "Memory map `PATH`: a /sys/firmware/memmap directory or an /proc/iomem file.")
	fs.StringVar(&c.imaLog, "ima-log", "", "Binary IMA measurement list `FILE` to hand over instead of the running kernel's.")
	fs.StringVar(&c.arch, "arch", "", "Target `ARCH`: amd64 or arm64 (default: this machine's).")
	fs.StringVar(&c.host, "host", "", "Plan against a captured host tree `DIR` (see capture-host) instead of this system.")
	fs.StringVar(&c.stateDir, "state-dir", string(loader.DefaultStateDir), "Where a load records what -e needs (`DIR`).")
	return fs
}

// printHelp prints the options as kexec-tools' --help does: "-l, --load"
// for a switch, "--initrd=FILE" for an option with a value.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		left := "    --" + f.Name
		if f.Shorthand != "" {
			left = "-" + f.Shorthand + ", --" + f.Name
		}
		if f.Value.Type() != "bool" {
			left += "=" + name
		}
		if d := f.DefValue; f.Value.Type() != "bool" && d != "" && d != "[]" && d != "off" {
			usage += " (default " + d + ")"
		}
		if len(left) > 26 {
			fmt.Fprintf(w, " %s\n %-26s %s\n", left, "", usage)
		} else {
			fmt.Fprintf(w, " %-26s %s\n", left, usage)
		}
	})
}

// Actions of a command line.
const (
	actLoad = iota
	actLoadExec
	actDryRun
	actExec
	actFinalize
	actUnload
	actStatus
	actCapture
)

// action checks the flags' combination and names what to do.
func (c *cli) action(pos []string) (int, error) {
	n := 0
	for _, b := range []bool{c.fileSyscall, c.loadSyscall, c.autoSyscall} {
		if b {
			n++
		}
	}
	if n > 1 {
		return 0, usageErr("-s, -c and -a exclude each other")
	}
	if len(pos) > 0 && pos[0] == "capture-host" {
		if len(pos) != 2 {
			return 0, usageErr("capture-host DIR: one directory expected")
		}
		return actCapture, nil
	}
	if len(pos) > 1 {
		return 0, usageErr("one kernel image expected, got %d arguments: %s", len(pos), strings.Join(pos, " "))
	}
	if c.loadPanic {
		return c.crashAction(pos)
	}
	switch {
	case c.status:
		return actStatus, nil
	case c.unload:
		return actUnload, nil
	case c.finalize:
		return actFinalize, nil
	case c.exec && !c.load && len(pos) == 0:
		return actExec, nil
	case len(pos) == 0 && (c.load || c.dryRun):
		return 0, usageErr("-l needs a kernel image")
	case len(pos) == 0:
		return 0, usageErr("nothing to do: give -l KERNEL, -e, -u or -S (see gokexec --help)")
	case c.dryRun:
		return actDryRun, nil
	case c.jsonOut:
		return 0, usageErr("--json goes with --dry-run")
	case c.load && !c.exec:
		return actLoad, nil
	}
	return actLoadExec, nil
}

// hostFor is the Host the flags name: a captured tree (--host) or this
// system, with --memmap, --ima-log and --tpm-device as overrides.
func (c *cli) hostFor() loader.Host {
	if c.host != "" {
		// A captured tree is planned against, never acted on.
		return loader.Machine{Facts: &kexec.Captured{Root: c.host, MemMap: c.memmap, IMALog: c.imaLog},
			Kernel: loader.OffTarget{}, TPMs: loader.NoTPMs{}}
	}
	return loader.Machine{Facts: &kexec.System{MemMap: c.memmap, IMALog: c.imaLog}, Kernel: kexec.Kernel{}, TPMs: &tpm.Source{Device: c.tpmDevice}}
}

// options turns the flags of a load or dry run into the library's inputs.
func (c *cli) options(kernel string) (loader.Host, loader.Image, loader.Options, error) {
	var img loader.Image
	o := loader.Options{NoEFI: c.noEFI, Arch: c.arch, NoIMA: c.noIMA, IMAPCR: c.imaPCR}
	fail := func(err error) (loader.Host, loader.Image, loader.Options, error) { return nil, img, o, err }
	if c.imaPCR > 23 {
		return fail(usageErr("--ima-pcr %d: PCRs are 0-23", c.imaPCR))
	}
	switch c.arch {
	case "", plan.ArchAMD64, plan.ArchARM64:
	case "x86_64":
		o.Arch = plan.ArchAMD64
	case "aarch64":
		o.Arch = plan.ArchARM64
	default:
		return fail(usageErr("--arch %q: want amd64 or arm64", c.arch))
	}
	switch {
	case c.fileSyscall:
		o.Mode = plan.ModeFile
	case c.loadSyscall:
		o.Mode = plan.ModeLoad
	default:
		o.Mode = plan.ModeAuto
	}
	initrd := c.initrd
	if c.ramdisk != "" {
		if c.initrd != "" && c.initrd != c.ramdisk {
			return fail(usageErr("--initrd and --ramdisk name different files"))
		}
		initrd = c.ramdisk
	}
	var parts []string
	if c.reuseCmdline {
		cl, err := kexec.Cmdline()
		if err != nil {
			return fail(err)
		}
		parts = append(parts, stripKexecParams(cl))
	}
	for _, s := range []string{c.commandLine, c.appendStr} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	var err error
	if o.IMAExtra, err = parseSize(c.imaExtra); err != nil {
		return fail(usageErr("--ima-extra: %v", err))
	}
	if c.memMin != "" {
		if o.MemMin, err = parseSize(c.memMin); err != nil {
			return fail(usageErr("--mem-min: %v", err))
		}
	}
	if c.memMax != "" {
		if o.MemMax, err = parseSize(c.memMax); err != nil {
			return fail(usageErr("--mem-max: %v", err))
		}
	}
	if o.MemMax != 0 && o.MemMin >= o.MemMax {
		return fail(usageErr("--mem-min %#x is not below --mem-max %#x", o.MemMin, o.MemMax))
	}
	if img, err = loader.FileImage(kernel, initrd, c.dtb, strings.TrimSpace(strings.Join(parts, " "))); err != nil {
		return fail(err)
	}
	if c.appraiseMode != appraise.ModeOff {
		if err := appraisal.Sign(&img); err != nil {
			return fail(err)
		}
	}
	pol, err := appraisal.PolicyFiles(c.appraiseMode, c.keys, c.allowlists)
	if err != nil {
		return fail(err)
	}
	o.Appraiser = appraisal.Appraiser(pol)
	if o.Arch == runtime.GOARCH {
		o.Arch = ""
	}
	return c.hostFor(), img, o, nil
}

// stripKexecParams drops parameters that describe the running boot only, as
// kexec-tools does for --reuse-cmdline (BOOT_IMAGE=, the crashkernel= reservation).
func stripKexecParams(cl string) string {
	var keep []string
	for _, f := range strings.Fields(cl) {
		if strings.HasPrefix(f, "BOOT_IMAGE=") || strings.HasPrefix(f, "crashkernel=") {
			continue
		}
		keep = append(keep, f)
	}
	return strings.Join(keep, " ")
}

// parseSize parses a byte count or address: decimal, 0x hex, with an
// optional K, M or G suffix (powers of 1024).
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mul := uint64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mul, t = 1<<10, t[:n-1]
		case 'm', 'M':
			mul, t = 1<<20, t[:n-1]
		case 'g', 'G':
			mul, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseUint(t, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if v != 0 && v*mul/mul != v {
		return 0, fmt.Errorf("%q overflows", s)
	}
	return v * mul, nil
}
