// Package loader is the library a bootloader calls to boot another Linux
// kernel with the running kernel's IMA measurement list handed over:
//
//	l, err := loader.Load(ctx, host, img, opts) // plan, appraise, load
//	rep, err := l.Finalize(ctx)                 // just before the reboot
//	err = l.Exec()                              // reboot into it
//
// The Image's inputs are io.ReaderAts; nothing needs a file or a state
// directory. Everything the loader learns from or does to the machine goes
// through three small seams (host.go): Facts (read-only: memory map,
// firmware, the IMA list, lockdown, kallsyms, boot id, kexec_loaded, crash
// facts), Kernel (kexec_load, kexec_file_load, unload, reboot, mounting
// securityfs) and TPMs (the TPM). The real ones are kexec.System or
// kexec.Captured, kexec.Kernel and tpm.Source, put together in a Machine;
// loadertest.Host is one in memory. A DryRun wraps any Host and records
// the acts instead of making them, so Load, Finalize, Exec, Unload and
// the crash loads can all be dry-run.
//
// Appraisal plugs in through Options.Appraiser (package
// loader/appraisal); without it this package links neither crypto/x509
// nor net. State and StateDir exist only for the two-process command line
// (load in one process, finalize and exec in another): the state keeps
// the bytes the load read, so the second process never opens the kernel's
// files again.
//
// Invariants:
//   - Each input is read once. The bytes that are hashed and appraised
//     are the bytes the kernel gets: kexec_load copies them from memory;
//     kexec_file_load gets a sealed memfd holding them when appraisal is
//     on, else the resolved file if it still holds them.
//   - Finalize and a resumed load use the bytes read at load; nothing
//     re-reads the kernel, initrd or DTB.
//   - The IMA hand-over (buffer bytes, segment size with headroom,
//     markers) is computed by one function (handover.go) for load and
//     finalize on every architecture; the markers carry
//     ima_binary_runtime_size as the kernel computes it (header included).
//   - A failed load leaves nothing loaded that the caller did not have
//     before: all checks run before the syscall, and kexec_load itself
//     either loads the whole image or nothing.
//   - No IMA is not a refusal: a kernel without IMA loads without a
//     hand-over (Options.Warn says so in one line); securityfs not mounted
//     is mounted (Kernel.MountSecurityfs, said through Warn); only an
//     active list that cannot be read is refused (ErrIMAUnreadable,
//     kexec.ErrPrivilege). A dry run (Plan, a DryRun) never mounts: it
//     says it would, and plans with the list unread (plan.IMA.ListUnread).
//   - Nothing is skipped silently: a named TPM that cannot be opened, a
//     TPM seen at load that is gone at finalize, a list that was handed
//     over at load and is gone at finalize, a load that is no longer what
//     the kernel has loaded, and a kernel that would measure after the
//     hand-over snapshot are errors.
//   - Plan (a dry run of the planning) reads only facts and never acts.
//   - Exec reboots only a load whose last Finalize succeeded.
//   - The library never logs and never exits; every refusal wraps a
//     sentinel error (errors.Is), listed in errors.go, naming a host or
//     kernel condition, never a command-line flag.
package loader

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// Options are the caller's choices for a load. The zero value is a load
// for this machine's architecture with the IMA hand-over, no headroom,
// PCR 10, the automatic syscall choice and no appraisal.
type Options struct {
	Arch string    `json:"arch,omitempty"` // "" = the running architecture
	Mode plan.Mode `json:"mode,omitempty"` // syscall choice; "" means auto

	NoIMA    bool   `json:"no_ima,omitempty"`
	IMAExtra uint64 `json:"ima_extra,omitempty"` // headroom after the list for entries added before finalize
	IMAPCR   uint32 `json:"ima_pcr,omitempty"`   // PCR for the loader's own entries; 0 means 10
	MemMin   uint64 `json:"mem_min,omitempty"`
	MemMax   uint64 `json:"mem_max,omitempty"`
	// NoEFI: hand no EFI state to an x86 kernel.
	NoEFI bool `json:"no_efi,omitempty"`

	// Appraiser decides whether the inputs may be loaded; nil: no
	// appraisal (package loader/appraisal makes one from a policy).
	Appraiser Appraiser `json:"-"`

	// Warn, if set, receives what a user must be told at load: nothing to
	// hand over, securityfs mounted, a syscall fallback, a plan warning.
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

func (o *Options) warn(s string) {
	if o.Warn != nil {
		o.Warn(s)
	}
}

// read is an Image's bytes as plan inputs, and where they came from.
type read struct {
	in      *plan.Inputs
	dtbName string // "" when the plan starts from no device tree
	paths   [2]string
	sigs    [3][]byte    // kernel, initrd, DTB signatures (appraisal)
	kept    [3]*keptFile // kernel, initrd, DTB: copied into a StateDir (KeepImage)
}

// readImage reads the image's inputs, each once (and the running
// machine's device tree when an arm64 plan for this machine needs it).
func readImage(h Facts, img Image, o *Options) (*read, error) {
	in := &plan.Inputs{Arch: o.arch(), Cmdline: img.Cmdline, PageSize: 4096,
		IMAExtra: o.IMAExtra, MemMin: o.MemMin, MemMax: o.MemMax, IMAOrder: binary.LittleEndian, NoEFI: o.NoEFI}
	r := &read{in: in, paths: [2]string{img.Kernel.Path, img.Initrd.Path},
		sigs: [3][]byte{img.Kernel.Signature, img.Initrd.Signature, img.DTB.Signature}}
	for i, input := range [3]Input{img.Kernel, img.Initrd, img.DTB} {
		if k, ok := input.R.(keptReader); ok {
			r.kept[i] = k.k
		}
	}
	if !img.Kernel.present() {
		return nil, fmt.Errorf("%w: no kernel given", plan.ErrInput)
	}
	var err error
	if in.Kernel, err = img.Kernel.read("kernel", kexec.MaxKernelBytes); err != nil {
		return nil, err
	}
	in.KernelPath = img.Kernel.Name
	if img.Initrd.present() {
		if in.Initrd, err = img.Initrd.read("initrd", kexec.MaxInitrdBytes); err != nil {
			return nil, err
		}
		if len(in.Initrd) == 0 {
			return nil, fmt.Errorf("%w: initrd %s is empty", plan.ErrInput, img.Initrd.Name)
		}
		in.InitrdPath = img.Initrd.Name
	}
	switch {
	case img.DTB.present():
		if in.DTB, err = img.DTB.read("device tree", kexec.MaxDTBBytes); err != nil {
			return nil, err
		}
		r.dtbName = img.DTB.Name
	case in.Arch == plan.ArchARM64 && runtime.GOARCH == plan.ArchARM64:
		if in.DTB, err = h.DeviceTree(); err != nil {
			return nil, fmt.Errorf("%w: the running system's device tree: %w", plan.ErrInput, err)
		}
		r.dtbName = kexec.SysfsFDT
	}
	return r, nil
}

// readFacts reads the host's facts a plan needs into in: memory map,
// firmware, the RNG seed and ACPI pointer (not for a dry run, whose plan
// must be reproducible).
func readFacts(h Facts, in *plan.Inputs, dry bool) error {
	var err error
	native := in.Arch == runtime.GOARCH
	if in.Memory, err = h.MemoryMap(in.Arch); err != nil {
		// Planning arm64 for another machine: the DTB's /memory nodes serve.
		if !(errors.Is(err, ErrNotDescribed) && in.Arch == plan.ArchARM64 && !native) {
			if errors.Is(err, ErrNotDescribed) {
				return fmt.Errorf("%w: %w", plan.ErrInput, err)
			}
			return err
		}
	}
	if in.Arch == plan.ArchAMD64 {
		fw, err := h.Firmware(in.Arch)
		if err != nil {
			return fmt.Errorf("%w: firmware: %w", plan.ErrInput, err)
		}
		in.EFI = fw
	}
	in.RNGSeed = make([]byte, 32)
	if !dry {
		if _, err := rand.Read(in.RNGSeed); err != nil {
			return fmt.Errorf("rng seed: %w", err)
		}
		in.ACPIRSDP = h.ACPIRSDP()
	}
	return nil
}

// readList reads the running kernel's IMA list: nil, nil when the kernel
// has none. Securityfs not mounted is mounted first (said through warn),
// except in a dry run, which never acts: the list is then unread
// (unread true) and the caller plans without it, saying so (unreadNote).
func readList(h Host, dry bool, warn func(string)) (list []byte, unread bool, err error) {
	list, err = h.IMAList()
	if errors.Is(err, kexec.ErrSecurityfsUnmounted) {
		if dry {
			return nil, true, nil
		}
		if merr := h.MountSecurityfs(); merr != nil {
			return nil, false, fmt.Errorf("%w: %w: %w", ErrIMAUnreadable, err, merr)
		}
		warn("securityfs was not mounted: mounted it at /sys/kernel/security to read the IMA measurement list")
		list, err = h.IMAList()
	}
	switch {
	case errors.Is(err, kexec.ErrNoIMA):
		return nil, false, nil
	case errors.Is(err, kexec.ErrPrivilege):
		return nil, false, fmt.Errorf("IMA measurement list: %w", err)
	case err != nil:
		return nil, false, fmt.Errorf("%w: %w", ErrIMAUnreadable, err)
	}
	if list == nil {
		list = []byte{}
	}
	return list, false, nil
}

// unreadNote is what a dry run says when securityfs is not mounted.
const unreadNote = "dry run: securityfs is not mounted; a real run would mount it at /sys/kernel/security and read the IMA measurement list, " +
	"which this dry run has not read: the hand-over is planned for an empty list, so its size is an estimate (the real one adds the list's bytes)"

// noIMANote is what a load without IMA says, once.
const noIMANote = "the running kernel has no IMA measurement list: nothing to hand over; loading without the hand-over"

// appraiseAll appraises kernel, initrd and DTB as they were read.
func appraiseAll(o *Options, r *read) ([]Appraisal, error) {
	if o.Appraiser == nil {
		return nil, nil
	}
	type file struct {
		name      string
		data, sig []byte
	}
	files := []file{{r.in.KernelPath, r.in.Kernel, r.sigs[0]}}
	if r.in.Initrd != nil {
		files = append(files, file{r.in.InitrdPath, r.in.Initrd, r.sigs[1]})
	}
	if r.in.DTB != nil {
		files = append(files, file{r.dtbName, r.in.DTB, r.sigs[2]})
	}
	var out []Appraisal
	for _, f := range files {
		a, err := o.Appraiser.Appraise(f.name, f.data, f.sig)
		if err != nil {
			return nil, fmt.Errorf("appraisal: %w; nothing loaded", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// prepare reads the image and the facts, appraises, decides and plans.
func prepare(h Host, img Image, o *Options, dry bool) (*plan.Plan, *read, []Appraisal, error) {
	r, err := readImage(h, img, o)
	if err != nil {
		return nil, nil, nil, err
	}
	// Every plan needs the SHA-256 of kernel and initrd: they are hashed
	// on goroutines of their own from here, while this one reads the
	// host's facts, the list and /proc/kallsyms (kernel time in read(2))
	// and appraises, so on a machine with more than one core the reading
	// costs no time of its own. Only this goroutine calls h, and prepare returns, even
	// failing, only once the hashing is done: the image's bytes are the
	// caller's again.
	sums := hashInputs(r.in.Kernel, r.in.Initrd)
	defer sums.wait()
	if err := readFacts(h, r.in, dry); err != nil {
		return nil, nil, nil, err
	}
	unread := false
	if !o.NoIMA {
		if r.in.IMAList, unread, err = readList(h, dry || isDryRun(h), o.warn); err != nil {
			return nil, nil, nil, err
		}
		switch {
		case unread:
			// IMA is active (securityfs exists for it): plan as the real
			// run would decide, with an empty list standing in, and say
			// so in the plan's warnings (which Load passes to o.Warn).
			r.in.IMAList = []byte{}
		case r.in.IMAList == nil:
			o.warn(noIMANote)
		}
	}
	imaList := len(r.in.IMAList) > 0 || unread
	as, err := appraiseAll(o, r)
	if err != nil {
		return nil, nil, nil, err
	}
	facts, err := gatherFacts(h, o, imaList)
	if err != nil {
		return nil, nil, nil, err
	}
	sums.wait()
	r.in.KernelSHA256, r.in.InitrdSHA256 = sums.kernel, sums.initrd
	d := plan.Decide(o.Mode, facts)
	plan.ImageDecision(&d, r.in)
	p, err := planFor(o, r, &d, d.Syscall)
	if err != nil {
		return nil, nil, nil, err
	}
	if unread {
		p.Warnings = append(p.Warnings, unreadNote)
		if p.IMA != nil {
			p.IMA.ListUnread = true
		}
	}
	for _, a := range as {
		p.Appraisal = append(p.Appraisal, plan.Appraisal{Path: a.Path, Pass: a.Pass, Method: a.Method, Reason: a.Reason})
	}
	return p, r, as, nil
}

// inputSums hashes kernel and initrd (plan.Digest) on goroutines of
// their own; wait returns once both are done (and may be called again).
type inputSums struct {
	wg             sync.WaitGroup
	kernel, initrd string
}

// hashInputs starts hashing kernel and initrd (nil: no initrd). They must
// not change, nor be unmapped, until wait has returned.
func hashInputs(kernel, initrd []byte) *inputSums {
	d := &inputSums{}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.kernel = inputDigest(kernel) }()
	if initrd != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.initrd = inputDigest(initrd) }()
	}
	return d
}

// inputDigest is plan.Digest; tests slow it down.
var inputDigest = plan.Digest

func (d *inputSums) wait() { d.wg.Wait() }

// Plan is a dry run of the planning: it reads the image and the host's
// facts, appraises, decides the syscall and builds the plan, and acts on
// nothing (not even mounting securityfs: the Host's Kernel is not used).
// The RNG seed is zero, so the plan is reproducible. For kexec_load the
// hand-over list is the host's list followed by a kexec_load marker.
func Plan(ctx context.Context, h Facts, img Image, o Options) (*plan.Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, _, _, err := prepare(factsOnly{Facts: h}, img, &o, true)
	return p, err
}

// factsOnly is a Host that only describes: its acts are refused.
type factsOnly struct {
	Facts
	OffTarget
}

func (f factsOnly) TPMDevice() (string, error) {
	if t, ok := f.Facts.(TPMs); ok {
		return t.TPMDevice()
	}
	return "", nil
}
func (factsOnly) OpenTPM() (TPM, string, error) { return nil, "", ErrOffTarget }

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

// withLoadMarker returns in with the hand-over of a load: the snapshot
// followed by a kexec_load marker, in the segment the hand-over rule
// sizes (in itself is left alone). The marker is not extended into the
// TPM at load: the running system stays attestable until finalize, which
// records everything. A hand-over executed without finalize (another
// tool's exec) thus carries a kexec_load without a kexec_execute, which a
// verifier reads as "events were lost: cold boot needed".
func withLoadMarker(in *plan.Inputs, pcr uint32) (*plan.Inputs, error) {
	if in.IMAList == nil {
		return in, nil
	}
	es, err := ima.ParseList(in.IMAList, binary.LittleEndian)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plan.ErrIMAList, err)
	}
	h, err := handover(handoverIn{base: es, baseBytes: uint64(len(in.IMAList)), load: true,
		pcr: pcr, extra: in.IMAExtra, page: in.PageSize})
	if err != nil {
		return nil, err
	}
	// The plan takes the parsed list (no second parse, no copy of the
	// list bytes): the snapshot's entries and the marker.
	out := *in
	out.IMAList, out.IMAEntries, out.IMASegment = nil, append(es, h.ours...), h.segment
	return &out, nil
}

