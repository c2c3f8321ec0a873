package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// KexecHeaderSize is sizeof(struct ima_kexec_hdr): u16 version, u16 and
// u32 reserved, u64 buffer_size (header included), u64 count.
const KexecHeaderSize = 24

// KexecHeader is struct ima_kexec_hdr.
type KexecHeader struct {
	Version    uint16
	BufferSize uint64
	Count      uint64
}

// RestoreProblem is one entry the restoring kernel would reject, drop or
// alter.
type RestoreProblem struct {
	Index  int    `json:"index"`  // entry index; -1 for the header
	Offset int64  `json:"offset"` // byte offset in the buffer (0 when unknown)
	Kind   string `json:"kind"`   // "rejected", "dropped" or "altered"
	Reason string `json:"reason"`
}

// Problem kinds.
const (
	KindRejected = "rejected" // restore fails with an error here; later entries are lost
	KindDropped  = "dropped"  // restore stops silently here; later entries are lost
	KindAltered  = "altered"  // the entry is restored but differs from the list
)

// RestoreError lists what the restoring kernel would do to a list.
type RestoreError struct {
	Problems []RestoreProblem
	Restored int // entries the kernel would restore unchanged before stopping
	Total    int
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d of %d entries would be restored", ErrNotRestorable, e.Restored, e.Total)
	for _, p := range e.Problems {
		if p.Index >= 0 {
			fmt.Fprintf(&b, "; entry %d: %s: %s", p.Index, p.Kind, p.Reason)
		} else {
			fmt.Fprintf(&b, "; header: %s: %s", p.Kind, p.Reason)
		}
	}
	return b.String()
}

func (e *RestoreError) Unwrap() error { return ErrNotRestorable }

// restoreCheck applies ima_restore_measurement_list's per-entry rules to a
// parsed entry, with s1 the SHA-1 of its template input (computed once, by
// the pass that checks). stop reports that the kernel stops restoring here.
func restoreCheck(e *Entry, order endian, s1 *[20]byte) (p RestoreProblem, bad, stop bool) {
	name := e.TemplateName
	switch {
	case len(name) >= maxRestoreNameLen:
		return RestoreProblem{Kind: KindRejected, Reason: fmt.Sprintf("template name is %d bytes, the kernel accepts at most %d", len(name), maxRestoreNameLen-1)}, true, true
	case strings.IndexByte(name, 0) >= 0:
		return RestoreProblem{Kind: KindAltered, Reason: "template name contains NUL; the kernel reads it up to the NUL"}, true, true
	case name == legacyTemplateName:
		return RestoreProblem{Kind: KindRejected, Reason: "legacy \"ima\" template cannot be restored"}, true, true
	}
	t, err := LookupTemplate(name)
	if err != nil {
		return RestoreProblem{Kind: KindDropped, Reason: fmt.Sprintf("template %q is neither built in nor a valid format: %v", clip([]byte(name)), err)}, true, true
	}
	if _, err := checkFields(e.TemplateData, order, len(t.Fields)); err != nil {
		return RestoreProblem{Kind: KindRejected, Reason: err.Error()}, true, true
	}
	if t.Name != "" && t.Name != name {
		// lookup_template_desc matches built-in formats too; the restored
		// entry carries the built-in name.
		return RestoreProblem{Kind: KindAltered, Reason: fmt.Sprintf("format %q is restored under the built-in name %q", name, t.Name)}, true, false
	}
	if !e.Violation() && *s1 != e.TemplateDigest {
		return RestoreProblem{Kind: KindAltered, Reason: "stored template digest is not the SHA-1 of the template data; the kernel recomputes it"}, true, false
	}
	return RestoreProblem{}, false, false
}

// restoreFinding is restoreCheck's verdict on one entry of a chunk.
type restoreFinding struct {
	p    RestoreProblem // Index: within the chunk
	stop bool
}

// restoreCollector gathers a pass's findings into a RestoreError.
type restoreCollector struct {
	re      RestoreError
	stopped bool
}

// add takes a chunk's findings; base is the index of the chunk's first
// entry in the whole list.
func (r *restoreCollector) add(fs []restoreFinding, base int) {
	for _, f := range fs {
		p := f.p
		p.Index += base
		r.re.Problems = append(r.re.Problems, p)
		if f.stop && !r.stopped {
			r.stopped = true
			r.re.Restored = p.Index
		}
	}
}

