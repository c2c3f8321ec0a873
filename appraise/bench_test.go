package appraise

import (
	"crypto"
	"regexp"
	"testing"
)

func benchVerify(b *testing.B, sigFile string, h crypto.Hash) {
	kr, err := LoadCerts(readTD(b, "openssl/bundle.pem"))
	if err != nil {
		b.Fatal(err)
	}
	sig := readTD(b, sigFile)
	dg := digestOf(b, h, readTD(b, "data/hello.txt"))
	b.ReportAllocs()
	for b.Loop() {
		if err := kr.Verify(dg, h, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRSA2048(b *testing.B) {
	benchVerify(b, "evmctl/hello.txt.rsa.sha256.sig", crypto.SHA256)
}
func BenchmarkVerifyECDSAP256(b *testing.B) {
	benchVerify(b, "evmctl/hello.txt.ec.sha256.sig", crypto.SHA256)
}

func BenchmarkAllowlistCheck(b *testing.B) {
	a, err := ParseChecksums(readTD(b, "coreutils/sha256sum.txt"))
	if err != nil {
		b.Fatal(err)
	}
	dg := digestOf(b, crypto.SHA256, readTD(b, "data/blob.bin"))
	for b.Loop() {
		if err := a.Check("blob.bin", crypto.SHA256, dg); err != nil {
			b.Fatal(err)
		}
	}
}

// benchExcludes are typical keylime excludes; the path matches none of
// them, so every pattern runs to its end.
var benchExcludes = []string{`boot_aggregate`, `/tmp/.*`, `/var/log/.*`, `/usr/lib/python3\.[0-9]+/__pycache__/.*`,
	`/home/[^/]+/\.cache/.*`, `.*\.pyc`, `/proc/.*|/sys/.*`}

const benchExcludePath = "/usr/lib/x86_64-linux-gnu/security/pam_unix.so.0.0.0-a-rather-long-name"

func BenchmarkExcludes(b *testing.B) {
	var ps []*pattern
	for _, e := range benchExcludes {
		p, err := compilePattern(e)
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range ps {
			if p.matchPrefix(benchExcludePath) {
				b.Fatal("excluded")
			}
		}
	}
}

// BenchmarkExcludesRegexp is the same with Go's regexp, for comparison.
func BenchmarkExcludesRegexp(b *testing.B) {
	var rs []*regexp.Regexp
	for _, e := range benchExcludes {
		rs = append(rs, regexp.MustCompile(`^(?:`+e+`)`))
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range rs {
			if r.MatchString(benchExcludePath) {
				b.Fatal("excluded")
			}
		}
	}
}
