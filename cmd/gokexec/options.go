package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// The command line is parsed as kexec-tools' getopt_long does (GNU rules):
// options and operands may be mixed, "--" ends the options, short options
// cluster ("-lf"), a short option's value may be attached ("-tbzImage"),
// a long option's value follows "=" or comes as the next argument, and a
// long option may be abbreviated to any prefix that names it alone. One
// table (optTable) holds every option: what it does, its --help line, and
// whether kexec-tools 2.0.x has it on x86_64 and arm64.

// optClass tells how gokexec treats an option.
type optClass int

const (
	classDo      optClass = iota // implemented
	classIgnored                 // accepted, no meaning for gokexec: one note on stderr
	classRefused                 // accepted by the parser, refused with a reason
)

// opt is one option of the table.
type opt struct {
	short byte   // 0: none
	long  string // without "--"
	arg   string // value name in --help; "" for a switch
	// kexec is true for kexec-tools' options (x86_64 or arm64). A prefix
	// that is unique among kexec-tools' options keeps naming that option
	// whatever gokexec adds (so callers' abbreviations keep working).
	kexec bool
	// loadOnly: kexec-tools refuses it when nothing is loaded (its
	// options at or above OPT_ARCH_MAX: the image loaders' options).
	loadOnly bool
	class    optClass
	// reason is the note (classIgnored) or the refusal (classRefused).
	reason string
	help   string
	set    func(c *cli, v string) error
}

func flagTrue(p func(c *cli) *bool) func(*cli, string) error {
	return func(c *cli, _ string) error { *p(c) = true; return nil }
}

func str(p func(c *cli) *string) func(*cli, string) error {
	return func(c *cli, v string) error { *p(c) = v; return nil }
}

func strList(p func(c *cli) *[]string) func(*cli, string) error {
	return func(c *cli, v string) error { *p(c) = append(*p(c), v); return nil }
}

