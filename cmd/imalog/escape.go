package main

import (
	"unicode"
	"unicode/utf8"
)

// escapeText makes a message safe for a terminal and a log: printable
// characters and spaces stay, everything else — control characters (CR,
// LF, ESC), DEL, C1 controls such as U+0085 (NEL), line and paragraph
// separators, bidirectional controls, and bytes that are not UTF-8 — is
// written as \xNN per byte, so a string from an input (a bank name, a
// file name, a list's payload) can neither start a line of its own nor
// rewrite one. A backslash is doubled so that an escape cannot be forged.
func escapeText(s string) string {
	clean := true
	for _, r := range s {
		if !plainRune(r) {
			clean = false
			break
		}
	}
	if clean && utf8.ValidString(s) {
		return s
	}
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r != utf8.RuneError || n > 1) && plainRune(r) {
			out = append(out, s[i:i+n]...)
			i += n
			continue
		}
		if r == '\\' {
			out = append(out, '\\', '\\')
			i++
			continue
		}
		for _, c := range []byte(s[i : i+n]) {
			out = append(out, '\\', 'x', digits[c>>4], digits[c&15])
		}
		i += n
	}
	return string(out)
}

func plainRune(r rune) bool {
	switch {
	case r == '\\':
		return false
	case r == ' ':
		return true
	case r < 0x80:
		return r > ' ' && r < 0x7f
	case r == utf8.RuneError:
		return false
	case unicode.Is(unicode.Bidi_Control, r), r == 0x2028, r == 0x2029:
		return false
	}
	return unicode.IsPrint(r)
}
