package loader

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

// ErrInputChanged says a file changed between load and exec.
var ErrInputChanged = errors.New("input changed since it was loaded")

// ErrSelfCheck says the list to hand over does not replay to the TPM.
var ErrSelfCheck = errors.New("the hand-over list does not reproduce the TPM's PCRs")

// Report says what Finalize did.
type Report struct {
	Plan      *plan.Plan
	Entries   []ima.Entry // the loader's entries, in the order extended
	Extended  bool        // whether a TPM was extended
	Banks     []string    // TPM banks checked, with the method each uses
	Relayout  bool        // the IMA segment had to grow
	ListBytes uint64
	Count     int
}

// Finalize completes a recorded load just before the reboot (DESIGN §4):
// it checks that the inputs are unchanged, takes a fresh snapshot of the
// list, appends the loader's entries (a kexec_load marker, the kernel,
// initrd and command line measurements, a kexec_execute marker), extends
// them into every active bank of the TPM, checks that the resulting list
// replays to the TPM's PCRs, rewrites the IMA segment (same layout while it
// fits, a larger one when not) and loads it again. On any error nothing is
// rebooted; once entries were extended the running kernel's own list no
// longer matches the TPM, and the error says so.
func Finalize(s *State) (*Report, error) {
	if s.Plan == nil {
		return nil, ErrNoState
	}
	if s.Plan.Syscall == plan.SyscallKexecFileLoad {
		return &Report{Plan: s.Plan}, nil // the kernel owns that hand-over (or drops it)
	}
	o := s.Options
	o.DryRun = false
	in, err := Inputs(&o)
	if err != nil {
		return nil, err
	}
	if plan.Digest(in.Kernel) != s.Plan.Kernel.SHA256 {
		return nil, fmt.Errorf("%w: kernel %s (sha256 now %s, loaded %s)", ErrInputChanged, o.KernelPath, plan.Digest(in.Kernel), s.Plan.Kernel.SHA256)
	}
	if s.Plan.Initrd != nil && plan.Digest(in.Initrd) != s.Plan.Initrd.SHA256 {
		return nil, fmt.Errorf("%w: initrd %s", ErrInputChanged, o.InitrdPath)
	}
	rep := &Report{Plan: s.Plan}
	if s.Plan.IMA == nil || in.IMAList == nil {
		return rep, nil // nothing to hand over
	}
	if s.FinalizedAt != 0 {
		if uint64(len(in.IMAList)) == s.FinalizedAt {
			return rep, nil // finalized already (--finalize), nothing new since
		}
		return nil, fmt.Errorf("%w: the list grew by %d bytes since --finalize; those entries would be lost. Unload (-u) and load again",
			ErrSelfCheck, uint64(len(in.IMAList))-s.FinalizedAt)
	}
	pcr := o.pcr()
	t, err := tpm.Open(o.TPMDevice)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	if t != nil {
		defer t.Close()
	}

	// 1. A snapshot that replays to the TPM, and each bank's method.
	snap, methods, banks, err := stableSnapshot(t)
	if err != nil {
		return nil, err
	}
	rep.Banks = banks

	// 2. The loader's entries, sized for the segment they will land in.
	ms, err := measurements(s.Plan, pcr, nil)
	if err != nil {
		return nil, err
	}
	snapBytes := uint64(len(ima.AppendList(nil, snap, binary.LittleEndian)))
	need := uint64(ima.KexecHeaderSize) + snapBytes + listSize(ms) + uint64(maxMarkerSize(MarkerLoad)+maxMarkerSize(MarkerExecute)) + 4096
	segSize := s.Plan.IMA.Size
	if need > segSize {
		if segSize, err = plan.IMASegmentSize(need, o.IMAExtra, 0, 4096); err != nil {
			return nil, err
		}
		rep.Relayout = true
	}
	ours := []ima.Entry{marker(pcr, MarkerLoad, segSize, snapBytes, uint64(len(snap)))}
	ours = append(ours, ms...)
	before := snapBytes + listSize(ours)
	ours = append(ours, marker(pcr, MarkerExecute, segSize, before, uint64(len(snap)+len(ours))))
	rep.Entries = ours

	// 3. Extend, then find where the kernel's own new entries (if any
	//    arrived meanwhile) fall relative to ours, by the PCR values.
	final := append(append([]ima.Entry(nil), snap...), ours...)
	if t != nil {
		for _, e := range ours {
			d := map[crypto.Hash][]byte{}
			for h, m := range methods {
				d[h] = ima.TemplateDigest(e, h, m)
			}
			if err := t.Extend(e.PCR, d); err != nil {
				return nil, fmt.Errorf("finalize: extending PCR %d: %w; not rebooting", e.PCR, err)
			}
		}
		rep.Extended = true
		if final, err = reconcile(t, snap, ours); err != nil {
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
		return nil, fmt.Errorf("finalize: %w; not rebooting (the TPM already holds the loader's entries)", err)
	}
	if err := Execute(p); err != nil {
		return nil, fmt.Errorf("finalize: %w; not rebooting", err)
	}
	s.Plan = p
	rep.Plan = p
	if now, _, err := kexec.ReadIMAList(""); err == nil {
		s.FinalizedAt = uint64(len(now))
	}
	if err := saveState(o.stateDir(), s); err != nil {
		return nil, err
	}
	return rep, nil
}

// stableSnapshot reads the list and the PCRs until the list did not change
// while the PCRs were read, and checks that it replays. It returns the
// entries, the method each active bank uses and a description per bank.
func stableSnapshot(t *tpm.TPM) ([]ima.Entry, map[crypto.Hash]ima.Method, []string, error) {
	var last error
	for try := 0; try < 5; try++ {
		raw, _, err := kexec.ReadIMAList("")
		if err != nil {
			return nil, nil, nil, err
		}
		es, err := ima.ParseList(raw, binary.LittleEndian)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("finalize: the running kernel's list: %w", err)
		}
		if t == nil {
			return es, nil, nil, nil
		}
		pcrs, err := readPCRs(t, es)
		if err != nil {
			return nil, nil, nil, err
		}
		again, _, err := kexec.ReadIMAList("")
		if err != nil {
			return nil, nil, nil, err
		}
		if !bytes.Equal(raw, again) {
			last = errors.New("the list kept changing while the PCRs were read")
			continue
		}
		r := ima.Verify(es, pcrs)
		if !r.Consistent || r.Prefix != len(es) {
			return nil, nil, nil, fmt.Errorf("%w: the running kernel's own list (%d entries) already fails to replay (prefix %d; %v); not rebooting",
				ErrSelfCheck, len(es), r.Prefix, r.Problems)
		}
		methods := map[crypto.Hash]ima.Method{}
		var desc []string
		for _, b := range r.Banks {
			m := ima.MethodPerBank
			if b.Method != nil {
				m = *b.Method
			}
			methods[b.Hash] = m
			desc = append(desc, b.Bank+":"+m.String())
		}
		return es, methods, desc, nil
	}
	return nil, nil, nil, fmt.Errorf("finalize: %w", last)
}

