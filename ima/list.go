package ima

import (
	"encoding/binary"
	"errors"
	"fmt"
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

// MaxEntrySize bounds the size of one entry (header, name and template
// data). The kernel itself sets no limit, but no kernel writes entries near
// it: the largest template data in practice are ima-buf payloads and
// appended signatures of a few KiB. A length field beyond it is an error
// before anything is allocated or read.
const MaxEntrySize = 4 << 20

// ErrTooLarge: an entry declares more than MaxEntrySize bytes.
var ErrTooLarge = errors.New("entry larger than MaxEntrySize")

// shortError is a parse error caused by the input ending inside an entry:
// need is how many bytes from the entry's start the parser must see to go
// further. A streaming reader that is not at the end of its input reads
// more; everywhere else it is the error it wraps (ErrTruncated or
// ErrLength).
type shortError struct {
	need int64
	err  error
}

func (e *shortError) Error() string { return e.err.Error() }
func (e *shortError) Unwrap() error { return e.err }

func short(need int64, sentinel error, format string, a ...any) error {
	return &shortError{need: need, err: fmt.Errorf("%w: "+format, append([]any{sentinel}, a...)...)}
}

// ParseList parses binary_runtime_measurements in the given byte order. It
// checks every length against the bytes that remain, resolves every
// template name (built-in or custom format) and checks that the template
// data splits into exactly the template's fields. Errors are *ParseError
// values naming offset, entry index and problem. TemplateData aliases b.
func ParseList(b []byte, order binary.ByteOrder) ([]Entry, error) {
	if order == nil {
		return nil, errNilOrder
	}
	end := endianOf(order)
	var tc templateCache
	// An entry takes more than 32 bytes, so this bound is safe.
	entries := make([]Entry, 0, min(len(b)/96, 1<<20))
	for off, idx := 0, 0; off < len(b); idx++ {
		e, n, errOff, err := parseEntry(b[off:], end, &tc)
		if err != nil {
			return entries, &ParseError{Offset: int64(off + errOff), Index: idx, Err: err}
		}
		entries = append(entries, e)
		off += n
	}
	return entries, nil
}

var errNilOrder = errors.New("ima: nil byte order")

// splitFrame splits the entry at the start of b by its length fields:
// u32 pcr | 20-byte digest | u32 len | name | u32 len | data. It sets e's
// PCR, stored digest and template data (not its template name) and
// returns the name and the entry's size. With legacy set, an entry named
// "ima" is framed as the kernel writes it (digest | u32 len | name, no
// data length, name at most 255 bytes); without, as the restoring kernel
// reads every entry. On error errOff is the offset within b of the
// offending field. It is what both the parser and the restore simulation
// start from.
func splitFrame(b []byte, order endian, legacy bool, e *Entry) (name []byte, size, errOff int, err error) {
	if len(b) < entryHeaderMin {
		return nil, 0, 0, short(entryHeaderMin, ErrTruncated, "entry header needs %d bytes, %d remain", entryHeaderMin, len(b))
	}
	e.PCR = order.Uint32(b[0:4])
	e.TemplateDigest = [20]byte(b[4:24])
	nameLen := order.Uint32(b[24:28])
	off := entryHeaderMin
	if int64(nameLen) > MaxEntrySize {
		return nil, 0, 24, fmt.Errorf("%w: template name length %d", ErrTooLarge, nameLen)
	}
	if uint64(nameLen) > uint64(len(b)-off) {
		return nil, 0, 24, short(int64(off)+int64(nameLen), ErrLength, "template name length %d, %d bytes remain", nameLen, len(b)-off)
	}
	name = b[off : off+int(nameLen)]
	off += int(nameLen)
	if legacy && string(name) == legacyTemplateName {
		// 20-byte digest | u32 len | name (no NUL)
		if len(b)-off < 24 {
			return name, 0, off, short(int64(off)+24, ErrTruncated, "legacy ima template data needs 24 bytes, %d remain", len(b)-off)
		}
		nl := order.Uint32(b[off+20 : off+24])
		if nl > eventNameLenMax {
			return name, 0, off + 20, fmt.Errorf("%w: legacy ima file name length %d exceeds %d", ErrMalformed, nl, eventNameLenMax)
		}
		if uint64(nl) > uint64(len(b)-off-24) {
			return name, 0, off + 20, short(int64(off)+24+int64(nl), ErrLength, "legacy ima file name length %d, %d bytes remain", nl, len(b)-off-24)
		}
		end := off + 24 + int(nl)
		e.TemplateData = b[off:end:end]
		return name, end, 0, nil
	}
	if len(b)-off < 4 {
		return name, 0, off, short(int64(off)+4, ErrTruncated, "template data length needs 4 bytes, %d remain", len(b)-off)
	}
	dl := order.Uint32(b[off : off+4])
	if int64(off)+4+int64(dl) > MaxEntrySize {
		return name, 0, off, fmt.Errorf("%w: template data length %d", ErrTooLarge, dl)
	}
	if uint64(dl) > uint64(len(b)-off-4) {
		return name, 0, off, short(int64(off)+4+int64(dl), ErrLength, "template data length %d, %d bytes remain", dl, len(b)-off-4)
	}
	off += 4
	end := off + int(dl)
	e.TemplateData = b[off:end:end]
	return name, end, 0, nil
}

// parseEntry parses one entry at the start of b and returns it, its size,
// and on error the offset within b where the problem lies. It is the one
// entry parser: splitFrame finds the entry by its length fields, then
// resolveEntry gives it its template and checks its fields. (The streaming
// pass runs the two halves on different goroutines.)
func parseEntry(b []byte, order endian, tc *templateCache) (Entry, int, int, error) {
	var e Entry
	name, size, errOff, err := splitFrame(b, order, true, &e)
	if err != nil {
		return Entry{PCR: e.PCR, TemplateDigest: e.TemplateDigest}, 0, errOff, err
	}
	if errOff, err := resolveEntry(&e, name, order, tc); err != nil {
		return e, 0, errOff, err
	}
	return e, size, 0, nil
}

// resolveEntry sets e's template name from the framed name and checks
// that its template data splits into exactly the template's fields. On
// error it returns the offset from the entry's start.
func resolveEntry(e *Entry, name []byte, order endian, tc *templateCache) (int, error) {
	t, s, err := tc.lookupName(name)
	if err != nil {
		return entryHeaderMin, fmt.Errorf("template name %q: %w", clip(name), err)
	}
	// The name as written: a format string stays a format string even when
	// it equals a built-in template's format.
	e.TemplateName = s
	if t.Legacy() {
		return 0, nil
	}
	if fo, err := checkFields(e.TemplateData, order, len(t.Fields)); err != nil {
		return entryHeaderMin + len(name) + 4 + fo, fmt.Errorf("template %s: %w", e.TemplateName, err)
	}
	return 0, nil
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
	end := endianOf(order)
	for i := range entries {
		dst = appendEntry(dst, &entries[i], end)
	}
	return dst
}

func appendEntry(dst []byte, e *Entry, order endian) []byte {
	dst = order.appendU32(dst, e.PCR)
	dst = append(dst, e.TemplateDigest[:]...)
	dst = order.appendU32(dst, uint32(len(e.TemplateName)))
	dst = append(dst, e.TemplateName...)
	if e.TemplateName != legacyTemplateName {
		dst = order.appendU32(dst, uint32(len(e.TemplateData)))
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
	return endianOf(order).appendU32(dst, v)
}

// appendU32 appends v in e's order without a call through an interface
// (whose argument would escape: one allocation per length field).
func (e endian) appendU32(dst []byte, v uint32) []byte {
	if e.big {
		return binary.BigEndian.AppendUint32(dst, v)
	}
	return binary.LittleEndian.AppendUint32(dst, v)
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

func (e endian) byteOrder() binary.ByteOrder {
	if e.big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}