// optTable is the single source of the options and of --help's option
// lines, in --help's order.
var optTable = []opt{
	// Actions: kexec-tools' state machine (see actOpt); the last wins.
	{short: 'l', long: "load", kexec: true, help: "Load KERNEL for a later -e (or systemctl kexec): plan, appraise, load, record the load in --state-dir.", set: actOpt('l')},
	{short: 'e', long: "exec", kexec: true, help: "Boot the loaded kernel now: finalize the IMA hand-over (markers, measurements, TPM extend, self-check), sync, reboot.", set: actOpt('e')},
	{short: 'f', long: "force", kexec: true, help: "Load KERNEL and boot it at once, like -l then -e, without an orderly shutdown.", set: actOpt('f')},
	{short: 'u', long: "unload", kexec: true, help: "Unload the loaded kernel (with -p: the crash kernel) and forget the recorded load.", set: actOpt('u')},
	{short: 'p', long: "load-panic", kexec: true, help: "Load KERNEL as the crash (kdump) kernel, booted when the running kernel panics; with -u: unload it; with -S: its status.", set: actOpt('p')},
	{long: "finalize", help: "Do what -e does except the sync and the reboot (for a shutdown hook).", set: actOpt('F')},
	{short: 'S', long: "status", kexec: true, help: "Exit 1 if a kernel is loaded, 0 if not: the crash kernel unless -l is given (as kexec-tools).", set: flagTrue(func(c *cli) *bool { return &c.status })},
	{long: "print-ckr-size", kexec: true, help: "Print the size in bytes of the memory reserved for a crash kernel (crashkernel=) and exit.", set: flagTrue(func(c *cli) *bool { return &c.printCkr })},

	// What is loaded.
	{short: 't', long: "type", arg: "TYPE", kexec: true, help: "Refuse KERNEL unless it is of TYPE: amd64 bzImage, bzImage64 or elf-x86_64; arm64 Image, vmlinuz (zboot) or vmlinux. Other kexec-tools types are refused by name. Detected when omitted.", set: str(func(c *cli) *string { return &c.typ })},
	{long: "append", arg: "STRING", kexec: true, loadOnly: true, help: "The kernel command line: STRING alone, or after the running one with --reuse-cmdline. The last of --append and --command-line wins.", set: str(func(c *cli) *string { return &c.appendStr })},
	{long: "command-line", arg: "STRING", kexec: true, loadOnly: true, help: "Same as --append.", set: str(func(c *cli) *string { return &c.appendStr })},
	{long: "reuse-cmdline", kexec: true, loadOnly: true, help: "Start the command line from the running kernel's, without BOOT_IMAGE= and, for -p only, crashkernel= (as kexec-tools).", set: flagTrue(func(c *cli) *bool { return &c.reuseCmdline })},
	{long: "initrd", arg: "FILE", kexec: true, loadOnly: true, help: "Use FILE as the initial ramdisk.", set: str(func(c *cli) *string { return &c.initrd })},
	{long: "ramdisk", arg: "FILE", kexec: true, loadOnly: true, help: "Same as --initrd.", set: str(func(c *cli) *string { return &c.initrd })},
	{long: "dtb", arg: "FILE", kexec: true, loadOnly: true, help: "arm64: start the next kernel's device tree from FILE (default /sys/firmware/fdt); x86: pass FILE as a SETUP_DTB node (kexec_load only: kexec_file_load cannot pass a device tree, so -s refuses it and -a takes kexec_load).", set: str(func(c *cli) *string { return &c.dtb })},
	{long: "args-linux", kexec: true, loadOnly: true, help: "Accepted: an ELF vmlinux is always booted as Linux.", set: flagTrue(func(c *cli) *bool { return &c.argsLinux })},
	{long: "mem-min", arg: "ADDRESS", kexec: true, help: "Load nothing below ADDRESS.", set: str(func(c *cli) *string { return &c.memMin })},
	{long: "mem-max", arg: "ADDRESS", kexec: true, help: "Load nothing above ADDRESS.", set: str(func(c *cli) *string { return &c.memMax })},
	{long: "noefi", kexec: true, help: "x86: hand no EFI state over; the next kernel boots as non-EFI.", set: flagTrue(func(c *cli) *bool { return &c.noEFI })},
	{long: "elf64-core-headers", kexec: true, help: "-p: describe the crashed kernel's memory with ELF64 core headers (gokexec's only kind, so the default).", set: func(*cli, string) error { return nil }}, // what gokexec always does
	{long: "elf32-core-headers", kexec: true, class: classRefused, reason: "gokexec writes ELF64 core headers only (ELF32 cannot describe memory above 4 GiB); use --elf64-core-headers or leave it out"},

	// How.
	{short: 's', long: "kexec-file-syscall", kexec: true, help: "Use kexec_file_load: the kernel reads and measures the files; the IMA list is carried only if the kernel does it (CONFIG_IMA_KEXEC).", set: syscallOpt("file")},
	{short: 'c', long: "kexec-syscall", kexec: true, help: "Use kexec_load: gokexec builds the image and the IMA hand-over itself.", set: syscallOpt("load")},
	{short: 'a', long: "kexec-syscall-auto", kexec: true, help: "Choose the syscall (the default): kexec_load when it can hand the IMA list over, else kexec_file_load.", set: syscallOpt("auto")},
	{short: 'y', long: "no-sync", kexec: true, help: "Don't sync file systems before -e or -f reboots.", set: flagTrue(func(c *cli) *bool { return &c.noSync })},
	{short: 'x', long: "no-ifdown", kexec: true, help: "Accepted: gokexec never brings network interfaces down (kexec-tools does before -e and -f).", set: flagTrue(func(c *cli) *bool { return &c.noIfdown })},
	{short: 'i', long: "no-checks", kexec: true, help: "Accepted: gokexec loads no purgatory, so there are no purgatory checks to skip.", set: flagTrue(func(c *cli) *bool { return &c.noChecks })},
	{short: 'd', long: "debug", kexec: true, help: "Print the plan and what finalize did to stderr.", set: flagTrue(func(c *cli) *bool { return &c.debug })},

	// gokexec's own.
	{long: "ima-extra", arg: "SIZE", help: "Headroom after the IMA list for entries added before -e (default 64K; SIZE as for --mem-min, with K, KB, KiB, M, MB, MiB, G, GB or GiB: powers of 1024).", set: str(func(c *cli) *string { return &c.imaExtra })},
	{long: "no-ima", help: "Don't hand the IMA measurement list over.", set: flagTrue(func(c *cli) *bool { return &c.noIMA })},
	{long: "ima-pcr", arg: "PCR", help: "PCR for gokexec's own measurements and markers (default 10).", set: func(c *cli, v string) error {
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("--ima-pcr %q: not a number", v)
		}
		c.imaPCR = uint32(n)
		return nil
	}},
	{long: "tpm-device", arg: "DEVICE", help: "TPM to extend at -e (default /dev/tpmrm0, then /dev/tpm0).", set: str(func(c *cli) *string { return &c.tpmDevice })},
	{long: "appraise", arg: "MODE", help: "Appraise kernel, initrd and DTB: off (default), log or enforce.", set: func(c *cli, v string) error { return c.appraiseMode.Set(v) }},
	{long: "key", arg: "FILE", help: "X.509 certificate (PEM or DER) for IMA signatures (repeatable).", set: strList(func(c *cli) *[]string { return &c.keys })},
	{long: "allowlist", arg: "FILE", help: "Allowed digests: sha256sum output or a keylime runtime policy (repeatable).", set: strList(func(c *cli) *[]string { return &c.allowlists })},
	{long: "dry-run", help: "For every action: read and plan, print what would be done, and load, unload, extend and reboot nothing. Planning a load against --host, or --memmap with --ima-log, needs no privileges.", set: flagTrue(func(c *cli) *bool { return &c.dryRun })},
	{long: "json", help: "With --dry-run: print the plan as JSON.", set: flagTrue(func(c *cli) *bool { return &c.jsonOut })},
	{long: "memmap", arg: "PATH", help: "Memory map: a /sys/firmware/memmap directory or an /proc/iomem file.", set: str(func(c *cli) *string { return &c.memmap })},
	{long: "ima-log", arg: "FILE", help: "Binary IMA measurement list to hand over instead of the running kernel's.", set: str(func(c *cli) *string { return &c.imaLog })},
	{long: "arch", arg: "ARCH", help: "Target architecture: amd64 or arm64 (default: this machine's).", set: str(func(c *cli) *string { return &c.arch })},
	{long: "host", arg: "DIR", help: "Plan against a captured host tree (see capture-host) instead of this system.", set: str(func(c *cli) *string { return &c.host })},
	{long: "state-dir", arg: "DIR", help: "Where -l records what -e needs (default /run/gokexec).", set: str(func(c *cli) *string { return &c.stateDir })},
	{long: "dtb-out", arg: "FILE", help: "arm64: write the device tree that is (or would be) loaded to FILE.", set: str(func(c *cli) *string { return &c.dtbOut })},
	{short: 'v', long: "version", kexec: true, help: "Print gokexec's version and source commit.", set: flagTrue(func(c *cli) *bool { return &c.showVersion })},
	{short: 'h', long: "help", kexec: true, help: "Print this help.", set: flagTrue(func(c *cli) *bool { return &c.help })},

	// kexec-tools' options without a meaning for gokexec: accepted, one note.
	{long: "reset-vga", kexec: true, class: classIgnored, reason: "gokexec loads no purgatory to reset the VGA card; the next kernel's driver sets the console up"},
	{long: "console-vga", kexec: true, class: classIgnored, reason: "gokexec loads no purgatory that could print to the VGA console"},
	{long: "console-serial", kexec: true, class: classIgnored, reason: "gokexec loads no purgatory that could print to a serial port"},
	{long: "serial", arg: "PORT", kexec: true, class: classIgnored, reason: "gokexec loads no purgatory that could print to a serial port"},
	{long: "serial-baud", arg: "BAUD", kexec: true, class: classIgnored, reason: "gokexec loads no purgatory that could print to a serial port"},
	{long: "reuse-video-type", kexec: true, class: classIgnored, reason: "gokexec passes no framebuffer description; the next kernel probes its display itself"},
	{long: "pass-memmap-cmdline", kexec: true, class: classIgnored, reason: "gokexec describes the crash kernel's memory in its boot parameters, not with memmap= on the command line"},
	{long: "hotplug", kexec: true, class: classIgnored, reason: "gokexec's crash headers are not updated by the kernel on CPU or memory hotplug; reload the crash kernel after one (as kdump's udev rules do)"},
	{long: "no-cma", kexec: true, class: classIgnored, reason: "gokexec never asks kexec_file_load to place segments in CMA"},
	{long: "force-dtb", kexec: true, class: classIgnored, reason: "gokexec passes a device tree only on arm64, where it always does"},
	{long: "entry-32bit", kexec: true, loadOnly: true, class: classIgnored, reason: "gokexec enters an x86 kernel at its 64-bit entry point; the kernel boots the same"},

	// kexec-tools' options gokexec cannot honour.
	{long: "real-mode", kexec: true, loadOnly: true, class: classRefused, reason: "gokexec cannot enter a kernel in real mode: it runs the kernel's 64-bit entry, never its 16-bit setup code"},
	{long: "load-preserve-context", kexec: true, class: classRefused, reason: "gokexec cannot load an image that returns to this kernel (KEXEC_PRESERVE_CONTEXT): the IMA hand-over assumes this kernel ends"},
	{long: "load-jump-back-helper", kexec: true, class: classRefused, reason: "gokexec cannot load a jump-back helper (KEXEC_PRESERVE_CONTEXT)"},
	{long: "load-live-update", kexec: true, class: classRefused, reason: "live update is a Xen hypervisor feature; gokexec loads Linux kernels under Linux only"},
	{long: "exec-live-update", kexec: true, class: classRefused, reason: "live update is a Xen hypervisor feature; gokexec loads Linux kernels under Linux only"},
	{long: "entry", arg: "ADDRESS", kexec: true, class: classRefused, reason: "gokexec computes the entry point from the image; it cannot jump to another address"},
	{long: "reuseinitrd", kexec: true, class: classRefused, reason: "gokexec cannot reuse the running kernel's initrd memory (retain_initrd); pass --initrd FILE"},
	{long: "args-elf", kexec: true, loadOnly: true, class: classRefused, reason: "gokexec boots Linux kernels only (an ELF image is booted as Linux)"},
	{long: "args-none", kexec: true, loadOnly: true, class: classRefused, reason: "gokexec boots Linux kernels only (an ELF image is booted as Linux)"},
	{long: "module", arg: "FILE", kexec: true, loadOnly: true, class: classRefused, reason: "gokexec boots no multiboot images"},
}

