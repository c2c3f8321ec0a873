package main

// The help text: the one source of imalog's option text. `imalog --help`
// prints every command's usage and every option (packaging/genman renders
// imalog(1) from it); `imalog CMD --help` prints that command's. Option
// lines are "  -x, --long ARG   description" (pflag's layout), one line
// each.

import (
	"fmt"
	"github.com/gokexec/gokexec/internal/buildinfo"
	"io"
	"strings"
)

type helpOpt struct{ short, long, arg, desc string }

type helpCmd struct {
	name  string
	usage []string
	prose string
	opts  []helpOpt
}

var (
	optByteOrder = helpOpt{"", "byte-order", "ORDER", "native (default), little (canonical) or big: the list's byte order"}
	optKexec     = helpOpt{"", "kexec", "", "FILE is a kexec hand-over buffer (24-byte header, then the list)"}
	optJSON      = helpOpt{"", "json", "", "JSON output: one versioned envelope (docs/verdict-schema.md)"}
	optHelp      = helpOpt{"-h", "help", "", "print this help and exit 0"}
)

var helpCmds = []helpCmd{
	{"show", []string{"imalog show [--format ascii|json] [--byte-order ORDER] [--kexec] FILE"},
		"Print the list as the kernel's ascii_runtime_measurements does (byte-identical), or as JSON with the boot/kexec timeline.",
		[]helpOpt{{"", "format", "FORMAT", "ascii (default) or json"}, optByteOrder, optKexec, optHelp}},
	{"replay", []string{"imalog replay [--bank BANK]... [--method per-bank|sha1-padded|both] [--json] FILE"},
		"Replay the list into PCR values per bank and extension method.",
		[]helpOpt{{"", "bank", "BANK", "sha1, sha256, sha384 or sha512 (repeatable, or comma-separated; default sha1,sha256,sha384)"},
			{"", "method", "METHOD", "per-bank (the bank's own hash, default), sha1-padded, or both"},
			optJSON, optByteOrder, optKexec, optHelp}},
	{"verify", []string{
		"imalog verify FILE (--pcrs [BANK,]PCRFILE... | --tpm[=DEV]) [--reads MODE] [--strict] [--event-log FILE] [--json]",
		"imalog verify FILE --quote MSG --sig SIG --ak KEY [--nonce HEX] --pcrs PCRFILE [--ak-restricted] [--json]",
		"imalog verify FILE (--pcrs ... | --quote ...) --checkpoint CPFILE [--checkpoint-check tail|full]",
		"imalog verify --machines DIR|MANIFEST [--jobs N] [--checkpoint-each] [--ak-restricted]"},
		"Verify the list (FILE; - reads standard input) against PCR values: from PCR files, the TPM, or a TPM2 quote checked first; incrementally from a checkpoint; or for a fleet of machines (JSON Lines, one verdict per machine). Exit 0 consistent, 1 inconsistent or refused, 2 bad input.",
		[]helpOpt{
			{"", "pcrs", "[BANK,]FILE", "PCR values: evmctl's PCR-NN lines, tpm2_pcrread/tpm2_quote YAML, JSON, bare hex (sysfs pcr-BANK/N), or tpm2_quote -o (repeatable)"},
			{"", "tpm", "[=DEV]", "read the PCR values from the TPM (default device: the first found)"},
			{"", "reads", "MODE", "auto (default), instant (one moment: every bank one common prefix) or per-bank (each bank its own prefix)"},
			{"", "strict", "", "every PCR with entries must be quoted, and no entry may follow the matched prefix"},
			optJSON, optByteOrder, optKexec,
			{"", "ignore-violations", "", "accepted for evmctl compatibility; violations always extend 0xff"},
			{"", "quote", "MSG", "a TPM2 quote message (tpm2_quote -m: TPMS_ATTEST)"},
			{"", "sig", "SIG", "its signature (tpm2_quote -s: TPMT_SIGNATURE)"},
			{"", "ak", "KEY", "the attestation key: TPM2B_PUBLIC (tpm2_createak -u) or PEM"},
			{"", "nonce", "HEX", "the nonce sent with the quote request (none: the quote must carry none)"},
			{"", "ak-restricted", "", "refuse an AK not known to be a restricted signing key (also for --machines)"},
			{"", "allow-sha1", "", "accept a quote signed with SHA-1 (the key policy wants SHA-256 or stronger)"},
			{"", "checkpoint", "CPFILE", "incremental: resume from CPFILE when it exists, then rewrite it atomically"},
			{"", "checkpoint-check", "HOW", "tail (default: hash the last 4 KiB the checkpoint consumed) or full (all of it)"},
			{"", "machines", "DIR|MANIFEST", "verify a fleet: a directory of machine directories or a manifest (JSON Lines out)"},
			{"", "jobs", "N", "with --machines: machines verified at a time (default: the CPUs)"},
			{"", "checkpoint-each", "", "with --machines DIR: use and rewrite each machine's checkpoint file"},
			{"", "event-log", "FILE", "the firmware's TCG event log (binary_bios_measurements): PCRs 0-9 for each boot's boot_aggregate"},
			optHelp}},
	{"restore", []string{"imalog restore [--byte-order ORDER] [--list] [--json] FILE"},
		"Say how many entries the next kernel would restore from a hand-over buffer (or a list with --list), and why it would stop.",
		[]helpOpt{{"", "list", "", "FILE is a binary list, not a hand-over buffer"}, optJSON, optByteOrder, optHelp}},
}

func writeOpts(w io.Writer, opts []helpOpt) {
	spec := func(o helpOpt) string {
		s := "    "
		if o.short != "" {
			s = o.short + ", "
		}
		s += "--" + o.long
		if o.arg != "" {
			if strings.HasPrefix(o.arg, "[=") {
				s += o.arg
			} else {
				s += " " + o.arg
			}
		}
		return s
	}
	width := 0
	for _, o := range opts {
		width = max(width, len(spec(o)))
	}
	for _, o := range opts {
		fmt.Fprintf(w, "  %-*s   %s\n", width, spec(o), o.desc)
	}
}

// writeHelp prints the general help (cmd == "") or one command's.
func writeHelp(w io.Writer, cmd string) bool {
	if cmd != "" {
		for _, c := range helpCmds {
			if c.name == cmd {
				fmt.Fprintln(w, "usage:")
				for _, u := range c.usage {
					fmt.Fprintf(w, "  %s\n", u)
				}
				fmt.Fprintf(w, "\n%s\n\noptions:\n", c.prose)
				writeOpts(w, c.opts)
				return true
			}
		}
		return false
	}
	fmt.Fprintln(w, "usage:")
	for _, c := range helpCmds {
		for _, u := range c.usage {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
	fmt.Fprintln(w, "  imalog --version")
	fmt.Fprint(w, `
Show, replay and verify Linux IMA measurement lists on the attestation side.
FILE is binary_runtime_measurements ("-": standard input). imalog CMD --help
describes one command. Every string from an input is printed escaped; --json
output is one versioned envelope (docs/verdict-schema.md).

`)
	var all []helpOpt
	seen := map[string]bool{}
	for _, c := range helpCmds {
		for _, o := range c.opts {
			if !seen[o.long] {
				seen[o.long] = true
				all = append(all, o)
			}
		}
	}
	all = append(all, helpOpt{"", "version", "", "print imalog's version and VCS commit, and exit 0"})
	writeOpts(w, all)
	return true
}

// versionString is imalog's version and the commit it was built from.
func versionString() string { return buildinfo.Line("imalog") }

// wantsHelp reports whether args ask for help (before a "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "--help" {
			return true
		}
	}
	return false
}