// err is nil or the *RestoreError of n entries.
func (r *restoreCollector) err(n int) error {
	if len(r.re.Problems) == 0 {
		return nil
	}
	r.re.Total = n
	if !r.stopped {
		r.re.Restored = n
	}
	re := r.re
	return &re
}

// checkJob is the pass that checks restorability: the SHA-1 of every
// entry's template input, compared with its stored digest.
var checkJob = job{sha1: true, restore: true, noCand: true}

// CheckRestorable reports every entry that a restoring kernel
// (ima_restore_measurement_list) would reject, silently drop or restore
// differently: legacy "ima" entries, template names of the kernel's maximum
// length or longer, names that resolve to no template, template data that
// does not split into exactly the template's fields, and stored digests that
// the kernel would replace. It returns nil or a *RestoreError (wrapping
// ErrNotRestorable). order is the list's byte order.
func CheckRestorable(entries []Entry, order binary.ByteOrder) error {
	var rc restoreCollector
	if _, err := runPass(source{entries: entries, order: endianOf(order)}, checkJob, func(c *chunk) error {
		rc.add(c.restore, c.base)
		return nil
	}); err != nil {
		return err
	}
	return rc.err(len(entries))
}

// KexecList is a measurement list that a restoring kernel restores in
// full and unchanged (CheckRestorable's rules), encoded behind room for
// the hand-over header. NewKexecList and ReplayKexec, which check, are the
// only ways to make one, and Append checks what it adds: holding a
// KexecList is holding a checked list, so whoever hands it over need not
// check it again.
type KexecList struct {
	order binary.ByteOrder
	b     []byte // KexecHeaderSize bytes of room, then the list
	n     int
}

// NewKexecList checks entries and encodes them (order is the list's byte
// order). A list the restoring kernel would not restore in full and
// unchanged is refused with a *RestoreError.
func NewKexecList(entries []Entry, order binary.ByteOrder) (*KexecList, error) {
	k := newKexecList(order, encodedSize(entries))
	if err := k.Append(entries...); err != nil {
		return nil, err
	}
	return k, nil
}

func newKexecList(order binary.ByteOrder, size int) *KexecList {
	return &KexecList{order: order, b: make([]byte, KexecHeaderSize, KexecHeaderSize+size)}
}

func encodedSize(entries []Entry) int {
	n := 0
	for i := range entries {
		n += entries[i].EncodedSize()
	}
	return n
}

// Append checks entries and adds them at the end of the list. On a
// *RestoreError (indices counted from the start of the list) nothing is
// added.
func (k *KexecList) Append(entries ...Entry) error {
	if err := CheckRestorable(entries, k.order); err != nil {
		var re *RestoreError
		if errors.As(err, &re) {
			for i := range re.Problems {
				re.Problems[i].Index += k.n
			}
			re.Restored += k.n
			re.Total += k.n
		}
		return err
	}
	k.b = AppendList(k.b, entries, k.order)
	k.n += len(entries)
	return nil
}

// Buffer is the hand-over buffer: ima_kexec_hdr followed by the list. It
// shares the KexecList's memory; a later Append may reallocate it.
func (k *KexecList) Buffer() []byte {
	k.order.PutUint16(k.b[0:], 1)
	k.order.PutUint16(k.b[2:], 0)
	k.order.PutUint32(k.b[4:], 0)
	k.order.PutUint64(k.b[8:], uint64(len(k.b)))
	k.order.PutUint64(k.b[16:], uint64(k.n))
	return k.b
}

// Count is the number of entries.
func (k *KexecList) Count() int { return k.n }

// ListBytes is the size of the list without the header.
func (k *KexecList) ListBytes() int { return len(k.b) - KexecHeaderSize }

// MarshalKexecBuffer builds the hand-over buffer: ima_kexec_hdr followed by
// the entries. It refuses (with a *RestoreError) a list that the restoring
// kernel would not restore in full and unchanged.
func MarshalKexecBuffer(entries []Entry, order binary.ByteOrder) ([]byte, error) {
	k, err := NewKexecList(entries, order)
	if err != nil {
		return nil, err
	}
	return k.Buffer(), nil
}

