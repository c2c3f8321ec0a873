package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gokexec/gokexec/internal/sha256ni"
)

// The verification pipeline. Entries are processed in chunks of
// verifyChunk: GOMAXPROCS workers take chunks in increasing order and
// compute, per entry, everything that does not depend on other entries (the
// SHA-1 template digest and its comparison with the stored one, the template
// digest of every other bank, for a raw list the parse itself, and for the
// timeline whether the entry can be a marker). One goroutine per bank and
// method runs the inherently sequential extend chain over finished chunks in
// order, and the calling goroutine collects per-chunk results in order.
// Chunk results live in a small pool of buffers that are recycled once every
// consumer has seen them, so memory stays bounded by the pool, not by the
// list: fresh pages are costly, and a 200,000-entry list would otherwise
// materialize 13 MB of entries and 10 MB of digests.

// verifyChunk is the number of entries per unit of work. A variable so that
// tests can exercise many chunk boundaries on small lists.
var verifyChunk = 2048

// chunkOut is what a worker computed for one chunk.
type chunkOut struct {
	base   int // index of the chunk's first entry
	n      int
	data   []byte // reader: the chunk's bytes (whole entries)
	failed bool   // raw source: the chunk did not parse as the framing pass predicted
	pcr    []uint32
	viol   []bool
	sha1s  [][20]byte
	own    [][]byte // per own bank: n*size digests
	mism   []int    // entries whose stored SHA-1 digest differs from their data
	tlIdx  []int    // entries the timeline must see
	tlEnt  []Entry
	refs   atomic.Int32
}

// pipeline is one pass over the entries. For a raw list, a framing
// goroutine walks the length fields ahead of the workers and publishes where
// every chunk starts; the number of entries and the PCRs they use are known
// only when it is done, which is why the chains track every quoted PCR (see
// chain). All shared state below mu is published with framing (chunk
// starts, read segments, the end of framing) or outsCond (finished chunks,
// the end of framing), so that a publication wakes only its waiters.
type pipeline struct {
	// Source: entries, raw list bytes, or a list read through ra (size
	// bytes) segment by segment (see pipeline_reader.go).
	entries []Entry
	raw     []byte
	ra      io.ReaderAt
	size    int64
	order   binary.ByteOrder
	end     endian // order, for the parsers

	per      int
	ownBanks []crypto.Hash // banks other than SHA-1 whose own digests are needed
	own256   int           // index of SHA-256 in ownBanks, or -1
	timeline bool          // collect timeline candidates
	// storedSHA1: the SHA-1 chains extend the stored SHA-1 digests and no
	// entry's stored digest is checked against its data (see sha1Check).
	storedSHA1 bool
	// check, when set, makes the pass a stored-digest check only: no
	// chains, and only the entries check selects are hashed.
	check *sha1Check
	// reader: where the pass starts reading (a chunk start of an earlier
	// pass), and every chunk's start as this pass reads them.
	startOff  int64
	startBase int
	chunkPos  []chunkPos
	refs      int32 // consumers of every chunk: chains + collector

	mu                sync.Mutex
	framing, outsCond *sync.Cond
	starts            []int // raw: start offset of each chunk found so far
	framed            bool  // starts, n, nc and used are final
	frameOK           bool  // raw: every entry framed (else the caller parses in full)
	n, nc             int
	used              []uint32
	outs              []*chunkOut // finished chunks
	segs              []*chunkOut // reader: chunks read and framed, not yet parsed

	free chan *chunkOut
	quit chan struct{} // closed when the consumers are done
	next atomic.Int64
}

// chunkPos is where a chunk starts: its first entry's index and offset.
type chunkPos struct {
	base int
	off  int64
}

// listSource is what a pipeline reads: entries, raw list bytes, or a list
// behind an io.ReaderAt.
type listSource struct {
	entries []Entry
	raw     []byte
	ra      io.ReaderAt
	size    int64
	order   binary.ByteOrder
	fromRaw bool // raw or ra: parse, and build the timeline
}

