package ima

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/gokexec/gokexec/internal/sha256ni"
)

// Method is how a kernel derives the digest it extends into a PCR bank.
type Method int

const (
	// MethodPerBank extends H_bank(template data): what kernels do for
	// every bank whose hash they support.
	MethodPerBank Method = iota
	// MethodSHA1Padded extends the SHA-1 template digest zero-padded to the
	// bank's size: what kernels do for a bank whose hash they lack.
	MethodSHA1Padded
)

func (m Method) String() string {
	switch m {
	case MethodPerBank:
		return "per-bank"
	case MethodSHA1Padded:
		return "sha1-padded"
	}
	return "unknown"
}

// MarshalText renders the method name (used by JSON output).
func (m Method) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

var legacyPad [eventNameLenMax + 1]byte

// writeTemplateInput feeds the bytes the kernel hashes for a template digest.
// For the legacy "ima" template these are the 20-byte digest and the name
// zero-padded to 256 bytes; for every other template the template data.
func writeTemplateInput(h hash.Hash, e *Entry) {
	if e.TemplateName == legacyTemplateName && len(e.TemplateData) >= 24 {
		name := e.TemplateData[24:]
		if len(name) > eventNameLenMax {
			name = name[:eventNameLenMax]
		}
		h.Write(e.TemplateData[:20])
		h.Write(name)
		h.Write(legacyPad[:len(legacyPad)-len(name)])
		return
	}
	h.Write(e.TemplateData)
}

// TemplateDigest returns the digest the kernel extends into bank for e:
// all 0xff for a violation, else H_bank of the template input
// (MethodPerBank) or its SHA-1 zero-padded to the bank size
// (MethodSHA1Padded). It returns nil for a bank whose hash is unavailable.
func TemplateDigest(e Entry, bank crypto.Hash, method Method) []byte {
	if checkBank(bank) != nil {
		return nil
	}
	out := make([]byte, bank.Size())
	if e.Violation() {
		for i := range out {
			out[i] = 0xff
		}
		return out
	}
	if method == MethodSHA1Padded || bank == crypto.SHA1 {
		h := sha1.New()
		writeTemplateInput(h, &e)
		copy(out, h.Sum(nil))
		return out
	}
	h := bank.New()
	writeTemplateInput(h, &e)
	return h.Sum(out[:0])
}

// pcrState holds PCR values of one bank without a map lookup for the
// common indices.
type pcrState struct {
	size  int
	small [32][]byte
	big   map[uint32][]byte
}

func newPCRState(size int) *pcrState { return &pcrState{size: size} }

func (s *pcrState) get(p uint32) []byte {
	if p < uint32(len(s.small)) {
		v := s.small[p]
		if v == nil {
			v = make([]byte, s.size, 2*s.size)
			s.small[p] = v
		}
		return v
	}
	if s.big == nil {
		s.big = make(map[uint32][]byte)
	}
	v := s.big[p]
	if v == nil {
		v = make([]byte, s.size, 2*s.size)
		s.big[p] = v
	}
	return v
}

func (s *pcrState) set(p uint32, v []byte) {
	if p < uint32(len(s.small)) {
		s.small[p] = v
		return
	}
	s.big[p] = v
}

func (s *pcrState) values() map[uint32][]byte {
	out := make(map[uint32][]byte)
	for i, v := range s.small {
		if v != nil {
			out[uint32(i)] = bytes.Clone(v)
		}
	}
	for p, v := range s.big {
		out[p] = bytes.Clone(v)
	}
	return out
}

// extender computes template digests and PCR extends for one bank and method
// without allocating per entry.
type extender struct {
	bank   crypto.Hash
	method Method
	h      hash.Hash // bank hash (template digest and extend)
	s1     hash.Hash // SHA-1 for the padded method
	td     []byte
	ff     []byte
	sha1s  [][20]byte // optional precomputed SHA-1 template digests
}

func newExtender(bank crypto.Hash, method Method, sha1s [][20]byte) *extender {
	x := &extender{bank: bank, method: method, h: bank.New(), s1: sha1.New(), sha1s: sha1s}
	x.td = make([]byte, bank.Size(), 64)
	x.ff = bytes.Repeat([]byte{0xff}, bank.Size())
	if bank == crypto.SHA1 {
		x.method = MethodSHA1Padded // identical for SHA-1
	}
	return x
}

