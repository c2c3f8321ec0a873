package ima

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Sentinel errors; every error the package returns wraps one of them.
var (
	ErrTruncated       = errors.New("truncated")
	ErrLength          = errors.New("length field exceeds the remaining bytes")
	ErrUnknownTemplate = errors.New("unknown template")
	ErrMalformed       = errors.New("malformed template data")
	ErrNotRestorable   = errors.New("the restoring kernel would reject or drop entries")
	ErrKexecHeader     = errors.New("bad ima_kexec_hdr")
	ErrBadPCRFile      = errors.New("bad PCR file")
	ErrUnsupportedHash = errors.New("unsupported hash algorithm")
)

// ParseError locates a problem in a binary list or kexec buffer.
type ParseError struct {
	Offset int64 // byte offset in the input where the problem was found
	Index  int   // entry index (0-based)
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("entry %d at offset %d (0x%x): %v", e.Index, e.Offset, e.Offset, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Entry is one measurement as it appears in the binary list.
type Entry struct {
	PCR            uint32
	TemplateDigest [20]byte // SHA-1 template digest as stored in the list; all-zero for a violation
	TemplateName   string
	TemplateData   []byte // template data exactly as in the list (for legacy "ima": the 20-byte digest|u32 len|name part)
}

// Violation reports whether the entry records a violation (all-zero digest).
func (e *Entry) Violation() bool { return e.TemplateDigest == [20]byte{} }

// Template resolves the entry's template descriptor.
func (e *Entry) Template() (*Template, error) { return LookupTemplate(e.TemplateName) }

// entryHeaderMin is pcr + digest + name length.
const entryHeaderMin = 4 + 20 + 4

// ParseList parses binary_runtime_measurements. It checks every length
// against the bytes that remain, resolves every template name (built-in or
// custom format) and checks that the template data splits into exactly the
// template's fields. Errors are *ParseError values naming offset, entry
// index and problem. TemplateData aliases b.
//
// Large lists are parsed by GOMAXPROCS goroutines: one quick pass reads only
// the length fields to find where every parseChunk-th entry starts, then the
// chunks are parsed in full in parallel. A chunk must end exactly where the
// next one starts after exactly parseChunk entries, which makes the result
// (entries, error, offset and index) the one a sequential parse returns;
// if the quick pass was wrong, ParseList parses sequentially.
func ParseList(b []byte, order binary.ByteOrder) ([]Entry, error) {
	if order == nil {
		return nil, errors.New("ima: nil byte order")
	}
	end := endianOf(order)
	if len(b) >= parallelParseMin && runtime.GOMAXPROCS(0) > 1 {
		if es, ok, err := parseListParallel(b, end); ok {
			return es, err
		}
	}
	return parseListFrom(b, end, 0, 0, nil)
}

// parseListFrom parses sequentially from off (entry index idx) to the end of
// b, appending to entries.
func parseListFrom(b []byte, order endian, off, idx int, entries []Entry) ([]Entry, error) {
	var tc templateCache
	if entries == nil {
		// An entry takes at least entryHeaderMin+1 bytes, so this bound is safe.
		est := (len(b) - off) / 96
		if est > 1<<20 {
			est = 1 << 20
		}
		entries = make([]Entry, 0, est)
	}
	for off < len(b) {
		e, n, errOff, err := parseEntry(b[off:], order, &tc)
		if err != nil {
			return entries, &ParseError{Offset: int64(off + errOff), Index: idx, Err: err}
		}
		entries = append(entries, e)
		off += n
		idx++
	}
	return entries, nil
}

// Parallel parsing parameters (variables so that tests can force many
// chunks on small inputs).
var (
	parallelParseMin = 1 << 20 // bytes
	parseChunk       = 4096    // entries
)

// frameSize returns the size of the entry at the start of b judging by its
// length fields only, or false where a full parse is needed to tell.
func frameSize(b []byte, order endian, tc *templateCache) (int, bool) {
	if len(b) < entryHeaderMin {
		return 0, false
	}
	nameLen := order.Uint32(b[24:28])
	off := entryHeaderMin
	if uint64(nameLen) > uint64(len(b)-off) {
		return 0, false
	}
	t, _, err := tc.lookupName(b[off : off+int(nameLen)])
	if err != nil {
		return 0, false
	}
	off += int(nameLen)
	if t.Legacy() {
		if len(b)-off < 24 {
			return 0, false
		}
		nl := order.Uint32(b[off+20 : off+24])
		if nl > eventNameLenMax || uint64(nl) > uint64(len(b)-off-24) {
			return 0, false
		}
		return off + 24 + int(nl), true
	}
	if len(b)-off < 4 {
		return 0, false
	}
	dl := order.Uint32(b[off : off+4])
	if uint64(dl) > uint64(len(b)-off-4) {
		return 0, false
	}
	return off + 4 + int(dl), true
}

// parseListParallel returns ok=false when the chunk boundaries of the quick
// pass turned out wrong (the caller then parses sequentially).
func parseListParallel(b []byte, order endian) (entries []Entry, ok bool, err error) {
	per := max(parseChunk, 1)
	// Quick pass: the start of every per-th entry, up to the first entry
	// whose framing needs a closer look (the last chunk takes the rest).
	starts := []int{0}
	var tc templateCache
	off, k, complete := 0, 0, true
	for off < len(b) {
		n, fine := frameSize(b[off:], order, &tc)
		if !fine {
			complete = false
			break
		}
		off += n
		k++
		if k%per == 0 && off < len(b) {
			starts = append(starts, off)
		}
	}
	nc := len(starts)
	if nc < 2 {
		return nil, false, nil
	}
	full := (nc - 1) * per // entries in the chunks before the last
	capacity := full + per
	if complete {
		capacity = k
	}
	entries = make([]Entry, full, capacity)
	var last []Entry
	errs := make([]error, nc)
	bad := make([]bool, nc) // chunk did not end where the next starts
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), nc) {
		wg.Go(func() {
			var tc templateCache
			for {
				c := int(next.Add(1) - 1)
				if c >= nc {
					return
				}
				if c == nc-1 {
					last, errs[c] = parseListFrom(b, order, starts[c], full, make([]Entry, 0, capacity-full))
					continue
				}
				off := starts[c]
				for j := 0; j < per; j++ {
					e, n, errOff, err := parseEntry(b[off:], order, &tc)
					if err != nil {
						errs[c] = &ParseError{Offset: int64(off + errOff), Index: c*per + j, Err: err}
						break
					}
					entries[c*per+j] = e
					off += n
				}
				bad[c] = errs[c] == nil && off != starts[c+1]
			}
		})
	}
	wg.Wait()
	for c := 0; c < nc-1; c++ {
		if bad[c] {
			return nil, false, nil
		}
		if errs[c] != nil {
			var pe *ParseError
			errors.As(errs[c], &pe)
			return entries[:pe.Index], true, errs[c]
		}
	}
	return append(entries, last...), true, errs[nc-1]
}

