// Command gokexec loads and boots another Linux kernel, carrying the running
// kernel's IMA measurement list across the soft reboot. It accepts
// kexec-tools' options so it can be installed as kexec.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	flag "github.com/spf13/pflag"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const synopsis = `Usage: gokexec [OPTION]... [KERNEL]
Load a new kernel with kexec and boot it, handing the running kernel's IMA
measurement list over to it.

  gokexec -l KERNEL [--initrd FILE] [--append STR | --reuse-cmdline] [--ima-extra SIZE]
  gokexec -e            boot the loaded kernel (refreshes the IMA hand-over first)
  gokexec -u            unload
  gokexec -S [-l]       status: exit 1 if loaded, 0 if not (kexec-tools semantics)
  gokexec KERNEL ...    load, then boot it (like -l followed by -e)
  gokexec -l KERNEL --dry-run --json [--memmap PATH] [--ima-log FILE] [--arch ARCH] [--host DIR]
                        print the plan; touch nothing, need no privileges
  gokexec capture-host DIR
                        copy the host files a plan reads into DIR (for --host DIR)

Options:
`

type cli struct {
	load, exec, unload, force, noIfdown, noSync  bool
	fileSyscall, loadSyscall, autoSyscall        bool
	status, debug, noChecks, showVersion, help   bool
	reuseCmdline, noIMA, dryRun, jsonOut         bool
	loadPanic, finalize                          bool
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func newFlags(c *cli, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gokexec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.BoolVarP(&c.load, "load", "l", false, "load KERNEL (the positional argument) for a later -e")
	fs.BoolVarP(&c.exec, "exec", "e", false, "boot the loaded kernel now, without shutdown(8)")
	fs.BoolVarP(&c.unload, "unload", "u", false, "unload the loaded kernel")
	fs.BoolVarP(&c.force, "force", "f", false, "load and boot at once, without shutdown(8)")
	fs.BoolVarP(&c.noIfdown, "no-ifdown", "x", false, "do not bring network interfaces down before booting")
	fs.BoolVarP(&c.noSync, "no-sync", "y", false, "do not sync file systems before booting")
	fs.BoolVarP(&c.fileSyscall, "kexec-file-syscall", "s", false, "use kexec_file_load only (the IMA list is not carried unless the kernel does it)")
	fs.BoolVarP(&c.loadSyscall, "kexec-syscall", "c", false, "use kexec_load only")
	fs.BoolVarP(&c.autoSyscall, "kexec-syscall-auto", "a", false, "choose the syscall (default; see README)")
	fs.BoolVarP(&c.status, "status", "S", false, "exit 1 if a kernel is loaded, 0 if not (crash kernel unless -l)")
	fs.BoolVarP(&c.loadPanic, "load-panic", "p", false, "load a crash kernel (not supported)")
	fs.StringVarP(&c.typ, "type", "t", "", "kernel image type (bzImage, Image); detected when omitted")
	fs.BoolVarP(&c.debug, "debug", "d", false, "print the plan and each step to stderr")
	fs.BoolVarP(&c.noChecks, "no-checks", "i", false, "accepted for compatibility (gokexec has no purgatory checks)")
	fs.StringVar(&c.appendStr, "append", "", "append STRING to the command line")
	fs.StringVar(&c.commandLine, "command-line", "", "same as --append")
	fs.BoolVar(&c.reuseCmdline, "reuse-cmdline", false, "start from the running kernel's command line")
	fs.StringVar(&c.initrd, "initrd", "", "initial ramdisk FILE")
	fs.StringVar(&c.ramdisk, "ramdisk", "", "same as --initrd")
	fs.StringVar(&c.dtb, "dtb", "", "device tree blob FILE to start from (arm64; default /sys/firmware/fdt)")
	fs.StringVar(&c.dtbOut, "dtb-out", "", "write the device tree that is (or would be) loaded to FILE (arm64)")
	fs.StringVar(&c.memMin, "mem-min", "", "lowest physical address to load into")
	fs.StringVar(&c.memMax, "mem-max", "", "highest physical address to load into")
	fs.StringVar(&c.imaExtra, "ima-extra", "64K", "headroom after the IMA list for entries added before -e (K/M/G suffixes)")
	fs.BoolVar(&c.noIMA, "no-ima", false, "do not hand the IMA measurement list over")
	fs.BoolVar(&c.noEFI, "noefi", false, "x86: hand no EFI state over; the next kernel boots as non-EFI (as kexec-tools' --noefi)")
	fs.StringVar(&c.host, "host", "", "plan against a captured host tree DIR (laid out like /; see capture-host) instead of this system")
	fs.Var(&c.appraiseMode, "appraise", "appraise the kernel and initrd: off, log or enforce")
	fs.StringArrayVar(&c.keys, "key", nil, "X.509 certificate (PEM or DER) for IMA signatures (repeatable)")
	fs.StringArrayVar(&c.allowlists, "allowlist", nil, "allowed digests: sha256sum output or keylime runtime policy JSON (repeatable)")
	fs.BoolVar(&c.finalize, "finalize", false, "do everything -e does except the reboot (for shutdown hooks)")
	fs.Uint32Var(&c.imaPCR, "ima-pcr", 10, "PCR for gokexec's own measurements and markers")
	fs.StringVar(&c.tpmDevice, "tpm-device", "", "TPM to extend at -e (default /dev/tpmrm0, then /dev/tpm0)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "plan only: print the plan, load nothing")
	fs.BoolVar(&c.jsonOut, "json", false, "with --dry-run: print the plan as JSON")
	fs.StringVar(&c.memmap, "memmap", "", "memory map PATH: a /sys/firmware/memmap directory or an /proc/iomem file")
	fs.StringVar(&c.imaLog, "ima-log", "", "binary IMA measurement list FILE to hand over instead of the running kernel's")
	fs.StringVar(&c.arch, "arch", "", "target architecture: amd64 or arm64 (default: this machine's)")
	fs.StringVar(&c.stateDir, "state-dir", loader.DefaultStateDir, "where a load records what -e needs")
	fs.BoolVarP(&c.showVersion, "version", "v", false, "print the version")
	fs.BoolVarP(&c.help, "help", "h", false, "print this help")
	return fs
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
	fs := newFlags(&c, stderr)
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "gokexec: %v (see gokexec --help)\n", err)
		return 2
	}
	if c.help {
		fmt.Fprint(stdout, synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if c.showVersion {
		fmt.Fprintf(stdout, "gokexec %s\n", version)
		return 0
	}
	err := dispatch(&c, fs.Args(), stdout, stderr)
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

func dispatch(c *cli, pos []string, stdout, stderr io.Writer) error {
	if c.loadPanic {
		return usageErr("-p/--load-panic: crash kernels are not supported")
	}
	n := 0
	for _, b := range []bool{c.fileSyscall, c.loadSyscall, c.autoSyscall} {
		if b {
			n++
		}
	}
	if n > 1 {
		return usageErr("-s, -c and -a exclude each other")
	}
	if len(pos) > 0 && pos[0] == "capture-host" {
		if len(pos) != 2 {
			return usageErr("capture-host DIR: one directory expected")
		}
		return captureHost(c.host, pos[1])
	}
	if len(pos) > 1 {
		return usageErr("one kernel image expected, got %d arguments: %s", len(pos), strings.Join(pos, " "))
	}
	if c.status {
		return status(c)
	}
	if c.unload {
		if err := loader.Unload(c.stateDir); err != nil {
			return err
		}
		return nil
	}
	if c.finalize {
		_, err := finalizeLoaded(c, stderr)
		return err
	}
	if c.exec && !c.load && len(pos) == 0 {
		return execLoaded(c, stderr)
	}
	if len(pos) == 0 {
		if c.load || c.dryRun {
			return usageErr("-l needs a kernel image")
		}
		return usageErr("nothing to do: give -l KERNEL, -e, -u or -S (see gokexec --help)")
	}
	o, err := options(c, pos[0])
	if err != nil {
		return err
	}
	if c.dryRun {
		p, _, err := loader.Plan(o)
		if err != nil {
			return err
		}
		if err := writeDTB(c.dtbOut, p); err != nil {
			return err
		}
		return printPlan(p, c.jsonOut, stdout)
	}
	if c.jsonOut {
		return usageErr("--json goes with --dry-run")
	}
	p, err := loader.Load(o, func(w string) { fmt.Fprintf(stderr, "gokexec: warning: %s\n", w) })
	if err != nil {
		return err
	}
	if err := writeDTB(c.dtbOut, p); err != nil {
		return err
	}
	for _, a := range p.Appraisal {
		if !a.Pass {
			fmt.Fprintf(stderr, "gokexec: warning: %s\n", a.Reason)
		}
	}
	if c.debug {
		_ = printPlan(p, false, stderr)
	}
	if c.load && !c.exec {
		return nil
	}
	// No -l (plain "gokexec KERNEL", -f) or -l with -e: boot now.
	return execLoaded(c, stderr)
}

func options(c *cli, kernel string) (*loader.Options, error) {
	if c.imaPCR > 23 {
		return nil, usageErr("--ima-pcr %d: PCRs are 0-23", c.imaPCR)
	}
	o := &loader.Options{NoEFI: c.noEFI, Host: c.host, KernelPath: kernel, Arch: c.arch, DTBPath: c.dtb, NoIMA: c.noIMA, IMAPCR: c.imaPCR, TPMDevice: c.tpmDevice,
		Appraise: c.appraiseMode, Keys: c.keys, Allowlists: c.allowlists,
		IMALog: c.imaLog, MemMap: c.memmap, DryRun: c.dryRun, StateDir: c.stateDir}
	switch c.arch {
	case "", plan.ArchAMD64, plan.ArchARM64:
	case "x86_64":
		o.Arch = plan.ArchAMD64
	case "aarch64":
		o.Arch = plan.ArchARM64
	default:
		return nil, usageErr("--arch %q: want amd64 or arm64", c.arch)
	}
	switch {
	case c.fileSyscall:
		o.Mode = plan.ModeFile
	case c.loadSyscall:
		o.Mode = plan.ModeLoad
	default:
		o.Mode = plan.ModeAuto
	}
	hostDefaults(o)
	o.InitrdPath = c.initrd
	if c.ramdisk != "" {
		if c.initrd != "" && c.initrd != c.ramdisk {
			return nil, usageErr("--initrd and --ramdisk name different files")
		}
		o.InitrdPath = c.ramdisk
	}
	var parts []string
	if c.reuseCmdline {
		cl, err := kexec.Cmdline()
		if err != nil {
			return nil, err
		}
		parts = append(parts, stripKexecParams(cl))
	}
	for _, s := range []string{c.commandLine, c.appendStr} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	o.Cmdline = strings.TrimSpace(strings.Join(parts, " "))
	var err error
	if o.IMAExtra, err = parseSize(c.imaExtra); err != nil {
		return nil, usageErr("--ima-extra: %v", err)
	}
	if c.memMin != "" {
		if o.MemMin, err = parseSize(c.memMin); err != nil {
			return nil, usageErr("--mem-min: %v", err)
		}
	}
	if c.memMax != "" {
		if o.MemMax, err = parseSize(c.memMax); err != nil {
			return nil, usageErr("--mem-max: %v", err)
		}
	}
	if o.MemMax != 0 && o.MemMin >= o.MemMax {
		return nil, usageErr("--mem-min %#x is not below --mem-max %#x", o.MemMin, o.MemMax)
	}
	return o, nil
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

func status(c *cli) error {
	path := "/sys/kernel/kexec_crash_loaded"
	if c.load {
		path = "/sys/kernel/kexec_loaded"
	}
	b, err := kexec.ReadInput("status", path, kexec.MaxSmallBytes)
	if err != nil {
		return &exitError{2, err}
	}
	if strings.TrimSpace(string(b)) == "1" {
		return &exitError{1, nil}
	}
	return nil
}

// errNothingLoaded: -e or --finalize found no loaded kernel.
var errNothingLoaded = errors.New("no kernel is loaded (load one with -l first)")

// finalizeLoaded refreshes the hand-over of a gokexec load. It reports
// whether a load by another tool was found (nothing to finalize).
func finalizeLoaded(c *cli, stderr io.Writer) (bool, error) {
	loaded, err := kexec.Loaded()
	if err != nil {
		return false, err
	}
	if !loaded {
		return false, errNothingLoaded
	}
	st, err := loader.LoadState(c.stateDir)
	if errors.Is(err, loader.ErrNoState) {
		return true, nil // loaded by another tool: nothing of ours to finalize
	}
	if err != nil {
		return false, err
	}
	if c.noIMA {
		st.Options.NoIMA = true
	}
	rep, err := loader.Finalize(st)
	if err != nil {
		return false, err
	}
	reportFinalize(rep, c.debug, stderr)
	return false, nil
}

// reportFinalize tells the user what finalize did that a verifier will see:
// always when the TPM or the IMA hand-over was left out, with -d otherwise.
func reportFinalize(rep *loader.Report, debug bool, stderr io.Writer) {
	switch {
	case rep.NoIMA:
		fmt.Fprintln(stderr, "gokexec: warning: --no-ima: the IMA hand-over was not finalized; the next kernel gets the list as it was at -l, with a kexec_load marker and no kexec_execute (a verifier reads that as events lost)")
	case rep.NoTPM && len(rep.Entries) > 0:
		fmt.Fprintf(stderr, "gokexec: warning: this machine has no TPM: gokexec's %d entries were added to the hand-over list but extended into no PCR\n", len(rep.Entries))
	}
	if !debug {
		return
	}
	if rep.Skipped {
		fmt.Fprintln(stderr, "gokexec: finalize: already finalized and nothing measured since")
	} else if rep.Plan != nil && rep.Plan.IMA != nil && !rep.NoIMA {
		fmt.Fprintf(stderr, "gokexec: finalize: handing over %d entries (%d bytes) in a %#x-byte segment at %#x; %d entries of ours, TPM %s extended: %v %v\n",
			rep.Count, rep.ListBytes, rep.Plan.IMA.Size, rep.Plan.IMA.Addr, len(rep.Entries), rep.TPM, rep.Extended, rep.Banks)
	}
}

func execLoaded(c *cli, stderr io.Writer) error {
	if _, err := finalizeLoaded(c, stderr); err != nil {
		return fmt.Errorf("-e: %w; not rebooting", err)
	}
	if !c.noSync {
		syncAll()
	}
	return kexec.Exec()
}

// writeDTB writes the plan's device tree to path (--dtb-out).
func writeDTB(path string, p *plan.Plan) error {
	if path == "" {
		return nil
	}
	b := p.DTBBytes()
	if b == nil {
		return usageErr("--dtb-out: the plan has no device tree (arm64 only)")
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--dtb-out: %w", err)
	}
	return nil
}

func printPlan(p *plan.Plan, asJSON bool, w io.Writer) error {
	p.FillDigests()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	fmt.Fprintf(w, "arch %s, syscall %s, entry %#x\n", p.Arch, p.Syscall, p.Entry)
	if d := p.Decision; d != nil {
		fmt.Fprintf(w, "syscall choice (%s): %s\n", d.Mode, d.Reason)
		if d.Warning != "" {
			fmt.Fprintf(w, "warning: %s\n", d.Warning)
		}
		switch d.Facts.TPM {
		case "":
		case loader.NoTPM:
			fmt.Fprintln(w, "TPM: none on this machine: gokexec's entries will be in the hand-over list but extended into no PCR")
		default:
			fmt.Fprintf(w, "TPM: %s (gokexec's entries are extended at -e)\n", d.Facts.TPM)
		}
		if d.Facts.Kallsyms != "" {
			fmt.Fprintf(w, "kallsyms: %s (whether the kernel measures at kexec is unknown)\n", d.Facts.Kallsyms)
		}
	}
	fmt.Fprintf(w, "kernel %s (%d bytes, sha256 %s) at %#x\n", p.Kernel.Path, p.Kernel.Size, p.Kernel.SHA256, p.KernelAddr)
	if p.DTB != nil {
		fmt.Fprintf(w, "device tree: %d bytes at %#x\n", p.DTB.Size, p.DTB.Addr)
	}
	if p.DTBInput != nil {
		fmt.Fprintf(w, "device tree source %s (%d bytes, sha256 %s)\n", p.DTBInput.Path, p.DTBInput.Size, p.DTBInput.SHA256)
	}
	if p.Initrd != nil {
		fmt.Fprintf(w, "initrd %s (%d bytes, sha256 %s)\n", p.Initrd.Path, p.Initrd.Size, p.Initrd.SHA256)
	}
	fmt.Fprintf(w, "cmdline %q\n", p.Cmdline)
	printEFI(p, w)
	for _, a := range p.Appraisal {
		fmt.Fprintf(w, "appraisal: %s\n", a.Reason)
	}
	for _, s := range p.Segments {
		fmt.Fprintf(w, "  segment %-12s mem %#012x memsz %#10x bufsz %#10x\n", s.Name, s.Mem, s.Memsz, s.Bufsz)
	}
	switch {
	case p.Syscall == plan.SyscallKexecFileLoad:
		fmt.Fprintln(w, "IMA hand-over: left to the kernel (kexec_file_load)")
	case p.IMA != nil:
		fmt.Fprintf(w, "IMA hand-over: %d entries, %d bytes, segment %#x bytes at %#x (headroom %d)\n", p.IMA.Entries, p.IMA.ListBytes, p.IMA.Size, p.IMA.Addr, p.IMA.Headroom)
	default:
		fmt.Fprintln(w, "IMA hand-over: none")
	}
	return nil
}