// digest returns the template digest of entry i (valid until the next call).
func (x *extender) digest(i int, e *Entry) []byte {
	if e.Violation() {
		return x.ff
	}
	if x.method == MethodSHA1Padded {
		clear(x.td)
		if x.sha1s != nil {
			copy(x.td, x.sha1s[i][:])
		} else {
			x.s1.Reset()
			writeTemplateInput(x.s1, e)
			x.s1.Sum(x.td[:0])
		}
		return x.td
	}
	x.h.Reset()
	writeTemplateInput(x.h, e)
	return x.h.Sum(x.td[:0])
}

// extend folds digest d into value v in place and returns the new value.
func (x *extender) extend(v, d []byte) []byte {
	x.h.Reset()
	x.h.Write(v)
	x.h.Write(d)
	return x.h.Sum(v[:0])
}

// Replay extends every entry into fresh (all-zero) PCRs of bank with method
// and returns the final value of each PCR the list uses. It returns nil for
// an unavailable bank.
func Replay(entries []Entry, bank crypto.Hash, method Method) map[uint32][]byte {
	if checkBank(bank) != nil {
		return nil
	}
	x := newExtender(bank, method, nil)
	st := newPCRState(bank.Size())
	for i := range entries {
		e := &entries[i]
		d := x.digest(i, e)
		st.set(e.PCR, x.extend(st.get(e.PCR), d))
	}
	return st.values()
}

// BankMethod is one bank replayed with one method.
type BankMethod struct {
	Bank   crypto.Hash
	Method Method
}

// ReplayAll is Replay for several banks and methods in one pass: parallel
// workers compute the template digests over chunks of entries while one
// goroutine per bank and method extends. out[i] equals
// Replay(entries, runs[i].Bank, runs[i].Method) (nil for an unavailable
// bank).
func ReplayAll(entries []Entry, runs []BankMethod) []map[uint32][]byte {
	out, _, _ := replayPipelined(listSource{entries: entries}, runs)
	return out
}

// ReplayList is ParseList followed by ReplayAll, in one parallel pass that
// holds only a few chunks of entries at a time. It returns the number of
// entries, and for a list that does not parse ParseList's error.
func ReplayList(b []byte, order binary.ByteOrder, runs []BankMethod) ([]map[uint32][]byte, int, error) {
	if order == nil {
		return nil, 0, errors.New("ima: nil byte order")
	}
	if out, n, ok := replayPipelined(listSource{raw: b, order: order, fromRaw: true}, runs); ok {
		return out, n, nil
	}
	es, err := ParseList(b, order)
	if err != nil {
		return nil, 0, err
	}
	return ReplayAll(es, runs), len(es), nil
}

// ReplayReaderAt is ReplayList for the size-byte list behind r, read in
// segments through a few small buffers rather than held whole.
func ReplayReaderAt(r io.ReaderAt, size int64, order binary.ByteOrder, runs []BankMethod) ([]map[uint32][]byte, int, error) {
	if order == nil {
		return nil, 0, errors.New("ima: nil byte order")
	}
	if size < 0 {
		return nil, 0, fmt.Errorf("ima: negative list size %d", size)
	}
	if out, n, ok := replayPipelined(listSource{ra: r, size: size, order: order, fromRaw: true}, runs); ok {
		return out, n, nil
	}
	// Malformed lists, read errors: read whole, take the plain path.
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, 0, err
	}
	return ReplayList(b, order, runs)
}

// replayPipelined replays src into every run in one pipeline pass; ok is
// false when a raw list needs the plain path.
func replayPipelined(src listSource, runs []BankMethod) (out []map[uint32][]byte, n int, ok bool) {
	out = make([]map[uint32][]byte, len(runs))
	var own []crypto.Hash
	ownIdx := map[crypto.Hash]int{}
	var chains []*chain
	var runOf []int
	for i, r := range runs {
		if checkBank(r.Bank) != nil {
			continue
		}
		oi := -1
		if r.Bank != crypto.SHA1 && r.Method != MethodSHA1Padded {
			k, ok := ownIdx[r.Bank]
			if !ok {
				k = len(own)
				ownIdx[r.Bank] = k
				own = append(own, r.Bank)
			}
			oi = k
		}
		x := newChain(r.Bank, r.Method, oi, nil, 0)
		x.all = true
		chains = append(chains, x)
		runOf = append(runOf, i)
	}
	col := runPipeline(newPipeline(src, nil, own, false, len(chains)), chains)
	if col.failed {
		return nil, 0, false
	}
	for k, x := range chains {
		out[runOf[k]] = x.st.values()
	}
	n = col.n
	if !src.fromRaw {
		n = len(src.entries)
	}
	return out, n, true
}

