package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"slices"
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

// extendedDigest is the violation rule and the two methods, the one place
// they are written: it puts into dst (bank.Size() bytes) what the kernel
// extends into bank for an entry — all 0xff for a violation (an all-zero
// stored digest), else the SHA-1 template digest sha1d zero-padded (the
// SHA-1 bank, or MethodSHA1Padded), else the bank's own template digest.
func extendedDigest(dst []byte, violation bool, bank crypto.Hash, method Method, sha1d, own []byte) []byte {
	switch {
	case violation:
		for i := range dst {
			dst[i] = 0xff
		}
	case bank == crypto.SHA1 || method == MethodSHA1Padded:
		clear(dst)
		copy(dst, sha1d)
	default:
		copy(dst, own)
	}
	return dst
}

// TemplateDigest returns the digest the kernel extends into bank for e,
// computed from its template data (see extendedDigest). It returns nil
// for a bank whose hash is unavailable.
func TemplateDigest(e Entry, bank crypto.Hash, method Method) []byte {
	if checkBank(bank) != nil {
		return nil
	}
	var w worker
	var s1 [20]byte
	w.templateSum(crypto.SHA1, s1[:], &e)
	var own []byte
	if bank != crypto.SHA1 && method == MethodPerBank {
		own = make([]byte, bank.Size())
		w.templateSum(bank, own, &e)
	}
	return extendedDigest(make([]byte, bank.Size()), e.Violation(), bank, method, s1[:], own)
}

// extendInto sets v = H_bank(v || d) in place. The common banks hash a
// stack buffer with the one-shot functions (no allocation per extend).
func extendInto(bank crypto.Hash, v, d []byte, other *map[crypto.Hash]hash.Hash) {
	switch bank {
	case crypto.SHA1:
		var buf [2 * sha1.Size]byte
		copy(buf[copy(buf[:], v):], d)
		s := sha1.Sum(buf[:])
		copy(v, s[:])
	case crypto.SHA256:
		var buf [2 * sha256.Size]byte
		copy(buf[copy(buf[:], v):], d)
		s := sha256.Sum256(buf[:])
		copy(v, s[:])
	case crypto.SHA384:
		var buf [2 * sha512.Size384]byte
		copy(buf[copy(buf[:], v):], d)
		s := sha512.Sum384(buf[:])
		copy(v, s[:])
	case crypto.SHA512:
		var buf [2 * sha512.Size]byte
		copy(buf[copy(buf[:], v):], d)
		s := sha512.Sum512(buf[:])
		copy(v, s[:])
	default:
		h := cachedHash(other, bank)
		h.Write(v)
		h.Write(d)
		h.Sum(v[:0])
	}
}

// pcrTable maps PCR indices to values of T, without a map lookup for the
// indices PCRs have (0-31). It is the one PCR-indexed container of the
// engine: chain states, entry counts.
type pcrTable[T any] struct {
	low  [32]*T
	high map[uint32]*T
}

// at returns p's slot, creating it with mk when absent.
func (t *pcrTable[T]) at(p uint32, mk func() *T) *T {
	if p < 32 {
		if v := t.low[p]; v != nil {
			return v
		}
		v := mk()
		t.low[p] = v
		return v
	}
	if v := t.high[p]; v != nil {
		return v
	}
	if t.high == nil {
		t.high = map[uint32]*T{}
	}
	v := mk()
	t.high[p] = v
	return v
}

func (t *pcrTable[T]) get(p uint32) *T {
	if p < 32 {
		return t.low[p]
	}
	return t.high[p]
}

