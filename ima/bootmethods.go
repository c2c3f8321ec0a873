package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
)

// Each kernel picks, per PCR bank, how it derives the digest it extends: the
// bank's own hash of the template data, or — when it has no implementation
// of that hash at start-up, like Debian 6.1 for sha384 — the SHA-1 template
// digest zero-padded. A list carried across kexecs between kernels of both
// kinds (6.1 -> 6.12 -> 6.1) therefore changes method at boot_aggregate
// entries, and no single method replays it. The functions here find a
// method per bank per boot by a depth-first search over the boots, bounded
// in boots and in PCR extends.

// BootStarts returns the index where each boot begins: 0, then every later
// boot_aggregate (or boot_aggregate_late) entry. order is the list's byte
// order (event names are read from the fields).
func BootStarts(entries []Entry, order binary.ByteOrder) []int {
	return bootStarts(BuildTimeline(entries, order))
}

func bootStarts(tl Timeline) []int {
	starts := []int{0}
	for _, b := range tl.Boots[min(1, len(tl.Boots)):] {
		starts = append(starts, b.Start)
	}
	return starts
}

// searchList is what the search needs of each entry for one bank: its
// PCR (as a position in pcrs), whether it is a violation, its stored SHA-1
// template digest and the bank's own template digest.
type searchList struct {
	bank crypto.Hash
	size int
	pcrs []uint32 // the PCRs the list uses
	pos  []int32
	viol []bool
	s1   [][20]byte
	own  []byte
}

func loadSearchList(src source, bank crypto.Hash) (*searchList, error) {
	l := &searchList{bank: bank, size: bank.Size()}
	at := map[uint32]int32{}
	jb := job{extend: true}
	if bank != crypto.SHA1 {
		jb.own = []crypto.Hash{bank}
	}
	_, err := runPass(src, jb, func(c *chunk) error {
		for i := range c.es {
			e := &c.es[i]
			p, ok := at[e.PCR]
			if !ok {
				p = int32(len(l.pcrs))
				at[e.PCR] = p
				l.pcrs = append(l.pcrs, e.PCR)
			}
			l.pos = append(l.pos, p)
			l.viol = append(l.viol, e.Violation())
			l.s1 = append(l.s1, e.TemplateDigest)
			if jb.own != nil {
				l.own = append(l.own, c.own[0][i*l.size:(i+1)*l.size]...)
			} else {
				l.own = append(l.own, make([]byte, l.size)...)
			}
		}
		return nil
	})
	return l, err
}

// replayBoot extends entries [from, to) into state with method m.
func (l *searchList) replayBoot(state []byte, from, to int, m Method) {
	d := make([]byte, l.size)
	var other map[crypto.Hash]hash.Hash
	for i := from; i < to; i++ {
		extendedDigest(d, l.viol[i], l.bank, m, l.s1[i][:], l.own[i*l.size:(i+1)*l.size])
		p := int(l.pos[i]) * l.size
		extendInto(l.bank, state[p:p+l.size], d, &other)
	}
}

func (l *searchList) replay(starts []int, methods []Method) map[uint32][]byte {
	state := make([]byte, len(l.pcrs)*l.size)
	for b := range starts {
		l.replayBoot(state, starts[b], bootEnd(starts, b, len(l.pos)), methods[b])
	}
	out := map[uint32][]byte{}
	for i, p := range l.pcrs {
		out[p] = state[i*l.size : (i+1)*l.size]
	}
	return out
}

func bootEnd(starts []int, b, n int) int {
	if b+1 < len(starts) {
		return starts[b+1]
	}
	return n
}

// search finds one method per boot with which the PCRs of check reproduce
// quoted at the end of the list: the uniform choices first, then a
// depth-first search that stops a branch as soon as a PCR whose last entry
// lies in a finished boot differs. It spends at most budget extends;
// exhausted reports that it stopped for that reason.
func (l *searchList) search(starts []int, quoted map[uint32][]byte, check []uint32, budget int) (ms []Method, found, exhausted bool) {
	n := len(l.pos)
	nb := len(starts)
	// lastBoot[k]: the boot of the last entry of check[k].
	posOf := map[uint32]int{}
	for i, p := range l.pcrs {
		posOf[p] = i
	}
	lastBoot := make([]int, len(check))
	for k := range lastBoot {
		lastBoot[k] = -1
	}
	for b := range starts {
		for i := starts[b]; i < bootEnd(starts, b, n); i++ {
			for k, p := range check {
				if l.pcrs[l.pos[i]] == p {
					lastBoot[k] = b
				}
			}
		}
	}
	spent := 0
	ok := func(state []byte, b int) bool {
		for k, p := range check {
			if lastBoot[k] == b || (b == nb-1 && lastBoot[k] < 0) {
				i := posOf[p] * l.size
				if !bytes.Equal(state[i:i+l.size], quoted[p]) {
					return false
				}
			}
		}
		return true
	}
	cur := make([]Method, nb)
	var dfs func(b int, state []byte) bool
	dfs = func(b int, state []byte) bool {
		if b == nb {
			return true
		}
		for _, m := range []Method{MethodPerBank, MethodSHA1Padded} {
			from, to := starts[b], bootEnd(starts, b, n)
			if spent+to-from > budget {
				exhausted = true
				return false
			}
			spent += to - from
			next := bytes.Clone(state)
			l.replayBoot(next, from, to, m)
			cur[b] = m
			if ok(next, b) && dfs(b+1, next) {
				return true
			}
			if exhausted {
				return false
			}
		}
		return false
	}
	for _, m := range []Method{MethodPerBank, MethodSHA1Padded} {
		uniform := make([]Method, nb)
		for i := range uniform {
			uniform[i] = m
		}
		spent += n
		if matchAll(l.replay(starts, uniform), quoted, check) {
			return uniform, true, false
		}
	}
	if l.bank == crypto.SHA1 || nb > MaxBootMethodSearch {
		return nil, false, false
	}
	if dfs(0, make([]byte, len(l.pcrs)*l.size)) {
		return cur, true, false
	}
	return nil, false, exhausted
}