// PCRValues holds quoted PCR values: bank -> PCR index -> value.
type PCRValues map[crypto.Hash]map[uint32][]byte

// BankResult is the outcome of verification for one quoted bank.
type BankResult struct {
	Bank       string            `json:"bank"`
	Hash       crypto.Hash       `json:"-"`
	PCRs       []uint32          `json:"pcrs"`                           // PCRs both used by the list and quoted
	Method     *Method           `json:"method"`                         // method matching at the common prefix (nil: none)
	Methods    []Method          `json:"methods,omitempty"`              // every method matching at the common prefix
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
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Consistent bool `json:"consistent"`
	Entries    int  `json:"entries"`
	// Prefix is the longest number of leading entries that reproduces every
	// checked PCR of every quoted bank, or -1 if no prefix does.
	Prefix int          `json:"prefix"`
	Banks  []BankResult `json:"banks"`
	// DigestMismatches lists entries whose stored SHA-1 template digest is
	// not the SHA-1 of their template data. When the SHA-1 bank and a bank
	// hashed with its own algorithm both reproduce the prefix, the entries
	// of the PCRs both check are not hashed with SHA-1 again: the kernel
	// extends the stored digest into the SHA-1 bank and hashes every bank
	// from the same data, so such an entry matches its data unless the
	// PCRs were extended by something else (see verifyPipelined).
	DigestMismatches []int    `json:"digest_mismatches,omitempty"`
	Problems         []string `json:"problems,omitempty"`
}

// usedPCRs returns the sorted PCR indices the entries extend.
func usedPCRs(entries []Entry) []uint32 {
	var seen [32]bool
	var out []uint32
	var more map[uint32]bool
	for i := range entries {
		p := entries[i].PCR
		if p < 32 {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
			continue
		}
		if more == nil {
			more = map[uint32]bool{}
		}
		if !more[p] {
			more[p] = true
			out = append(out, p)
		}
	}
	return sortedPCRs(out)
}

func sortedPCRs(p []uint32) []uint32 {
	slices.Sort(p)
	return p
}

// sumTo writes H_bank(p) to dst (bank.Size() bytes). The common banks use
// the stack-allocated one-shot functions; others go through h, a reusable
// hasher of bank (created on first use).
func sumTo(bank crypto.Hash, dst, p []byte, h *hash.Hash) {
	switch bank {
	case crypto.SHA1:
		s := sha1.Sum(p)
		copy(dst, s[:])
	case crypto.SHA256:
		s := sha256ni.Sum256(p)
		copy(dst, s[:])
	case crypto.SHA384:
		s := sha512.Sum384(p)
		copy(dst, s[:])
	case crypto.SHA512:
		s := sha512.Sum512(p)
		copy(dst, s[:])
	default:
		if *h == nil {
			*h = bank.New()
		}
		(*h).Reset()
		(*h).Write(p)
		(*h).Sum(dst[:0])
	}
}

// templateSumTo writes H_bank(template input of e) to dst.
func templateSumTo(bank crypto.Hash, dst []byte, e *Entry, h *hash.Hash) {
	if e.TemplateName == legacyTemplateName && len(e.TemplateData) >= 24 {
		if *h == nil {
			*h = bank.New()
		}
		(*h).Reset()
		writeTemplateInput(*h, e)
		(*h).Sum(dst[:0])
		return
	}
	sumTo(bank, dst, e.TemplateData, h)
}

// bankRun is one bank replayed with one method while tracking, after each
// entry, whether every checked PCR equals its quoted value.
type bankRun struct {
	method  Method
	matches []uint8 // matches[k] == 1: prefix of k entries reproduces the quote
	final   map[uint32][]byte
}

