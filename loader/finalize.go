package loader

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/plan"
)

// Report says what Finalize did.
type Report struct {
	Plan      *plan.Plan
	Entries   []ima.Entry // the loader's entries, in the order extended
	Extended  bool        // whether a TPM was extended
	Banks     []string    // TPM banks checked, with the method each uses
	Relayout  bool        // the IMA segment had to grow
	ListBytes uint64
	Count     int
	Skipped   bool // finalized before and nothing was measured since
	// TPM is the device extended, or NoTPM: this machine has no TPM, and
	// the loader's entries are in the hand-over list but in no PCR (a
	// verifier will see entries no quote backs).
	TPM   string
	NoTPM bool
	// NoIMA: finalize was told not to touch the IMA hand-over (--no-ima at
	// -e); what was loaded at -l is handed over as it is.
	NoIMA bool
	// Foreign (StateDir.Finalize only): the loaded image is another
	// tool's; nothing was finalized.
	Foreign bool
}

// Finalize completes a recorded load just before the reboot (DESIGN §4):
// it checks that the inputs are unchanged, takes a fresh snapshot of the
// list, appends the loader's entries (a kexec_load marker, the kernel,
// initrd, DTB and command line measurements, a kexec_execute marker), extends
// them into every active bank of the TPM with the method the running kernel
// uses for that bank, checks that the resulting list replays to the TPM's
// PCRs, rewrites the IMA segment (same layout while it fits, a larger one
// when not) and loads it again.
//
// Finalize may run more than once (--finalize from a shutdown hook, then
// -e): a later run continues from the list the earlier one loaded, adds
// what the kernel measured since and a new kexec_execute marker.
//
// First it checks that the load is still what the kernel has loaded
// (Binding) and that kernel, initrd and DTB still hash to the
// recorded digests; the re-load uses only those bytes. A named TPM that
// cannot be opened is an error; with no TPM device at all the entries are
// appended but extended nowhere (Report.NoTPM). A missing IMA list is an
// error unless the options say NoIMA.
//
// Finalize never reboots. Errors after the loader's entries were extended
// wrap ErrExtended: the running kernel's own list no longer matches the
// TPM.
func (l *Loaded) Finalize(ctx context.Context) (*Report, error) {
	l.ready = false
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep, err := l.finalize()
	if err != nil {
		return nil, err
	}
	l.ready = true
	return rep, nil
}

