package appraise

import (
	"crypto"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"off": ModeOff, "log": ModeLog, "enforce": ModeEnforce, "ENFORCE": ModeEnforce} {
		m, err := ParseMode(s)
		if err != nil || m != want {
			t.Errorf("%q → %v %v", s, m, err)
		}
	}
	for _, s := range []string{"", "on", "enforcing", "log "} {
		if _, err := ParseMode(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v", s, err)
		}
	}
	var m Mode
	if err := m.Set("log"); err != nil || m.String() != "log" {
		t.Fatal(err)
	}
	if b, _ := ModeEnforce.MarshalText(); string(b) != "enforce" {
		t.Fatal(string(b))
	}
	if err := m.UnmarshalText([]byte("bogus")); err == nil || m != ModeLog {
		t.Fatal("UnmarshalText accepted bogus or changed the mode")
	}
}

type fixture struct {
	kr     *Keyring
	al     *Allowlist
	data   []byte
	digs   map[crypto.Hash][]byte
	sig    []byte
	badDig map[crypto.Hash][]byte
}

func newFixture(t *testing.T) fixture {
	kr, err := LoadCerts(readTD(t, "openssl/bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	al, err := ParseChecksums(readTD(t, "coreutils/sha256sum.txt"))
	if err != nil {
		t.Fatal(err)
	}
	data := readTD(t, "data/hello.txt")
	bad := append([]byte("evil "), data...)
	return fixture{
		kr: kr, al: al, data: data,
		digs:   map[crypto.Hash][]byte{crypto.SHA256: digestOf(t, crypto.SHA256, data), crypto.SHA384: digestOf(t, crypto.SHA384, data)},
		badDig: map[crypto.Hash][]byte{crypto.SHA256: digestOf(t, crypto.SHA256, bad)},
		sig:    readTD(t, "evmctl/hello.txt.ec.sha256.sig"),
	}
}

func TestDecide(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		name    string
		pol     Policy
		file    File
		pass    bool
		allowed bool
		method  string
		err     error
	}{
		{"off ignores everything", Policy{Mode: ModeOff}, File{Path: "hello.txt", Digests: fx.badDig, Signature: []byte{1}}, true, true, "off", nil},
		{"good signature", Policy{Mode: ModeEnforce, Keyring: fx.kr}, File{Path: "hello.txt", Digests: fx.digs, Signature: fx.sig}, true, true, "signature", nil},
		{"tampered, signed", Policy{Mode: ModeEnforce, Keyring: fx.kr}, File{Path: "hello.txt", Digests: fx.badDig, Signature: fx.sig}, false, false, "", ErrBadSignature},
		{"tampered, log mode", Policy{Mode: ModeLog, Keyring: fx.kr}, File{Path: "hello.txt", Digests: fx.badDig, Signature: fx.sig}, false, true, "", ErrBadSignature},
		{"bad signature beats allowlist", Policy{Mode: ModeEnforce, Keyring: fx.kr, Allowlist: fx.al}, File{Path: "hello.txt", Digests: fx.digs, Signature: fx.sig[:len(fx.sig)-1]}, false, false, "", ErrMalformed},
		{"signature needs its hash", Policy{Mode: ModeEnforce, Keyring: fx.kr}, File{Path: "hello.txt", Digests: map[crypto.Hash][]byte{crypto.SHA384: fx.digs[crypto.SHA384]}, Signature: fx.sig}, false, false, "", ErrHashMismatch},
		{"unknown key", Policy{Mode: ModeEnforce, Keyring: mustCerts(t, "openssl/other.pem")}, File{Path: "hello.txt", Digests: fx.digs, Signature: fx.sig}, false, false, "", ErrUnknownKey},
		{"allowlist", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "hello.txt", Digests: fx.digs}, true, true, "allowlist", nil},
		{"allowlist, signed but no keyring", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "hello.txt", Digests: fx.digs, Signature: fx.sig}, true, true, "allowlist", nil},
		{"allowlist mismatch", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "hello.txt", Digests: fx.badDig}, false, false, "", ErrDigestMismatch},
		{"allowlist prefers same-hash reason", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "hello.txt", Digests: map[crypto.Hash][]byte{crypto.SHA256: fx.badDig[crypto.SHA256], crypto.SHA384: fx.digs[crypto.SHA384]}}, false, false, "", ErrDigestMismatch},
		{"not listed", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "/boot/vmlinuz", Digests: fx.digs}, false, false, "", ErrNotListed},
		{"no digests", Policy{Mode: ModeEnforce, Allowlist: fx.al}, File{Path: "hello.txt"}, false, false, "", ErrMalformed},
		{"nothing to check", Policy{Mode: ModeEnforce}, File{Path: "hello.txt", Digests: fx.digs}, false, false, "", ErrNoPolicy},
		{"signed, no keyring, no allowlist", Policy{Mode: ModeEnforce}, File{Path: "hello.txt", Digests: fx.digs, Signature: fx.sig}, false, false, "", ErrNoPolicy},
		{"nothing to check, log", Policy{Mode: ModeLog}, File{Path: "hello.txt", Digests: fx.digs}, false, true, "", ErrNoPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.pol.Decide(tc.file)
			if d.Pass != tc.pass || d.Allowed() != tc.allowed || d.Method != tc.method {
				t.Fatalf("pass=%v allowed=%v method=%q, want %v %v %q (%s)", d.Pass, d.Allowed(), d.Method, tc.pass, tc.allowed, tc.method, d.Reason)
			}
			if !strings.HasPrefix(d.Reason, tc.file.Path+": ") {
				t.Fatalf("reason %q does not start with the file name", d.Reason)
			}
			if tc.err == nil {
				if d.Err != nil || d.Error() != nil {
					t.Fatalf("unexpected error %v", d.Err)
				}
				return
			}
			if !errors.Is(d.Err, tc.err) {
				t.Fatalf("Err = %v, want %v", d.Err, tc.err)
			}
			e := d.Error()
			if tc.allowed {
				if e != nil {
					t.Fatalf("allowed decision returned error %v", e)
				}
				if !strings.Contains(d.Reason, "loading anyway") {
					t.Fatalf("log-mode reason %q", d.Reason)
				}
				return
			}
			var de *DecisionError
			if !errors.As(e, &de) || !errors.Is(e, tc.err) || e.Error() != d.Reason {
				t.Fatalf("Error() = %v, want DecisionError wrapping %v", e, tc.err)
			}
		})
	}
	// The same-hash reason is the sha256 mismatch, not "no SHA-384 digest".
	d := Policy{Mode: ModeEnforce, Allowlist: fx.al}.Decide(File{Path: "hello.txt", Digests: map[crypto.Hash][]byte{crypto.SHA256: fx.badDig[crypto.SHA256], crypto.SHA384: fx.digs[crypto.SHA384]}})
	if strings.Contains(d.Reason, "no SHA-384") || !strings.Contains(d.Reason, "SHA-256") {
		t.Fatalf("reason %q", d.Reason)
	}
}

func mustCerts(t *testing.T, p string) *Keyring {
	t.Helper()
	k, err := LoadCerts(readTD(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPolicyHashes(t *testing.T) {
	fx := newFixture(t)
	al512, err := ParseChecksums(readTD(t, "coreutils/sha512sum.txt"))
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Mode: ModeEnforce, Keyring: fx.kr, Allowlist: al512}
	got := p.Hashes(readTD(t, "evmctl/hello.txt.rsa.sha384.sig"))
	if !slices.Equal(got, []crypto.Hash{crypto.SHA384, crypto.SHA512}) {
		t.Fatalf("Hashes = %v", got)
	}
	if got := (Policy{}).Hashes([]byte("garbage")); len(got) != 0 {
		t.Fatalf("garbage signature gave %v", got)
	}
}