// Verify finds the longest prefix of entries that reproduces every quoted
// PCR the list uses, in every quoted bank. Each bank is replayed with its own
// hash first; the padded SHA-1 method is tried for a bank only when its own
// hash reproduces no non-empty prefix (a kernel uses one method per bank, and
// the methods coincide only on violations). Quoted PCRs the list never
// extends (firmware PCRs) are not compared.
// The result is consistent when that prefix holds at least one entry (or the
// list is empty), every quoted bank checks at least one PCR, and no entry in
// the prefix carries a stored SHA-1 digest that differs from its data.
//
// Work is split so that it scales with GOMAXPROCS: template digests (the
// bulk of the hashing, independent per entry) are computed by parallel
// workers over chunks of entries, while one goroutine per bank runs the
// sequential extend chain over the chunks already hashed.
//
// Event names (for the boots of a list whose banks change method between
// kernels, see BootMethods) are read with little-endian field lengths;
// VerifyOrder takes the list's byte order.
func Verify(entries []Entry, quoted PCRValues) VerifyResult {
	return VerifyOrder(entries, quoted, binary.LittleEndian)
}

// VerifyOrder is Verify for entries of a list in the given byte order.
func VerifyOrder(entries []Entry, quoted PCRValues, order binary.ByteOrder) VerifyResult {
	res, _, _ := verifyPipelined(listSource{entries: entries}, quoted)
	return withBootMethods(res, entries, quoted, order)
}

const emptyPrefixProblem = "only the empty prefix matches the quoted PCRs"

// needsBootMethods says whether withBootMethods could change res, so that
// the raw-list paths parse the list only then.
func needsBootMethods(res VerifyResult) bool {
	if res.Entries == 0 || res.Prefix == res.Entries || len(res.DigestMismatches) > 0 {
		return false
	}
	for _, p := range res.Problems {
		if p != emptyPrefixProblem {
			return false
		}
	}
	return true
}

// verifyPipelined is Verify over src (for a raw list or a reader it also
// builds the timeline). ok is false
// when the raw list needs the plain path: an entry the framing pass cannot
// judge, a chunk that fails to parse, or too many quoted PCRs to track.
//
// When the SHA-1 bank and a bank that hashes the template data itself are
// both quoted, the first pass skips the SHA-1 of every entry's data: the
// SHA-1 chain extends the stored digests, which is what the kernel extends
// (it stores the SHA-1 digest it computed for every bank from the same
// data). Within the matched prefix, an entry whose PCR both banks check
// then cannot carry a stored digest that differs from its data: its data
// is bound by the other bank's chain and its stored digest by the SHA-1
// chain, and the one extender of both computed them from the same bytes.
// Only the other entries (those after the prefix, those of PCRs the two
// banks do not both check) are compared, by a second, check-only pass that
// usually reads a few chunks; if one differs, verification starts again
// the plain way, so the result is always the one a pass hashing every
// entry yields (see VerifyResult.DigestMismatches).
func verifyPipelined(src listSource, quoted PCRValues) (res VerifyResult, tl Timeline, ok bool) {
	res, tl, ok, p1, check := verifyPass(src, quoted, true)
	if !ok || check == nil {
		return res, tl, ok
	}
	mism, ok := checkStoredSHA1(src, p1, check)
	if !ok {
		return res, tl, false
	}
	if len(mism) == 0 {
		return res, tl, true
	}
	res, tl, ok, _, _ = verifyPass(src, quoted, false)
	return res, tl, ok
}

// checkStoredSHA1 runs a check-only pass over the entries check selects
// and returns those whose stored SHA-1 digest differs from their data.
func checkStoredSHA1(src listSource, p1 *pipeline, check *sha1Check) ([]int, bool) {
	if check.all && check.from >= p1.n {
		return nil, true
	}
	p := newPipeline(src, p1, nil, false, 0)
	p.check = check
	if src.ra != nil && check.all {
		// Start at the last chunk of the first pass that begins at or
		// before the first entry to check.
		for _, c := range p1.chunkPos {
			if c.base > check.from {
				break
			}
			p.startBase, p.startOff = c.base, c.off
		}
	}
	col := runPipeline(p, nil)
	if col.failed {
		return nil, false
	}
	return col.mismatches, true
}

