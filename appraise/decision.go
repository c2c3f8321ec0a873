package appraise

import (
	"crypto"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrNoPolicy: appraisal is on but neither a keyring nor an allowlist could
// vouch for the file (no signature and no allowlist, or no keyring for a
// signature and no allowlist).
var ErrNoPolicy = errors.New("appraise: nothing to appraise against")

// Mode says what the loader does with an appraisal result.
type Mode int

const (
	// ModeOff: do not appraise; every file passes.
	ModeOff Mode = iota
	// ModeLog: appraise and report, but load even when appraisal fails.
	ModeLog
	// ModeEnforce: refuse to load a file whose appraisal fails.
	ModeEnforce
)

var modeNames = [...]string{"off", "log", "enforce"}

// String returns "off", "log" or "enforce".
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "off", "log" or "enforce" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("%w: appraisal mode %q (want off, log or enforce)", ErrMalformed, s)
}

// Set implements flag.Value (and pflag.Value).
func (m *Mode) Set(s string) error {
	v, err := ParseMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Type implements pflag.Value.
func (m *Mode) Type() string { return "off|log|enforce" }

// MarshalText implements encoding.TextMarshaler (for the plan JSON).
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error { return m.Set(string(b)) }

// Policy is what files are appraised against.
type Policy struct {
	Mode      Mode
	Keyring   *Keyring   // nil: signatures cannot be verified
	Allowlist *Allowlist // nil: no allowlist
}

// File is one file to appraise: its path as the allowlist names it, the
// digests the caller computed (one per hash it chose; see Policy.Hashes),
// and its IMA signature bytes if it has one (security.ima or FILE.sig).
type File struct {
	Path      string
	Digests   map[crypto.Hash][]byte
	Signature []byte
}

// Decision is the appraisal result for one file.
type Decision struct {
	Path string
	Mode Mode
	// Pass is the appraisal verdict itself (true in ModeOff).
	Pass bool
	// Method says what vouched for the file: "signature", "allowlist" or
	// "off"; empty when nothing did.
	Method string
	// Reason is one line for the user, naming the file.
	Reason string
	// Err is the cause when Pass is false.
	Err error
}

// Allowed reports whether the loader may use the file: it passed, or the
// mode does not enforce.
func (d Decision) Allowed() bool { return d.Pass || d.Mode != ModeEnforce }

// Error returns nil when the file may be used, otherwise an error whose
// text is Reason and which wraps Err (so errors.Is matches the sentinels).
func (d Decision) Error() error {
	if d.Allowed() {
		return nil
	}
	return &DecisionError{d}
}

// DecisionError is a refused Decision as an error.
type DecisionError struct{ D Decision }

func (e *DecisionError) Error() string { return e.D.Reason }
func (e *DecisionError) Unwrap() error { return e.D.Err }

// Hashes returns the hash algorithms a caller should compute digests with
// for a file carrying sig (may be nil): the signature's own hash and every
// hash the allowlist has digests for. Unparseable signatures add nothing
// (Decide reports them).
func (p Policy) Hashes(sig []byte) []crypto.Hash {
	seen := map[crypto.Hash]bool{}
	if len(sig) > 0 {
		if s, err := ParseSignature(sig); err == nil {
			if h, err := s.Hash(); err == nil {
				seen[h] = true
			}
		}
	}
	if p.Allowlist != nil {
		for _, h := range p.Allowlist.Hashes() {
			seen[h] = true
		}
	}
	out := make([]crypto.Hash, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Decide appraises f. Rules, in order:
//  1. ModeOff: pass without looking.
//  2. A signature is present: it must parse, the keyring must verify it
//     with the digest of the signature's hash, and then the file passes
//     ("signature"). A present but invalid signature fails even if an
//     allowlist would list the file: a forged or stale signature is itself
//     a finding. A signature over SHA-1, or one verified by an RSA key
//     under MinRSABits, fails with ErrWeak. Without a keyring the
//     signature is not usable and the allowlist decides.
//  3. Otherwise the allowlist decides: the file passes if its path is
//     listed with one of the given digests; SHA-1 digests do not count
//     (ErrWeak). Excludes never admit a file.
//  4. With neither, the file fails with ErrNoPolicy.
func (p Policy) Decide(f File) Decision {
	d := Decision{Path: f.Path, Mode: p.Mode}
	if p.Mode == ModeOff {
		d.Pass, d.Method, d.Reason = true, "off", fmt.Sprintf("%s: appraisal off", f.Path)
		return d
	}
	fail := func(err error) Decision {
		d.Err = err
		verdict := "refused"
		if p.Mode != ModeEnforce {
			verdict = "appraisal failed (mode " + p.Mode.String() + ", loading anyway)"
		}
		d.Reason = fmt.Sprintf("%s: %s: %v", f.Path, verdict, err)
		return d
	}
	if len(f.Signature) > 0 && p.Keyring != nil {
		s, err := ParseSignature(f.Signature)
		if err != nil {
			return fail(err)
		}
		h, err := s.Hash()
		if err != nil {
			return fail(err)
		}
		dg, ok := f.Digests[h]
		if !ok {
			return fail(fmt.Errorf("%w: signature uses %s but no %v digest was computed", ErrHashMismatch, s.HashAlgo, h))
		}
		if h == crypto.SHA1 {
			return fail(fmt.Errorf("%w: signature over a SHA-1 digest", ErrWeak))
		}
		cert, err := p.Keyring.verify(dg, h, s)
		if err != nil {
			return fail(err)
		}
		if why := keyStrength(cert); why != "" {
			return fail(fmt.Errorf("%w: signature verified by %s (%s)", ErrWeak, cert.Subject.String(), why))
		}
		d.Pass, d.Method = true, "signature"
		d.Reason = fmt.Sprintf("%s: signature v%d (%s) verified with key %08x", f.Path, s.Version, s.HashAlgo, s.KeyID)
		return d
	}
	if p.Allowlist == nil {
		if len(f.Signature) > 0 {
			return fail(fmt.Errorf("%w: file is signed but no keyring was given, and there is no allowlist", ErrNoPolicy))
		}
		return fail(fmt.Errorf("%w: no signature and no allowlist", ErrNoPolicy))
	}
	if len(f.Digests) == 0 {
		return fail(fmt.Errorf("%w: no digest computed", ErrMalformed))
	}
	hs := make([]crypto.Hash, 0, len(f.Digests))
	for h := range f.Digests {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	var first error
	for _, h := range hs {
		if h == crypto.SHA1 {
			if first == nil && p.Allowlist.hasHash(f.Path, h) {
				first = fmt.Errorf("%w: %s is listed with SHA-1 digests only", ErrWeak, f.Path)
			}
			continue
		}
		err := p.Allowlist.Check(f.Path, h, f.Digests[h])
		if err == nil {
			d.Pass, d.Method = true, "allowlist"
			d.Reason = fmt.Sprintf("%s: %v digest in the allowlist", f.Path, h)
			return d
		}
		// Prefer, as the reason, a mismatch against digests of the same
		// hash over "no digest of this hash".
		if first == nil || p.Allowlist.hasHash(f.Path, h) {
			first = err
		}
	}
	return fail(first)
}
