package appraise

import (
	"errors"
	"regexp"
	"testing"
)

// goMatch is the reference: Go's regexp anchored at the start, as the
// allowlist used to match excludes.
func goMatch(t testing.TB, pat, s string) bool {
	t.Helper()
	re, err := regexp.Compile(`^(?:` + pat + `)`)
	if err != nil {
		t.Fatalf("regexp rejects %q, which compilePattern accepted: %v", pat, err)
	}
	return re.MatchString(s)
}

// Excludes as keylime's documentation and generated policies write them,
// plus the syntax corners the matcher claims.
var patternCases = []string{
	`boot_aggregate`, `/tmp/.*`, `/var/log/.*`, `/root/.bash_history`, `.*\.pyc`,
	`/usr/lib/python3\.[0-9]+/__pycache__/.*`, `/proc/.*|/sys/.*`, `^/run/`, `/var/(lib|cache)/apt/.*`,
	`/etc/(?:passwd|shadow)-?$`, `/home/[^/]+/\.cache/.*`, `[a-z]{3}`, `x{2,}y`, `x{1,3}?y`, `a{,}`, `a{,x}`, `a{x}`, `{`,
	`\d+\.\d*`, `\w+`, `\W`, `\s`, `\S+`, `[\d_-]+`, `[-a]`, `[a-]`, `[]a]`, `[^]a]`, `\x41\t`, `a$`, `$`, `^`,
	`()`, `(|a)b`, `(a*)*b`, `(^)*a`, `a|`, `|`, `.`, `\.`, `\/usr`, `é+`, `[é-ü]x`, `(a|ab)(c|bcd)(d*)`,
	`((a{0,3}){2}b)+`, `a*?`, `a+?`, `a??`, `[\s\w]`,
}

var patternInputs = []string{
	"", "boot_aggregate", "/tmp/x", "/tmp", "/var/log/syslog", "/usr/lib/python3.11/__pycache__/a.pyc", "a.pyc",
	"/proc/1/maps", "/sys", "/run/x", "/var/lib/apt/lists", "/etc/passwd-", "/etc/passwd", "/etc/passwdx",
	"/home/u/.cache/z", "/home/u/v/.cache/z", "abc", "ab", "xxy", "xy", "xxxxy", "a{x}", "{", "12.5", "x_y",
	" ", "\n", "a", "aa", "b", "ab", "abcd", "abbbcd", "A\t", "é", "éé", "ö", "öx", "\xff", "-", "]", "_-9",
	"aaabaab", "aab",
}

func TestPatternsAgreeWithRegexp(t *testing.T) {
	for _, pat := range patternCases {
		p, err := compilePattern(pat)
		if err != nil {
			t.Errorf("%q: %v", pat, err)
			continue
		}
		for _, in := range patternInputs {
			if got, want := p.matchPrefix(in), goMatch(t, pat, in); got != want {
				t.Errorf("%q on %q: %v, regexp says %v", pat, in, got, want)
			}
		}
	}
}

func TestPatternsRefused(t *testing.T) {
	for _, pat := range []string{
		`(?=perl)`, `(?i)abc`, `(?P<n>a)`, `(a)\1`, `\bword`, `\p{L}`, `[[:alpha:]]`, `a)`, `(a`, `[a`, `*a`,
		`a{2}{3}`, `a**`, `a{,2}`, `{,10}`, `a{1001}`, `[z-a]`, `[a-\d]`, `[\D]`, `\`, `\q`, `\x4`, "\xff", `((((a{100}){100}){100}))`,
	} {
		if _, err := compilePattern(pat); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", pat, err)
		}
	}
}

// FuzzPattern: whatever compilePattern accepts, Go's regexp accepts too and
// matches the same prefixes.
func FuzzPattern(f *testing.F) {
	for i, pat := range patternCases {
		f.Add(pat, patternInputs[i%len(patternInputs)])
	}
	f.Fuzz(func(t *testing.T, pat, in string) {
		if len(pat) > 200 || len(in) > 200 {
			return
		}
		p, err := compilePattern(pat)
		if err != nil {
			return
		}
		if got, want := p.matchPrefix(in), goMatch(t, pat, in); got != want {
			t.Fatalf("%q on %q: %v, regexp says %v", pat, in, got, want)
		}
	})
}
