// Package loader is gokexec's workflow: it gathers a plan's inputs from the
// running system (or from files given to override them), builds the plan,
// executes it through package kexec, and keeps the state that ties a load
// to the exec that follows it.
//
// Invariants:
//   - Every input path is resolved (filepath.Abs, filepath.EvalSymlinks)
//     before it is read, appraised or measured, and read once, through one
//     descriptor that does not follow a link in its last component, from a
//     regular file within a size bound (kexec.ReadInput). The resolved name
//     is the one appraised, recorded and measured.
//   - The bytes that are hashed and appraised are the bytes the kernel
//     gets: kexec_load copies them from memory; kexec_file_load gets a
//     sealed memfd holding them whenever appraisal is on. With appraisal
//     off, kexec_file_load gets the file itself (so the kernel's own IMA
//     measures and appraises it under its real name); the kernel's entry
//     for it is then the authority on what was loaded.
//   - Kernel, initrd and DTB are appraised, measured and re-checked at -e
//     alike. Appraisal excludes never admit them.
//   - A failed load leaves nothing loaded that the user did not have before:
//     all checks run before kexec_load, and kexec_load itself either loads
//     the whole image or nothing.
//   - Nothing is skipped silently: a named TPM that cannot be opened, a TPM
//     seen at load that is gone at -e, a missing IMA list without NoIMA,
//     state that no longer describes what is loaded, and a kernel that
//     would measure after the hand-over snapshot are errors. "This machine
//     has no TPM" is a state of its own (plan fact tpm "none",
//     Report.NoTPM).
//   - Dry runs read only what they are pointed at and never call kexec.
//   - The library never logs and never reboots; errors wrap sentinels (%w).
package loader

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// Options are the user's choices for a load.
type Options struct {
	Arch       string // "" = the running architecture
	KernelPath string
	InitrdPath string
	Cmdline    string
	DTBPath    string

	NoIMA    bool
	IMAExtra uint64
	IMAPCR   uint32 // PCR for the loader's own entries; 0 means 10
	// TPMDevice is the TPM finalize extends; it must exist and open. ""
	// takes /dev/tpmrm0, then /dev/tpm0; only when neither exists does the
	// machine count as having no TPM (plan fact tpm "none").
	TPMDevice string
	IMALog    string // override the IMA list source (file)
	MemMap    string // override the memory map source (dir or iomem file)
	MemMin    uint64
	MemMax    uint64

	// NoEFI (--noefi): hand no EFI state to an x86 kernel.
	NoEFI bool
	// Host is a captured host tree (--host) to plan against; "" is this system.
	Host string

	// Appraise, Keys and Allowlists: appraisal of the kernel and initrd.
	Appraise   appraise.Mode
	Keys       []string
	Allowlists []string

	// Mode is the syscall choice (-a, -c, -s); "" means auto.
	Mode plan.Mode

	DryRun bool
	// StateDir holds the state between -l and -e; default /run/gokexec.
	StateDir string

	appraisals []Appraisal // results of the last Inputs call
	dtbPath    string      // where the DTB of the last Inputs call came from
}

// Finalized records a completed finalize.
type Finalized struct {
	KernelEntries int    `json:"kernel_entries"`
	ListSHA256    string `json:"list_sha256"`
}

// DefaultStateDir is where a load records what -e needs.
const DefaultStateDir = "/run/gokexec"

// State is what a load leaves for the exec that follows.
type State struct {
	Options    Options     `json:"options"`
	Plan       *plan.Plan  `json:"plan"`
	Appraisals []Appraisal `json:"appraisals,omitempty"`
	// Binding ties the state to the image this load put into the kernel
	// (see CheckBinding).
	Binding *Binding `json:"binding,omitempty"`
	// Finalized, once Finalize has run, is how many of the running
	// kernel's entries the loaded hand-over list (kept beside the state in
	// handover.bin) accounts for. A later finalize continues from that list,
	// since the TPM already holds the loader's entries.
	Finalized *Finalized `json:"finalized,omitempty"`
}

// resolve returns path made absolute with every symbolic link resolved.
func resolve(what, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: path, Err: err})
	}
	r, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("%w: %w", plan.ErrInput, &kexec.InputError{What: what, Path: path, Err: err})
	}
	return r, nil
}