// actOpt applies an action option as kexec-tools' main() does: each sets
// the do_* switches, so the last one wins (-e -l K loads only; -l -e
// boots what is loaded; -u then -l unloads and loads; -p stays a crash
// load whatever action follows, as kexec_flags keeps KEXEC_ON_CRASH).
func actOpt(o byte) func(*cli, string) error {
	return func(c *cli, _ string) error {
		a := &c.act
		switch o {
		case 'f':
			a.load, a.shutdown, a.exec, a.finalize = true, false, true, false
		case 'l':
			a.hasLoad = true
			a.load, a.exec, a.shutdown, a.finalize = true, false, false, false
		case 'u':
			a.load, a.shutdown, a.unload, a.finalize = false, false, true, false
		case 'e':
			a.load, a.shutdown, a.exec, a.finalize = false, false, true, false
		case 'p':
			a.load, a.exec, a.shutdown, a.finalize = true, false, false, false
			a.crash = true
		case 'F': // gokexec's --finalize: like -e without the reboot
			a.load, a.shutdown, a.exec, a.finalize = false, false, false, true
		}
		a.explicit = true
		return nil
	}
}

// syscallOpt is -s, -c or -a: the last one wins, as in kexec-tools.
func syscallOpt(m string) func(*cli, string) error {
	return func(c *cli, _ string) error { c.syscall = m; return nil }
}

