package main

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/appraisal"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

// cli is a parsed command line.
type cli struct {
	act                                            actionState
	seen                                           []*opt // every option given, in order
	syscall                                        string // "file", "load", "auto" (-s, -c, -a; the last wins)
	noIfdown, noSync                               bool
	status, printCkr, debug, noChecks, showVersion bool
	help, reuseCmdline, noIMA, dryRun, jsonOut     bool
	argsLinux, noEFI                               bool
	host                                           string
	imaPCR                                         uint32
	appraiseMode                                   appraise.Mode
	keys, allowlists                               []string
	tpmDevice                                      string
	appendStr, initrd, dtb                         string
	memMin, memMax, imaExtra                       string
	memmap, imaLog, arch, stateDir, typ, dtbOut    string
}

// newCLI is a command line before parsing: kexec-tools' defaults (a
// KERNEL alone loads and then shuts down) and gokexec's.
func newCLI() *cli {
	return &cli{
		act:      actionState{load: true, shutdown: true},
		imaPCR:   10,
		imaExtra: "64K",
		stateDir: string(loader.DefaultStateDir),
	}
}

// testHost, when set by a test, is the Host of every action (a
// loadertest.Host that records the kernel and TPM calls).
var testHost loader.Host

// hostFor is the Host the flags name: a captured tree (--host), which is
// planned against and never acted on, or this system, with --memmap,
// --ima-log and --tpm-device as overrides.
func (c *cli) hostFor() loader.Host {
	if testHost != nil {
		return testHost
	}
	if c.host != "" {
		// A captured tree is planned against, never acted on.
		return loader.Machine{Facts: &kexec.Captured{Root: c.host, MemMap: c.memmap, IMALog: c.imaLog},
			Kernel: loader.OffTarget{}, TPMs: loader.NoTPMs{}}
	}
	return guardActs(loader.Machine{Facts: &kexec.System{MemMap: c.memmap, IMALog: c.imaLog}, Kernel: kexec.Kernel{}, TPMs: &tpm.Source{Device: c.tpmDevice}})
}

// guardActs is the live system's Host; the package's tests replace its
// Kernel and TPMs with ones that refuse every act.
var guardActs = func(m loader.Machine) loader.Host { return m }

// options turns the flags of a load or dry run into the library's inputs.
func (c *cli) options(kernel string, keep loader.StateDir) (_ loader.Host, _ loader.Image, _ loader.Options, release func(), _ error) {
	var img loader.Image
	o := loader.Options{NoEFI: c.noEFI, Arch: c.arch, NoIMA: c.noIMA, IMAPCR: c.imaPCR}
	release = func() {}
	fail := func(err error) (loader.Host, loader.Image, loader.Options, func(), error) {
		release()
		return nil, img, o, func() {}, err
	}
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
	switch c.syscall {
	case "file":
		o.Mode = plan.ModeFile
	case "load":
		o.Mode = plan.ModeLoad
	default:
		o.Mode = plan.ModeAuto
	}
	cmdline, err := c.cmdline()
	if err != nil {
		return fail(err)
	}
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
	if keep != "" {
		// A real load the state records: each input is copied into the
		// state directory once and used from there (loader.KeepImage).
		img, release, err = keep.KeepImage(kernel, c.initrd, c.dtb, cmdline)
	} else {
		img, err = loader.FileImage(kernel, c.initrd, c.dtb, cmdline)
	}
	if err != nil {
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
	return c.hostFor(), img, o, release, nil
}

// cmdline is the command line a load passes, as kexec-tools'
// concat_cmdline makes it: the running one (--reuse-cmdline) and the last
// --append/--command-line, joined by a space.
func (c *cli) cmdline() (string, error) {
	var parts []string
	if c.reuseCmdline {
		cl, err := readCmdline()
		if err != nil {
			return "", err
		}
		parts = append(parts, stripKexecParams(cl, c.act.crash))
	}
	if c.appendStr != "" {
		parts = append(parts, c.appendStr)
	}
	return strings.TrimSpace(strings.Join(parts, " ")), nil
}

// readCmdline is the running kernel's command line (a seam for tests).
var readCmdline = kexec.Cmdline

// stripKexecParams drops what kexec-tools' get_command_line drops for
// --reuse-cmdline: BOOT_IMAGE= always, crashkernel= only for a crash
// kernel (-p). A kernel loaded with -l keeps crashkernel=, so after the
// soft reboot memory is reserved again and kdump can be re-armed.
func stripKexecParams(cl string, crash bool) string {
	var keep []string
	for _, f := range strings.Fields(cl) {
		if strings.HasPrefix(f, "BOOT_IMAGE=") || crash && strings.HasPrefix(f, "crashkernel=") {
			continue
		}
		keep = append(keep, f)
	}
	return strings.Join(keep, " ")
}

// sizeForms is what parseSize accepts, for its errors.
const sizeForms = "a number (decimal or 0x hex) with an optional K, KB, KiB, M, MB, MiB, G, GB or GiB (powers of 1024, any case), e.g. 64K, 64KiB, 1MB, 0x10000"

// parseSize parses a byte count or address: decimal or 0x hex, with an
// optional binary suffix: K, KB, KiB, M, MB, MiB, G, GB, GiB in any case
// (all powers of 1024, as kernel parameters and kexec-tools mean them).
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mul := uint64(1)
	lt := strings.ToLower(t)
	for _, u := range []struct {
		suf string
		mul uint64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}} {
		if strings.HasSuffix(lt, u.suf) && !strings.HasPrefix(lt, "0x") {
			mul, t = u.mul, t[:len(t)-len(u.suf)]
			break
		}
	}
	v, err := strconv.ParseUint(t, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: want %s", s, sizeForms)
	}
	if v != 0 && v*mul/mul != v {
		return 0, fmt.Errorf("%q overflows", s)
	}
	return v * mul, nil
}
