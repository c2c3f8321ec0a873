// Package loader is the library a bootloader calls to boot another Linux
// kernel with the running kernel's IMA measurement list handed over:
//
//	l, err := loader.Load(ctx, host, img, opts) // plan, appraise, load
//	rep, err := l.Finalize(ctx)                 // just before the reboot
//	err = l.Exec()                              // reboot into it
//
// The Image's inputs are io.ReaderAts; nothing needs a file or a state
// directory. Everything the loader reads from or does to the machine goes
// through a Host: System (this machine), Captured (a tree from gokexec
// capture-host) or a test's fake. State and StateDir exist only for the
// two-process command line (gokexec -l, later gokexec -e).
//
// Invariants:
//   - The bytes that are hashed and appraised are the bytes the kernel
//     gets: kexec_load copies them from memory; kexec_file_load gets a
//     sealed memfd holding them whenever appraisal is on. With appraisal
//     off and an Input.Path, kexec_file_load gets that file (so the
//     kernel's own IMA measures and appraises it under its real name),
//     after checking it still holds the bytes that were read.
//   - Kernel, initrd and DTB are appraised, measured and re-checked at
//     finalize alike (re-read through their ReaderAts, or from their
//     paths in a two-process load). Appraisal excludes never admit them.
//   - A failed load leaves nothing loaded that the caller did not have
//     before: all checks run before the syscall, and kexec_load itself
//     either loads the whole image or nothing.
//   - Nothing is skipped silently: a named TPM that cannot be opened, a
//     TPM seen at load that is gone at finalize, a missing IMA list without
//     NoIMA, a load that is no longer what the kernel has loaded, and a
//     kernel that would measure after the hand-over snapshot are errors.
//     "This machine has no TPM" is a state of its own (plan fact tpm
//     "none", Report.NoTPM).
//   - Plan (a dry run) reads only what its Host describes and never acts.
//   - Exec reboots only a load whose last Finalize succeeded.
//   - The library never logs and never exits; every refusal wraps a
//     sentinel error (errors.Is), listed in errors.go.
package loader