// newPipeline prepares a pass over src. framed carries the framing of an
// earlier pass over the same raw list (nil: frame while running).
func newPipeline(src listSource, framed *pipeline, own []crypto.Hash, timeline bool, chains int) *pipeline {
	entries, raw := src.entries, src.raw
	p := &pipeline{entries: entries, raw: raw, ra: src.ra, size: src.size, order: src.order, end: endianOf(src.order), per: max(verifyChunk, 1),
		ownBanks: own, timeline: timeline, refs: int32(chains + 1), quit: make(chan struct{})}
	p.framing, p.outsCond = sync.NewCond(&p.mu), sync.NewCond(&p.mu)
	p.own256 = slices.Index(own, crypto.SHA256)
	switch {
	case src.ra != nil:
		// framed while running, always
	case entries != nil || raw == nil:
		p.framed, p.frameOK, p.n = true, true, len(entries)
		p.nc = (p.n + p.per - 1) / p.per
	case framed != nil:
		p.starts, p.framed, p.frameOK, p.n, p.nc, p.used = framed.starts, true, framed.frameOK, framed.n, framed.nc, framed.used
	}
	return p
}

// start launches the framing goroutine (raw lists not yet framed) and the
// workers. A worker takes a free buffer before it claims a chunk, so the
// lowest unfinished chunk always holds a buffer and the in-order consumers
// can always progress.
func (p *pipeline) start() {
	workers := runtime.GOMAXPROCS(0)
	if p.ra != nil {
		p.startReader(workers)
		return
	}
	p.mu.Lock()
	if p.framed {
		workers = min(workers, p.nc)
	} else {
		go p.frame()
	}
	p.mu.Unlock()
	bufs := workers + 4
	p.free = make(chan *chunkOut, bufs)
	for range bufs {
		p.free <- &chunkOut{}
	}
	for range workers {
		go p.work()
	}
}

// frame walks the raw list's length fields, publishing every chunk start,
// then the entry count and the PCRs used, or frameOK=false at the first
// entry that needs a full parse to judge.
func (p *pipeline) frame() {
	b, order, per := p.raw, p.end, p.per
	var tc templateCache
	var used pcrSet
	off, n, ok := 0, 0, true
	for off < len(b) {
		if n%per == 0 {
			p.mu.Lock()
			p.starts = append(p.starts, off)
			p.framing.Broadcast()
			p.mu.Unlock()
		}
		size, fine := frameSize(b[off:], order, &tc)
		if !fine {
			ok = false
			break
		}
		used.add(order.Uint32(b[off:]))
		off += size
		n++
	}
	p.mu.Lock()
	p.framed, p.frameOK, p.n, p.nc, p.used = true, ok, n, (n+per-1)/per, used.sorted()
	p.framing.Broadcast()
	p.outsCond.Broadcast()
	p.mu.Unlock()
}

// pcrSet collects the PCR indices entries use.
type pcrSet struct {
	seen [32]bool
	more map[uint32]bool
	list []uint32
}

func (u *pcrSet) add(p uint32) {
	if p < 32 {
		if !u.seen[p] {
			u.seen[p] = true
			u.list = append(u.list, p)
		}
		return
	}
	if u.more == nil {
		u.more = map[uint32]bool{}
	}
	if !u.more[p] {
		u.more[p] = true
		u.list = append(u.list, p)
	}
}

func (u *pcrSet) sorted() []uint32 { return sortedPCRs(u.list) }