// verifyPass is one verification. With deferSHA1 it may skip comparing
// stored SHA-1 digests with the data (see verifyPipelined) and then
// returns the check that must follow; p1 is its first pipeline pass.
func verifyPass(src listSource, quoted PCRValues, deferSHA1 bool) (res VerifyResult, tl Timeline, ok bool, p1 *pipeline, check *sha1Check) {
	fromRaw, entries := src.fromRaw, src.entries
	if fromRaw {
		entries, src.entries = nil, nil
	}
	res = VerifyResult{Entries: len(entries), Prefix: -1}
	if len(quoted) == 0 {
		res.Problems = append(res.Problems, "no quoted PCR values")
		return res, tl, true, nil, nil
	}
	banks := make([]crypto.Hash, 0, len(quoted))
	for b := range quoted {
		banks = append(banks, b)
	}
	slices.SortFunc(banks, func(a, b crypto.Hash) int { return cmp.Or(bankSize(a)-bankSize(b), int(a)-int(b)) })

	// Phase 1: every bank with its own hash. The chains start before a raw
	// list's PCRs are known, so they track every quoted PCR.
	var used []uint32
	if !fromRaw {
		used = usedPCRs(entries)
	}
	var own []crypto.Hash // banks other than SHA-1 replayed with their own hash
	var chains []*chain
	chainOf := map[crypto.Hash]*chain{}
	capacity := len(entries)
	if fromRaw {
		capacity = int(min(int64(len(src.raw))+src.size, 1<<30) / 128)
	}
	for _, b := range banks {
		if checkBank(b) != nil {
			continue
		}
		track := map[uint32][]byte{}
		for p, q := range quoted[b] {
			if len(q) == b.Size() && (fromRaw || slices.Contains(used, p)) {
				track[p] = q
			}
		}
		if len(track) == 0 {
			continue
		}
		if fromRaw && len(track) > maxChainPCRs {
			return res, tl, false, nil, nil
		}
		oi := -1
		if b != crypto.SHA1 {
			oi = len(own)
			own = append(own, b)
		}
		x := newChain(b, MethodPerBank, oi, track, capacity)
		chains = append(chains, x)
		chainOf[b] = x
	}
	// The SHA-1 template digests (the SHA-1 bank, the padded method, the
	// stored-digest check) and the other banks' own digests are computed
	// by the pipeline's workers while the chains extend.
	p1 = newPipeline(src, nil, own, fromRaw, len(chains))
	p1.storedSHA1 = deferSHA1 && chainOf[crypto.SHA1] != nil && len(own) > 0
	col := runPipeline(p1, chains)
	if col.failed {
		return res, tl, false, nil, nil
	}
	n := len(entries)
	if fromRaw {
		n, used = col.n, col.used
		tl = col.timeline.finish(n)
	}
	res.Entries = n
	res.DigestMismatches = col.mismatches

	jobs := make([]*verifyJob, len(banks))
	for bi, b := range banks {
		j := &verifyJob{bank: b, check: map[uint32][]byte{}}
		jobs[bi] = j
		br := BankResult{Bank: HashName(b), Hash: b, OwnPrefix: -1, Quoted: map[uint32]string{}}
		if err := checkBank(b); err != nil {
			res.Problems = append(res.Problems, err.Error())
			res.Banks = append(res.Banks, br)
			continue
		}
		for _, p := range used {
			q, ok := quoted[b][p]
			if !ok {
				br.Unverified = append(br.Unverified, p)
				continue
			}
			if len(q) != b.Size() {
				res.Problems = append(res.Problems, "bank "+br.Bank+": PCR value of wrong size")
				continue
			}
			j.check[p] = q
			br.PCRs = append(br.PCRs, p)
			br.Quoted[p] = hex.EncodeToString(q)
		}
		res.Banks = append(res.Banks, br)
		if len(j.check) == 0 {
			res.Problems = append(res.Problems, "bank "+br.Bank+": quotes none of the PCRs the list uses")
			continue
		}
		r, fits := chainOf[b].result(j.check)
		if !fits {
			return res, tl, false, nil, nil
		}
		j.runs = []bankRun{r}
	}

	// Phase 2: the padded SHA-1 method, only for banks whose own hash
	// reproduces no non-empty prefix. A kernel uses one method per bank, and
	// the two methods yield the same digests only for violations, so a bank
	// that matches with its own hash somewhere cannot match longer padded.
	// The pass recomputes the SHA-1 digests rather than keeping them all.
	chains = chains[:0]
	var padded []*verifyJob
	for _, j := range jobs {
		if len(j.runs) != 1 || j.bank == crypto.SHA1 || slices.Contains(j.runs[0].matches[1:], 1) {
			continue
		}
		chains = append(chains, newChain(j.bank, MethodSHA1Padded, -1, j.check, n))
		padded = append(padded, j)
	}
	if len(chains) > 0 {
		p2 := newPipeline(src, p1, nil, false, len(chains))
		if runPipeline(p2, chains).failed {
			return res, tl, false, nil, nil
		}
		for i, j := range padded {
			r, _ := chains[i].result(j.check) // tracks exactly j.check: fits
			j.runs = append(j.runs, r)
		}
	}

	for bi, j := range jobs {
		br := &res.Banks[bi]
		if len(j.runs) == 0 {
			continue
		}
		br.Replayed = hexMap(j.runs[0].final)
		if len(j.runs) > 1 {
			br.ReplayedP = hexMap(j.runs[1].final)
		}
		for k := n; k >= 0; k-- {
			for _, r := range j.runs {
				if r.matches[k] != 0 {
					br.OwnPrefix = k
					m := r.method
					br.OwnMethod = &m
					break
				}
			}
			if br.OwnPrefix >= 0 {
				break
			}
		}
	}

	if len(res.Problems) == 0 {
		for k := n; k >= 0 && res.Prefix < 0; k-- {
			all := true
			for _, j := range jobs {
				any := false
				for _, r := range j.runs {
					any = any || r.matches[k] != 0
				}
				if !any {
					all = false
					break
				}
			}
			if all {
				res.Prefix = k
			}
		}
	}
	if res.Prefix >= 0 {
		for bi, j := range jobs {
			br := &res.Banks[bi]
			for _, r := range j.runs {
				if r.matches[res.Prefix] != 0 {
					br.Methods = append(br.Methods, r.method)
				}
			}
			if len(br.Methods) > 0 {
				m := br.Methods[0]
				br.Method = &m
			}
		}
	}
	res.Consistent = len(res.Problems) == 0 && res.Prefix >= 0 && (res.Prefix > 0 || n == 0)
	if res.Prefix == 0 && n > 0 {
		res.Problems = append(res.Problems, emptyPrefixProblem)
	}
	for _, i := range res.DigestMismatches {
		if i < res.Prefix {
			res.Consistent = false
			res.Problems = append(res.Problems, "an entry in the matched prefix has a stored template digest that differs from its data")
			break
		}
	}
	if p1.storedSHA1 {
		check = deferredCheck(res.Prefix, jobs, used)
	}
	return res, tl, true, p1, check
}

