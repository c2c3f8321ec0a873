package ima

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Reading a list through an io.ReaderAt. The framing goroutine reads the
// list segment by segment into the pool's buffers (a chunk is the whole
// entries of one segment; the next segment starts at the first entry that
// did not fit), so the list's bytes pass through a few small buffers that
// stay in cache, instead of being mapped and touched page by page: on this
// project's test VM the first touch of a 28 MB mapping costs 15-25 ms of
// CPU, reading it through a 64 KiB buffer 7-10 ms.

// readSegment is the size of one read. A variable so that tests can force
// many segments, and entries larger than a segment, on small lists.
var readSegment = 64 << 10

// startReader launches the reading and framing goroutine and the workers.
// Here the framing goroutine takes the free buffers (a chunk's bytes live in
// its buffer); it frames chunks in order, so the lowest unfinished chunk
// always holds a buffer and the in-order consumers can always progress.
func (p *pipeline) startReader(workers int) {
	bufs := workers + 4
	p.free = make(chan *chunkOut, bufs)
	for range bufs {
		p.free <- &chunkOut{}
	}
	go p.frameReader()
	for range workers {
		go p.workReader()
	}
}

// frameReader reads and frames the list, publishing each chunk, then the
// entry count and the PCRs used; frameOK=false at a read error or at an
// entry that does not frame even with the rest of the list in the buffer
// (the caller then reads the list whole and parses it for the exact error).
func (p *pipeline) frameReader() {
	var tc templateCache
	var used pcrSet
	off, n, ok := p.startOff, p.startBase, true
	for off < p.size && ok {
		var o *chunkOut
		select {
		case o = <-p.free:
		case <-p.quit:
			return
		}
		want := int(min(int64(readSegment), p.size-off))
		var pos, count int
		for {
			if cap(o.data) < want {
				o.data = make([]byte, want)
			}
			o.data = o.data[:want]
			if k, _ := p.ra.ReadAt(o.data, off); k < want {
				ok = false // a read error: the caller's full read reports it
				break
			}
			pos, count = 0, 0
			for pos < want {
				size, fine := frameSize(o.data[pos:], p.end, &tc)
				if !fine {
					break
				}
				used.add(p.end.Uint32(o.data[pos:]))
				pos += size
				count++
			}
			if count > 0 || int64(want) == p.size-off {
				break
			}
			// The first entry is larger than the buffer: read more.
			want = int(min(2*int64(want), p.size-off))
		}
		if !ok || count == 0 {
			ok = false
			p.free <- o
			break
		}
		o.data = o.data[:pos]
		o.base, o.n = n, count
		p.mu.Lock()
		p.segs = append(p.segs, o)
		p.chunkPos = append(p.chunkPos, chunkPos{base: n, off: off})
		p.framing.Broadcast()
		p.mu.Unlock()
		off += int64(pos)
		n += count
	}
	p.mu.Lock()
	p.framed, p.frameOK, p.n, p.nc, p.used = true, ok, n, len(p.segs), used.sorted()
	p.framing.Broadcast()
	p.outsCond.Broadcast()
	p.mu.Unlock()
}

// framedChunk waits until chunk c has been read and framed, or returns
// false if there is no such chunk.
func (p *pipeline) framedChunk(c int) (*chunkOut, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if c < len(p.segs) {
			return p.segs[c], true
		}
		if p.framed {
			return nil, false
		}
		p.framing.Wait()
	}
}

func (p *pipeline) workReader() {
	w := p.newWorker()
	for {
		c := int(p.next.Add(1) - 1)
		o, ok := p.framedChunk(c)
		if !ok {
			return
		}
		o.failed = false
		o.mism, o.tlIdx, o.tlEnt = o.mism[:0], o.tlIdx[:0], o.tlEnt[:0]
		p.prepare(o)
		off := 0
		for j := range o.n {
			e, size, _, err := parseEntry(o.data[off:], p.end, &w.tc)
			if err != nil {
				o.failed = true
				break
			}
			p.fillOne(o, j, &e, w.tc.last, w)
			off += size
		}
		o.failed = o.failed || off != len(o.data)
		p.flush(o, w)
		p.publish(c, o)
	}
}

// VerifyReaderAt is VerifyList for the size-byte list behind r: the same
// results, and for a list that does not parse the same error, read in
// segments through a few small buffers rather than held whole.
func VerifyReaderAt(r io.ReaderAt, size int64, order binary.ByteOrder, quoted PCRValues) (VerifyResult, Timeline, error) {
	if order == nil {
		return VerifyResult{}, Timeline{}, errors.New("ima: nil byte order")
	}
	if size < 0 {
		return VerifyResult{}, Timeline{}, fmt.Errorf("ima: negative list size %d", size)
	}
	if len(quoted) > 0 {
		src := listSource{ra: r, size: size, order: order, fromRaw: true}
		if res, tl, ok := verifyPipelined(src, quoted); ok && !needsBootMethods(res) {
			return res, tl, nil
		}
	}
	// Unusual or malformed lists, read errors: read the list whole (as
	// much as r holds, never more than size) and take the plain path.
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		return VerifyResult{}, Timeline{}, err
	}
	return VerifyList(b, order, quoted)
}
