package appraise

import (
	"crypto"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestChecksumsFromCoreutils(t *testing.T) {
	hello := readTD(t, "data/hello.txt")
	blob := readTD(t, "data/blob.bin")
	for _, tc := range []struct {
		file  string
		paths []string
		hash  crypto.Hash
	}{
		{"sha256sum.txt", []string{"blob.bin", "hello.txt"}, crypto.SHA256},
		{"sha256sum-binary.txt", []string{"blob.bin"}, crypto.SHA256},
		{"sha256sum-tag.txt", []string{"hello.txt"}, crypto.SHA256},
		{"sha512sum.txt", []string{"hello.txt"}, crypto.SHA512},
	} {
		t.Run(tc.file, func(t *testing.T) {
			a, err := ParseChecksums(readTD(t, "coreutils/"+tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Paths(), tc.paths) {
				t.Fatalf("paths %q, want %q", a.Paths(), tc.paths)
			}
			if hs := a.Hashes(); len(hs) != 1 || hs[0] != tc.hash {
				t.Fatalf("hashes %v, want %v", hs, tc.hash)
			}
			for _, p := range tc.paths {
				data := hello
				if p == "blob.bin" {
					data = blob
				}
				if err := a.Check(p, tc.hash, digestOf(t, tc.hash, data)); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				bad := append([]byte("x"), data...)
				err := a.Check(p, tc.hash, digestOf(t, tc.hash, bad))
				if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), p) {
					t.Fatalf("%s tampered: err = %v, want ErrDigestMismatch naming it", p, err)
				}
				other := crypto.SHA384
				if err := a.Check(p, other, digestOf(t, other, data)); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "no SHA-384") {
					t.Fatalf("%s sha384: err = %v, want no SHA-384 digest", p, err)
				}
			}
			if err := a.Check("/nowhere", tc.hash, digestOf(t, tc.hash, hello)); !errors.Is(err, ErrNotListed) {
				t.Fatalf("unlisted: err = %v", err)
			}
		})
	}
}

func TestChecksumsEscapedName(t *testing.T) {
	a, err := ParseChecksums(readTD(t, "coreutils/sha256sum-escaped.txt"))
	if err != nil {
		t.Fatal(err)
	}
	name := "new\nline\\back"
	if !slices.Equal(a.Paths(), []string{name}) {
		t.Fatalf("paths %q, want %q", a.Paths(), name)
	}
	if err := a.Check(name, crypto.SHA256, digestOf(t, crypto.SHA256, readTD(t, "data/hello.txt"))); err != nil {
		t.Fatal(err)
	}
}

func TestChecksumsMalformed(t *testing.T) {
	d := strings.Repeat("ab", 32)
	for _, in := range []string{
		d + " x",       // one space, no mode char
		d + "  ",       // no path
		d[:63] + "  x", // odd hex
		strings.Repeat("ab", 16) + "  x" + "\n" + strings.Repeat("zz", 32) + "  y", // non-hex on line 2
		strings.Repeat("ab", 17) + "  x",                                           // 17 bytes: no such hash
		"SHA256 (x) = " + d[:62],                                                   // tag with short digest
		"SHA256 (x " + d,                                                           // tag without ") = "
		"\\" + d + "  a\\q",                                                        // unknown escape
		"\\" + d + "  a\\",                                                         // trailing backslash
		d + "\tx",                                                                  // tab separator
	} {
		if _, err := ParseChecksums([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", in, err)
		}
	}
	_, err := ParseChecksums([]byte(d + "  ok\n\n" + d + " bad\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("error should name line 3: %v", err)
	}
	// Comments, blank lines and CRLF are fine.
	a, err := ParseChecksums([]byte("# comment\r\n\r\n" + d + "  /boot/x\r\n"))
	if err != nil || !slices.Equal(a.Paths(), []string{"/boot/x"}) {
		t.Fatalf("%v %v", a.Paths(), err)
	}
}

func TestKeylimePolicy(t *testing.T) {
	a, err := ParseKeylimePolicy(readTD(t, "handwritten/keylime-runtime-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	hello, blob := readTD(t, "data/hello.txt"), readTD(t, "data/blob.bin")
	for _, tc := range []struct {
		path string
		h    crypto.Hash
		data []byte
		want error
	}{
		{"/boot/hello.txt", crypto.SHA256, hello, nil},
		{"/boot/hello.txt", crypto.SHA384, hello, nil},
		{"/boot/hello.txt", crypto.SHA256, blob, ErrDigestMismatch},
		{"/boot/hello.txt", crypto.SHA512, hello, ErrDigestMismatch},
		{"/boot/blob.bin", crypto.SHA256, blob, nil},
		{"/boot/other", crypto.SHA256, blob, ErrNotListed},
		// Excludes never admit (issue 11, finding 4).
		{"/tmp/anything", crypto.SHA256, blob, ErrNotListed},
		{"/var/log/x", crypto.SHA256, blob, ErrNotListed},
		{"/etc/tmp/x", crypto.SHA256, blob, ErrNotListed},
	} {
		err := a.Check(tc.path, tc.h, digestOf(t, tc.h, tc.data))
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s %v: err = %v, want %v", tc.path, tc.h, err, tc.want)
		}
	}
	if len(a.Excludes()) == 0 {
		t.Error("the policy's excludes were not kept for reporting")
	}
	// ParseAllowlist picks the format.
	b, err := ParseAllowlist(readTD(t, "handwritten/keylime-runtime-policy.json"))
	if err != nil || b.Len() != 2 {
		t.Fatalf("autodetect JSON: %v", err)
	}
	c, err := ParseAllowlist(readTD(t, "coreutils/sha256sum.txt"))
	if err != nil || c.Len() != 2 {
		t.Fatalf("autodetect sha256sum: %v", err)
	}
	b.Merge(c)
	if b.Len() != 4 || len(b.Excludes()) != len(a.Excludes()) {
		t.Fatalf("merge: %d paths", b.Len())
	}
}

func TestKeylimePolicyErrors(t *testing.T) {
	d := `"` + strings.Repeat("00", 32) + `"`
	for _, tc := range []struct {
		in   string
		want error
	}{
		{`{"digests": {}}`, ErrMalformed},
		{`{"meta": {}}`, ErrMalformed},
		{`{"meta": {"version": 2}, "digests": {}}`, ErrUnsupported},
		{`{"meta": {"version": 1}, "digests": {"/a": ["xyz"]}}`, ErrMalformed},
		{`{"meta": {"version": 1}, "digests": {"/a": ["` + strings.Repeat("0", 10) + `"]}}`, ErrMalformed},
		{`{"meta": {"version": 1}, "digests": {"": [` + d + `]}}`, ErrMalformed},
		{`{"meta": {"version": 1}, "digests": []}`, ErrMalformed},
		{`{"meta": {"version": 1}`, ErrMalformed},
	} {
		if _, err := ParseKeylimePolicy([]byte(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.in, err, tc.want)
		}
	}
	// Legacy "hashes" key and upper-case hex are accepted.
	a, err := ParseKeylimePolicy([]byte(`{"meta": {"version": 1}, "hashes": {"/a": ["` + strings.Repeat("AB", 20) + `"]}}`))
	if err != nil || a.Check("/a", crypto.SHA1, []byte(strings.Repeat("\xab", 20))) != nil {
		t.Fatalf("legacy hashes: %v", err)
	}
}