// parseEntry parses one entry at the start of b and returns it, its size,
// and on error the offset within b where the problem lies.
func parseEntry(b []byte, order endian, tc *templateCache) (Entry, int, int, error) {
	var e Entry
	if len(b) < entryHeaderMin {
		return e, 0, 0, fmt.Errorf("%w: entry header needs %d bytes, %d remain", ErrTruncated, entryHeaderMin, len(b))
	}
	e.PCR = order.Uint32(b[0:4])
	copy(e.TemplateDigest[:], b[4:24])
	nameLen := order.Uint32(b[24:28])
	off := 28
	if uint64(nameLen) > uint64(len(b)-off) {
		return e, 0, 24, fmt.Errorf("%w: template name length %d, %d bytes remain", ErrLength, nameLen, len(b)-off)
	}
	nameB := b[off : off+int(nameLen)]
	t, name, err := tc.lookupName(nameB)
	if err != nil {
		return e, 0, off, fmt.Errorf("template name %q: %w", clip(nameB), err)
	}
	// The name as written: a format string stays a format string even when
	// it equals a built-in template's format.
	e.TemplateName = name
	off += int(nameLen)
	if t.Legacy() {
		// 20-byte digest | u32 len | name (no NUL)
		if len(b)-off < 24 {
			return e, 0, off, fmt.Errorf("%w: legacy ima template data needs 24 bytes, %d remain", ErrTruncated, len(b)-off)
		}
		nl := order.Uint32(b[off+20 : off+24])
		if uint64(nl) > uint64(len(b)-off-24) {
			return e, 0, off + 20, fmt.Errorf("%w: legacy ima file name length %d, %d bytes remain", ErrLength, nl, len(b)-off-24)
		}
		if nl > eventNameLenMax {
			return e, 0, off + 20, fmt.Errorf("%w: legacy ima file name length %d exceeds %d", ErrMalformed, nl, eventNameLenMax)
		}
		end := off + 24 + int(nl)
		e.TemplateData = b[off:end:end]
		return e, end, 0, nil
	}
	if len(b)-off < 4 {
		return e, 0, off, fmt.Errorf("%w: template data length needs 4 bytes, %d remain", ErrTruncated, len(b)-off)
	}
	dl := order.Uint32(b[off : off+4])
	if uint64(dl) > uint64(len(b)-off-4) {
		return e, 0, off, fmt.Errorf("%w: template data length %d, %d bytes remain", ErrLength, dl, len(b)-off-4)
	}
	off += 4
	end := off + int(dl)
	e.TemplateData = b[off:end:end]
	if fo, err := checkFields(e.TemplateData, order, len(t.Fields)); err != nil {
		return e, 0, off + fo, fmt.Errorf("template %s: %w", e.TemplateName, err)
	}
	return e, end, 0, nil
}