func matchAll(got, quoted map[uint32][]byte, check []uint32) bool {
	for _, p := range check {
		if !bytes.Equal(got[p], quoted[p]) {
			return false
		}
	}
	return true
}

// ReplayBootMethods replays entries into bank using methods[i] for the
// entries of boot i (boots as BootStarts splits them). The SHA-1 bank and
// the padded method extend the stored SHA-1 template digests. It returns
// nil if methods does not have one method per boot or the bank is unknown.
func ReplayBootMethods(entries []Entry, order binary.ByteOrder, bank crypto.Hash, methods []Method) map[uint32][]byte {
	starts := BootStarts(entries, order)
	if len(methods) != len(starts) || checkBank(bank) != nil {
		return nil
	}
	l, err := loadSearchList(source{entries: entries, reread: true, order: endianOf(order)}, bank)
	if err != nil {
		return nil
	}
	return l.replay(starts, methods)
}

// BootMethods finds a method per boot with which the whole list reproduces
// quoted (every PCR the list uses must be quoted and equal). Uniform
// choices are tried first; mixed ones only for banks other than SHA-1,
// lists of at most MaxBootMethodSearch boots and within
// DefaultMethodSearchBudget extends.
func BootMethods(entries []Entry, order binary.ByteOrder, bank crypto.Hash, quoted map[uint32][]byte) ([]Method, bool) {
	if checkBank(bank) != nil {
		return nil, false
	}
	l, err := loadSearchList(source{entries: entries, reread: true, order: endianOf(order)}, bank)
	if err != nil {
		return nil, false
	}
	for _, p := range l.pcrs {
		if len(quoted[p]) != bank.Size() {
			return nil, false
		}
	}
	ms, ok, _ := l.search(BootStarts(entries, order), quoted, l.pcrs, DefaultMethodSearchBudget)
	return ms, ok
}

// methodSearch runs, for each bank that matches no non-empty prefix with
// either method, the bounded search for a method per boot, and records
// what it did in res.MethodSearch.
func methodSearch(src source, res *VerifyResult, quoted PCRValues, opt VerifyOptions) error {
	n := res.Entries
	var failing []*BankResult
	for i := range res.Banks {
		br := &res.Banks[i]
		if br.Hash != crypto.SHA1 && len(br.PCRs) > 0 && !bindsSome(br.runs) {
			failing = append(failing, br)
		}
	}
	starts := bootStarts(res.Timeline)
	if len(failing) == 0 || len(res.Problems) > 0 || res.Timeline.BootCount < 2 {
		return nil
	}
	switch {
	case !src.reread:
		res.MethodSearch = "not run: the list was read from a stream and cannot be read again"
		return nil
	case res.Timeline.BootCount > MaxBootMethodSearch || len(starts) != res.Timeline.BootCount:
		res.MethodSearch = fmt.Sprintf("not run: the list has %d boots, at most %d are searched", res.Timeline.BootCount, MaxBootMethodSearch)
		return nil
	}
	budget := opt.MethodSearchBudget
	if budget <= 0 {
		budget = DefaultMethodSearchBudget
	}
	var found []string
	for _, br := range failing {
		if int64(n)*int64(br.Hash.Size()+26) > maxSearchBytes {
			res.MethodSearch = fmt.Sprintf("not run: %d entries are too many to search (at most %d for bank %s)", n, maxSearchBytes/(br.Hash.Size()+26), br.Bank)
			return nil
		}
		l, err := loadSearchList(src, br.Hash)
		if err != nil {
			return err
		}
		ms, ok, exhausted := l.search(starts, quoted[br.Hash], br.PCRs, budget)
		switch {
		case exhausted:
			res.MethodSearch = fmt.Sprintf("gave up: bank %s: no method per boot found within %d PCR extends (%d boots, %d combinations)", br.Bank, budget, len(starts), 1<<len(starts))
			return nil
		case !ok:
			res.MethodSearch = fmt.Sprintf("bank %s: no method per boot reproduces the quoted values (%d boots, every combination tried)", br.Bank, len(starts))
			return nil
		}
		br.BootMethods = ms
		br.runs = []run{{ms[len(ms)-1], n, n}}
		found = append(found, br.Bank)
	}
	res.MethodSearch = "found a method per boot for bank " + strings.Join(found, ", ")
	return nil
}