func (l *Loaded) finalize() (*Report, error) {
	if l.plan == nil {
		return nil, ErrNothingLoaded
	}
	if err := checkBinding(l.host, l.binding); err != nil {
		return nil, err
	}
	o := &l.opts
	if l.plan.Syscall == plan.SyscallKexecFileLoad {
		// The kernel owns that hand-over; loading again now sizes its
		// buffer for today's list (refresh.go).
		return l.refreshFileLoad()
	}
	r, err := inputs(l.host, l.img, o, false)
	if err != nil {
		return nil, err
	}
	if err := checkInputs(l.plan, r.in, r.dtbName); err != nil {
		return nil, err
	}
	in := r.in
	rep := &Report{Plan: l.plan}
	if o.NoIMA {
		rep.NoIMA = true
		return rep, nil
	}
	if l.plan.IMA == nil {
		return rep, nil // loaded without a list to hand over
	}
	var prev []ima.Entry
	if l.finalized != nil {
		if plan.Digest(l.handover) != l.finalized.ListSHA256 {
			return nil, fmt.Errorf("finalize: the kept hand-over list does not match the recorded one")
		}
		if prev, err = ima.ParseList(l.handover, binary.LittleEndian); err != nil {
			return nil, fmt.Errorf("finalize: the kept hand-over list: %w", err)
		}
	}
	pcr := o.pcr()
	t, dev, err := l.host.OpenTPM()
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	if t != nil {
		defer t.Close()
	}
	if t == nil {
		if d := l.plan.Decision; d != nil && d.Facts.TPM != "" && d.Facts.TPM != NoTPM {
			return nil, fmt.Errorf("finalize: %w: the load found TPM %s, now there is none", ErrTPM, d.Facts.TPM)
		}
	}
	rep.TPM, rep.NoTPM = dev, t == nil

	// 1. The log as the TPM knows it, and each bank's method.
	base, nKernel, plans, banks, err := stableBase(l.host, t, prev, l.finalized)
	if err != nil {
		return nil, err
	}
	rep.Banks = banks
	if l.finalized != nil && nKernel == l.finalized.KernelEntries {
		rep.Skipped = true
		return rep, nil
	}

	// 2. The loader's entries, sized for the segment they will land in.
	var ours []ima.Entry
	if l.finalized == nil {
		sigs := map[string][]byte{}
		for _, a := range l.appraisals {
			if a.Signature != nil {
				sigs[a.Path] = a.Signature
			}
		}
		ms, err := measurements(l.plan, pcr, sigs)
		if err != nil {
			return nil, err
		}
		ours = ms
	}
	baseBytes := listSize(base)
	need := uint64(ima.KexecHeaderSize) + baseBytes + listSize(ours) + uint64(maxMarkerSize(MarkerLoad)+maxMarkerSize(MarkerExecute)) + 4096
	segSize := l.plan.IMA.Size
	if need > segSize {
		if segSize, err = plan.IMASegmentSize(need, o.IMAExtra, 0, 4096); err != nil {
			return nil, err
		}
		rep.Relayout = true
	}
	if l.finalized == nil {
		ours = append([]ima.Entry{marker(pcr, MarkerLoad, segSize, baseBytes, uint64(len(base)))}, ours...)
	}
	before := baseBytes + listSize(ours)
	ours = append(ours, marker(pcr, MarkerExecute, segSize, before, uint64(len(base)+len(ours))))
	rep.Entries = ours

	// 3. Extend, then place the kernel's own entries that arrived meanwhile
	//    where the PCR values say they were extended.
	final := append(append([]ima.Entry(nil), base...), ours...)
	if t != nil {
		methods := current(plans)
		for _, e := range ours {
			d := map[crypto.Hash][]byte{}
			for h, m := range methods {
				d[h] = ima.TemplateDigest(e, h, m)
			}
			if err := t.Extend(e.PCR, d); err != nil {
				return nil, fmt.Errorf("finalize: extending PCR %d: %w (%w)", e.PCR, err, ErrExtended)
			}
		}
		rep.Extended = true
		if final, nKernel, err = reconcile(l.host, t, base, nKernel, ours, plans); err != nil {
			return nil, err
		}
	}
	raw := ima.AppendList(nil, final, binary.LittleEndian)
	rep.ListBytes, rep.Count = uint64(len(raw)), len(final)

	// 4. Re-plan with the completed list and load it again.
	in.IMAList = raw
	in.IMAMinSegment = segSize
	p, err := plan.Build(in)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	if err := execute(l.host, p, r, false); err != nil {
		return nil, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	p.Decision = l.plan.Decision
	p.DTBInput = l.plan.DTBInput
	p.Appraisal = l.plan.Appraisal
	l.plan = p
	rep.Plan = p
	l.handover = raw
	l.finalized = &Finalized{KernelEntries: nKernel, ListSHA256: plan.Digest(raw)}
	return rep, nil
}

// stableBase reads the running kernel's list and the PCRs until the list
// did not change while the PCRs were read. The base log is that list, or,
// after an earlier finalize, the list it loaded followed by what the kernel
// measured since. The base must replay to the TPM; the method that
// reproduces each bank is returned for extending the loader's entries.
func stableBase(h Host, t TPM, prev []ima.Entry, fin *Finalized) (base []ima.Entry, nKernel int, plans []bankPlan, desc []string, err error) {
	last := errors.New("no attempt")
	for try := 0; try < 5; try++ {
		raw, err := h.IMAList()
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("finalize: %w", err)
		}
		kernel, err := ima.ParseList(raw, binary.LittleEndian)
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("finalize: the running kernel's list: %w", err)
		}
		base = kernel
		if fin != nil {
			if len(kernel) < fin.KernelEntries {
				return nil, 0, nil, nil, fmt.Errorf("%w: the running list shrank since the last finalize", ErrSelfCheck)
			}
			base = append(append([]ima.Entry(nil), prev...), kernel[fin.KernelEntries:]...)
		}
		if t == nil {
			return base, len(kernel), nil, nil, nil
		}
		pcrs, err := readPCRs(t, base)
		if err != nil {
			return nil, 0, nil, nil, err
		}
		again, err := h.IMAList()
		if err != nil {
			return nil, 0, nil, nil, err
		}
		if !bytes.Equal(raw, again) {
			last = errors.New("the list kept changing while the PCRs were read")
			continue
		}
		plans, err := planBanks(base, pcrs)
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("%w; the log so far (%d entries) does not replay", err, len(base))
		}
		return base, len(kernel), plans, describePlans(plans), nil
	}
	return nil, 0, nil, nil, fmt.Errorf("finalize: %w", last)
}