// Loaded is an image loaded into the kernel, to be finalized and booted.
// It is not safe for concurrent use.
type Loaded struct {
	host Host
	opts Options
	// in are the plan inputs of the load: the bytes read once, the facts.
	in      *plan.Inputs
	dtbName string
	paths   [2]string    // the resolved files of kernel and initrd, if any
	sealed  bool         // appraised: kexec_file_load reads sealed memfds
	kept    *keptInputs  // resumed: where the inputs are kept (State)
	copied  [3]*keptFile // loaded from a KeepImage: the inputs' files in a StateDir
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
// finalized (Finalize) before Exec boots it. Warnings (nothing to hand
// over, a syscall fallback, what the next kernel lacks) go to o.Warn.
func Load(ctx context.Context, h Host, img Image, o Options) (*Loaded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
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
	sealed := o.Appraiser != nil
	p, err = loadFalling(p, o.Mode,
		func(p *plan.Plan) error { return execute(h, p, r.in, r.paths, sealed, false) },
		func(syscall string) (*plan.Plan, error) { return planFor(&o, r, d, syscall) },
		o.warn, ": the IMA list will not be carried unless the kernel does it itself")
	if err != nil {
		return nil, err
	}
	var snapshot []byte // the list this load read, when it was a kexec_load's
	if p.Syscall == plan.SyscallKexecLoad {
		snapshot = r.in.IMAList
	}
	b, err := bind(h, snapshot)
	if err != nil {
		// The image is loaded but could not be finalized later: unload
		// rather than leave an image whose hand-over would go stale.
		_ = h.Unload(false)
		return nil, err
	}
	if r.in.IMAList != nil && p.Syscall == plan.SyscallKexecLoad {
		r.in.IMAList = nil // the snapshot is in the plan; finalize takes a fresh one
	}
	return &Loaded{host: h, opts: o, in: r.in, dtbName: r.dtbName, paths: r.paths, sealed: sealed,
		plan: p, appraisals: as, binding: b, copied: r.kept}, nil
}

// execute runs a plan with the syscall it names.
func execute(h Kernel, p *plan.Plan, in *plan.Inputs, paths [2]string, sealed, crash bool) error {
	if p.Syscall == plan.SyscallKexecFileLoad {
		// An arm64 zboot image, Image.gz or vmlinux reaches the kernel as
		// the Image unpacked from it (then a sealed memfd: its bytes are
		// not the file's).
		kb, err := plan.FileLoadKernel(in)
		if err != nil {
			return err
		}
		req := FileLoadRequest{Kernel: kexec.FileInput{Name: filepath.Base(in.KernelPath), Data: kb, Path: paths[0], Sealed: sealed},
			Cmdline: in.Cmdline, Crash: crash}
		if in.Initrd != nil {
			req.Initrd = &kexec.FileInput{Name: filepath.Base(in.InitrdPath), Data: in.Initrd, Path: paths[1], Sealed: sealed}
		}
		return h.KexecFileLoad(req)
	}
	segs := make([]segment.Segment, len(p.Segments))
	for i, s := range p.Segments {
		segs[i] = segment.Segment{Name: s.Name, Buf: s.Buf, Mem: s.Mem, Memsz: s.Memsz}
	}
	return h.KexecLoad(LoadRequest{Entry: p.Entry, Segments: segs, Arch: p.Arch, Crash: crash})
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
// loaded it.
func Unload(ctx context.Context, h Kernel) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.Unload(false)
}