// deferredCheck is what remains to compare after a pass that extended the
// stored SHA-1 digests and matched prefix entries: the entries before it
// are bound where the SHA-1 bank (checking sha1PCRs) and a bank that
// reproduced the prefix with its own hash both check their PCR.
func deferredCheck(prefix int, jobs []*verifyJob, used []uint32) *sha1Check {
	c := &sha1Check{}
	var sha1PCRs map[uint32][]byte
	for _, j := range jobs {
		if j.bank == crypto.SHA1 {
			sha1PCRs = j.check
		}
	}
	if prefix < 0 {
		return c // nothing bound: check every entry
	}
	c.from = prefix
	for _, j := range jobs {
		if j.bank == crypto.SHA1 || len(j.runs) == 0 || j.runs[0].method != MethodPerBank || j.runs[0].matches[prefix] == 0 {
			continue
		}
		for p := range j.check {
			if _, ok := sha1PCRs[p]; ok {
				c.bound.add(p)
			}
		}
	}
	c.all = true
	for _, p := range used {
		c.all = c.all && c.bound.has(p)
	}
	return c
}

// verifyJob is one quoted bank during verification: the PCRs it checks
// and its runs (its own hash first, then the padded method if tried).
type verifyJob struct {
	bank  crypto.Hash
	check map[uint32][]byte
	runs  []bankRun
}

// bankSize is h.Size(), or 0 for a hash unknown to this package (Size
// panics on values outside crypto's table).
func bankSize(h crypto.Hash) int {
	if checkBank(h) != nil {
		return 0
	}
	return h.Size()
}

func hexMap(m map[uint32][]byte) map[uint32]string {
	out := make(map[uint32]string, len(m))
	for k, v := range m {
		out[k] = hex.EncodeToString(v)
	}
	return out
}