// readPCRs reads every active bank's value of every PCR the list uses (and
// PCR 10).
func readPCRs(t TPM, es []ima.Entry) (ima.PCRValues, error) {
	seen := map[uint32]bool{DefaultPCR: true}
	idx := []uint32{DefaultPCR}
	for _, e := range es {
		if !seen[e.PCR] && e.PCR < 24 {
			seen[e.PCR] = true
			idx = append(idx, e.PCR)
		}
	}
	v, err := t.ReadPCRs(idx)
	if err != nil {
		return nil, fmt.Errorf("finalize: reading PCRs: %w", err)
	}
	return ima.PCRValues(v), nil
}

// reconcile reads the kernel's list and the PCRs after the loader's entries
// were extended and returns the order that reproduces the PCRs: the base,
// the kernel entries that arrived before ours, ours, the rest. nKernel is
// how many kernel entries base accounts for; the new count is returned.
func reconcile(h Host, t TPM, base []ima.Entry, nKernel int, ours []ima.Entry, plans []bankPlan) ([]ima.Entry, int, error) {
	raw, err := h.IMAList()
	if err != nil {
		return nil, 0, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	now, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		return nil, 0, fmt.Errorf("finalize: %w", err)
	}
	if len(now) < nKernel {
		return nil, 0, fmt.Errorf("%w: the running list shrank", ErrSelfCheck)
	}
	newer := now[nKernel:]
	pcrs, err := readPCRs(t, append(append([]ima.Entry(nil), base...), ours...))
	if err != nil {
		return nil, 0, fmt.Errorf("%w (%w)", err, ErrExtended)
	}
	for i := 0; i <= len(newer); i++ {
		cand := append(append(append(append([]ima.Entry(nil), base...), newer[:i]...), ours...), newer[i:]...)
		if replaysWith(cand, pcrs, plans) {
			return cand, len(now), nil
		}
	}
	return nil, 0, fmt.Errorf("%w after extending the loader's %d entries (%d kernel entries arrived meanwhile) (%w)",
		ErrSelfCheck, len(ours), len(newer), ErrExtended)
}

// checkInputs compares the digests of the inputs read at finalize with
// those the plan recorded at load.
func checkInputs(p *plan.Plan, in *plan.Inputs, dtbName string) error {
	if d := plan.Digest(in.Kernel); d != p.Kernel.SHA256 {
		return fmt.Errorf("%w: kernel %s (sha256 now %s, loaded %s)", ErrInputChanged, p.Kernel.Path, d, p.Kernel.SHA256)
	}
	if p.Initrd != nil && plan.Digest(in.Initrd) != p.Initrd.SHA256 {
		return fmt.Errorf("%w: initrd %s (sha256 now %s, loaded %s)", ErrInputChanged, p.Initrd.Path, plan.Digest(in.Initrd), p.Initrd.SHA256)
	}
	if p.DTBInput != nil {
		if in.DTB == nil || dtbName != p.DTBInput.Path {
			return fmt.Errorf("%w: device tree %s is no longer the source (now %q)", ErrInputChanged, p.DTBInput.Path, dtbName)
		}
		if d := plan.Digest(in.DTB); d != p.DTBInput.SHA256 {
			return fmt.Errorf("%w: device tree %s (sha256 now %s, loaded %s)", ErrInputChanged, p.DTBInput.Path, d, p.DTBInput.SHA256)
		}
	}
	return nil
}