// ParseKexecHeader decodes struct ima_kexec_hdr.
func ParseKexecHeader(b []byte, order binary.ByteOrder) (KexecHeader, error) {
	if len(b) < KexecHeaderSize {
		return KexecHeader{}, fmt.Errorf("%w: %w: %d bytes, header needs %d", ErrKexecHeader, ErrTruncated, len(b), KexecHeaderSize)
	}
	return KexecHeader{
		Version:    order.Uint16(b[0:]),
		BufferSize: order.Uint64(b[8:]),
		Count:      order.Uint64(b[16:]),
	}, nil
}

// ParseKexecBuffer parses a hand-over buffer strictly: version 1,
// buffer_size between the header size and len(b) (bytes after buffer_size,
// such as page padding, are ignored), and exactly count well-formed entries
// filling the buffer.
func ParseKexecBuffer(b []byte, order binary.ByteOrder) ([]Entry, error) {
	h, err := ParseKexecHeader(b, order)
	if err != nil {
		return nil, err
	}
	if h.Version != 1 {
		return nil, fmt.Errorf("%w: version %d, want 1", ErrKexecHeader, h.Version)
	}
	if h.BufferSize < KexecHeaderSize || h.BufferSize > uint64(len(b)) {
		return nil, fmt.Errorf("%w: buffer_size %d outside [%d, %d]", ErrKexecHeader, h.BufferSize, KexecHeaderSize, len(b))
	}
	entries, err := ParseList(b[KexecHeaderSize:h.BufferSize], order)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Offset += KexecHeaderSize
		}
		return entries, err
	}
	if uint64(len(entries)) != h.Count {
		return entries, fmt.Errorf("%w: count %d, buffer holds %d entries", ErrKexecHeader, h.Count, len(entries))
	}
	return entries, nil
}

// KexecListReader reads the ima_kexec_hdr at the start of r (a buffer of
// size bytes, or -1 if unknown), checks it as ParseKexecBuffer does, and
// returns the header and a reader of the entries that follow it, up to
// buffer_size. The caller compares the number of entries with
// Header.Count (CheckKexecCount).
func KexecListReader(r io.Reader, size int64, order binary.ByteOrder) (KexecHeader, io.Reader, error) {
	var hb [KexecHeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		return KexecHeader{}, nil, fmt.Errorf("%w: %w: %d bytes, header needs %d", ErrKexecHeader, ErrTruncated, n, KexecHeaderSize)
	}
	h, _ := ParseKexecHeader(hb[:], order)
	if h.Version != 1 {
		return h, nil, fmt.Errorf("%w: version %d, want 1", ErrKexecHeader, h.Version)
	}
	if h.BufferSize < KexecHeaderSize || h.BufferSize > 1<<62 || (size >= 0 && h.BufferSize > uint64(size)) {
		return h, nil, fmt.Errorf("%w: buffer_size %d outside [%d, %d]", ErrKexecHeader, h.BufferSize, KexecHeaderSize, size)
	}
	return h, io.LimitReader(r, int64(h.BufferSize-KexecHeaderSize)), nil
}

// CheckKexecCount reports a header whose count differs from the n entries
// its buffer holds.
func CheckKexecCount(h KexecHeader, n int) error {
	if uint64(n) != h.Count {
		return fmt.Errorf("%w: count %d, buffer holds %d entries", ErrKexecHeader, h.Count, n)
	}
	return nil
}

// KexecReport is what a restoring kernel would make of a hand-over buffer.
type KexecReport struct {
	Header   KexecHeader      `json:"header"`
	Restored int              `json:"restored"` // entries restored before the kernel stops
	Problems []RestoreProblem `json:"problems,omitempty"`
}

// OK reports whether the kernel would restore every entry unchanged.
func (r *KexecReport) OK() bool { return len(r.Problems) == 0 }