// checkFields verifies that data is exactly n length-prefixed fields, as the
// kernel's ima_parse_buf with ENFORCE_FIELDS|ENFORCE_BUFEND does. On error
// it returns the offset of the offending length.
func checkFields(data []byte, order endian, n int) (int, error) {
	off := 0
	for i := 0; i < n; i++ {
		if len(data)-off < 4 {
			return off, fmt.Errorf("%w: field %d of %d: length needs 4 bytes, %d remain", ErrMalformed, i+1, n, len(data)-off)
		}
		l := order.Uint32(data[off:])
		if uint64(l) > uint64(len(data)-off-4) {
			return off, fmt.Errorf("%w: field %d of %d: length %d, %d bytes remain", ErrMalformed, i+1, n, l, len(data)-off-4)
		}
		off += 4 + int(l)
	}
	if off != len(data) {
		return off, fmt.Errorf("%w: %d bytes after the last of %d fields", ErrMalformed, len(data)-off, n)
	}
	return 0, nil
}

// clip shortens b for error messages.
func clip(b []byte) string {
	if len(b) > 72 {
		return string(b[:72]) + "..."
	}
	return string(b)
}

// AppendList serializes entries in binary_runtime_measurements form.
// ParseList followed by AppendList reproduces the input byte for byte.
func AppendList(dst []byte, entries []Entry, order binary.ByteOrder) []byte {
	for i := range entries {
		dst = appendEntry(dst, &entries[i], order)
	}
	return dst
}

func appendEntry(dst []byte, e *Entry, order binary.ByteOrder) []byte {
	dst = appendU32(dst, order, e.PCR)
	dst = append(dst, e.TemplateDigest[:]...)
	dst = appendU32(dst, order, uint32(len(e.TemplateName)))
	dst = append(dst, e.TemplateName...)
	if e.TemplateName != legacyTemplateName {
		dst = appendU32(dst, order, uint32(len(e.TemplateData)))
	}
	return append(dst, e.TemplateData...)
}

// EncodedSize is the number of bytes e takes in the binary list.
func (e *Entry) EncodedSize() int {
	n := entryHeaderMin + len(e.TemplateName) + len(e.TemplateData)
	if e.TemplateName != legacyTemplateName {
		n += 4
	}
	return n
}

// Field is one decoded template field.
type Field struct {
	ID   FieldID
	Data []byte // field bytes without their length prefix (aliases the entry)
}

// Fields splits the entry's template data into its template's fields. For
// the legacy "ima" template the "n" field is the name without a NUL.
func (e *Entry) Fields(order binary.ByteOrder) ([]Field, error) {
	t, err := e.Template()
	if err != nil {
		return nil, err
	}
	if t.Legacy() {
		d := e.TemplateData
		if len(d) < 24 {
			return nil, fmt.Errorf("%w: legacy ima data is %d bytes", ErrMalformed, len(d))
		}
		nl := order.Uint32(d[20:24])
		if uint64(nl) != uint64(len(d)-24) {
			return nil, fmt.Errorf("%w: legacy ima name length %d, %d bytes present", ErrMalformed, nl, len(d)-24)
		}
		return []Field{{FieldD, d[:20]}, {FieldN, d[24:]}}, nil
	}
	if _, err := checkFields(e.TemplateData, endianOf(order), len(t.Fields)); err != nil {
		return nil, err
	}
	out := make([]Field, len(t.Fields))
	off := 0
	for i, id := range t.Fields {
		l := int(order.Uint32(e.TemplateData[off:]))
		out[i] = Field{ID: id, Data: e.TemplateData[off+4 : off+4+l]}
		off += 4 + l
	}
	return out, nil
}

func appendU32(dst []byte, order binary.ByteOrder, v uint32) []byte {
	var b [4]byte
	order.PutUint32(b[:], v)
	return append(dst, b[:]...)
}

// endian is a byte order that the parsers' inner loops call directly: a
// binary.ByteOrder is an interface, and its calls (several length fields
// per entry) are neither inlined nor cheap. endianOf maps the caller's
// order onto it once per call.
type endian struct{ big bool }

func endianOf(order binary.ByteOrder) endian {
	return endian{big: order != nil && order.Uint16(endianProbe[:]) == 1}
}

// endianProbe is read, never written: a literal passed to the interface
// method would escape, one allocation per call.
var endianProbe = [2]byte{0, 1}

func (e endian) Uint32(b []byte) uint32 {
	if e.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}
