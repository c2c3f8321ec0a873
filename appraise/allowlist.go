package appraise

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Allowlist errors; match with errors.Is.
var (
	// ErrNotListed: the path has no entry in the allowlist.
	ErrNotListed = errors.New("appraise: path not in allowlist")
	// ErrDigestMismatch: the path is listed but none of its digests of the
	// given hash algorithm equals the file's.
	ErrDigestMismatch = errors.New("appraise: digest not allowed for path")
)

// Allowlist maps paths to the digests they may have. The zero value is an
// empty list that allows nothing.
type Allowlist struct {
	// digests[path] holds allowed digests, raw bytes; the hash algorithm is
	// implied by the length (20 sha1, 28 sha224, 32 sha256, 48 sha384,
	// 64 sha512), as in keylime's policies and sha*sum files.
	digests map[string][][]byte
	// excludes are a keylime policy's exclude expressions, kept only to
	// be reported: they never admit a file (see Excludes).
	excludes []string
}

// maxAllowlistBytes bounds the input size the parsers accept.
const maxAllowlistBytes = 256 << 20

// hashBySize maps a digest length to the hash it denotes in allowlists.
// sha512 and sha3-512 collide at 64 bytes; sha*sum/keylime mean sha512.
var hashBySize = map[int]crypto.Hash{
	20: crypto.SHA1, 28: crypto.SHA224, 32: crypto.SHA256, 48: crypto.SHA384, 64: crypto.SHA512,
}

func (a *Allowlist) add(path string, d []byte) {
	if a.digests == nil {
		a.digests = map[string][][]byte{}
	}
	for _, x := range a.digests[path] {
		if bytes.Equal(x, d) {
			return
		}
	}
	a.digests[path] = append(a.digests[path], d)
}

// Len returns the number of listed paths.
func (a *Allowlist) Len() int { return len(a.digests) }

// Paths returns the listed paths, sorted.
func (a *Allowlist) Paths() []string {
	out := make([]string, 0, len(a.digests))
	for p := range a.digests {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Merge adds every entry and exclude of b to a.
func (a *Allowlist) Merge(b *Allowlist) {
	for p, ds := range b.digests {
		for _, d := range ds {
			a.add(p, d)
		}
	}
	a.excludes = append(a.excludes, b.excludes...)
}

// Excludes returns the exclude expressions of the policies read, as
// written. They are not applied: keylime excludes say which runtime
// measurements a verifier may ignore, and the files a loader boots (kernel,
// initramfs, device tree) must never be among them. A loader input passes
// only by a listed digest or a valid signature.
func (a *Allowlist) Excludes() []string { return append([]string(nil), a.excludes...) }

// Check reports whether a file at path with the given digest (computed with
// hash) is allowed: nil if path is listed with that digest; ErrNotListed
// or ErrDigestMismatch (wrapped, naming the path) otherwise. Excludes play
// no part.
func (a *Allowlist) Check(path string, hash crypto.Hash, digest []byte) error {
	if !hash.Available() || len(digest) != hash.Size() {
		return fmt.Errorf("%w: %v digest of %d bytes for %s", ErrMalformed, hash, len(digest), path)
	}
	var ds [][]byte
	if a != nil {
		ds = a.digests[path]
	}
	if len(ds) == 0 {
		return fmt.Errorf("%w: %s", ErrNotListed, path)
	}
	same := 0
	for _, d := range ds {
		if hashBySize[len(d)] != hash {
			continue
		}
		same++
		if bytes.Equal(d, digest) {
			return nil
		}
	}
	if same == 0 {
		return fmt.Errorf("%w: %s has no %v digest in the allowlist", ErrDigestMismatch, path, hash)
	}
	return fmt.Errorf("%w: %s %v %x is none of its %d allowed digests", ErrDigestMismatch, path, hash, digest, same)
}

// hasHash reports whether path is listed with a digest of hash h.
func (a *Allowlist) hasHash(path string, h crypto.Hash) bool {
	for _, d := range a.digests[path] {
		if hashBySize[len(d)] == h {
			return true
		}
	}
	return false
}

// Hashes returns the hash algorithms the list has digests for, ascending.
func (a *Allowlist) Hashes() []crypto.Hash {
	seen := map[crypto.Hash]bool{}
	for _, ds := range a.digests {
		for _, d := range ds {
			seen[hashBySize[len(d)]] = true
		}
	}
	out := make([]crypto.Hash, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ParseAllowlist accepts either format: JSON (first non-space byte '{') is
// read as a keylime runtime policy, anything else as sha*sum output.
func ParseAllowlist(data []byte) (*Allowlist, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return ParseKeylimePolicy(data)
	}
	return ParseChecksums(data)
}

func decodeDigest(s string) ([]byte, error) {
	d, err := hex.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if _, ok := hashBySize[len(d)]; !ok {
		return nil, fmt.Errorf("digest of %d bytes matches no supported hash", len(d))
	}
	return d, nil
}

// ParseChecksums reads the output of coreutils' sha1sum, sha224sum,
// sha256sum, sha384sum or sha512sum: lines "HEX  PATH" (text mode),
// "HEX *PATH" (binary mode), "ALGO (PATH) = HEX" (--tag), and the escaped
// form GNU uses for names with a newline or backslash (line starts with
// '\'; "\\n" and "\\\\" in the name). The hash of each line follows from the
// digest's length. Empty lines and lines starting with '#' are skipped.
func ParseChecksums(data []byte) (*Allowlist, error) {
	if len(data) > maxAllowlistBytes {
		return nil, fmt.Errorf("%w: allowlist of %d bytes exceeds %d", ErrMalformed, len(data), maxAllowlistBytes)
	}
	a := &Allowlist{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, dig, err := parseChecksumLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: checksum line %d: %w", ErrMalformed, i+1, err)
		}
		a.add(path, dig)
	}
	return a, nil
}

var tagAlgos = map[string]int{"SHA1": 20, "SHA224": 28, "SHA256": 32, "SHA384": 48, "SHA512": 64}

func parseChecksumLine(line string) (string, []byte, error) {
	escaped := strings.HasPrefix(line, "\\")
	if escaped {
		line = line[1:]
	}
	var path, hx string
	if sp := strings.IndexByte(line, ' '); sp > 0 && tagAlgos[line[:sp]] != 0 && strings.HasPrefix(line[sp:], " (") {
		// ALGO (PATH) = HEX
		rest := line[sp+2:]
		end := strings.LastIndex(rest, ") = ")
		if end < 0 {
			return "", nil, errors.New("tag line without \") = \"")
		}
		path, hx = rest[:end], rest[end+4:]
		if len(hx) != 2*tagAlgos[line[:sp]] {
			return "", nil, fmt.Errorf("%s digest has %d hex digits", line[:sp], len(hx))
		}
	} else {
		sp := strings.IndexByte(line, ' ')
		if sp <= 0 || sp+2 > len(line) {
			return "", nil, errors.New("want \"HEX  PATH\" or \"HEX *PATH\"")
		}
		hx = line[:sp]
		switch line[sp+1] {
		case ' ', '*':
		default:
			return "", nil, fmt.Errorf("mode character %q, want ' ' or '*'", line[sp+1])
		}
		path = line[sp+2:]
	}
	if path == "" {
		return "", nil, errors.New("empty path")
	}
	if escaped {
		var err error
		if path, err = unescapeName(path); err != nil {
			return "", nil, err
		}
	}
	d, err := decodeDigest(hx)
	if err != nil {
		return "", nil, err
	}
	return path, d, nil
}

// unescapeName undoes coreutils' name escaping (\\ → \, \n → newline,
// \r → carriage return).
func unescapeName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("trailing backslash in escaped name")
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c in name", s[i])
		}
	}
	return b.String(), nil
}