// SimulateRestore walks a hand-over buffer the way ima_restore_measurement_list
// does and reports, per entry, what the next kernel would reject, drop or
// alter: a bad version, a count that does not match the entries (extra
// entries are ignored, missing ones end the restore silently), truncated
// headers or data, over-long or unknown template names, the legacy "ima"
// template, malformed fields and recomputed digests. It never panics and
// never reads beyond b, even where the kernel would trust buffer_size.
func SimulateRestore(b []byte, bo binary.ByteOrder) KexecReport {
	var r KexecReport
	if bo == nil {
		bo = binary.LittleEndian
	}
	order := endianOf(bo)
	h, err := ParseKexecHeader(b, bo)
	if err != nil {
		// The kernel ignores a buffer shorter than its header.
		r.Problems = append(r.Problems, RestoreProblem{Index: -1, Kind: KindDropped, Reason: err.Error()})
		return r
	}
	r.Header = h
	if h.Version != 1 {
		r.Problems = append(r.Problems, RestoreProblem{Index: -1, Kind: KindRejected, Reason: fmt.Sprintf("version %d, the kernel accepts 1", h.Version)})
		return r
	}
	end := uint64(len(b))
	if h.BufferSize > end {
		r.Problems = append(r.Problems, RestoreProblem{Index: -1, Kind: KindRejected, Reason: fmt.Sprintf("buffer_size %d exceeds the %d bytes present; the kernel would read past the buffer", h.BufferSize, len(b))})
		return r
	}
	end = h.BufferSize
	off := uint64(KexecHeaderSize)
	var tc templateCache
	var count uint64
	for off < end && count < h.Count {
		count++
		last := count == h.Count
		idx := int(count - 1)
		at := int64(off)
		rest := b[off:end]
		fail := func(kind, format string, a ...any) KexecReport {
			r.Problems = append(r.Problems, RestoreProblem{Index: idx, Offset: at, Kind: kind, Reason: fmt.Sprintf(format, a...)})
			return r
		}
		// The kernel frames every entry by its length fields, the legacy
		// template included (which it then rejects).
		var e Entry
		fname, p, _, err := splitFrame(rest, order, false, &e)
		if err != nil {
			return fail(KindRejected, "entry header: %v", err)
		}
		parts := [2][]byte{fname, e.TemplateData}
		if last && uint64(p) != uint64(len(rest)) {
			return fail(KindRejected, "%d bytes follow the last counted entry", len(rest)-p)
		}
		name := parts[0]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i] // the kernel copies it into a C string
		}
		if len(parts[0]) >= maxRestoreNameLen {
			return fail(KindRejected, "template name is %d bytes, the kernel accepts at most %d", len(parts[0]), maxRestoreNameLen-1)
		}
		if string(name) == legacyTemplateName {
			return fail(KindRejected, "legacy \"ima\" template cannot be restored")
		}
		t, err := tc.lookup(name)
		if err != nil {
			return fail(KindDropped, "template %q resolves to no template (%v); the kernel stops without an error", clip(name), err)
		}
		e.TemplateName = string(name)
		e.TemplateData = parts[1]
		if _, err := checkFields(parts[1], order, len(t.Fields)); err != nil {
			return fail(KindRejected, "template %s: %v", e.TemplateName, err)
		}
		if len(name) != len(parts[0]) {
			r.Problems = append(r.Problems, RestoreProblem{Index: idx, Offset: at, Kind: KindAltered, Reason: "template name contains NUL; the kernel reads it up to the NUL"})
		}
		s1 := sha1.Sum(e.TemplateData) // legacy "ima" was refused above
		if pr, bad, _ := restoreCheck(&e, order, &s1); bad && pr.Kind == KindAltered {
			pr.Index, pr.Offset = idx, at
			r.Problems = append(r.Problems, pr)
		}
		off += uint64(p)
		r.Restored++
	}
	switch {
	case count < h.Count:
		r.Problems = append(r.Problems, RestoreProblem{Index: int(count), Offset: int64(off), Kind: KindDropped,
			Reason: fmt.Sprintf("header counts %d entries, the buffer ends after %d; the kernel stops silently", h.Count, count)})
	case off < end:
		// Unreachable: the last counted entry must end at buffer_size.
		r.Problems = append(r.Problems, RestoreProblem{Index: int(count), Offset: int64(off), Kind: KindDropped,
			Reason: fmt.Sprintf("%d bytes after the %d counted entries are ignored", end-off, h.Count)})
	}
	return r
}

// KexecMarkerPayload is the ASCII payload of the kexec_load and
// kexec_execute critical-data events.
func KexecMarkerPayload(segmentSize, listSize, count uint64) string {
	return "kexec_segment_size=" + strconv.FormatUint(segmentSize, 10) +
		";ima_binary_runtime_size=" + strconv.FormatUint(listSize, 10) +
		";ima_runtime_measurements_count=" + strconv.FormatUint(count, 10) + ";"
}