import (
	"context"
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

// Options are the caller's choices for a load. The zero value is a load
// for this machine's architecture with the IMA hand-over, no headroom,
// PCR 10, the automatic syscall choice and no appraisal.
type Options struct {
	Arch string    `json:"arch,omitempty"` // "" = the running architecture
	Mode plan.Mode `json:"mode,omitempty"` // syscall choice (-a, -c, -s); "" means auto

	NoIMA    bool   `json:"no_ima,omitempty"`
	IMAExtra uint64 `json:"ima_extra,omitempty"` // headroom after the list for entries added before finalize
	IMAPCR   uint32 `json:"ima_pcr,omitempty"`   // PCR for the loader's own entries; 0 means 10
	MemMin   uint64 `json:"mem_min,omitempty"`
	MemMax   uint64 `json:"mem_max,omitempty"`
	// NoEFI (--noefi): hand no EFI state to an x86 kernel.
	NoEFI bool `json:"no_efi,omitempty"`

	// Appraisal decides whether the inputs may be loaded (Mode off: no
	// appraisal). Only its mode is kept in a State.
	Appraisal appraise.Policy `json:"-"`
	// Appraise is Appraisal.Mode as a State records it.
	Appraise appraise.Mode `json:"appraise,omitempty"`

	// Warn, if set, receives what a user must be told at load: the list
	// will not be carried, a syscall fallback, a plan warning.
	Warn func(string) `json:"-"`
}

func (o *Options) arch() string {
	if o.Arch == "" {
		return runtime.GOARCH
	}
	return o.Arch
}

func (o *Options) pcr() uint32 {
	if o.IMAPCR == 0 {
		return DefaultPCR
	}
	return o.IMAPCR
}

func (o *Options) appraised() bool {
	return o.Appraisal.Mode != appraise.ModeOff || o.Appraise != appraise.ModeOff
}

func (o *Options) warn(s string) {
	if o.Warn != nil {
		o.Warn(s)
	}
}

// read is an Image's bytes: plan inputs and where the DTB came from.
type read struct {
	in      *plan.Inputs
	dtbName string // "" when the plan starts from no device tree
	img     Image
}

// inputs reads the image and the host's facts into plan inputs. dry: a
// dry run (a missing IMA list is reported by the plan, not refused; the
// RNG seed is zero so the plan is reproducible).
func inputs(h Host, img Image, o *Options, dry bool) (*read, error) {
	in := &plan.Inputs{Arch: o.arch(), Cmdline: img.Cmdline, PageSize: 4096,
		IMAExtra: o.IMAExtra, MemMin: o.MemMin, MemMax: o.MemMax, IMAOrder: binary.LittleEndian}
	r := &read{in: in, img: img}
	if !img.Kernel.present() {
		return nil, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	var err error
	if in.Kernel, err = img.Kernel.read("kernel", kexec.MaxKernelBytes); err != nil {
		return nil, err
	}
	in.KernelPath = img.Kernel.Name
	if img.Initrd.present() {
		if in.Initrd, err = img.Initrd.read("--initrd", kexec.MaxInitrdBytes); err != nil {
			return nil, err
		}
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", plan.ErrInput, img.Initrd.Name)
		}
		in.InitrdPath = img.Initrd.Name
	}
	native := in.Arch == runtime.GOARCH
	switch {
	case img.DTB.present():
		if in.DTB, err = img.DTB.read("--dtb", kexec.MaxDTBBytes); err != nil {
			return nil, err
		}
		r.dtbName = img.DTB.Name
	case in.Arch == plan.ArchARM64 && native:
		if in.DTB, err = h.DeviceTree(); err != nil {
			return nil, fmt.Errorf("%w: the running system's device tree: %w (give one with --dtb)", plan.ErrInput, err)
		}
		r.dtbName = kexec.SysfsFDT
	}
	if in.Memory, err = h.MemoryMap(in.Arch); err != nil {
		// Planning arm64 for another machine: the DTB's /memory nodes serve.
		if !(errors.Is(err, ErrNotDescribed) && in.Arch == plan.ArchARM64 && !native) {
			if errors.Is(err, ErrNotDescribed) {
				return nil, fmt.Errorf("%w: %w", plan.ErrInput, err)
			}
			return nil, err
		}
	}
	if in.Arch == plan.ArchAMD64 {
		fw, err := h.Firmware(in.Arch)
		if err != nil {
			return nil, fmt.Errorf("%w: firmware: %w", plan.ErrInput, err)
		}
		in.EFI, in.NoEFI = fw, o.NoEFI
	}
	if !o.NoIMA {
		list, err := h.IMAList()
		switch {
		case errors.Is(err, kexec.ErrNoIMA):
			// A dry run says so in its plan (no "ima" section, fact
			// ima_list false); a real load or finalize refuses.
			if !dry {
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
	in.RNGSeed = make([]byte, 32)
	if !dry {
		if _, err := rand.Read(in.RNGSeed); err != nil {
			return nil, fmt.Errorf("rng seed: %w", err)
		}
		in.ACPIRSDP = h.ACPIRSDP()
	}
	return r, nil
}

// appraiseAll appraises kernel, initrd and DTB as they were read.
func appraiseAll(o *Options, r *read) ([]Appraisal, error) {
	if !o.appraised() {
		return nil, nil
	}
	files := []struct {
		name string
		data []byte
		sig  []byte
	}{{r.in.KernelPath, r.in.Kernel, r.img.Kernel.Signature}}
	if r.in.Initrd != nil {
		files = append(files, struct {
			name string
			data []byte
			sig  []byte
		}{r.in.InitrdPath, r.in.Initrd, r.img.Initrd.Signature})
	}
	if r.in.DTB != nil {
		files = append(files, struct {
			name string
			data []byte
			sig  []byte
		}{r.dtbName, r.in.DTB, r.img.DTB.Signature})
	}
	var out []Appraisal
	for _, f := range files {
		a, err := appraiseBytes(o.Appraisal, f.name, f.data, f.sig)
		if err != nil {
			return nil, fmt.Errorf("appraisal: %w; nothing loaded", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// prepare reads, appraises, decides and plans.
func prepare(h Host, img Image, o *Options, dry bool) (*plan.Plan, *read, []Appraisal, error) {
	r, err := inputs(h, img, o, dry)
	if err != nil {
		return nil, nil, nil, err
	}
	as, err := appraiseAll(o, r)
	if err != nil {
		return nil, nil, nil, err
	}
	facts, err := gatherFacts(h, o, len(r.in.IMAList) > 0)
	if err != nil {
		return nil, nil, nil, err
	}
	d := plan.Decide(o.Mode, facts)
	p, err := planFor(o, r, &d, d.Syscall)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, a := range as {
		p.Appraisal = append(p.Appraisal, plan.Appraisal{Path: a.Path, Pass: a.Pass, Method: a.Method, Reason: a.Reason})
	}
	return p, r, as, nil
}

// Plan is a dry run: it reads the image and the host's facts, appraises,
// decides the syscall and builds the plan, and loads nothing. For
// kexec_load the hand-over list is the host's list followed by a
// kexec_load marker.
func Plan(ctx context.Context, h Host, img Image, o Options) (*plan.Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, _, _, err := prepare(h, img, &o, true)
	return p, err
}

func planFor(o *Options, r *read, d *plan.Decision, syscall string) (*plan.Plan, error) {
	in := r.in
	var p *plan.Plan
	var err error
	if syscall == plan.SyscallKexecFileLoad {
		p, err = plan.FileLoad(in)
	} else {
		if in.IMAList != nil && d.Facts.KernelMeasuresExec {
			return nil, ErrKernelMeasuresExec
		}
		if in, err = withLoadMarker(in, o.pcr()); err != nil {
			return nil, err
		}
		p, err = plan.Build(in)
	}
	if err != nil {
		if errors.Is(err, fdt.ErrMalformed) && r.dtbName != "" {
			// Name the input the device tree came from.
			return nil, fmt.Errorf("%w: device tree %s: %w", plan.ErrInput, r.dtbName, err)
		}
		return nil, err
	}
	if in.DTB != nil && r.dtbName != "" {
		p.DTBInput = &plan.Input{Path: r.dtbName, Size: uint64(len(in.DTB)), SHA256: plan.Digest(in.DTB)}
	}
	p.Decision = d
	return p, nil
}

// Loaded is an image loaded into the kernel, to be finalized and booted.
// It is not safe for concurrent use.
type Loaded struct {
	host Host
	img  Image
	opts Options
	// plan is the plan last loaded (Finalize replaces it).
	plan       *plan.Plan
	appraisals []Appraisal
	binding    *Binding
	// finalized and handover: after a Finalize, how many of the running
	// kernel's entries the loaded hand-over list accounts for, and that
	// list. A later Finalize continues from it.
	finalized *Finalized
	handover  []byte
	// ready: the last Finalize succeeded and nothing has been loaded since.
	ready bool
}

// Plan is the plan that is loaded now.
func (l *Loaded) Plan() *plan.Plan { return l.plan }

// Appraisals are the appraisal outcomes of the load (none without
// appraisal).
func (l *Loaded) Appraisals() []Appraisal { return l.appraisals }

// Load plans, appraises and loads img. The returned Loaded must be
// finalized (Finalize) before Exec boots it. Warnings (a syscall fallback,
// what the next kernel lacks) go to o.Warn.
func Load(ctx context.Context, h Host, img Image, o Options) (*Loaded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.Appraise = o.Appraisal.Mode
	p, r, as, err := prepare(h, img, &o, false)
	if err != nil {
		return nil, err
	}
	d := p.Decision
	if d.Warning != "" {
		o.warn(d.Warning)
	}
	for _, w := range p.Warnings {
		o.warn(w)
	}
	err = execute(h, p, r, o.appraised())
	auto := o.Mode == "" || o.Mode == plan.ModeAuto
	switch {
	case err == nil:
	case auto && p.Syscall == plan.SyscallKexecLoad && fallbackToFile(err):
		o.warn(fmt.Sprintf("kexec_load refused (%v); falling back to kexec_file_load: the IMA list will not be carried unless the kernel does it itself", err))
		fp, ferr := planFor(&o, r, d, plan.SyscallKexecFileLoad)
		if ferr != nil {
			return nil, ferr
		}
		fp.Appraisal = p.Appraisal
		if err = execute(h, fp, r, o.appraised()); err != nil {
			return nil, err
		}
		p = fp
	case auto && p.Syscall == plan.SyscallKexecFileLoad && fallbackToLoad(err):
		o.warn(fmt.Sprintf("kexec_file_load failed (%v); falling back to kexec_load", err))
		lp, perr := planFor(&o, r, d, plan.SyscallKexecLoad)
		if perr != nil {
			return nil, perr
		}
		lp.Appraisal = p.Appraisal
		if err = execute(h, lp, r, o.appraised()); err != nil {
			return nil, err
		}
		p = lp
	default:
		return nil, err
	}
	b, err := bind(h)
	if err != nil {
		// The image is loaded but could not be finalized later: unload
		// rather than leave an image whose hand-over would go stale.
		_ = h.Unload(false)
		return nil, err
	}
	return &Loaded{host: h, img: img, opts: o, plan: p, appraisals: as, binding: b}, nil
}

// execute runs a plan with the syscall it names.
func execute(h Host, p *plan.Plan, r *read, appraised bool) error {
	if p.Syscall == plan.SyscallKexecFileLoad {
		return fileLoad(h, r, appraised)
	}
	segs := make([]segment.Segment, len(p.Segments))
	for i, s := range p.Segments {
		segs[i] = segment.Segment{Name: s.Name, Buf: s.Buf, Mem: s.Mem, Memsz: s.Memsz}
	}
	return h.KexecLoad(LoadRequest{Entry: p.Entry, Segments: segs, Arch: p.Arch})
}

// fileLoad hands the kernel and initrd to kexec_file_load. When the
// inputs were appraised, or an input has no Path, the kernel reads a
// sealed memfd holding exactly the bytes that were hashed, so no one can
// swap the file between appraisal and load. Otherwise it reads the
// resolved file itself, through one descriptor that is hashed first, so
// the kernel's own IMA hooks see the file's name and security.ima.
func fileLoad(h Host, r *read, appraised bool) error {
	open := func(in Input, data []byte) (*os.File, error) {
		if appraised || in.Path == "" {
			return kexec.SealedMemfd(filepath.Base(in.Name), data)
		}
		f, err := kexec.OpenResolved(in.Path)
		if err != nil {
			return nil, err
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, io.LimitReader(f, int64(len(data))+1)); err == nil && hex.EncodeToString(sum.Sum(nil)) == plan.Digest(data) {
			if _, err := f.Seek(0, io.SeekStart); err == nil {
				return f, nil
			}
		}
		f.Close()
		return kexec.SealedMemfd(filepath.Base(in.Name), data)
	}
	// An arm64 zboot image, Image.gz or vmlinux reaches the kernel as the
	// Image unpacked from it (a sealed memfd: its bytes are not the file's).
	kb, err := plan.FileLoadKernel(r.in)
	if err != nil {
		return err
	}
	k, err := open(r.img.Kernel, kb)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer k.Close()
	var rd *os.File
	if r.in.Initrd != nil {
		if rd, err = open(r.img.Initrd, r.in.Initrd); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		defer rd.Close()
	}
	return h.KexecFileLoad(FileLoadRequest{Kernel: k, Initrd: rd, Cmdline: r.in.Cmdline})
}

// Exec reboots into the loaded image. It refuses (ErrNotFinalized) unless
// the last Finalize succeeded, and returns only on failure. It does not
// sync file systems: a caller with writable mounts syncs first.
func (l *Loaded) Exec() error {
	if !l.ready {
		return ErrNotFinalized
	}
	return l.host.Reboot()
}

// Unload unloads the image. The Loaded cannot be finalized afterwards.
func (l *Loaded) Unload() error {
	l.ready = false
	l.binding = nil
	return l.host.Unload(false)
}

// Unload unloads whatever kexec_load or kexec_file_load loaded, whoever
// loaded it (gokexec -u).
func Unload(ctx context.Context, h Host) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.Unload(false)
}
