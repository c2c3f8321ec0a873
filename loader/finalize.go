package loader

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
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
}

// Finalize completes a load just before the reboot (DESIGN §4): it takes
// a fresh snapshot of the list, appends the loader's entries (a kexec_load
// marker, the kernel, initrd, DTB and command line measurements, a
// kexec_execute marker), extends them into every active bank of the TPM
// with the method the running kernel uses for that bank, checks that the
// resulting list replays to the TPM's PCRs, rewrites the IMA segment (same
// layout while it fits, a larger one when not) and loads it again.
//
// Finalize may run more than once (a shutdown hook, then exec): a later
// run continues from the list the earlier one loaded, adds what the
// kernel measured since and a new kexec_execute marker.
//
// First it checks that the load is still what the kernel has loaded
// (Binding). It re-loads the bytes the load read; it never reads the
// kernel's files again. A named TPM that cannot be opened is an error;
// with no TPM device at all the entries are appended but extended nowhere
// (Report.NoTPM). A list handed over at load that cannot be read now is
// an error (ErrNoIMAList).
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
	read, err := checkBinding(l.host, l.binding)
	if err != nil {
		return nil, err
	}
	o := &l.opts
	if l.plan.Syscall == plan.SyscallKexecFileLoad {
		// The kernel owns that hand-over; loading again now sizes its
		// buffer for today's list (refresh.go).
		return l.refreshFileLoad()
	}
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
		if l.finalized.ListSHA256 != "" && plan.Digest(l.handover) != l.finalized.ListSHA256 {
			return nil, fmt.Errorf("finalize: the kept hand-over list does not match the recorded one")
		}
		var err error
		if prev, err = ima.ParseList(l.handover, binary.LittleEndian); err != nil {
			return nil, fmt.Errorf("finalize: the kept hand-over list: %w", err)
		}
	}
	t, dev, err := l.host.OpenTPM()
	if err != nil {
		return nil, fmt.Errorf("finalize: %w: %w", ErrTPM, err)
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
	var ours []ima.Entry
	if l.finalized == nil {
		sigs := map[string][]byte{}
		for _, a := range l.appraisals {
			if a.Signature != nil {
				sigs[a.Path] = a.Signature
			}
		}
		if ours, err = measurements(l.plan, o.pcr(), sigs); err != nil {
			return nil, err
		}
	}
	res, err := finalizeList(finalizeIn{facts: l.host, tpm: t, read: read, prev: prev, fin: l.finalized, ours: ours,
		pcr: o.pcr(), extra: o.IMAExtra, segment: l.plan.IMA.Size, page: l.plan.PageSize})
	if err != nil {
		return nil, err
	}
	rep.Banks, rep.Skipped = res.banks, res.skipped
	if res.skipped {
		return rep, nil
	}
	rep.Entries, rep.Extended, rep.Relayout = res.ours, t != nil, res.relayout
	p, err := l.replan(res.kl, res.segment)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	raw := handoverList(p)
	rep.ListBytes, rep.Count = uint64(len(raw)), res.kl.Count()
	if err := execute(l.host, p, l.in, l.paths, false, false); err != nil {
		return nil, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	l.plan = p
	rep.Plan = p
	l.handover = raw
	// The list's digest is for the state a later process resumes from;
	// State computes it.
	l.finalized = &Finalized{KernelEntries: res.kernelEntries}
	return rep, nil
}

// replan is the load's plan again, from the bytes and facts of the load,
// with the hand-over list kl in a segment of segSize bytes.
func (l *Loaded) replan(kl *ima.KexecList, segSize uint64) (*plan.Plan, error) {
	in := *l.in
	in.IMAList, in.IMAEntries, in.IMAKexecList, in.IMASegment = nil, nil, kl, segSize
	in.KernelSHA256 = l.plan.Kernel.SHA256
	if l.plan.Initrd != nil {
		in.InitrdSHA256 = l.plan.Initrd.SHA256
	}
	p, err := plan.Build(&in)
	if err != nil {
		return nil, err
	}
	p.Decision = l.plan.Decision
	p.DTBInput = l.plan.DTBInput
	p.Appraisal = l.plan.Appraisal
	return p, nil
}

// handoverList is the binary list a plan hands over (its IMA segment's
// buffer after the header).
func handoverList(p *plan.Plan) []byte {
	for _, s := range p.Segments {
		if p.IMA != nil && s.Name == p.IMA.Segment {
			return s.Buf[ima.KexecHeaderSize : ima.KexecHeaderSize+p.IMA.ListBytes]
		}
	}
	return nil
}

// finalizeIn is what finalizeList works from.
type finalizeIn struct {
	facts   Facts
	tpm     TPM    // nil: no TPM
	read    []byte // the running kernel's list as just read, or nil
	prev    []ima.Entry
	fin     *Finalized // the last finalize, or nil
	ours    []ima.Entry
	pcr     uint32
	extra   uint64
	segment uint64 // the loaded IMA segment
	page    uint64
}

// finalizeOut is the completed hand-over list.
type finalizeOut struct {
	kl            *ima.KexecList // the hand-over list, checked and encoded
	ours          []ima.Entry    // the loader's entries, markers included
	kernelEntries int            // how many of the running kernel's entries list accounts for
	segment       uint64
	relayout      bool
	banks         []string
	skipped       bool // nothing measured since the last finalize
}

// finalizeList takes the snapshot, adds the loader's entries (the
// hand-over rule sizes the segment), extends them and places the kernel's
// entries that arrived meanwhile where the PCRs say they were extended.
func finalizeList(f finalizeIn) (finalizeOut, error) {
	var out finalizeOut
	b, err := stableBase(f.facts, f.tpm, f.read, f.prev, f.fin, f.pcr)
	if err != nil {
		return out, err
	}
	base, nKernel := b.entries, b.nKernel
	out.banks = b.desc
	if f.fin != nil && nKernel == f.fin.KernelEntries {
		out.skipped = true
		return out, nil
	}
	h, err := handover(handoverIn{base: base, baseBytes: listSize(base), ours: f.ours, load: f.fin == nil, exec: true,
		pcr: f.pcr, extra: f.extra, segment: f.segment, page: f.page})
	if err != nil {
		return out, err
	}
	out.ours, out.segment, out.relayout = h.ours, h.segment, h.relayout
	tail := h.ours // what follows the base in the hand-over
	if f.tpm != nil {
		methods := current(b.plans)
		for _, e := range h.ours {
			d := map[crypto.Hash][]byte{}
			for bank, m := range methods {
				d[bank] = ima.TemplateDigest(e, bank, m)
			}
			if err := f.tpm.Extend(e.PCR, d); err != nil {
				return out, fmt.Errorf("finalize: extending PCR %d: %w (%w)", e.PCR, err, ErrExtended)
			}
		}
		if tail, nKernel, err = reconcile(f.facts, f.tpm, b, h.ours); err != nil {
			return out, err
		}
		// Kernel entries that arrived between the snapshot and the extend
		// may outgrow the segment: the same rule grows it.
		need := uint64(ima.KexecHeaderSize) + listSize(base) + listSize(tail)
		var grew bool
		if out.segment, grew, err = segmentFor(need, f.extra, out.segment, f.page); err != nil {
			return out, fmt.Errorf("%w (%w)", err, ErrExtended)
		}
		out.relayout = out.relayout || grew
	}
	// The hand-over: the base as the replay checked and encoded it, and
	// what follows it checked now.
	if out.kl = b.kl; out.kl == nil {
		out.kl, err = ima.NewKexecList(append(append([]ima.Entry(nil), base...), tail...), binary.LittleEndian)
	} else {
		err = out.kl.Append(tail...)
	}
	if err != nil {
		return out, fmt.Errorf("finalize: %w: %w (%w)", plan.ErrIMAList, err, ErrExtended)
	}
	out.kernelEntries = nKernel
	return out, nil
}

// baseState is the log as the TPM knows it when finalize starts.
type baseState struct {
	entries []ima.Entry // the base log
	nKernel int         // how many of the running kernel's entries it accounts for
	raw     []byte      // the running kernel's list as read
	at      ima.PCRValues
	plans   []bankPlan
	desc    []string
	// kl is the base checked for the hand-over and encoded, by the same
	// pass that replayed it (nil without a TPM).
	kl *ima.KexecList
}

// stableBase reads the running kernel's list and the PCRs, and replays the
// list, until the replay reproduces the PCRs. The base log is that list,
// or, after an earlier finalize, the list it loaded followed by what the
// kernel measured since. The base must replay to the TPM; the method that
// reproduces each bank is returned for extending the loader's entries, and
// the PCR values read (those of the base, and of pcr) are where the
// loader's entries start from.
//
// A replay that reproduces the PCRs read after the list is itself the
// proof that they belong to that list (no chain of extends comes back to
// a value it left): only when it does not is the list read again, to tell
// entries that arrived meanwhile (try again) from a log that does not
// replay (refused). read, if not nil, is the list as just read: the first
// try starts from it.
func stableBase(h Facts, t TPM, read []byte, prev []ima.Entry, fin *Finalized, pcr uint32) (baseState, error) {
	last := errors.New("no attempt")
	for try := 0; try < 5; try++ {
		raw, err := read, error(nil)
		if read = nil; raw == nil {
			raw, err = h.IMAList()
		}
		if errors.Is(err, kexec.ErrNoIMA) || errors.Is(err, kexec.ErrSecurityfsUnmounted) {
			return baseState{}, fmt.Errorf("finalize: %w: %w", ErrNoIMAList, err)
		}
		if err != nil {
			return baseState{}, fmt.Errorf("finalize: %w", err)
		}
		kernel, err := ima.ParseList(raw, binary.LittleEndian)
		if err != nil {
			return baseState{}, fmt.Errorf("finalize: the running kernel's list: %w", err)
		}
		b := baseState{entries: kernel, nKernel: len(kernel), raw: raw}
		if fin != nil {
			if len(kernel) < fin.KernelEntries {
				return baseState{}, fmt.Errorf("%w: the running list shrank since the last finalize", ErrSelfCheck)
			}
			b.entries = append(append([]ima.Entry(nil), prev...), kernel[fin.KernelEntries:]...)
		}
		if t == nil {
			return b, nil
		}
		if b.at, err = readPCRs(t, b.entries, pcr); err != nil {
			return baseState{}, err
		}
		var list []byte // the base's bytes, when it is the list read
		if fin == nil {
			list = raw
		}
		b.plans, b.kl, err = planBanks(b.entries, b.at, list)
		if errors.Is(err, plan.ErrIMAList) {
			return baseState{}, fmt.Errorf("finalize: the log so far (%d entries): %w", len(b.entries), err)
		}
		if err == nil {
			b.desc = describePlans(b.plans)
			return b, nil
		}
		again, rerr := h.IMAList()
		if rerr != nil {
			return baseState{}, rerr
		}
		if !bytes.Equal(raw, again) {
			last = errors.New("the list kept changing while the PCRs were read")
			continue
		}
		return baseState{}, fmt.Errorf("%w; the log so far (%d entries) does not replay", err, len(b.entries))
	}
	return baseState{}, fmt.Errorf("finalize: %w", last)
}

// readPCRs reads every active bank's value of every PCR the list uses,
// of PCR 10, and of the extra PCRs.
func readPCRs(t TPM, es []ima.Entry, extra ...uint32) (ima.PCRValues, error) {
	seen := map[uint32]bool{}
	var idx []uint32
	add := func(p uint32) {
		if !seen[p] && p < 24 {
			seen[p] = true
			idx = append(idx, p)
		}
	}
	add(DefaultPCR)
	for _, p := range extra {
		add(p)
	}
	for _, e := range es {
		add(e.PCR)
	}
	v, err := t.ReadPCRs(idx)
	if err != nil {
		return nil, fmt.Errorf("finalize: reading PCRs: %w", err)
	}
	return ima.PCRValues(v), nil
}

// reconcile reads the kernel's list and the PCRs after the loader's entries
// were extended and returns the order that reproduces the PCRs after the
// base: the kernel entries that arrived before ours, ours, the rest. Only what
// follows the base is replayed, from the PCR values the base replayed to;
// only what the kernel appended to its list is parsed. The new count of
// the kernel's entries accounted for is returned.
func reconcile(h Facts, t TPM, b baseState, ours []ima.Entry) ([]ima.Entry, int, error) {
	raw, err := h.IMAList()
	if err != nil {
		return nil, 0, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	if !bytes.HasPrefix(raw, b.raw) {
		return nil, 0, fmt.Errorf("%w: the running list changed, not only grew (%w)", ErrSelfCheck, ErrExtended)
	}
	newer, err := ima.ParseList(raw[len(b.raw):], binary.LittleEndian)
	if err != nil {
		return nil, 0, fmt.Errorf("finalize: %w (%w)", err, ErrExtended)
	}
	tail := append(append([]ima.Entry(nil), ours...), newer...)
	pcrs, err := readPCRs(t, tail, keys(b.at)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%w (%w)", err, ErrExtended)
	}
	methods := current(b.plans)
	for i := 0; i <= len(newer); i++ {
		cand := append(append(append([]ima.Entry(nil), newer[:i]...), ours...), newer[i:]...)
		if extendsTo(b.at, cand, methods, pcrs) {
			return cand, b.nKernel + len(newer), nil
		}
	}
	return nil, 0, fmt.Errorf("%w after extending the loader's %d entries (%d kernel entries arrived meanwhile) (%w)",
		ErrSelfCheck, len(ours), len(newer), ErrExtended)
}

func keys(v ima.PCRValues) []uint32 {
	var out []uint32
	for _, vals := range v {
		for p := range vals {
			out = append(out, p)
		}
		break
	}
	return out
}

// extendsTo reports whether extending start with es (each bank with its
// method) gives want in every bank, for every PCR want holds.
func extendsTo(start ima.PCRValues, es []ima.Entry, methods map[crypto.Hash]ima.Method, want ima.PCRValues) bool {
	for bank, m := range methods {
		cur := map[uint32][]byte{}
		for p, v := range start[bank] {
			cur[p] = bytes.Clone(v)
		}
		for _, e := range es {
			v, ok := cur[e.PCR]
			if !ok {
				return false // a PCR the base read did not cover: cannot tell
			}
			h := bank.New()
			h.Write(v)
			h.Write(ima.TemplateDigest(e, bank, m))
			cur[e.PCR] = h.Sum(nil)
		}
		for p, w := range want[bank] {
			if v, ok := cur[p]; ok && !bytes.Equal(v, w) {
				return false
			}
		}
	}
	return true
}
