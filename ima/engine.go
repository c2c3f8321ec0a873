package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
)

// The engine: one pass over a list. A reading goroutine cuts the input
// into chunks of whole entries with parseEntry (the one parser); worker
// goroutines compute, per entry, what does not depend on other entries (the
// template digests a pass needs, whether the entry can be a timeline
// event); the calling goroutine consumes the chunks in list order, which
// is where the per-bank extend chains run. Chunks come from a fixed pool
// that is refilled as they are consumed, so a pass holds at most
// poolSize chunks whatever the list's size.

// chunkBytes is the read size of a streamed chunk; chunkEntries the
// number of entries per chunk of an in-memory list. Variables so that
// tests can force many chunk boundaries.
var (
	chunkBytes   = 128 << 10
	chunkEntries = 1024
)

// source is what a pass reads: entries in memory, or a stream of list
// bytes (open returns it; a re-readable source can be opened again).
type source struct {
	entries []Entry
	open    func() (io.Reader, error)
	reread  bool // open may be called again
	order   endian
}

// job is what the workers compute per entry.
type job struct {
	own  []crypto.Hash // H_bank(template input) for each of these banks
	sha1 bool          // SHA-1 of the template input
	// extend: the pass extends PCRs, so an entry's PCR index must be one
	// a TPM can have (at most maxPCRIndex): the state kept per PCR is then
	// bounded whatever the list holds.
	extend bool
	// restore: apply the restoring kernel's per-entry rules (restoreCheck),
	// with the SHA-1 digests the pass computes (sha1 must be set).
	restore bool
	// noCand: the pass does not build a timeline (chunk.cand stays empty).
	noCand bool
	// same, for a source of entries: the binary list they were parsed
	// from; every entry is checked to be encoded there, at its offset
	// (chunk.differs reports one that is not).
	same []byte
}

// ErrPCRIndex: an entry names a PCR no TPM has (kernels use indices below
// 64; PCR files are read up to maxPCRIndex).
var ErrPCRIndex = errors.New("PCR index out of range")

// chunk is a run of consecutive entries and what the workers made of them.
type chunk struct {
	base  int   // index of the first entry
	off   int64 // byte offset of the first entry (streams)
	buf   []byte
	es    []Entry
	names [][]byte   // streams: the framed template names, resolved by a worker
	own   [][]byte   // per job.own bank: len(es) digests back to back
	sha1  [][20]byte // job.sha1: per entry
	cand  []int32    // entries (within the chunk) the timeline must see
	// restore: job.restore's findings, in entry order
	restore []restoreFinding
	differs bool  // job.same: an entry of the chunk is not encoded there
	err     error // the input ends in this error after es
	done    chan struct{}
}

// errStop ends a pass early without an error.
var errStop = errors.New("stop")