// keylimePolicy is the part of keylime's runtime policy that appraisal uses
// (keylime/ima/types.py RuntimePolicyType). "hashes" is the key of the older
// allowlist JSON that keylime still converts.
type keylimePolicy struct {
	Meta *struct {
		Version *int `json:"version"`
	} `json:"meta"`
	Digests  map[string][]string `json:"digests"`
	Hashes   map[string][]string `json:"hashes"`
	Excludes []string            `json:"excludes"`
}

// keylimeMaxVersion is the highest meta.version understood (keylime's
// runtime policy format is at version 1).
const keylimeMaxVersion = 1

// ParseKeylimePolicy reads a keylime runtime policy: meta.version (must be
// present and at most 1) and digests (path → hex digests; legacy "hashes"
// is accepted too). Excludes are kept as text (Excludes) and never admit a
// file. Other members (keyrings, ima-buf, ima, verification-keys) are not
// about files and are ignored.
func ParseKeylimePolicy(data []byte) (*Allowlist, error) {
	if len(data) > maxAllowlistBytes {
		return nil, fmt.Errorf("%w: policy of %d bytes exceeds %d", ErrMalformed, len(data), maxAllowlistBytes)
	}
	var p keylimePolicy
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: keylime policy: %w", ErrMalformed, err)
	}
	if p.Meta == nil || p.Meta.Version == nil {
		return nil, fmt.Errorf("%w: keylime policy without meta.version", ErrMalformed)
	}
	if v := *p.Meta.Version; v < 1 || v > keylimeMaxVersion {
		return nil, fmt.Errorf("%w: keylime policy version %d", ErrUnsupported, v)
	}
	a := &Allowlist{}
	for _, m := range []map[string][]string{p.Digests, p.Hashes} {
		for path, list := range m {
			if path == "" {
				return nil, fmt.Errorf("%w: keylime policy has an empty path", ErrMalformed)
			}
			for _, hx := range list {
				d, err := decodeDigest(strings.ToLower(strings.TrimSpace(hx)))
				if err != nil {
					return nil, fmt.Errorf("%w: keylime policy digest for %s: %w", ErrMalformed, path, err)
				}
				a.add(path, d)
			}
		}
	}
	a.excludes = append(a.excludes, p.Excludes...)
	return a, nil
}