// readInput resolves *path (replacing it with the resolved name) and reads
// it within max bytes.
func readInput(what string, path *string, max int64) ([]byte, error) {
	r, err := resolve(what, *path)
	if err != nil {
		return nil, err
	}
	*path = r
	b, err := kexec.ReadResolved(what, r, max)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plan.ErrInput, err)
	}
	return b, nil
}

// ErrNoIMAList says there is no IMA measurement list to hand over and
// NoIMA was not given.
var ErrNoIMAList = errors.New("no IMA measurement list to hand over (securityfs not mounted at /sys/kernel/security, or IMA inactive); pass --no-ima to go on without the hand-over")

// Inputs gathers and reads everything a plan needs. The paths in o are
// replaced by their resolved names.
func Inputs(o *Options) (*plan.Inputs, error) {
	in := &plan.Inputs{Arch: o.Arch, Cmdline: o.Cmdline,
		IMAExtra: o.IMAExtra, MemMin: o.MemMin, MemMax: o.MemMax, IMAOrder: binary.LittleEndian}
	if in.Arch == "" {
		in.Arch = runtime.GOARCH
	}
	in.PageSize = 4096
	var err error
	if o.KernelPath == "" {
		return nil, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	if in.Kernel, err = readInput("kernel", &o.KernelPath, kexec.MaxKernelBytes); err != nil {
		return nil, err
	}
	in.KernelPath = o.KernelPath
	if o.InitrdPath != "" {
		if in.Initrd, err = readInput("--initrd", &o.InitrdPath, kexec.MaxInitrdBytes); err != nil {
			return nil, err
		}
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", plan.ErrInput, o.InitrdPath)
		}
		in.InitrdPath = o.InitrdPath
	}
	native := in.Arch == runtime.GOARCH
	o.dtbPath = ""
	switch {
	case o.DTBPath != "":
		if in.DTB, err = readInput("--dtb", &o.DTBPath, kexec.MaxDTBBytes); err != nil {
			return nil, err
		}
		o.dtbPath = o.DTBPath
	case in.Arch == plan.ArchARM64 && native:
		if in.DTB, err = kexec.ReadInput("device tree", kexec.SysfsFDT, kexec.MaxDTBBytes); err != nil {
			return nil, fmt.Errorf("%w: the running system's device tree: %w (give one with --dtb)", plan.ErrInput, err)
		}
		o.dtbPath = kexec.SysfsFDT
	}
	if err := o.appraiseInputs(in); err != nil {
		return nil, err
	}
	switch {
	case o.MemMap != "" || native:
		if in.Memory, _, err = kexec.ReadMemoryMap(o.MemMap); err != nil {
			return nil, err
		}
	case in.Arch == plan.ArchARM64:
		// Planning for another machine: the DTB's /memory nodes serve.
	default:
		return nil, fmt.Errorf("%w: planning for %s on %s needs the target's memory map (--memmap)", plan.ErrInput, in.Arch, runtime.GOARCH)
	}
	if err := o.firmware(in, native); err != nil {
		return nil, err
	}
	if !o.NoIMA {
		list, _, err := readIMAList(o.IMALog)
		switch {
		case errors.Is(err, kexec.ErrNoIMA):
			// A dry run says so in its plan (no "ima" section, fact
			// ima_list false); a real load or finalize refuses.
			if !o.DryRun {
				return nil, ErrNoIMAList
			}
		case err != nil:
			return nil, fmt.Errorf("%w: %w", plan.ErrInput, err)
		default:
			in.IMAList = list
			if in.IMAList == nil {
				in.IMAList = []byte{}
			}
		}
	}
	if !o.DryRun {
		in.RNGSeed = make([]byte, 32)
		if _, err := rand.Read(in.RNGSeed); err != nil {
			return nil, fmt.Errorf("rng seed: %w", err)
		}
		in.ACPIRSDP = kexec.ACPIRSDP()
	} else {
		// Dry runs are reproducible: an all-zero seed of the real size keeps
		// the layout identical to a real load's.
		in.RNGSeed = make([]byte, 32)
	}
	return in, nil
}