// runPass feeds src through the workers into consume, in list order. It
// returns the number of entries consumed and the first error: a parse or
// read error of the input (wrapped in *ParseError), or consume's.
func runPass(src source, jb job, consume func(c *chunk) error) (int, error) {
	workers := max(runtime.GOMAXPROCS(0), 1)
	pool := make(chan *chunk, workers+2)
	for range cap(pool) {
		pool <- &chunk{}
	}
	work := make(chan *chunk, cap(pool))
	inOrder := make(chan *chunk, cap(pool))
	quit := make(chan struct{})
	go func() {
		defer close(work)
		defer close(inOrder)
		emit := func(c *chunk) bool {
			ok := c.err == nil // read before a worker may set it
			c.done = make(chan struct{})
			work <- c
			inOrder <- c
			return ok
		}
		get := func() *chunk {
			select {
			case c := <-pool:
				c.es, c.names, c.cand, c.restore, c.differs, c.err = c.es[:0], c.names[:0], c.cand[:0], c.restore[:0], false, nil
				return c
			case <-quit:
				return nil
			}
		}
		if src.open == nil {
			off := int64(0)
			for base := 0; base < len(src.entries); base += chunkEntries {
				c := get()
				if c == nil {
					return
				}
				end := min(base+chunkEntries, len(src.entries))
				c.base, c.off = base, off
				c.es = src.entries[base:end:end] // capped: never appended to
				if jb.same != nil {
					for i := range c.es {
						off += int64(c.es[i].EncodedSize())
					}
				}
				emit(c)
			}
			return
		}
		readChunks(src, get, emit)
	}()
	for range workers {
		go func() {
			var w worker
			for c := range work {
				w.fill(c, jb, src.order)
				close(c.done)
			}
		}()
	}
	n := 0
	var err error
	for c := range inOrder {
		<-c.done
		if err == nil {
			if cerr := consume(c); cerr != nil {
				err = cerr
				close(quit)
			} else {
				n += len(c.es)
				err = c.err
				if err != nil {
					close(quit)
				}
			}
		}
		pool <- c
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	return n, err
}

// readChunks reads src's stream into chunks of whole entries.
func readChunks(src source, get func() *chunk, emit func(*chunk) bool) {
	c := get()
	if c == nil {
		return
	}
	r, err := src.open()
	if err != nil {
		c.err = err
		emit(c)
		return
	}
	var carry []byte // the start of an entry that did not fit
	off, idx := int64(0), 0
	eof := false
	for {
		size := max(chunkBytes, len(carry))
		if cap(c.buf) < size {
			c.buf = make([]byte, size)
		}
		buf := append(c.buf[:0], carry...)
		c.base, c.off = idx, off
		pos := 0
		for {
			if !eof && len(buf) < cap(buf) {
				n, rerr := io.ReadAtLeast(r, buf[len(buf):cap(buf)], 1)
				buf = buf[:len(buf)+n]
				if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
					eof = true
				} else if rerr != nil {
					c.buf = buf
					c.err = &ParseError{Offset: off + int64(pos), Index: idx, Err: fmt.Errorf("read: %w", rerr)}
					emit(c)
					return
				}
				continue
			}
			if pos == len(buf) {
				break
			}
			// Framing here; the workers resolve the templates (resolve).
			c.es = append(c.es, Entry{})
			name, size, errOff, perr := splitFrame(buf[pos:], src.order, true, &c.es[len(c.es)-1])
			if perr == nil {
				c.names = append(c.names, name)
				pos += size
				off += int64(size)
				idx++
				continue
			}
			c.es = c.es[:len(c.es)-1]
			var se *shortError
			if !eof && errors.As(perr, &se) {
				if pos > 0 {
					break // the rest goes to the next chunk
				}
				// One entry larger than the buffer (at most MaxEntrySize).
				nb := make([]byte, len(buf), max(int(se.need), min(2*cap(buf), MaxEntrySize)))
				copy(nb, buf)
				buf = nb
				continue
			}
			c.buf = buf
			c.err = &ParseError{Offset: off + int64(errOff), Index: idx, Err: perr}
			emit(c)
			return
		}
		carry = append(carry[:0], buf[pos:]...)
		c.buf = buf
		if !emit(c) {
			return
		}
		if eof && len(carry) == 0 {
			return
		}
		if c = get(); c == nil {
			return
		}
	}
}

// worker holds one worker goroutine's hashers.
type worker struct {
	tc    templateCache
	other map[crypto.Hash]hash.Hash
	tmpl  []*Template // the templates resolve found for the current chunk
}

func (w *worker) fill(c *chunk, jb job, order endian) {
	w.resolve(c, order)
	if jb.extend {
		for i := range c.es {
			if p := c.es[i].PCR; p > maxPCRIndex {
				c.es = c.es[:i]
				c.err = fmt.Errorf("entry %d: %w: PCR %d, at most %d", c.base+i, ErrPCRIndex, p, maxPCRIndex)
				break
			}
		}
	}
	n := len(c.es)
	for len(c.own) < len(jb.own) {
		c.own = append(c.own, nil)
	}
	for k, b := range jb.own {
		c.own[k] = grow(c.own[k], n*b.Size())
	}
	if jb.sha1 {
		if cap(c.sha1) < n {
			c.sha1 = make([][20]byte, n)
		}
		c.sha1 = c.sha1[:n]
	}
	off := c.off
	for i := range c.es {
		e := &c.es[i]
		if jb.same != nil {
			if !encodedAt(jb.same, off, e, order) {
				c.differs = true
			}
			off += int64(e.EncodedSize())
		}
		for k, b := range jb.own {
			sz := b.Size()
			w.templateSum(b, c.own[k][i*sz:(i+1)*sz], e)
		}
		if jb.sha1 {
			w.templateSum(crypto.SHA1, c.sha1[i][:], e)
		}
		if jb.restore {
			if p, bad, stop := restoreCheck(e, order, &c.sha1[i]); bad {
				p.Index = i
				c.restore = append(c.restore, restoreFinding{p, stop})
			}
		}
		if !jb.noCand && (e.Violation() || c.base+i == 0 || w.candidate(i, e, order)) {
			c.cand = append(c.cand, int32(i))
		}
	}
}

