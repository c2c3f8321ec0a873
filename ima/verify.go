package ima

import (
	"cmp"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Reads says how the quoted PCR values were taken, which decides what
// "matches" means (see the package documentation).
type Reads int

const (
	// ReadsInstant: every value was taken at one instant (a TPM quote, one
	// TPM2_PCR_Read, imalog --tpm): they must all match one common prefix.
	ReadsInstant Reads = iota
	// ReadsPerBank: the banks were read one after another (sysfs
	// pcr-<bank>/<n> files, each read itself measured): each bank matches
	// its own prefix.
	ReadsPerBank
)

func (r Reads) String() string {
	if r == ReadsPerBank {
		return "per-bank"
	}
	return "instant"
}

// MarshalText renders the mode name (used by JSON output).
func (r Reads) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// VerifyOptions select the semantics of a verification.
type VerifyOptions struct {
	Reads Reads
	// Strict: every PCR the list extends must be quoted in every quoted
	// bank, and no entry may follow the matched prefix.
	Strict bool
	// MethodSearchBudget bounds the search for a method per boot, in PCR
	// extends; 0 means DefaultMethodSearchBudget.
	MethodSearchBudget int
	// Firmware holds the values of PCRs 0-9 each boot_aggregate is
	// compared with (bootaggregate.go); nil: the quoted values.
	Firmware PCRValues
}

func (o VerifyOptions) firmware(quoted PCRValues) PCRValues {
	if o.Firmware != nil {
		return o.Firmware
	}
	return quoted
}

// Bounds of the method-per-boot search.
const (
	DefaultMethodSearchBudget = 1 << 22  // extends (about half a second of SHA-256)
	MaxBootMethodSearch       = 16       // boots
	maxSearchBytes            = 16 << 20 // digests held for the search
	maxMismatches             = 64       // digest mismatches listed
)

// BankResult is the outcome of verification for one quoted bank.
type BankResult struct {
	Bank       string            `json:"bank"`
	Hash       crypto.Hash       `json:"-"`
	PCRs       []uint32          `json:"pcrs"`                           // PCRs both used by the list and quoted
	Method     *Method           `json:"method"`                         // method matching at the verdict's prefix (nil: none)
	Methods    []Method          `json:"methods,omitempty"`              // every method matching there
	OwnPrefix  int               `json:"own_prefix"`                     // longest prefix this bank alone reproduces, -1 if none
	OwnMethod  *Method           `json:"own_method"`                     // method of OwnPrefix
	Quoted     map[uint32]string `json:"quoted"`                         // hex, checked PCRs only
	Replayed   map[uint32]string `json:"replayed"`                       // hex values after the whole list, per-bank method
	ReplayedP  map[uint32]string `json:"replayed_sha1_padded,omitempty"` // only when the padded method was tried
	Unverified []uint32          `json:"unverified,omitempty"`           // PCRs the list uses that this bank does not quote
	// BootMethods is set when the bank reproduces the whole list only with
	// a method per boot (kernels that hash this bank differently were
	// kexec'ed into one another): one method per boot, in order.
	BootMethods []Method `json:"boot_methods,omitempty"`

	runs []run
}

// run is one chain's outcome: the prefix lengths [lo, hi] at which it
// reproduces the bank's checked PCRs.
type run struct {
	method Method
	lo, hi int
}

func (r run) has(k int) bool { return r.lo <= k && k <= r.hi }

// UnquotedPCR is a PCR the list extends that some quoted bank does not
// quote: its entries are not checked by those banks.
type UnquotedPCR struct {
	PCR     uint32   `json:"pcr"`
	Entries int      `json:"entries"`
	Banks   []string `json:"banks"` // the quoted banks that lack it
}

// VerifyResult is the outcome of a verification.
type VerifyResult struct {
	Consistent bool  `json:"consistent"`
	Entries    int   `json:"entries"`
	Reads      Reads `json:"reads"`
	Strict     bool  `json:"strict,omitempty"`
	// Prefix: with ReadsInstant, the longest number of leading entries
	// that reproduces every checked PCR of every quoted bank; with
	// ReadsPerBank, the number every bank binds (the shortest of the
	// banks' own prefixes). -1 if there is none.
	Prefix int `json:"prefix"`
	// Some is the longest prefix some bank binds (with ReadsInstant, the
	// longest a bank reproduces alone); -1 if none.
	Some  int          `json:"some_prefix"`
	Banks []BankResult `json:"banks"`
	// Unquoted lists PCRs with entries that a quoted bank does not quote.
	Unquoted []UnquotedPCR `json:"unquoted,omitempty"`
	// Unbound counts the entries after Prefix (all of them without one).
	Unbound int `json:"unbound"`
	// DigestMismatches lists entries within the bound range (before Some)
	// whose stored SHA-1 template digest is not the SHA-1 of their data
	// (the first 64 of each PCR that fall there, at most 64). Entries whose data a bank hashed with its own
	// algorithm binds need no such comparison and are not compared.
	DigestMismatches []int `json:"digest_mismatches,omitempty"`
	// DigestMismatchCount is how many there are (all counted, not only
	// the listed ones).
	DigestMismatchCount int `json:"digest_mismatch_count,omitempty"`
	// MethodSearch says what the method-per-boot search did, when it ran
	// or was wanted.
	MethodSearch string   `json:"method_search,omitempty"`
	Problems     []string `json:"problems,omitempty"`
	// Timeline is the list's boot/kexec structure, built in the same pass.
	Timeline Timeline `json:"-"`
}

// Verify verifies entries of a list in the given byte order against
// quoted PCR values (see the package documentation for the semantics).
func Verify(entries []Entry, order binary.ByteOrder, quoted PCRValues, opt VerifyOptions) VerifyResult {
	if order == nil {
		order = binary.LittleEndian
	}
	res, err := verifySource(source{entries: entries, reread: true, order: endianOf(order)}, quoted, opt)
	if err != nil { // entries name a PCR no TPM has
		res.Consistent = false
		res.Problems = append(res.Problems, err.Error())
	}
	return res
}

// VerifyReader verifies the binary list read once from r. The padded
// method is replayed alongside each bank's own hash and every stored
// SHA-1 digest is compared, since the list cannot be read again; the
// method-per-boot search does not run.
func VerifyReader(r io.Reader, order binary.ByteOrder, quoted PCRValues, opt VerifyOptions) (VerifyResult, error) {
	if order == nil {
		return VerifyResult{}, errNilOrder
	}
	return verifySource(streamSource(r, order), quoted, opt)
}

// VerifyReaderAt verifies the size-byte binary list behind r, reading it
// again where a second pass is cheaper than doing everything in the first
// (the padded method, digest comparisons, the method search).
func VerifyReaderAt(r io.ReaderAt, size int64, order binary.ByteOrder, quoted PCRValues, opt VerifyOptions) (VerifyResult, error) {
	if order == nil {
		return VerifyResult{}, errNilOrder
	}
	return verifySource(readerAtSource(r, size, order), quoted, opt)
}

const emptyPrefixProblem = "only the empty prefix matches the quoted PCRs"

// bankSize is h.Size(), or 0 for a hash unknown to this package.
func bankSize(h crypto.Hash) int {
	if checkBank(h) != nil {
		return 0
	}
	return h.Size()
}

func hexMap(m map[uint32][]byte, only []uint32) map[uint32]string {
	out := make(map[uint32]string, len(only))
	for _, p := range only {
		if v, ok := m[p]; ok {
			out[p] = hex.EncodeToString(v)
		}
	}
	return out
}

func newInt() *int { return new(int) }

func verifySource(src source, quoted PCRValues, opt VerifyOptions) (VerifyResult, error) {
	res := VerifyResult{Prefix: -1, Some: -1, Reads: opt.Reads, Strict: opt.Strict}
	banks := make([]crypto.Hash, 0, len(quoted))
	for b := range quoted {
		banks = append(banks, b)
	}
	slices.SortFunc(banks, func(a, b crypto.Hash) int { return cmp.Or(bankSize(a)-bankSize(b), int(a)-int(b)) })

	// Pass 1: every bank with its own hash (and, on a stream, padded too).
	jb := job{extend: true}
	chainsOf := map[crypto.Hash][]*chain{}
	var all []*chain
	hasOwn := false
	for _, b := range banks {
		if checkBank(b) != nil {
			continue
		}
		q := quoted[b]
		var cs []*chain
		if b == crypto.SHA1 {
			cs = []*chain{newChain(b, MethodPerBank, srcStored, q)}
		} else {
			cs = []*chain{newChain(b, MethodPerBank, len(jb.own), q)}
			jb.own = append(jb.own, b)
			hasOwn = true
			if !src.reread {
				cs = append(cs, newChain(b, MethodSHA1Padded, srcStored, q))
			}
		}
		chainsOf[b] = cs
		all = append(all, cs...)
	}
	jb.sha1 = !src.reread || !hasOwn
	var counts pcrTable[int]
	tb := NewTimelineBuilder(src.order.byteOrder())
	tb.SetFirmware(opt.firmware(quoted))
	led := newLedger()
	n, err := runPass(src, jb, func(c *chunk) error {
		extendChunk(all, c)
		for i := range c.es {
			*counts.at(c.es[i].PCR, newInt)++
		}
		if jb.sha1 {
			led.chunk(c, all)
		}
		for _, i := range c.cand {
			tb.Add(c.base+int(i), &c.es[i])
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Entries = n
	res.Timeline = tb.Finish(n)
	for _, x := range all {
		x.finish(n)
	}
	used := counts.indices()
	if len(quoted) == 0 {
		res.Problems = append(res.Problems, "no quoted PCR values")
	}

	// The checked PCRs of each bank, and the runs of pass 1.
	var unquoted = map[uint32][]string{}
	for _, b := range banks {
		br, problems := newBankResult(b, used, quoted[b], unquoted)
		res.Problems = append(res.Problems, problems...)
		if checkBank(b) != nil {
			res.Banks = append(res.Banks, br)
			continue
		}
		cs := chainsOf[b]
		br.Replayed = hexMap(cs[0].values(), br.PCRs)
		for _, x := range cs {
			lo, hi := x.interval(br.PCRs)
			br.runs = append(br.runs, run{x.method, lo, hi})
			if x.method == MethodSHA1Padded {
				br.ReplayedP = hexMap(x.values(), br.PCRs)
			}
		}
		res.Banks = append(res.Banks, br)
	}
	for _, p := range used {
		if bs := unquoted[p]; len(bs) > 0 {
			res.Unquoted = append(res.Unquoted, UnquotedPCR{PCR: p, Entries: *counts.get(p), Banks: bs})
		}
	}

	// Pass 2: the padded method for the banks whose own hash reproduces
	// no non-empty prefix (a kernel uses one method per bank, and the two
	// agree only on violations). Only extends: no template hashing.
	var pad []*chain
	var padOf []int
	for i := range res.Banks {
		br := &res.Banks[i]
		if src.reread && br.Hash != crypto.SHA1 && len(br.runs) == 1 && !bindsSome(br.runs) {
			pad = append(pad, newChain(br.Hash, MethodSHA1Padded, srcStored, quoted[br.Hash]))
			padOf = append(padOf, i)
		}
	}
	if len(pad) > 0 {
		if _, err := runPass(src, job{extend: true}, func(c *chunk) error {
			extendChunk(pad, c)
			return nil
		}); err != nil {
			return res, err
		}
		for k, x := range pad {
			x.finish(n)
			br := &res.Banks[padOf[k]]
			lo, hi := x.interval(br.PCRs)
			br.runs = append(br.runs, run{MethodSHA1Padded, lo, hi})
			br.ReplayedP = hexMap(x.values(), br.PCRs)
		}
	}

	if err := methodSearch(src, &res, quoted, opt); err != nil {
		return res, err
	}
	decide(&res, opt, n)

	// Stored SHA-1 digests of entries no bank hashed with its own
	// algorithm binds: compared in pass 1 on a stream or without such a
	// bank, else here, up to the end of the bound range; one
	// classification either way (mismatch.go).
	limit := max(res.Some, res.Prefix, 0)
	bound := dataBound(&res)
	if jb.sha1 {
		led.classify(&res, bound, limit, n)
	} else if needsCheck(bound, used, limit) {
		led, err := checkDigests(src, bound, limit)
		if err != nil {
			return res, err
		}
		led.classify(&res, bound, limit, limit)
	}
	return res, nil
}

// newBankResult classifies the PCRs the list uses (used) for one quoted
// bank: checked (quoted with a value of the bank's size), unverified (not
// quoted: recorded in unquoted too), or a problem. Full, streamed and
// resumed runs all classify through it.
func newBankResult(b crypto.Hash, used []uint32, quoted map[uint32][]byte, unquoted map[uint32][]string) (BankResult, []string) {
	br := BankResult{Bank: HashName(b), Hash: b, OwnPrefix: -1, Quoted: map[uint32]string{}}
	if err := checkBank(b); err != nil {
		return br, []string{err.Error()}
	}
	var problems []string
	for _, p := range used {
		q, ok := quoted[p]
		switch {
		case !ok:
			br.Unverified = append(br.Unverified, p)
			unquoted[p] = append(unquoted[p], br.Bank)
		case len(q) != b.Size():
			problems = append(problems, "bank "+br.Bank+": PCR value of wrong size")
		default:
			br.PCRs = append(br.PCRs, p)
			br.Quoted[p] = hex.EncodeToString(q)
		}
	}
	if len(br.PCRs) == 0 {
		problems = append(problems, "bank "+br.Bank+": quotes none of the PCRs the list uses")
	}
	return br, problems
}

// extendChunk extends every chain over the chunk's entries, each chain on
// its own goroutine: the chains are independent, and each is the one
// sequential part of its bank's work.
func extendChunk(chains []*chain, c *chunk) {
	var wg sync.WaitGroup
	for _, x := range chains[min(1, len(chains)):] {
		wg.Go(func() { x.extendAll(c) })
	}
	if len(chains) > 0 {
		chains[0].extendAll(c)
	}
	wg.Wait()
}

type mismatch struct {
	k   int
	pcr uint32
}

// bindsSome reports whether a run reproduces a non-empty prefix.
func bindsSome(rs []run) bool {
	for _, r := range rs {
		if r.lo <= r.hi && r.hi >= 1 {
			return true
		}
	}
	return false
}

// decide computes the prefixes, the methods and the verdict from the
// banks' runs.
func decide(res *VerifyResult, opt VerifyOptions, n int) {
	for i := range res.Banks {
		br := &res.Banks[i]
		for _, r := range br.runs {
			if r.lo <= r.hi && r.hi > br.OwnPrefix {
				m := r.method
				br.OwnPrefix, br.OwnMethod = r.hi, &m
			}
		}
		if br.BootMethods != nil {
			last := br.BootMethods[len(br.BootMethods)-1]
			br.OwnMethod = &last
		}
		res.Some = max(res.Some, br.OwnPrefix)
	}
	if len(res.Problems) > 0 || len(res.Banks) == 0 {
		res.Some = -1
		res.Unbound = n
		res.Consistent = false
		return
	}
	at := func(br *BankResult, k int) {
		br.Method, br.Methods = nil, nil
		if br.BootMethods != nil {
			return
		}
		for _, r := range br.runs {
			if r.has(k) {
				br.Methods = append(br.Methods, r.method)
			}
		}
		if len(br.Methods) > 0 {
			m := br.Methods[0]
			br.Method = &m
		}
	}
	if opt.Reads == ReadsPerBank {
		res.Prefix = res.Banks[0].OwnPrefix
		for i := range res.Banks {
			br := &res.Banks[i]
			res.Prefix = min(res.Prefix, br.OwnPrefix)
			at(br, br.OwnPrefix)
		}
	} else {
		res.Prefix = commonPrefix(res.Banks)
		if res.Prefix >= 0 {
			for i := range res.Banks {
				at(&res.Banks[i], res.Prefix)
			}
		}
	}
	res.Unbound = n
	if res.Prefix >= 0 {
		res.Unbound = n - res.Prefix
	}
	res.Consistent = res.Prefix >= 0 && (res.Prefix > 0 || n == 0)
	if res.Prefix == 0 && n > 0 {
		res.Problems = append(res.Problems, emptyPrefixProblem)
	}
	if k := res.Timeline.AggregateMismatches; k > 0 {
		res.Consistent = false
		res.Problems = append(res.Problems, fmt.Sprintf("%s with a boot_aggregate that does not match the quoted PCRs 0-9 (the firmware's)", plural(k, "boot", "boots")))
	}
	if opt.Strict {
		for _, u := range res.Unquoted {
			res.Consistent = false
			res.Problems = append(res.Problems, fmt.Sprintf("strict: PCR %d has %d entries but bank %s does not quote it", u.PCR, u.Entries, u.Banks[0]))
		}
		if res.Prefix >= 0 && res.Unbound > 0 {
			res.Consistent = false
			res.Problems = append(res.Problems, fmt.Sprintf("strict: %d entries (%d-%d) follow the matched prefix", res.Unbound, res.Prefix, n-1))
		}
	}
}

// commonPrefix is the longest prefix every bank reproduces with one of
// its runs, or -1.
func commonPrefix(banks []BankResult) int {
	best := -1
	var walk func(i, lo, hi int)
	walk = func(i, lo, hi int) {
		if lo > hi {
			return
		}
		if i == len(banks) {
			best = max(best, hi)
			return
		}
		for _, r := range banks[i].runs {
			walk(i+1, max(lo, r.lo), min(hi, r.hi))
		}
	}
	walk(0, 0, int(^uint(0)>>1))
	return best
}

// dataBound returns, per PCR, how many leading entries a bank hashed with
// its own algorithm binds (their data is then bound, not only their
// stored SHA-1 digest).
func dataBound(res *VerifyResult) map[uint32]int {
	out := map[uint32]int{}
	for _, br := range res.Banks {
		if br.Hash == crypto.SHA1 || br.Method == nil || *br.Method != MethodPerBank {
			continue
		}
		end := res.Prefix
		if res.Reads == ReadsPerBank {
			end = br.OwnPrefix
		}
		for _, p := range br.PCRs {
			out[p] = max(out[p], end)
		}
	}
	return out
}

func needsCheck(bound map[uint32]int, used []uint32, limit int) bool {
	for _, p := range used {
		if bound[p] < limit {
			return true
		}
	}
	return false
}

// checkDigests compares the stored SHA-1 digest of every entry before
// limit with the SHA-1 of its data, into a ledger with the counts at
// every threshold of bound.
func checkDigests(src source, bound map[uint32]int, limit int) (*ledger, error) {
	led := newLedger()
	at := map[int]bool{}
	for _, b := range bound {
		at[b] = true
	}
	_, err := runPass(src, job{sha1: true, extend: true}, func(c *chunk) error {
		for i := range c.es {
			e, k := &c.es[i], c.base+i
			if k >= limit {
				return errStop
			}
			if at[k] {
				led.snapAt(k, nil)
			}
			if !e.Violation() && c.sha1[i] != e.TemplateDigest {
				led.add(k, e.PCR)
			}
		}
		return nil
	})
	return led, err
}

var errNotRereadable = errors.New("ima: the list cannot be read a second time")