// parseError is a command line the parser refuses (exit 2).
func parseError(format string, a ...any) error { return usageErr(format, a...) }

// lookupLong finds the option a "--name" names: an exact name, else a
// unique prefix. A prefix unique among kexec-tools' options names that
// option even when gokexec's own options share it.
func lookupLong(name string) (*opt, error) {
	var all, kx []*opt
	for i := range optTable {
		o := &optTable[i]
		if o.long == name {
			return o, nil
		}
		if strings.HasPrefix(o.long, name) {
			all = append(all, o)
			if o.kexec {
				kx = append(kx, o)
			}
		}
	}
	switch {
	case len(all) == 1:
		return all[0], nil
	case len(kx) == 1:
		return kx[0], nil
	case len(all) == 0:
		return nil, parseError("unrecognized option '--%s'", name)
	}
	names := make([]string, len(all))
	for i, o := range all {
		names[i] = "--" + o.long
	}
	sort.Strings(names)
	return nil, parseError("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))
}

func lookupShort(b byte) *opt {
	for i := range optTable {
		if optTable[i].short == b {
			return &optTable[i]
		}
	}
	return nil
}

// parseArgs parses args into c and returns the operands.
func parseArgs(c *cli, args []string) ([]string, error) {
	var pos []string
	apply := func(o *opt, v string) error {
		c.seen = append(c.seen, o)
		if o.class == classRefused {
			return parseError("--%s: %s", o.long, o.reason)
		}
		if o.set == nil {
			return nil
		}
		return o.set(c, v)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o, err := lookupLong(name)
			if err != nil {
				return nil, err
			}
			if o.arg == "" && hasVal {
				return nil, parseError("option '--%s' doesn't allow an argument", o.long)
			}
			if o.arg != "" && !hasVal {
				if i+1 >= len(args) {
					return nil, parseError("option '--%s' requires an argument (%s)", o.long, o.arg)
				}
				i++
				val = args[i]
			}
			if err := apply(o, val); err != nil {
				return nil, err
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				o := lookupShort(a[j])
				if o == nil {
					return nil, parseError("invalid option -- '%c'", a[j])
				}
				val := ""
				if o.arg != "" {
					switch {
					case j+1 < len(a):
						val = a[j+1:]
					case i+1 < len(args):
						i++
						val = args[i]
					default:
						return nil, parseError("option requires an argument -- '%c' (%s)", a[j], o.arg)
					}
					j = len(a)
				}
				if err := apply(o, val); err != nil {
					return nil, err
				}
			}
		default:
			pos = append(pos, a)
		}
	}
	return pos, nil
}

