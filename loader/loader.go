// Package loader is gokexec's workflow: it gathers a plan's inputs from the
// running system (or from files given to override them), builds the plan,
// executes it through package kexec, and keeps the state that ties a load
// to the exec that follows it.
//
// Invariants:
//   - Every input file is read once; the bytes that are hashed are the bytes
//     that are loaded.
//   - A failed load leaves nothing loaded that the user did not have before:
//     all checks run before kexec_load, and kexec_load itself either loads
//     the whole image or nothing.
//   - Dry runs read only what they are pointed at and never call kexec.
package loader

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/gokexec/gokexec/appraise"
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
	// TPMDevice is the TPM finalize extends; "" tries /dev/tpmrm0, then /dev/tpm0.
	TPMDevice string
	IMALog    string // override the IMA list source (file)
	MemMap    string // override the memory map source (dir or iomem file)
	MemMin    uint64
	MemMax    uint64

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
	// Finalized, once Finalize has run, is how many of the running
	// kernel's entries the loaded hand-over list (kept beside the state in
	// handover.bin) accounts for. A later finalize continues from that list,
	// since the TPM already holds the loader's entries.
	Finalized *Finalized `json:"finalized,omitempty"`
}

// Inputs gathers and reads everything a plan needs.
func Inputs(o *Options) (*plan.Inputs, error) {
	in := &plan.Inputs{Arch: o.Arch, KernelPath: o.KernelPath, InitrdPath: o.InitrdPath, Cmdline: o.Cmdline,
		IMAExtra: o.IMAExtra, MemMin: o.MemMin, MemMax: o.MemMax, IMAOrder: binary.LittleEndian}
	if in.Arch == "" {
		in.Arch = runtime.GOARCH
	}
	in.PageSize = 4096
	var err error
	if o.KernelPath == "" {
		return nil, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	if in.Kernel, err = os.ReadFile(o.KernelPath); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if o.InitrdPath != "" {
		if in.Initrd, err = os.ReadFile(o.InitrdPath); err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", plan.ErrInput, o.InitrdPath)
		}
	}
	if err := o.appraiseInputs(in); err != nil {
		return nil, err
	}
	native := in.Arch == runtime.GOARCH
	switch {
	case o.DTBPath != "":
		if in.DTB, err = os.ReadFile(o.DTBPath); err != nil {
			return nil, fmt.Errorf("dtb: %w", err)
		}
	case in.Arch == plan.ArchARM64 && native:
		if in.DTB, err = os.ReadFile(kexec.SysfsFDT); err != nil {
			return nil, fmt.Errorf("dtb: the running system's device tree: %w (give one with --dtb)", err)
		}
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
	if !o.NoIMA {
		list, _, err := kexec.ReadIMAList(o.IMALog)
		switch {
		case errors.Is(err, kexec.ErrNoIMA):
			// Nothing to hand over; the plan says so (no "ima" section).
		case err != nil:
			return nil, err
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
	d := plan.Decide(o.Mode, GatherFacts(o, len(in.IMAList) > 0))
	p, err := planFor(o, in, d.Syscall)
	if err != nil {
		return nil, nil, err
	}
	p.Decision = &d
	for _, a := range o.appraisals {
		p.Appraisal = append(p.Appraisal, plan.Appraisal{Path: a.Path, Pass: a.Pass, Method: a.Method, Reason: a.Reason})
	}
	return p, in, nil
}

func planFor(o *Options, in *plan.Inputs, syscall string) (*plan.Plan, error) {
	if syscall == plan.SyscallKexecFileLoad {
		return plan.FileLoad(in)
	}
	if err := withLoadMarker(in, o.pcr()); err != nil {
		return nil, err
	}
	return plan.Build(in)
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
	err = execute(p, in)
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
		if err = execute(fp, in); err != nil {
			return nil, err
		}
		p = fp
	case auto && p.Syscall == plan.SyscallKexecFileLoad && fallbackToLoad(err):
		warn(fmt.Sprintf("kexec_file_load failed (%v); falling back to kexec_load", err))
		lp, perr := planFor(o, in, plan.SyscallKexecLoad)
		if perr != nil {
			return nil, perr
		}
		lp.Decision = d
		if err = execute(lp, in); err != nil {
			return nil, err
		}
		p = lp
	default:
		return nil, err
	}
	if err := saveState(o.stateDir(), &State{Options: *o, Plan: p, Appraisals: o.appraisals}); err != nil {
		// The image is loaded but -e could not finalize it: unload rather
		// than leave an image whose hand-over would go stale.
		_ = Unload(o.stateDir())
		return nil, err
	}
	return p, nil
}

// execute runs a plan with the syscall it names.
func execute(p *plan.Plan, in *plan.Inputs) error {
	if p.Syscall == plan.SyscallKexecFileLoad {
		return fileLoad(in)
	}
	return Execute(p)
}

// fileLoad hands the kernel and initrd to kexec_file_load. The original
// files are passed when their bytes are what was read (so the kernel's own
// IMA appraisal sees their security.ima); a kernel that had to be
// decompressed goes through a sealed memfd.
func fileLoad(in *plan.Inputs) error {
	open := func(path string, data []byte) (*os.File, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		// Pass the file itself only if it still holds the bytes that were
		// read and hashed; otherwise load exactly those bytes.
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil && hex.EncodeToString(h.Sum(nil)) == plan.Digest(data) {
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
	return kexec.FileLoad(k, rd, in.Cmdline, 0)
}

func saveState(dir string, s *State) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// ErrNoState says -e found no record of a gokexec load.
var ErrNoState = errors.New("no gokexec load recorded")

// LoadState reads the state a load left.
func LoadState(dir string) (*State, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", dir, err)
	}
	return &s, nil
}

// ClearState removes the recorded state (after an unload).
func ClearState(dir string) error {
	if dir == "" {
		dir = DefaultStateDir
	}
	err := os.Remove(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
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