// encodedAt reports whether list holds e's encoding at off. The template
// data of an entry parsed from list is list's own memory there (ParseList
// slices it), which is checked without reading it.
func encodedAt(list []byte, off int64, e *Entry, order endian) bool {
	size := int64(e.EncodedSize())
	if off < 0 || off > int64(len(list))-size {
		return false
	}
	b := list[off : off+size]
	nl := len(e.TemplateName)
	if order.Uint32(b[0:]) != e.PCR || [20]byte(b[4:24]) != e.TemplateDigest ||
		order.Uint32(b[24:]) != uint32(nl) || string(b[28:28+nl]) != e.TemplateName {
		return false
	}
	data := b[28+nl:]
	if e.TemplateName != legacyTemplateName {
		if order.Uint32(data) != uint32(len(e.TemplateData)) {
			return false
		}
		data = data[4:]
	}
	if len(data) != len(e.TemplateData) {
		return false
	}
	return len(data) == 0 || &data[0] == &e.TemplateData[0] || bytes.Equal(data, e.TemplateData)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// resolve completes the parse of a streamed chunk's framed entries; the
// first entry that does not resolve ends the chunk with its error.
func (w *worker) resolve(c *chunk, order endian) {
	w.tmpl = w.tmpl[:0]
	if c.names == nil {
		return
	}
	off := c.off
	for i := range c.es {
		e := &c.es[i]
		if errOff, err := resolveEntry(e, c.names[i], order, &w.tc); err != nil {
			c.es = c.es[:i]
			c.err = &ParseError{Offset: off + int64(errOff), Index: c.base + i, Err: err}
			return
		}
		w.tmpl = append(w.tmpl, w.tc.last)
		off += int64(e.EncodedSize())
	}
}

// candidate reports whether e, entry i of the chunk, has an event name
// the timeline needs.
func (w *worker) candidate(i int, e *Entry, order endian) bool {
	if i < len(w.tmpl) {
		return nameCandidate(e, w.tmpl[i], order)
	}
	return nameCandidate(e, w.tc.lookupParsed(e.TemplateName), order)
}

// templateSum writes H_bank(template input of e) to dst.
func (w *worker) templateSum(bank crypto.Hash, dst []byte, e *Entry) {
	if e.TemplateName == legacyTemplateName {
		if w.other == nil {
			w.other = map[crypto.Hash]hash.Hash{}
		}
		h := w.other[bank]
		if h == nil {
			h = bank.New()
			w.other[bank] = h
		}
		h.Reset()
		writeTemplateInput(h, e)
		h.Sum(dst[:0])
		return
	}
	sumInto(bank, dst, e.TemplateData, &w.other)
}

// sumInto writes H_bank(p) to dst with the standard library's one-shot
// functions where there is one.
func sumInto(bank crypto.Hash, dst, p []byte, other *map[crypto.Hash]hash.Hash) {
	switch bank {
	case crypto.SHA1:
		s := sha1.Sum(p)
		copy(dst, s[:])
	case crypto.SHA256:
		s := sha256.Sum256(p)
		copy(dst, s[:])
	case crypto.SHA384:
		s := sha512.Sum384(p)
		copy(dst, s[:])
	case crypto.SHA512:
		s := sha512.Sum512(p)
		copy(dst, s[:])
	default:
		h := cachedHash(other, bank)
		h.Write(p)
		h.Sum(dst[:0])
	}
}

// cachedHash returns a reset hash of bank from *other, making it (and the
// map) on first use, for banks without a one-shot function.
func cachedHash(other *map[crypto.Hash]hash.Hash, bank crypto.Hash) hash.Hash {
	if *other == nil {
		*other = map[crypto.Hash]hash.Hash{}
	}
	h := (*other)[bank]
	if h == nil {
		h = bank.New()
		(*other)[bank] = h
	}
	h.Reset()
	return h
}

// Scan parses the binary list read from r in the given byte order and
// calls fn with every entry in list order, holding a few chunks of the
// list at a time: e and its TemplateData are valid only during the call.
// An error from fn ends the scan and is returned; a list that does not
// parse yields ParseList's error after the entries before it.
func Scan(r io.Reader, order binary.ByteOrder, fn func(i int, off int64, e *Entry) error) error {
	if order == nil {
		return errNilOrder
	}
	_, err := runPass(streamSource(r, order), job{}, func(c *chunk) error {
		off := c.off
		for i := range c.es {
			if err := fn(c.base+i, off, &c.es[i]); err != nil {
				return err
			}
			off += int64(c.es[i].EncodedSize())
		}
		return nil
	})
	return err
}