// indices returns the PCRs present, sorted.
func (t *pcrTable[T]) indices() []uint32 {
	var out []uint32
	for i, v := range t.low {
		if v != nil {
			out = append(out, uint32(i))
		}
	}
	for p := range t.high {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Digest sources of a chain.
const (
	srcStored   = -1 // the SHA-1 template digest stored in the list
	srcComputed = -2 // the SHA-1 of the template input (job.sha1)
)

// pcrState is one PCR of one chain: its value, and where it equals the
// quoted value. Prefix lengths k (0..n) at which the replayed value
// equals q form one interval [lo, hi]: the value changes only at the
// PCR's own entries, and a hash chain does not come back to a value it
// left (that would be a collision). Should a second interval occur the
// later one is kept.
type pcrState struct {
	v      []byte
	q      []byte // quoted value; nil: not tracked
	from   int    // v == q since prefix length from; -1: not now
	lo, hi int    // the last closed interval; lo == -1: none
	n      int    // entries of this PCR
}

// chain replays one bank with one method.
type chain struct {
	bank   crypto.Hash
	method Method
	src    int // srcStored, srcComputed, or an index into job.own
	size   int
	quoted map[uint32][]byte
	pcrs   pcrTable[pcrState]
	dig    []byte
	other  map[crypto.Hash]hash.Hash
}

func newChain(bank crypto.Hash, method Method, src int, quoted map[uint32][]byte) *chain {
	if bank == crypto.SHA1 {
		method = MethodPerBank // the two coincide
	}
	return &chain{bank: bank, method: method, src: src, size: bank.Size(), quoted: quoted, dig: make([]byte, bank.Size())}
}

func (x *chain) state(p uint32) *pcrState {
	return x.pcrs.at(p, func() *pcrState {
		s := &pcrState{v: make([]byte, x.size), from: -1, lo: -1}
		if q, ok := x.quoted[p]; ok && len(q) == x.size {
			s.q = q
			if bytes.Equal(q, s.v) {
				s.from = 0
			}
		}
		return s
	})
}

// extend folds entry k (e, with the chunk's precomputed digests) into the
// chain.
func (x *chain) extend(k int, e *Entry, c *chunk, i int) {
	var own, s1 []byte
	switch x.src {
	case srcStored:
		s1 = e.TemplateDigest[:]
	case srcComputed:
		s1 = c.sha1[i][:]
	default:
		own = c.own[x.src][i*x.size : (i+1)*x.size]
	}
	// extendedDigest's cases that need no copy: a bank's own digest, and
	// the SHA-1 digest for the SHA-1 bank.
	d := own
	if own == nil && x.bank == crypto.SHA1 {
		d = s1
	}
	if d == nil || e.Violation() {
		d = extendedDigest(x.dig, e.Violation(), x.bank, x.method, s1, own)
	}
	s := x.state(e.PCR)
	if s.from >= 0 {
		s.lo, s.hi, s.from = s.from, k, -1
	}
	extendInto(x.bank, s.v, d, &x.other)
	s.n++
	// (The first byte spares almost every call of bytes.Equal.)
	if s.q != nil && s.v[0] == s.q[0] && bytes.Equal(s.v, s.q) {
		s.from = k + 1
	}
}

// extendAll extends every entry of c.
func (x *chain) extendAll(c *chunk) {
	for i := range c.es {
		x.extend(c.base+i, &c.es[i], c, i)
	}
}

// finish closes the open intervals at n entries.
func (x *chain) finish(n int) {
	for _, p := range x.pcrs.indices() {
		s := x.pcrs.get(p)
		if s.from >= 0 {
			s.lo, s.hi, s.from = s.from, n, -1
		}
	}
}

// interval returns the prefix lengths at which every PCR of check equals
// its quoted value, [lo, hi], or lo > hi if there are none.
func (x *chain) interval(check []uint32) (lo, hi int) {
	if len(check) == 0 {
		return 1, 0 // nothing checked binds nothing
	}
	lo, hi = 0, int(^uint(0)>>1)
	for _, p := range check {
		s := x.pcrs.get(p)
		if s == nil || s.lo < 0 {
			return 1, 0
		}
		lo, hi = max(lo, s.lo), min(hi, s.hi)
	}
	return lo, hi
}

func (x *chain) values() map[uint32][]byte {
	out := map[uint32][]byte{}
	for _, p := range x.pcrs.indices() {
		out[p] = bytes.Clone(x.pcrs.get(p).v)
	}
	return out
}

// BankMethod is one bank replayed with one method.
type BankMethod struct {
	Bank   crypto.Hash
	Method Method
}

// replayPlan sets up chains and the workers' job for runs; SHA-1 digests
// are recomputed from the template data (a replay of the data).
func replayPlan(runs []BankMethod) ([]*chain, []int, job) {
	jb := job{extend: true, noCand: true}
	var chains []*chain
	var runOf []int
	for i, r := range runs {
		if checkBank(r.Bank) != nil {
			continue
		}
		src := srcComputed
		if r.Bank != crypto.SHA1 && r.Method == MethodPerBank {
			src = slices.Index(jb.own, r.Bank)
			if src < 0 {
				src = len(jb.own)
				jb.own = append(jb.own, r.Bank)
			}
		} else {
			jb.sha1 = true
		}
		chains = append(chains, newChain(r.Bank, r.Method, src, nil))
		runOf = append(runOf, i)
	}
	return chains, runOf, jb
}

func replaySource(src source, runs []BankMethod) ([]map[uint32][]byte, int, error) {
	chains, runOf, jb := replayPlan(runs)
	n, err := runPass(src, jb, func(c *chunk) error {
		for _, x := range chains {
			x.extendAll(c)
		}
		return nil
	})
	out := make([]map[uint32][]byte, len(runs))
	if err != nil {
		return out, n, err // every run nil
	}
	for k, x := range chains {
		out[runOf[k]] = x.values()
	}
	return out, n, nil
}

// Replay extends entries into fresh (all-zero) PCRs of bank with method
// and returns the final value of each PCR the list uses (nil for an
// unavailable bank, or entries naming a PCR above maxPCRIndex). SHA-1 template digests are recomputed from the
// template data, so a replay describes the data, whatever the stored
// digests say.
func Replay(entries []Entry, bank crypto.Hash, method Method) map[uint32][]byte {
	return ReplayAll(entries, []BankMethod{{bank, method}})[0]
}

// ReplayAll is Replay for several runs in one pass.
func ReplayAll(entries []Entry, runs []BankMethod) []map[uint32][]byte {
	out, _, _ := replaySource(source{entries: entries}, runs)
	return out
}

// ReplayReader is Replay over a binary list read from r in the given byte
// order, holding a few chunks at a time. It returns the number of entries
// and, for a list that does not parse, ParseList's error.
func ReplayReader(r io.Reader, order binary.ByteOrder, runs []BankMethod) ([]map[uint32][]byte, int, error) {
	if order == nil {
		return nil, 0, errNilOrder
	}
	return replaySource(streamSource(r, order), runs)
}

// streamSource reads r once.
func streamSource(r io.Reader, order binary.ByteOrder) source {
	used := false
	return source{order: endianOf(order), open: func() (io.Reader, error) {
		if used {
			return nil, errNotRereadable
		}
		used = true
		return r, nil
	}}
}

// readerAtSource reads the size bytes behind r as often as needed.
func readerAtSource(r io.ReaderAt, size int64, order binary.ByteOrder) source {
	return source{order: endianOf(order), reread: true, open: func() (io.Reader, error) {
		return io.NewSectionReader(r, 0, size), nil
	}}
}

// ReplayKexec is ReplayAll over a list that is to be handed over: the same
// pass checks every entry as CheckRestorable does (with the SHA-1 digests
// it computes anyway, one per entry) and returns the list as a KexecList.
// list, if not nil, is the binary list the entries were parsed from: the
// pass checks that it encodes exactly them and the KexecList takes its
// bytes (one copy) instead of encoding the entries again. A list the
// restoring kernel would not restore in full and unchanged is refused with
// a *RestoreError and no results.
func ReplayKexec(list []byte, entries []Entry, order binary.ByteOrder, runs []BankMethod) ([]map[uint32][]byte, *KexecList, error) {
	if order == nil {
		return nil, nil, errNilOrder
	}
	chains, runOf, jb := replayPlan(runs)
	jb.sha1, jb.restore, jb.same = true, true, list
	size := len(list)
	if list == nil {
		size = encodedSize(entries)
	}
	// Room for what a finalize appends (the loader's entries, and the
	// kernel's that arrive meanwhile) without copying the list again.
	k := newKexecList(order, size+64<<10)
	var rc restoreCollector
	differs := false
	_, err := runPass(source{entries: entries, order: endianOf(order)}, jb, func(c *chunk) error {
		for _, x := range chains {
			x.extendAll(c)
		}
		rc.add(c.restore, c.base)
		differs = differs || c.differs
		if list == nil {
			k.b = AppendList(k.b, c.es, order)
		}
		return nil
	})
	if err == nil {
		err = rc.err(len(entries))
	}
	if err == nil && list != nil && (differs || encodedSize(entries) != len(list)) {
		err = fmt.Errorf("%w: the binary list does not encode the entries given with it", ErrMalformed)
	}
	if err != nil {
		return nil, nil, err
	}
	if list != nil {
		k.b = append(k.b, list...)
	}
	k.n = len(entries)
	out := make([]map[uint32][]byte, len(runs))
	for i, x := range chains {
		out[runOf[i]] = x.values()
	}
	return out, k, nil
}
