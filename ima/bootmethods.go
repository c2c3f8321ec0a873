package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"slices"
)

// Each kernel picks, per PCR bank, how it derives the digest it extends: the
// bank's own hash of the template data, or — when it has no implementation
// of that hash at start-up, like Debian 6.1 for sha384 — the SHA-1 template
// digest zero-padded. A list carried across kexecs between kernels of both
// kinds (6.1 -> 6.12 -> 6.1) therefore changes method at boot_aggregate
// entries, and no single method replays it. The functions here model that:
// a method per bank per boot, found by search over the boots.

// MaxBootMethodSearch bounds the boots BootMethods searches (2^n replays).
const MaxBootMethodSearch = 12

// BootStarts returns the index where each boot begins: 0, then every later
// boot_aggregate (or boot_aggregate_late) entry, reading field lengths
// little-endian; BootStartsOrder takes the list's byte order.
func BootStarts(entries []Entry) []int {
	return BootStartsOrder(entries, binary.LittleEndian)
}

// BootStartsOrder is BootStarts for a list in the given byte order. The
// boots are those the timeline splits the list into.
func BootStartsOrder(entries []Entry, order binary.ByteOrder) []int {
	starts := []int{0}
	for i := 1; i < len(entries); i++ {
		if !timelineCandidate(&entries[i]) {
			continue
		}
		if n := entries[i].EventName(order); n == BootAggregate || n == BootAggregateLate {
			starts = append(starts, i)
		}
	}
	return starts
}

// ReplayBootMethods replays entries into bank using methods[i] for the
// entries of boot i (boots as BootStarts splits them). It returns nil if
// methods does not have one method per boot or the bank is unknown.
func ReplayBootMethods(entries []Entry, bank crypto.Hash, methods []Method) map[uint32][]byte {
	return replayBoots(entries, bank, methods, BootStarts(entries))
}

func replayBoots(entries []Entry, bank crypto.Hash, methods []Method, starts []int) map[uint32][]byte {
	if len(methods) != len(starts) || checkBank(bank) != nil {
		return nil
	}
	pcrs := map[uint32][]byte{}
	h := bank.New()
	boot := 0
	for i := range entries {
		for boot+1 < len(starts) && i >= starts[boot+1] {
			boot++
		}
		d := TemplateDigest(entries[i], bank, methods[boot])
		v, ok := pcrs[entries[i].PCR]
		if !ok {
			v = make([]byte, bank.Size())
		}
		h.Reset()
		h.Write(v)
		h.Write(d)
		pcrs[entries[i].PCR] = h.Sum(nil)
	}
	return pcrs
}

// BootMethods finds a method per boot with which the whole list reproduces
// quoted (every PCR the list uses must be quoted and equal). Uniform
// choices are tried first; mixed ones only for banks other than SHA-1 and
// lists of at most MaxBootMethodSearch boots.
func BootMethods(entries []Entry, bank crypto.Hash, quoted map[uint32][]byte) ([]Method, bool) {
	return bootMethods(entries, bank, quoted, BootStarts(entries))
}

func bootMethods(entries []Entry, bank crypto.Hash, quoted map[uint32][]byte, starts []int) ([]Method, bool) {
	n := len(starts)
	match := func(ms []Method) bool {
		got := replayBoots(entries, bank, ms, starts)
		if got == nil {
			return false
		}
		for p, v := range got {
			if q, ok := quoted[p]; !ok || !bytes.Equal(q, v) {
				return false
			}
		}
		return true
	}
	for _, m := range []Method{MethodPerBank, MethodSHA1Padded} {
		ms := slices.Repeat([]Method{m}, n)
		if match(ms) {
			return ms, true
		}
	}
	if bank == crypto.SHA1 || n > MaxBootMethodSearch {
		return nil, false
	}
	for mask := 1; mask < 1<<n-1; mask++ {
		ms := make([]Method, n)
		for i := range ms {
			if mask&(1<<i) != 0 {
				ms[i] = MethodSHA1Padded
			}
		}
		if match(ms) {
			return ms, true
		}
	}
	return nil, false
}

// withBootMethods completes a verification whose whole list failed only
// because some banks changed method between boots: when every other bank
// reproduces the whole list, each failing bank is searched for a method per
// boot. If all succeed, the whole list is the matched prefix and those banks
// record their methods in BootMethods. Otherwise res is returned unchanged.
// order is the list's byte order (for the boot_aggregate names).
func withBootMethods(res VerifyResult, entries []Entry, quoted PCRValues, order binary.ByteOrder) VerifyResult {
	n := len(entries)
	if n == 0 || res.Prefix == n || len(res.DigestMismatches) > 0 {
		return res
	}
	for _, p := range res.Problems {
		if p != emptyPrefixProblem {
			return res
		}
	}
	var failing []int
	for i, b := range res.Banks {
		if b.OwnPrefix != n {
			failing = append(failing, i)
		}
	}
	starts := BootStartsOrder(entries, order)
	if len(failing) == 0 || len(starts) < 2 {
		return res
	}
	found := map[int][]Method{}
	for _, i := range failing {
		b := res.Banks[i]
		ms, ok := bootMethods(entries, b.Hash, quoted[b.Hash], starts)
		if !ok {
			return res
		}
		found[i] = ms
	}
	out := res
	out.Banks = slices.Clone(res.Banks)
	out.Problems = nil
	out.Prefix, out.Consistent = n, true
	for i := range out.Banks {
		b := &out.Banks[i]
		if ms, ok := found[i]; ok {
			b.BootMethods = ms
			b.OwnPrefix = n
			last := ms[len(ms)-1]
			b.OwnMethod = &last
			b.Method, b.Methods = nil, nil
			continue
		}
		b.Methods = nil
		if b.OwnMethod != nil {
			m := *b.OwnMethod
			b.Method, b.Methods = &m, []Method{m}
		}
	}
	return out
}
