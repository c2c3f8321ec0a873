package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"hash"
	"runtime"
	"sync"
	"sync/atomic"
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
	failed bool // raw source: the chunk did not parse as the framing pass predicted
	pcr    []uint32
	viol   []bool
	sha1s  [][20]byte
	own    [][]byte // per own bank: n*size digests
	mism   []int    // entries whose stored SHA-1 digest differs from their data
	tlIdx  []int    // entries the timeline must see
	tlEnt  []Entry
	refs   atomic.Int32
}

// pipeline is one pass over the entries.
type pipeline struct {
	// Source: entries, or raw list bytes with the chunk starts found by
	// frameList.
	entries []Entry
	raw     []byte
	order   binary.ByteOrder
	starts  []int

	n, per, nc int
	ownBanks   []crypto.Hash // banks other than SHA-1 whose own digests are needed
	timeline   bool          // collect timeline candidates

	outs []*chunkOut
	done []chan struct{}
	free chan *chunkOut
	refs int32 // consumers of every chunk: chains + collector
	next atomic.Int64
}

func newPipeline(entries []Entry, raw []byte, order binary.ByteOrder, starts []int, n int, own []crypto.Hash, timeline bool, chains int) *pipeline {
	per := max(verifyChunk, 1)
	p := &pipeline{entries: entries, raw: raw, order: order, starts: starts, n: n, per: per,
		nc: (n + per - 1) / per, ownBanks: own, timeline: timeline, refs: int32(chains + 1)}
	p.outs = make([]*chunkOut, p.nc)
	p.done = make([]chan struct{}, p.nc)
	for c := range p.done {
		p.done[c] = make(chan struct{})
	}
	return p
}

// start launches the workers. A worker takes a free buffer before it claims
// a chunk, so the lowest unfinished chunk always holds a buffer and the
// in-order consumers can always progress.
func (p *pipeline) start() {
	workers := min(runtime.GOMAXPROCS(0), p.nc)
	bufs := workers + 4
	p.free = make(chan *chunkOut, bufs)
	for range bufs {
		p.free <- &chunkOut{}
	}
	for range workers {
		go p.work()
	}
}

func (p *pipeline) work() {
	var tc templateCache
	var buf []Entry
	hs := make([]hash.Hash, len(p.ownBanks))
	var s1 hash.Hash
	for {
		o := <-p.free
		c := int(p.next.Add(1) - 1)
		if c >= p.nc {
			p.free <- o
			return
		}
		lo, hi := c*p.per, min((c+1)*p.per, p.n)
		o.base, o.n, o.failed = lo, hi-lo, false
		o.mism, o.tlIdx, o.tlEnt = o.mism[:0], o.tlIdx[:0], o.tlEnt[:0]
		var es []Entry
		if p.entries != nil {
			es = p.entries[lo:hi]
		} else {
			if buf == nil {
				buf = make([]Entry, p.per)
			}
			es = buf[:o.n]
			off := p.starts[c]
			for j := range es {
				e, size, _, err := parseEntry(p.raw[off:], p.order, &tc)
				if err != nil {
					o.failed = true
					break
				}
				es[j] = e
				off += size
			}
			end := len(p.raw)
			if c+1 < p.nc {
				end = p.starts[c+1]
			}
			o.failed = o.failed || off != end
		}
		if !o.failed {
			p.fill(o, es, &s1, hs)
		}
		o.refs.Store(p.refs)
		p.outs[c] = o
		close(p.done[c])
	}
}

