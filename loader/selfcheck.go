package loader

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/gokexec/gokexec/ima"
)

// Each kernel chooses, per PCR bank, how it derives the digest it extends:
// the bank's own hash of the template data, or — when it has no
// implementation of that hash at start-up, like Debian 6.1 for sha384 — the
// SHA-1 template digest zero-padded. A log that crossed kernels of both
// kinds (6.1 -> 6.12 -> 6.1) therefore changes method at boot_aggregate
// entries, and no single method replays it. The self-check models that: a
// method per bank per boot, found by search (2^boots combinations at most,
// and boots are few; only banks that no single method reproduces need it).

// maxSearchBoots bounds the per-boot method search.
const maxSearchBoots = 12

// bankPlan is how one bank replays: a method per boot segment.
type bankPlan struct {
	bank    crypto.Hash
	methods []ima.Method // one per boot segment; the last is the running kernel's
}

// bootStarts returns the index of every boot_aggregate entry, and 0 if the
// log does not start with one, so that segment i is [starts[i], starts[i+1]).
func bootStarts(es []ima.Entry) []int {
	starts := []int{0}
	for i := range es {
		if i > 0 && es[i].EventName(binary.LittleEndian) == "boot_aggregate" {
			starts = append(starts, i)
		}
	}
	return starts
}

// replayMixed replays es into bank with methods[s] for boot segment s.
func replayMixed(es []ima.Entry, starts []int, bank crypto.Hash, methods []ima.Method) map[uint32][]byte {
	pcrs := map[uint32][]byte{}
	seg := 0
	h := bank.New()
	for i := range es {
		for seg+1 < len(starts) && i >= starts[seg+1] {
			seg++
		}
		d := ima.TemplateDigest(es[i], bank, methods[seg])
		v, ok := pcrs[es[i].PCR]
		if !ok {
			v = make([]byte, bank.Size())
		}
		h.Reset()
		h.Write(v)
		h.Write(d)
		pcrs[es[i].PCR] = h.Sum(nil)
	}
	return pcrs
}

// matches compares replayed values with the quoted ones for every PCR the
// log uses.
func matches(replayed map[uint32][]byte, quoted map[uint32][]byte) bool {
	for p, v := range replayed {
		q, ok := quoted[p]
		if !ok || !bytes.Equal(q, v) {
			return false
		}
	}
	return true
}

// planBanks finds, for every quoted bank, methods that make es reproduce
// the quoted PCRs exactly (the whole log, not a prefix).
func planBanks(es []ima.Entry, quoted ima.PCRValues) ([]bankPlan, error) {
	starts := bootStarts(es)
	var banks []crypto.Hash
	for b := range quoted {
		banks = append(banks, b)
	}
	sort.Slice(banks, func(i, j int) bool { return banks[i] < banks[j] })
	var out []bankPlan
	for _, b := range banks {
		bp, ok := searchBank(es, starts, b, quoted[b])
		if !ok {
			return nil, fmt.Errorf("%w: bank %s: no per-boot choice of extend method reproduces the quoted PCRs over %d entries and %d boots",
				ErrSelfCheck, ima.HashName(b), len(es), len(starts))
		}
		out = append(out, bp)
	}
	return out, nil
}

func searchBank(es []ima.Entry, starts []int, bank crypto.Hash, quoted map[uint32][]byte) (bankPlan, bool) {
	n := len(starts)
	uniform := func(m ima.Method) []ima.Method {
		ms := make([]ima.Method, n)
		for i := range ms {
			ms[i] = m
		}
		return ms
	}
	// The common cases first: one method for the whole log.
	for _, m := range []ima.Method{ima.MethodPerBank, ima.MethodSHA1Padded} {
		if ms := uniform(m); matches(replayMixed(es, starts, bank, ms), quoted) {
			return bankPlan{bank, ms}, true
		}
	}
	if bank == crypto.SHA1 || n > maxSearchBoots {
		return bankPlan{}, false // SHA-1 has one method; too many boots to search
	}
	for mask := 1; mask < 1<<n-1; mask++ {
		ms := make([]ima.Method, n)
		for i := range ms {
			if mask&(1<<i) != 0 {
				ms[i] = ima.MethodSHA1Padded
			}
		}
		if matches(replayMixed(es, starts, bank, ms), quoted) {
			return bankPlan{bank, ms}, true
		}
	}
	return bankPlan{}, false
}

// current returns the method the running kernel uses for each bank: the
// method of the last boot segment.
func current(plans []bankPlan) map[crypto.Hash]ima.Method {
	out := map[crypto.Hash]ima.Method{}
	for _, p := range plans {
		out[p.bank] = p.methods[len(p.methods)-1]
	}
	return out
}

// replaysWith checks es against quoted with the given plans, the entries
// after the last known boot using the running kernel's method.
func replaysWith(es []ima.Entry, quoted ima.PCRValues, plans []bankPlan) bool {
	starts := bootStarts(es)
	for _, p := range plans {
		ms := p.methods
		if len(starts) != len(ms) {
			return false
		}
		if !matches(replayMixed(es, starts, p.bank, ms), quoted[p.bank]) {
			return false
		}
	}
	return true
}

func describePlans(plans []bankPlan) []string {
	var out []string
	for _, p := range plans {
		s := ima.HashName(p.bank) + ":"
		for i, m := range p.methods {
			if i > 0 {
				s += ","
			}
			s += m.String()
		}
		out = append(out, s)
	}
	return out
}