// appendField appends one length-prefixed field.
func appendField(dst []byte, order binary.ByteOrder, data ...[]byte) []byte {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	dst = appendU32(dst, order, uint32(n))
	for _, d := range data {
		dst = append(dst, d...)
	}
	return dst
}

// digestNG builds a d-ng (kind "") or d-ngv2 (kind "ima"/"verity") field.
func digestNG(kind string, h crypto.Hash, digest []byte) []byte {
	var b []byte
	if kind != "" {
		b = append(b, kind...)
		b = append(b, ':')
	}
	b = append(b, HashName(h)...)
	b = append(b, ':', 0)
	return append(b, digest...)
}

func finishEntry(pcr uint32, name string, data []byte) Entry {
	e := Entry{PCR: pcr, TemplateName: name, TemplateData: data}
	e.TemplateDigest = sha1.Sum(data)
	return e
}

// NewBufEntry builds an ima-buf entry as ima_measure_critical_data does:
// d-ng of H(buf), the event name with its NUL, and buf, with field lengths
// little-endian (native on amd64 and arm64, and the canonical format; like
// NewFileEntry and NewViolation, it builds the entries of the machines
// gokexec runs on). An unsupported hash falls back to SHA-256.
func NewBufEntry(pcr uint32, name string, buf []byte, h crypto.Hash) Entry {
	if checkBank(h) != nil {
		h = crypto.SHA256
	}
	order := binary.LittleEndian
	hh := h.New()
	hh.Write(buf)
	var data []byte
	data = appendField(data, order, digestNG("", h, hh.Sum(nil)))
	data = appendField(data, order, []byte(name), []byte{0})
	data = appendField(data, order, buf)
	return finishEntry(pcr, "ima-buf", data)
}

// NewFileEntry builds a file measurement in little-endian order: template
// "ima-ng" or "ima-ngv2" (sig must be nil) or "ima-sig"/"ima-sigv2" (sig may
// be empty). Spaces in path become '_' as the kernel does.
func NewFileEntry(pcr uint32, template, path string, digest []byte, hash crypto.Hash, sig []byte) (Entry, error) {
	if err := checkBank(hash); err != nil {
		return Entry{}, err
	}
	if len(digest) != hash.Size() {
		return Entry{}, fmt.Errorf("%w: %s digest is %d bytes, want %d", ErrMalformed, HashName(hash), len(digest), hash.Size())
	}
	kind := ""
	withSig := false
	switch template {
	case "ima-ng":
	case "ima-sig":
		withSig = true
	case "ima-ngv2":
		kind = "ima"
	case "ima-sigv2":
		kind, withSig = "ima", true
	default:
		return Entry{}, fmt.Errorf("%w: NewFileEntry supports ima-ng, ima-sig, ima-ngv2, ima-sigv2, not %q", ErrUnknownTemplate, template)
	}
	if !withSig && sig != nil {
		return Entry{}, fmt.Errorf("%w: template %s has no signature field", ErrMalformed, template)
	}
	order := binary.LittleEndian
	var data []byte
	data = appendField(data, order, digestNG(kind, hash, digest))
	data = appendField(data, order, []byte(strings.ReplaceAll(path, " ", "_")), []byte{0})
	if withSig {
		data = appendField(data, order, sig)
	}
	return finishEntry(pcr, template, data), nil
}

// NewViolation builds the entry the kernel records for a violation in the
// given template: all-zero template digest, d-ng of the hash algorithm with an
// all-zero digest of that algorithm's size (as Debian's 6.1 and 6.12 kernels
// write it), the file name and, for ima-sig, an empty signature.
func NewViolation(pcr uint32, template, path string, hash crypto.Hash) (Entry, error) {
	if err := checkBank(hash); err != nil {
		return Entry{}, err
	}
	order := binary.LittleEndian
	var data []byte
	data = appendField(data, order, digestNG("", hash, make([]byte, hash.Size())))
	data = appendField(data, order, []byte(strings.ReplaceAll(path, " ", "_")), []byte{0})
	switch template {
	case "ima-ng":
	case "ima-sig":
		data = appendField(data, order)
	default:
		return Entry{}, fmt.Errorf("%w: NewViolation supports ima-ng and ima-sig", ErrUnknownTemplate)
	}
	return Entry{PCR: pcr, TemplateName: template, TemplateData: data}, nil
}