// appraiseInputs appraises the kernel and initrd bytes just read and keeps
// the results (and verified signatures) in o.appraisals.
func (o *Options) appraiseInputs(in *plan.Inputs) error {
	o.appraisals = nil
	pol, err := o.policy()
	if err != nil || pol.Mode == appraise.ModeOff {
		return err
	}
	files := []struct {
		path string
		data []byte
	}{{in.KernelPath, in.Kernel}}
	if in.Initrd != nil {
		files = append(files, struct {
			path string
			data []byte
		}{in.InitrdPath, in.Initrd})
	}
	if in.DTB != nil {
		files = append(files, struct {
			path string
			data []byte
		}{o.dtbPath, in.DTB})
	}
	for _, f := range files {
		a, err := appraiseFile(pol, f.path, f.data)
		if err != nil {
			return fmt.Errorf("appraisal: %w; nothing loaded", err)
		}
		o.appraisals = append(o.appraisals, a)
	}
	return nil
}

func (o *Options) pcr() uint32 {
	if o.IMAPCR == 0 {
		return DefaultPCR
	}
	return o.IMAPCR
}

// Plan reads the inputs, decides the syscall and builds the plan. For
// kexec_load, the hand-over list is the running kernel's list followed by a
// kexec_load marker.
func Plan(o *Options) (*plan.Plan, *plan.Inputs, error) {
	in, err := Inputs(o)
	if err != nil {
		return nil, nil, err
	}
	facts, err := GatherFacts(o, len(in.IMAList) > 0)
	if err != nil {
		return nil, nil, err
	}
	d := plan.Decide(o.Mode, facts)
	p, err := planFor(o, in, &d, d.Syscall)
	if err != nil {
		return nil, nil, err
	}
	p.Decision = &d
	for _, a := range o.appraisals {
		p.Appraisal = append(p.Appraisal, plan.Appraisal{Path: a.Path, Pass: a.Pass, Method: a.Method, Reason: a.Reason})
	}
	return p, in, nil
}

// ErrKernelMeasuresExec says a kexec_load hand-over was refused because
// the running kernel measures its own kexec_execute entry after the
// snapshot (DESIGN §3.3.1): the next kernel would get a list one entry
// short of the PCRs.
var ErrKernelMeasuresExec = errors.New("the running kernel measures its own kexec_execute entry in its reboot notifier (CONFIG_IMA_KEXEC: ima_update_kexec_buffer/ima_measure_kexec_event in /proc/kallsyms), after gokexec's snapshot; a kexec_load hand-over would be one entry short. Use kexec_file_load (-s or -a: the kernel hands its list over itself) or --no-ima")

func planFor(o *Options, in *plan.Inputs, d *plan.Decision, syscall string) (*plan.Plan, error) {
	var p *plan.Plan
	var err error
	if syscall == plan.SyscallKexecFileLoad {
		p, err = plan.FileLoad(in)
	} else {
		if in.IMAList != nil && d.Facts.KernelMeasuresExec {
			return nil, ErrKernelMeasuresExec
		}
		if err := withLoadMarker(in, o.pcr()); err != nil {
			return nil, err
		}
		p, err = plan.Build(in)
	}
	if err != nil {
		if errors.Is(err, fdt.ErrMalformed) && o.dtbPath != "" {
			// Name the file the device tree came from.
			return nil, fmt.Errorf("%w: device tree %s: %w", plan.ErrInput, o.dtbPath, err)
		}
		return nil, err
	}
	if in.DTB != nil && o.dtbPath != "" {
		p.DTBInput = &plan.Input{Path: o.dtbPath, Size: uint64(len(in.DTB)), SHA256: plan.Digest(in.DTB)}
	}
	return p, nil
}

func archFlag(arch string) uint64 {
	switch arch {
	case plan.ArchAMD64:
		return kexec.ArchX86_64
	case plan.ArchARM64:
		return kexec.ArchAArch64
	}
	return kexec.ArchDefault
}

// Execute loads a plan with kexec_load.
func Execute(p *plan.Plan) error {
	segs := make([]segment.Segment, len(p.Segments))
	for i, s := range p.Segments {
		segs[i] = segment.Segment{Name: s.Name, Buf: s.Buf, Mem: s.Mem, Memsz: s.Memsz}
	}
	return kexec.Load(p.Entry, segs, archFlag(p.Arch))
}

