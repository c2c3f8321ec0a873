package ima

import (
	"fmt"
	"maps"
	"slices"
)

// Stored-digest mismatches: one classification for every input mode.
//
// An entry whose stored SHA-1 template digest is not the SHA-1 of its
// data is a problem when it lies in the bound range (before limit, the
// end of the longest prefix some bank binds) and no bank that hashes
// data with its own algorithm binds that PCR up to it (bound[pcr]). The
// thresholds are known only once every chain is done, so the ledger
// keeps, with memory that does not grow with the list: the exact count
// of mismatches per PCR, the first maxMismatches of each PCR (for the
// listing), and the counts at every prefix length where some chain's
// match of a checked PCR ended (the only values the thresholds take,
// besides 0 and the list's length). A full run that can read its list
// again builds the ledger in a second pass at exactly the thresholds; a
// stream and a resumed checkpoint build it in their one pass. Either way
// classify gives the verdict, so the modes cannot differ.

const maxLedgerSnaps = 4096 // thresholds kept (a chain has one per PCR)

type ledger struct {
	counts map[uint32]int         // mismatches per PCR among the entries seen
	first  map[uint32][]int       // the first maxMismatches of each PCR
	snaps  map[int]map[uint32]int // counts before entry k, at candidate thresholds
	full   bool                   // every entry was compared
	lost   bool                   // a threshold did not fit maxLedgerSnaps
}

func newLedger() *ledger {
	return &ledger{counts: map[uint32]int{}, first: map[uint32][]int{}, snaps: map[int]map[uint32]int{0: {}}}
}

// add records a mismatch at entry k of pcr (entries come in order).
func (l *ledger) add(k int, pcr uint32) {
	l.counts[pcr]++
	if f := l.first[pcr]; len(f) < maxMismatches {
		l.first[pcr] = append(f, k)
	}
}

// snapAt records the counts before entry k; pending are the chunk's
// mismatches not yet added (their indices are >= the chunk's base).
func (l *ledger) snapAt(k int, pending []mismatch) {
	if _, ok := l.snaps[k]; ok {
		return
	}
	if len(l.snaps) >= maxLedgerSnaps {
		l.lost = true
		return
	}
	s := maps.Clone(l.counts)
	for _, m := range pending {
		if m.k < k {
			s[m.pcr]++
		}
	}
	l.snaps[k] = s
}

// chunk compares the chunk's stored digests (c.sha1 computed), snapshots
// the counts at every interval end the chains recorded inside it, and
// adds the chunk's mismatches.
func (l *ledger) chunk(c *chunk, chains []*chain) {
	var pend []mismatch
	for i := range c.es {
		e := &c.es[i]
		if !e.Violation() && c.sha1[i] != e.TemplateDigest {
			pend = append(pend, mismatch{c.base + i, e.PCR})
		}
	}
	end := c.base + len(c.es)
	for _, x := range chains {
		for _, p := range x.pcrs.indices() {
			if s := x.pcrs.get(p); s.lo >= 0 && s.hi >= c.base && s.hi < end {
				l.snapAt(s.hi, pend)
			}
		}
	}
	for _, m := range pend {
		l.add(m.k, m.pcr)
	}
}

// at returns the counts before entry k (n: the entries seen).
func (l *ledger) at(k, n int) (map[uint32]int, bool) {
	if k >= n {
		return l.counts, true
	}
	s, ok := l.snaps[k]
	return s, ok
}

// classify sets res.DigestMismatches (the listed ones, at most
// maxMismatches) and res.DigestMismatchCount for the entries in
// [bound[pcr], limit) of each PCR, and makes the verdict inconsistent
// when there are any.
func (l *ledger) classify(res *VerifyResult, bound map[uint32]int, limit, n int) {
	if limit <= 0 {
		return
	}
	atLimit, ok := l.at(limit, n)
	total := 0
	for p, c := range atLimit {
		b := bound[p]
		if b >= limit || c == 0 {
			continue
		}
		before, okb := l.at(b, n)
		if !okb {
			ok = false
			break
		}
		if d := c - before[p]; d > 0 {
			total += d
			for _, k := range l.first[p] {
				if k >= b && k < limit {
					res.DigestMismatches = append(res.DigestMismatches, k)
				}
			}
		}
	}
	if !ok || l.lost {
		res.Consistent = false
		res.Problems = append(res.Problems, "the stored template digests of the matched prefix could not be classified (too many distinct prefix ends)")
		return
	}
	slices.Sort(res.DigestMismatches)
	if len(res.DigestMismatches) > maxMismatches {
		res.DigestMismatches = res.DigestMismatches[:maxMismatches]
	}
	res.DigestMismatchCount = total
	if total > 0 {
		res.Consistent = false
		res.Problems = append(res.Problems, fmt.Sprintf("%s in the matched prefix %s a stored template digest that differs from its data",
			plural(total, "entry", "entries"), map[bool]string{true: "has", false: "have"}[total == 1]))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
