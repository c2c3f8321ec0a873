package ima

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// AppendASCII renders entries exactly as the kernel's
// ascii_runtime_measurements does: "%2d " PCR, the SHA-1 template digest in
// hex, the template name, then each field after a space (a zero-length
// field leaves only the space), one line per entry. Strings (the template
// name, event names, digest algorithm names) go through AppendEscaped, so
// the output is the kernel's for every list the kernel writes with
// printable names, and a crafted list cannot add lines or terminal
// controls. order is the list's
// byte order; it decides how iuid/igid/imode integers are read. A field the
// kernel could not render (a d-ng digest without its "algo:" NUL prefix) is
// an error naming the entry.
func AppendASCII(dst []byte, entries []Entry, order binary.ByteOrder) ([]byte, error) {
	off := int64(0)
	for i := range entries {
		var err error
		dst, err = appendASCIIEntry(dst, &entries[i], order)
		if err != nil {
			// The offset is where the entry starts in the binary list.
			return dst, &ParseError{Offset: off, Index: i, Err: err}
		}
		off += int64(entries[i].EncodedSize())
	}
	return dst, nil
}

func appendASCIIEntry(dst []byte, e *Entry, order binary.ByteOrder) ([]byte, error) {
	// seq_printf("%2d ", pcr) prints the u32 as a signed int.
	p := int32(e.PCR)
	if p >= 0 && p < 10 {
		dst = append(dst, ' ')
	}
	dst = strconv.AppendInt(dst, int64(p), 10)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, e.TemplateDigest[:])
	dst = append(dst, ' ')
	dst = AppendEscaped(dst, []byte(e.TemplateName))
	t, err := e.Template()
	if err != nil {
		return dst, err
	}
	var fields [maxTemplateFields]Field
	fs, err := splitFields(e, t, order, fields[:0])
	if err != nil {
		return dst, err
	}
	for _, f := range fs {
		dst = append(dst, ' ')
		if len(f.Data) == 0 {
			continue
		}
		dst, err = appendFieldASCII(dst, f, order)
		if err != nil {
			return dst, fmt.Errorf("field %s: %w", f.ID, err)
		}
	}
	return append(dst, '\n'), nil
}

// splitFields is Fields without allocation.
func splitFields(e *Entry, t *Template, order binary.ByteOrder, out []Field) ([]Field, error) {
	d := e.TemplateData
	if t.Legacy() {
		if len(d) < 24 || uint64(order.Uint32(d[20:24])) != uint64(len(d)-24) {
			return nil, fmt.Errorf("%w: legacy ima data", ErrMalformed)
		}
		return append(out, Field{FieldD, d[:20]}, Field{FieldN, d[24:]}), nil
	}
	if _, err := checkFields(d, endianOf(order), len(t.Fields)); err != nil {
		return nil, err
	}
	off := 0
	for _, id := range t.Fields {
		l := int(order.Uint32(d[off:]))
		out = append(out, Field{ID: id, Data: d[off+4 : off+4+l]})
		off += 4 + l
	}
	return out, nil
}

// cString is b up to its first NUL, as %s prints it.
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

func appendFieldASCII(dst []byte, f Field, order binary.ByteOrder) ([]byte, error) {
	switch fieldShow[f.ID] {
	case showDigest, showHex:
		return hex.AppendEncode(dst, f.Data), nil
	case showString:
		return AppendEscaped(dst, cString(f.Data)), nil
	case showDigestAlgo:
		// The kernel prints the C string when its last ':' is not its first
		// byte, then skips that ':' and the byte after it (the NUL) and
		// prints the rest in hex.
		s := cString(f.Data)
		c := bytes.LastIndexByte(s, ':')
		if c < 0 {
			return dst, fmt.Errorf("%w: digest has no \"algo:\" prefix", ErrMalformed)
		}
		if c+2 > len(f.Data) {
			return dst, fmt.Errorf("%w: digest prefix not followed by NUL", ErrMalformed)
		}
		if c != 0 {
			dst = AppendEscaped(dst, s)
		}
		return hex.AppendEncode(dst, f.Data[c+2:]), nil
	case showUint:
		switch len(f.Data) {
		case 1:
			return strconv.AppendUint(dst, uint64(f.Data[0]), 10), nil
		case 2:
			return strconv.AppendUint(dst, uint64(order.Uint16(f.Data)), 10), nil
		case 4:
			return strconv.AppendUint(dst, uint64(order.Uint32(f.Data)), 10), nil
		case 8:
			return strconv.AppendUint(dst, order.Uint64(f.Data), 10), nil
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: unknown field %q", ErrUnknownTemplate, f.ID)
}

// AppendEscaped appends s as imalog prints every string taken from a list.
// The kernel protects its ASCII list two ways: binary fields (digests,
// signatures, ima-buf payloads) are printed in hex, and when it records an
// event name it replaces spaces with '_' (ima_write_template_field_data),
// so a name is one space-free field; the string itself is printed with
// "%s", up to its first NUL, as it is. AppendEscaped keeps names the
// kernel writes unchanged where they are printable, and writes as \xNN
// every byte the kernel would never put there or a terminal would
// interpret: control bytes (below 0x20 and 0x7f), the space, bytes that
// are not valid UTF-8, and the C1 controls U+0080-U+009F.
func AppendEscaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c > ' ' && c < 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		if c >= 0x80 {
			r, size := utf8.DecodeRune(s[i:])
			if r != utf8.RuneError && (r < 0x80 || r > 0x9f) {
				dst = append(dst, s[i:i+size]...)
				i += size
				continue
			}
			if r != utf8.RuneError {
				for _, b := range s[i : i+size] {
					dst = appendHexEscape(dst, b)
				}
				i += size
				continue
			}
		}
		dst = appendHexEscape(dst, c)
		i++
	}
	return dst
}

// Escape is AppendEscaped for a string.
func Escape(s string) string { return string(AppendEscaped(nil, []byte(s))) }

func appendHexEscape(dst []byte, c byte) []byte {
	const digits = "0123456789abcdef"
	return append(dst, '\\', 'x', digits[c>>4], digits[c&15])
}