func (o *Options) stateDir() string {
	if o.StateDir != "" {
		return o.StateDir
	}
	return DefaultStateDir
}

// Load plans and loads, then records the state for Exec. warn receives
// the warnings a user must see (the list will not be carried, a fallback).
func Load(o *Options, warn func(string)) (*plan.Plan, error) {
	p, in, err := Plan(o)
	if err != nil {
		return nil, err
	}
	d := p.Decision
	if d.Warning != "" {
		warn(d.Warning)
	}
	for _, w := range p.Warnings {
		warn(w)
	}
	err = execute(p, in, o.Appraise != appraise.ModeOff)
	auto := o.Mode == "" || o.Mode == plan.ModeAuto
	switch {
	case err == nil:
	case auto && p.Syscall == plan.SyscallKexecLoad && fallbackToFile(err):
		warn(fmt.Sprintf("kexec_load refused (%v); falling back to kexec_file_load: the IMA list will not be carried unless the kernel does it itself", err))
		fp, ferr := plan.FileLoad(in)
		if ferr != nil {
			return nil, ferr
		}
		fp.Decision = d
		if in.DTB != nil && o.dtbPath != "" {
			fp.DTBInput = p.DTBInput
		}
		if err = execute(fp, in, o.Appraise != appraise.ModeOff); err != nil {
			return nil, err
		}
		p = fp
	case auto && p.Syscall == plan.SyscallKexecFileLoad && fallbackToLoad(err):
		warn(fmt.Sprintf("kexec_file_load failed (%v); falling back to kexec_load", err))
		lp, perr := planFor(o, in, d, plan.SyscallKexecLoad)
		if perr != nil {
			return nil, perr
		}
		lp.Decision = d
		if err = execute(lp, in, o.Appraise != appraise.ModeOff); err != nil {
			return nil, err
		}
		p = lp
	default:
		return nil, err
	}
	b, err := bind()
	if err == nil {
		err = saveState(o.stateDir(), &State{Options: *o, Plan: p, Appraisals: o.appraisals, Binding: b})
	}
	if err != nil {
		// The image is loaded but -e could not finalize it: unload rather
		// than leave an image whose hand-over would go stale.
		_ = Unload(o.stateDir())
		return nil, err
	}
	return p, nil
}

// execute runs a plan with the syscall it names.
func execute(p *plan.Plan, in *plan.Inputs, appraised bool) error {
	if p.Syscall == plan.SyscallKexecFileLoad {
		return fileLoad(in, appraised)
	}
	return executePlan(p)
}

// fileLoad hands the kernel and initrd to kexec_file_load. When the
// inputs were appraised (or the kernel had to be decompressed) the kernel
// reads a sealed memfd holding exactly the bytes that were hashed, so no
// one can swap the file between appraisal and load. Otherwise it reads the
// resolved file itself, through one descriptor that is hashed first, so
// the kernel's own IMA hooks see the file's name and security.ima.
func fileLoad(in *plan.Inputs, appraised bool) error {
	open := func(path string, data []byte) (*os.File, error) {
		if appraised {
			return kexec.SealedMemfd(filepath.Base(path), data)
		}
		f, err := kexec.OpenResolved(path)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.LimitReader(f, int64(len(data))+1)); err == nil && hex.EncodeToString(h.Sum(nil)) == plan.Digest(data) {
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				return f, nil
			}
		}
		f.Close()
		return kexec.SealedMemfd(filepath.Base(path), data)
	}
	k, err := open(in.KernelPath, in.Kernel)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer k.Close()
	var rd *os.File
	if in.Initrd != nil {
		if rd, err = open(in.InitrdPath, in.Initrd); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		defer rd.Close()
	}
	return fileLoadFDs(k, rd, in.Cmdline)
}

// Unload unloads whatever kexec_load or kexec_file_load loaded and forgets
// the recorded state.
func Unload(stateDir string) error {
	errLoad := kexec.UnloadLoad(archFlag(runtime.GOARCH))
	errFile := kexec.UnloadFile()
	if errLoad != nil && errFile != nil {
		return errLoad
	}
	return ClearState(stateDir)
}