// bounds waits until chunk c's extent is known: its start, end and entry
// count, or ok=false if there is no such chunk.
func (p *pipeline) bounds(c int) (start, end, count int, ok bool) {
	if p.entries != nil {
		lo, hi := c*p.per, min((c+1)*p.per, p.n)
		return lo, hi, hi - lo, c < p.nc
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.framed && len(p.starts) <= c+1 {
		p.framing.Wait()
	}
	if p.framed && (!p.frameOK || c >= p.nc) {
		return 0, 0, 0, false
	}
	start, end, count = p.starts[c], len(p.raw), p.per
	if c+1 < len(p.starts) {
		end = p.starts[c+1]
	} else {
		count = p.n - c*p.per
	}
	return start, end, count, true
}

func (p *pipeline) work() {
	w := p.newWorker()
	for {
		var o *chunkOut
		select {
		case o = <-p.free:
		case <-p.quit:
			return
		}
		c := int(p.next.Add(1) - 1)
		start, end, count, ok := p.bounds(c)
		if !ok {
			p.free <- o
			return
		}
		o.base, o.n, o.failed = c*p.per, count, false
		o.mism, o.tlIdx, o.tlEnt = o.mism[:0], o.tlIdx[:0], o.tlEnt[:0]
		if p.check != nil && p.check.skips(o.base, count) {
			p.publish(c, o) // an earlier pass parsed it; nothing to check
			continue
		}
		p.prepare(o)
		if p.entries != nil {
			for j := range count {
				p.fillOne(o, j, &p.entries[start+j], nil, w)
			}
		} else {
			off := start
			for j := range count {
				e, size, _, err := parseEntry(p.raw[off:], p.end, &w.tc)
				if err != nil {
					o.failed = true
					break
				}
				p.fillOne(o, j, &e, w.tc.last, w)
				off += size
			}
			o.failed = o.failed || off != end
		}
		p.flush(o, w)
		p.publish(c, o)
	}
}

// publish hands chunk c's results to the extend chains.
func (p *pipeline) publish(c int, o *chunkOut) {
	o.refs.Store(p.refs)
	p.mu.Lock()
	for len(p.outs) <= c {
		p.outs = append(p.outs, nil)
	}
	p.outs[c] = o
	p.outsCond.Broadcast()
	p.mu.Unlock()
}

// prepare sizes chunk result o's per-entry arrays for o.n entries.
func (p *pipeline) prepare(o *chunkOut) {
	n := o.n
	o.pcr = grow(o.pcr, n)
	o.viol = grow(o.viol, n)
	o.sha1s = grow(o.sha1s, n)
	if len(o.own) != len(p.ownBanks) {
		o.own = make([][]byte, len(p.ownBanks))
	}
	for k, b := range p.ownBanks {
		o.own[k] = grow(o.own[k], n*b.Size())
	}
}

// worker is one worker's scratch state.
type worker struct {
	tc templateCache
	s1 hash.Hash
	hs []hash.Hash
	// SHA-256 template digests wait here to be computed two at a time
	// (sha256ni.Sum256x2): entry indices in the chunk and their data.
	pend     []int
	pendData [][]byte
}

func (p *pipeline) newWorker() *worker {
	return &worker{hs: make([]hash.Hash, len(p.ownBanks))}
}

// flush computes the waiting SHA-256 template digests of chunk o, in pairs.
func (p *pipeline) flush(o *chunkOut, w *worker) {
	if len(w.pend) > 0 {
		dst := o.own[p.own256]
		const size = sha256.Size
		k := 0
		for ; k+1 < len(w.pend); k += 2 {
			a, b := w.pend[k], w.pend[k+1]
			da, db := sha256ni.Sum256x2(w.pendData[k], w.pendData[k+1])
			copy(dst[a*size:], da[:])
			copy(dst[b*size:], db[:])
		}
		if k < len(w.pend) {
			d := sha256ni.Sum256(w.pendData[k])
			copy(dst[w.pend[k]*size:], d[:])
		}
	}
	w.pend, w.pendData = w.pend[:0], w.pendData[:0]
}

// fillOne computes the results of entry j of chunk o (template t, nil if
// unknown), right after it was parsed: no chunk of Entry values is kept.
// SHA-256 template digests are queued for flush.
func (p *pipeline) fillOne(o *chunkOut, j int, e *Entry, t *Template, w *worker) {
	o.pcr[j] = e.PCR
	v := e.Violation()
	o.viol[j] = v
	if p.timeline && (o.base+j == 0 || v || nameCandidate(e, t, p.end)) {
		o.tlIdx = append(o.tlIdx, o.base+j)
		o.tlEnt = append(o.tlEnt, *e)
	}
	if v || p.check != nil && !p.check.needs(o.base+j, e.PCR) {
		return
	}
	if p.storedSHA1 {
		o.sha1s[j] = e.TemplateDigest
	} else {
		templateSumTo(crypto.SHA1, o.sha1s[j][:], e, &w.s1)
		if o.sha1s[j] != e.TemplateDigest {
			o.mism = append(o.mism, o.base+j)
		}
	}
	for k, b := range p.ownBanks {
		if k == p.own256 && e.TemplateName != legacyTemplateName {
			w.pend = append(w.pend, j)
			w.pendData = append(w.pendData, e.TemplateData)
			continue
		}
		size := b.Size()
		templateSumTo(b, o.own[k][j*size:(j+1)*size], e, &w.hs[k])
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// chunk waits for chunk c, or returns false if there is none (the list
// ended, or framing stopped before it).
func (p *pipeline) chunk(c int) (*chunkOut, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if c < len(p.outs) && p.outs[c] != nil {
			return p.outs[c], true
		}
		if p.framed && (!p.frameOK || c >= p.nc) {
			return nil, false
		}
		p.outsCond.Wait()
	}
}

// release marks chunk result o as seen by one consumer.
func (p *pipeline) release(o *chunkOut) {
	if o.refs.Add(-1) == 0 {
		p.free <- o
	}
}

// chain is the extend chain of one bank with one method. It tracks every
// PCR in check (for a raw list: every quoted PCR of the right size, since
// the PCRs the list uses are known only at the end) and records after each
// entry how many of them differ from their quoted values, saturated at 255.
// A quoted PCR the list never extends stays zero, so it adds the same
// amount to every count; bankRun subtracts it once the list is known.
type chain struct {
	bank   crypto.Hash
	size   int
	method Method
	padded bool // digest is the zero-padded SHA-1 template digest
	own    int  // index into chunkOut.own when !padded
	check  map[uint32][]byte
	small  [32][]byte // quoted values of checked PCRs below 32
	st     *pcrState
	mism   int
	counts []uint8 // counts[k]: mismatching PCRs after k entries
	h      hash.Hash
	ff     []byte
	eq     [32]bool // PCRs below 32: the value equals the quoted one
	all    bool     // replay: extend every PCR, compare none, keep no counts
}

// maxChainPCRs bounds the PCRs a chain tracks so that its counts fit a byte.
const maxChainPCRs = 254

func newChain(bank crypto.Hash, method Method, own int, check map[uint32][]byte, capacity int) *chain {
	x := &chain{bank: bank, size: bank.Size(), method: method, own: own, check: check,
		padded: method == MethodSHA1Padded || bank == crypto.SHA1, // identical for SHA-1
		st:     newPCRState(bank.Size()), counts: make([]uint8, 1, capacity+1)}
	x.ff = bytes.Repeat([]byte{0xff}, x.size)
	for p, q := range check {
		eq := bytes.Equal(x.st.get(p), q)
		if p < uint32(len(x.small)) {
			x.small[p] = q
			x.eq[p] = eq
		}
		if !eq {
			x.mism++
		}
	}
	x.counts[0] = uint8(min(x.mism, 255))
	return x
}

func (x *chain) consume(o *chunkOut) {
	switch x.bank {
	case crypto.SHA1:
		x.consumeSHA1(o)
	case crypto.SHA256:
		x.consumeSHA256(o)
	default:
		for j := 0; j < o.n; j++ {
			x.step(o, j)
		}
	}
}

// step extends entry j of chunk o (any bank, any PCR).
func (x *chain) step(o *chunkOut, j int) {
	size := x.size
	p := o.pcr[j]
	var q []byte
	if p < uint32(len(x.small)) {
		q = x.small[p]
	} else {
		q = x.check[p]
	}
	if q != nil || x.all {
		// v has room for the digest after the value: hash the two in
		// place and write the result over the value.
		v := x.st.get(p)
		var was bool
		if p < uint32(len(x.eq)) {
			was = x.eq[p]
		} else {
			was = bytes.Equal(v, q)
		}
		w := v[:2*size]
		d := w[size:]
		switch {
		case o.viol[j]:
			copy(d, x.ff)
		case x.padded:
			clear(d)
			copy(d, o.sha1s[j][:])
		default:
			copy(d, o.own[x.own][j*size:(j+1)*size])
		}
		sumTo(x.bank, v, w, &x.h)
		if x.all {
			return
		}
		x.settle(p, was, bytes.Equal(v, q))
	}
	x.counts = append(x.counts, uint8(min(x.mism, 255)))
}

// settle records whether checked PCR p, which did (was) or did not equal
// its quoted value before an extend, does now.
func (x *chain) settle(p uint32, was, now bool) {
	if p < uint32(len(x.eq)) {
		x.eq[p] = now
	}
	if was && !now {
		x.mism++
	} else if !was && now {
		x.mism--
	}
}

// consumeSHA1 and consumeSHA256 are consume for the two common banks:
// step with fixed-size arrays for PCRs below 32, which lets the compiler
// drop the bounds checks, the hash dispatch and the comparison calls.
func (x *chain) consumeSHA1(o *chunkOut) {
	for j := 0; j < o.n; j++ {
		p := o.pcr[j]
		if p >= uint32(len(x.small)) {
			x.step(o, j)
			continue
		}
		if q := x.small[p]; q != nil || x.all {
			v := (*[2 * sha1.Size]byte)(x.st.get(p)[:2*sha1.Size])
			if o.viol[j] {
				copy(v[sha1.Size:], x.ff)
			} else {
				*(*[sha1.Size]byte)(v[sha1.Size:]) = o.sha1s[j]
			}
			s := sha1.Sum(v[:])
			*(*[sha1.Size]byte)(v[:]) = s
			if x.all {
				continue
			}
			x.settle(p, x.eq[p], s == [sha1.Size]byte(q))
		}
		x.counts = append(x.counts, uint8(min(x.mism, 255)))
	}
}

func (x *chain) consumeSHA256(o *chunkOut) {
	var own []byte
	if !x.padded {
		own = o.own[x.own]
	}
	for j := 0; j < o.n; j++ {
		p := o.pcr[j]
		if p >= uint32(len(x.small)) {
			x.step(o, j)
			continue
		}
		if q := x.small[p]; q != nil || x.all {
			v := (*[2 * sha256.Size]byte)(x.st.get(p)[:2*sha256.Size])
			d := (*[sha256.Size]byte)(v[sha256.Size:])
			switch {
			case o.viol[j]:
				copy(d[:], x.ff)
			case x.padded:
				*d = [sha256.Size]byte{}
				copy(d[:], o.sha1s[j][:])
			default:
				*d = [sha256.Size]byte(own[j*sha256.Size:])
			}
			s := sha256ni.Sum256(v[:])
			*(*[sha256.Size]byte)(v[:]) = s
			if x.all {
				continue
			}
			x.settle(p, x.eq[p], s == [sha256.Size]byte(q))
		}
		x.counts = append(x.counts, uint8(min(x.mism, 255)))
	}
}

// run consumes every chunk in order.
func (x *chain) run(p *pipeline) {
	for c := 0; ; c++ {
		o, ok := p.chunk(c)
		if !ok {
			return
		}
		if !o.failed {
			x.consume(o)
		}
		p.release(o)
	}
}

// result is the chain's bankRun for the PCRs in checked (a subset of the
// chain's check holding every PCR the list extends), or ok=false if the
// untracked PCRs' constant share does not fit the counts.
func (x *chain) result(checked map[uint32][]byte) (r bankRun, ok bool) {
	offset := 0
	for p, q := range x.check {
		if _, in := checked[p]; !in && !bytes.Equal(x.st.get(p), q) {
			offset++
		}
	}
	if offset >= 255 {
		return r, false
	}
	// Reuse the counts as the match flags.
	m := x.counts
	for k, c := range m {
		m[k] = 0
		if int(c) == offset {
			m[k] = 1
		}
	}
	final := make(map[uint32][]byte, len(checked))
	for p := range checked {
		final[p] = bytes.Clone(x.st.get(p))
	}
	return bankRun{method: x.method, matches: m, final: final}, true
}

// collected is what the calling goroutine gathers from a pipeline pass.
type collected struct {
	mismatches []int
	timeline   *timelineBuilder
	failed     bool // a chunk failed to parse or framing stopped early
	n          int
	used       []uint32
}

// runPipeline runs one pass with the given chains and collects mismatches
// and the timeline in the calling goroutine.
func runPipeline(p *pipeline, chains []*chain) collected {
	var col collected
	if p.timeline {
		col.timeline = newTimelineBuilder(p.order)
	}
	p.start()
	var wg sync.WaitGroup
	for _, x := range chains {
		wg.Go(func() { x.run(p) })
	}
	for c := 0; ; c++ {
		o, ok := p.chunk(c)
		if !ok {
			break
		}
		if o.failed {
			col.failed = true
		} else {
			col.mismatches = append(col.mismatches, o.mism...)
			if col.timeline != nil {
				for k := range o.tlIdx {
					col.timeline.add(o.tlIdx[k], &o.tlEnt[k])
				}
			}
		}
		p.release(o)
	}
	wg.Wait()
	close(p.quit)
	p.mu.Lock()
	col.failed = col.failed || !p.frameOK
	col.n, col.used = p.n, p.used
	p.mu.Unlock()
	return col
}

// VerifyList is ParseList followed by Verify and BuildTimelineOrder, with
// the same results and the same error for a list that does not parse, in
// one parallel pass that holds only a few chunks of entries in memory at a
// time.
func VerifyList(b []byte, order binary.ByteOrder, quoted PCRValues) (VerifyResult, Timeline, error) {
	if order == nil {
		return VerifyResult{}, Timeline{}, errors.New("ima: nil byte order")
	}
	if len(quoted) > 0 {
		if res, tl, ok := verifyPipelined(listSource{raw: b, order: order, fromRaw: true}, quoted); ok {
			if needsBootMethods(res) {
				if es, err := ParseList(b, order); err == nil {
					res = withBootMethods(res, es, quoted, order)
				}
			}
			return res, tl, nil
		}
	}
	// Unusual or malformed lists: the plain path, which also yields the
	// exact parse error.
	es, err := ParseList(b, order)
	if err != nil {
		return VerifyResult{}, Timeline{}, err
	}
	return VerifyOrder(es, quoted, order), BuildTimelineOrder(es, order), nil
}

// sha1Check selects the entries whose stored SHA-1 template digest a
// check-only pass compares with the SHA-1 of their data: every entry from
// index from on, and before it those whose PCR bound does not hold.
type sha1Check struct {
	from  int
	bound pcrFilter
	all   bool // bound holds every PCR the list uses
}

func (c *sha1Check) needs(i int, pcr uint32) bool { return i >= c.from || !c.bound.has(pcr) }

// skips says whether a chunk of count entries from base holds no entry
// the check needs.
func (c *sha1Check) skips(base, count int) bool { return c.all && base+count <= c.from }

// pcrFilter is a set of PCR indices.
type pcrFilter struct {
	small uint32
	big   map[uint32]bool
}

func (f *pcrFilter) add(p uint32) {
	if p < 32 {
		f.small |= 1 << p
		return
	}
	if f.big == nil {
		f.big = map[uint32]bool{}
	}
	f.big[p] = true
}

func (f *pcrFilter) has(p uint32) bool {
	if p < 32 {
		return f.small&(1<<p) != 0
	}
	return f.big[p]
}