// readPCRs reads every active bank's value of every PCR the list uses (and
// PCR 10).
func readPCRs(t *tpm.TPM, es []ima.Entry) (ima.PCRValues, error) {
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

// reconcile reads the list and PCRs after the loader's entries were
// extended and returns the order that reproduces the PCRs: the snapshot,
// the kernel's entries that arrived before ours, ours, the rest.
func reconcile(t *tpm.TPM, snap, ours []ima.Entry) ([]ima.Entry, error) {
	raw, _, err := kexec.ReadIMAList("")
	if err != nil {
		return nil, err
	}
	now, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	if len(now) < len(snap) {
		return nil, fmt.Errorf("%w: the running list shrank", ErrSelfCheck)
	}
	newer := now[len(snap):]
	all := append(append([]ima.Entry(nil), snap...), ours...)
	pcrs, err := readPCRs(t, all)
	if err != nil {
		return nil, err
	}
	for i := 0; i <= len(newer); i++ {
		cand := append(append(append(append([]ima.Entry(nil), snap...), newer[:i]...), ours...), newer[i:]...)
		if r := ima.Verify(cand, pcrs); r.Consistent && r.Prefix == len(cand) {
			return cand, nil
		}
	}
	return nil, fmt.Errorf("%w after extending the loader's %d entries (%d kernel entries arrived meanwhile); not rebooting — the running kernel's list no longer matches the TPM",
		ErrSelfCheck, len(ours), len(newer))
}
