package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/plan"
)

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
		est := ""
		if p.IMA.ListUnread {
			est = " — an estimate: the running kernel's list was not read"
		}
		fmt.Fprintf(w, "IMA hand-over: %d entries, %d bytes, segment %#x bytes at %#x (headroom %d)%s\n", p.IMA.Entries, p.IMA.ListBytes, p.IMA.Size, p.IMA.Addr, p.IMA.Headroom, est)
	default:
		fmt.Fprintln(w, "IMA hand-over: none")
	}
	return nil
}

// reportLoaded warns about every input that failed appraisal (warn mode let
// it through) and, with -d, prints the plan that was loaded to stderr.
func reportLoaded(p *plan.Plan, debug bool, warn func(string), stderr io.Writer) {
	for _, a := range p.Appraisal {
		if !a.Pass {
			warn(a.Reason)
		}
	}
	if debug {
		_ = printPlan(p, false, stderr)
	}
}