// fill computes the per-entry results of one chunk.
func (p *pipeline) fill(o *chunkOut, es []Entry, s1 *hash.Hash, hs []hash.Hash) {
	n := len(es)
	o.pcr = grow(o.pcr, n)
	o.viol = grow(o.viol, n)
	o.sha1s = grow(o.sha1s, n)
	if len(o.own) != len(p.ownBanks) {
		o.own = make([][]byte, len(p.ownBanks))
	}
	for k, b := range p.ownBanks {
		o.own[k] = grow(o.own[k], n*b.Size())
	}
	for j := range es {
		e := &es[j]
		o.pcr[j] = e.PCR
		v := e.Violation()
		o.viol[j] = v
		if p.timeline && (o.base+j == 0 || v || timelineCandidate(e)) {
			o.tlIdx = append(o.tlIdx, o.base+j)
			o.tlEnt = append(o.tlEnt, *e)
		}
		if v {
			continue
		}
		templateSumTo(crypto.SHA1, o.sha1s[j][:], e, s1)
		if o.sha1s[j] != e.TemplateDigest {
			o.mism = append(o.mism, o.base+j)
		}
		for k, b := range p.ownBanks {
			size := b.Size()
			templateSumTo(b, o.own[k][j*size:(j+1)*size], e, &hs[k])
		}
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// chunk waits for chunk c.
func (p *pipeline) chunk(c int) *chunkOut {
	<-p.done[c]
	return p.outs[c]
}

// release marks chunk result o as seen by one consumer.
func (p *pipeline) release(o *chunkOut) {
	if o.refs.Add(-1) == 0 {
		p.free <- o
	}
}

// chain is the extend chain of one bank with one method, tracking after
// each entry whether every checked PCR equals its quoted value.
type chain struct {
	bank    crypto.Hash
	size    int
	method  Method
	padded  bool // digest is the zero-padded SHA-1 template digest
	own     int  // index into chunkOut.own when !padded
	check   map[uint32][]byte
	small   [32][]byte // quoted values of checked PCRs below 32
	st      *pcrState
	mism    int
	matches []bool // matches[k]: prefix of k entries reproduces the quote
	h       hash.Hash
	ff      []byte
	buf     [2 * 64]byte // old value | digest; 64 is the largest bank size
}

func newChain(bank crypto.Hash, method Method, own int, check map[uint32][]byte, n int) *chain {
	x := &chain{bank: bank, size: bank.Size(), method: method, own: own, check: check,
		padded: method == MethodSHA1Padded || bank == crypto.SHA1, // identical for SHA-1
		st:     newPCRState(bank.Size()), matches: make([]bool, n+1)}
	x.ff = bytes.Repeat([]byte{0xff}, x.size)
	for p, q := range check {
		if p < uint32(len(x.small)) {
			x.small[p] = q
		}
		if !bytes.Equal(x.st.get(p), q) {
			x.mism++
		}
	}
	x.matches[0] = x.mism == 0
	return x
}

func (x *chain) consume(o *chunkOut) {
	size := x.size
	for j := 0; j < o.n; j++ {
		p := o.pcr[j]
		var q []byte
		if p < uint32(len(x.small)) {
			q = x.small[p]
		} else {
			q = x.check[p]
		}
		if q != nil {
			old := x.st.get(p)
			was := bytes.Equal(old, q)
			copy(x.buf[:size], old)
			d := x.buf[size : 2*size]
			switch {
			case o.viol[j]:
				copy(d, x.ff)
			case x.padded:
				clear(d)
				copy(d, o.sha1s[j][:])
			default:
				copy(d, o.own[x.own][j*size:(j+1)*size])
			}
			sumTo(x.bank, old, x.buf[:2*size], &x.h)
			now := bytes.Equal(old, q)
			if was && !now {
				x.mism++
			} else if !was && now {
				x.mism--
			}
		}
		x.matches[o.base+j+1] = x.mism == 0
	}
}

func (x *chain) run(p *pipeline) bankRun {
	for c := 0; c < p.nc; c++ {
		o := p.chunk(c)
		if !o.failed {
			x.consume(o)
		}
		p.release(o)
	}
	return bankRun{method: x.method, matches: x.matches, final: x.st.values()}
}

// collected is what the calling goroutine gathers from a pipeline pass.
type collected struct {
	mismatches []int
	timeline   *timelineBuilder
	failed     bool
}

// runPipeline runs one pass with the given chains (results in runs) and
// collects mismatches and the timeline in the calling goroutine.
func runPipeline(p *pipeline, chains []*chain, runs []*bankRun) collected {
	var col collected
	if p.timeline {
		col.timeline = newTimelineBuilder(p.order)
	}
	p.start()
	var wg sync.WaitGroup
	for i, x := range chains {
		wg.Go(func() { *runs[i] = x.run(p) })
	}
	for c := 0; c < p.nc; c++ {
		o := p.chunk(c)
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
	return col
}

// frameList walks the length fields of a binary list and returns the start
// offset of every verifyChunk-th entry, the number of entries and the PCRs
// they use, or ok=false if some entry needs a full parse to judge.
func frameList(b []byte, order binary.ByteOrder) (starts []int, n int, used []uint32, ok bool) {
	per := max(verifyChunk, 1)
	var tc templateCache
	var seen [32]bool
	var more map[uint32]bool
	off := 0
	for off < len(b) {
		if n%per == 0 {
			starts = append(starts, off)
		}
		size, fine := frameSize(b[off:], order, &tc)
		if !fine {
			return nil, 0, nil, false
		}
		p := order.Uint32(b[off:])
		if p < 32 {
			if !seen[p] {
				seen[p] = true
				used = append(used, p)
			}
		} else {
			if more == nil {
				more = map[uint32]bool{}
			}
			if !more[p] {
				more[p] = true
				used = append(used, p)
			}
		}
		off += size
		n++
	}
	return starts, n, sortedPCRs(used), true
}

// VerifyList is ParseList followed by Verify and BuildTimelineOrder, with
// the same results and the same error for a list that does not parse, in
// one parallel pass that never holds more than a few chunks of entries in
// memory. TemplateData in the timeline's markers aliases nothing: markers
// carry copies of their payloads.
func VerifyList(b []byte, order binary.ByteOrder, quoted PCRValues) (VerifyResult, Timeline, error) {
	if order == nil {
		return VerifyResult{}, Timeline{}, errors.New("ima: nil byte order")
	}
	if len(quoted) > 0 {
		if starts, n, used, ok := frameList(b, order); ok {
			src := &pipeline{raw: b, order: order, starts: starts, n: n, timeline: true}
			if res, tl, ok := verifyPipelined(src, used, quoted); ok {
				return res, tl, nil
			}
		}
	}
	// Unusual or malformed lists: the plain path, which also yields the
	// exact parse error.
	es, err := ParseList(b, order)
	if err != nil {
		return VerifyResult{}, Timeline{}, err
	}
	return Verify(es, quoted), BuildTimelineOrder(es, order), nil
}