const synopsis = `Usage: gokexec [OPTION]... [KERNEL]
Load another Linux kernel and boot it without firmware (kexec), handing the
running kernel's IMA measurement list over to it. Installed as kexec, it
takes kexec-tools' options with their meanings.

  gokexec -l KERNEL [--initrd FILE] [--append STRING | --reuse-cmdline] [--ima-extra SIZE]
  gokexec -e
  gokexec KERNEL ...
  gokexec -f KERNEL ...
  gokexec -p KERNEL ...
  gokexec -u [-p]
  gokexec -S [-l]
  gokexec --finalize
  gokexec --dry-run [--json] [--host DIR] ACTION...
  gokexec capture-host DIR

-l loads; -e boots what is loaded; KERNEL without -l or -f loads, then
hands over to an orderly shutdown (systemctl kexec under systemd, else
shutdown -r now), which boots it; -f loads and boots at once. When several
of -l, -e, -f, -u and -p are given the last one wins, as in kexec-tools.
--dry-run goes with every action and combination and changes nothing.

Where gokexec differs from kexec-tools on purpose: -e finalizes the IMA
hand-over before it reboots and refuses to reboot when the list would not
replay to the TPM; nothing brings network interfaces down (-x); no purgatory
is loaded (-i, --reset-vga, --console-*, --serial*); --load-preserve-context,
--real-mode and other options it cannot honour are refused with the reason.

Options:
`

// printHelp prints the synopsis and one line per option of optTable
// ("  -l, --load                desc", "      --initrd FILE       desc"),
// the shape packaging/genman turns into the man page. The ignored and
// refused kexec-tools options are listed after.
func printHelp(w io.Writer) {
	fmt.Fprint(w, synopsis)
	line := func(o *opt, desc string) {
		left := "    "
		if o.short != 0 {
			left = "-" + string(o.short) + ", "
		}
		left += "--" + o.long
		if o.arg != "" {
			left += " " + o.arg
		}
		if len(left) > 26 {
			fmt.Fprintf(w, "  %s\n  %-26s  %s\n", left, "", desc)
		} else {
			fmt.Fprintf(w, "  %-26s  %s\n", left, desc)
		}
	}
	for i := range optTable {
		if o := &optTable[i]; o.class == classDo {
			line(o, o.help)
		}
	}
	fmt.Fprintln(w, "\nkexec-tools options accepted and ignored (each prints a note):")
	for i := range optTable {
		if o := &optTable[i]; o.class == classIgnored {
			line(o, "Ignored: "+o.reason+".")
		}
	}
	fmt.Fprintln(w, "\nkexec-tools options refused (exit 2):")
	for i := range optTable {
		if o := &optTable[i]; o.class == classRefused {
			line(o, "Refused: "+o.reason+".")
		}
	}
}
