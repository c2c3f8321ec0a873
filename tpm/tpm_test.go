package tpm

import (
	"bytes"
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/gokexec/gokexec/tpm/tpmtest"
)

type swtpm struct{ *tpmtest.SWTPM }

func startSwtpm(t testing.TB, banks string) *swtpm { return &swtpm{tpmtest.Start(t, banks)} }

// open connects a new TPM client to the swtpm data channel.
func (s *swtpm) open(t testing.TB) *TPM {
	t.Helper()
	tp := New(s.Dial(t))
	t.Cleanup(func() { tp.Close() })
	return tp
}

func all24() []uint32 {
	p := make([]uint32, 24)
	for i := range p {
		p[i] = uint32(i)
	}
	return p
}

func TestActiveBanks(t *testing.T) {
	for _, tc := range []struct {
		setup string
		want  []crypto.Hash
	}{
		{"sha1,sha256,sha384", []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384}},
		{"sha256", []crypto.Hash{crypto.SHA256}},
		{"sha1,sha256,sha384,sha512", []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}},
	} {
		t.Run(tc.setup, func(t *testing.T) {
			tp := startSwtpm(t, tc.setup).open(t)
			got, err := tp.ActiveBanks()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ActiveBanks = %v, want %v", got, tc.want)
			}
			unk, err := tp.UnknownBanks()
			if err != nil {
				t.Fatal(err)
			}
			if len(unk) != 0 {
				t.Fatalf("UnknownBanks = %v, want none", unk)
			}
		})
	}
}

func TestReadAll24(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	vals, err := tp.ReadPCRs(all24())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 3 {
		t.Fatalf("got %d banks, want 3", len(vals))
	}
	for h, m := range vals {
		if len(m) != 24 {
			t.Fatalf("%v: got %d PCRs, want 24", h, len(m))
		}
		for i, v := range m {
			if len(v) != h.Size() {
				t.Fatalf("%v PCR %d: %d bytes", h, i, len(v))
			}
			// After TPM2_Startup(CLEAR) PCRs 0-16 and 23 are zero,
			// 17-22 (locality-reset PCRs) are all ones.
			want := byte(0)
			if i >= 17 && i <= 22 {
				want = 0xff
			}
			if !bytes.Equal(v, bytes.Repeat([]byte{want}, h.Size())) {
				t.Fatalf("%v PCR %d = %x, want all %02x", h, i, v, want)
			}
		}
	}
}

func TestExtendThenRead(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384}
	for _, pcr := range []uint32{10, 11, 16, 23} {
		before, err := tp.ReadPCRs([]uint32{pcr})
		if err != nil {
			t.Fatal(err)
		}
		// Two extends so the second starts from a non-trivial value.
		expect := map[crypto.Hash][]byte{}
		for _, h := range banks {
			expect[h] = before[h][pcr]
		}
		for round := 0; round < 2; round++ {
			ds := map[crypto.Hash][]byte{}
			for _, h := range banks {
				hh := h.New()
				fmt.Fprintf(hh, "event %d round %d", pcr, round)
				ds[h] = hh.Sum(nil)
				e := h.New()
				e.Write(expect[h])
				e.Write(ds[h])
				expect[h] = e.Sum(nil)
			}
			if err := tp.Extend(pcr, ds); err != nil {
				t.Fatal(err)
			}
		}
		after, err := tp.ReadPCRs(all24())
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range banks {
			if !bytes.Equal(after[h][pcr], expect[h]) {
				t.Errorf("%v PCR %d = %x, want %x", h, pcr, after[h][pcr], expect[h])
			}
		}
	}
	// A second connection sees the same state.
	vals, err := tp.ReadPCRs([]uint32{10})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(vals[crypto.SHA256][10], make([]byte, 32)) {
		t.Fatal("PCR 10 still zero after extends")
	}
}

func TestExtendRefusesMissingBank(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	before, err := tp.ReadPCRs([]uint32{10})
	if err != nil {
		t.Fatal(err)
	}
	d := map[crypto.Hash][]byte{
		crypto.SHA1:   make([]byte, 20),
		crypto.SHA256: make([]byte, 32),
	}
	err = tp.Extend(10, d)
	if !errors.Is(err, ErrMissingBank) || !strings.Contains(err.Error(), "SHA-384") {
		t.Fatalf("Extend without sha384: err = %v, want ErrMissingBank naming SHA-384", err)
	}
	d[crypto.SHA384] = make([]byte, 20)
	if err := tp.Extend(10, d); !errors.Is(err, ErrDigestSize) {
		t.Fatalf("short sha384 digest: err = %v, want ErrDigestSize", err)
	}
	if err := tp.Extend(24, d); !errors.Is(err, ErrPCRIndex) {
		t.Fatalf("PCR 24: err = %v, want ErrPCRIndex", err)
	}
	after, err := tp.ReadPCRs([]uint32{10})
	if err != nil {
		t.Fatal(err)
	}
	for h := range before {
		if !bytes.Equal(before[h][10], after[h][10]) {
			t.Fatalf("%v PCR 10 changed by a refused extend", h)
		}
	}
	// Extra digests for banks that are not allocated are ignored.
	d[crypto.SHA384] = make([]byte, 48)
	d[crypto.SHA512] = make([]byte, 64)
	if err := tp.Extend(10, d); err != nil {
		t.Fatalf("extend with extra sha512: %v", err)
	}
}

func TestReadPCRsRejectsIndex(t *testing.T) {
	tp := startSwtpm(t, "sha256").open(t)
	if _, err := tp.ReadPCRs([]uint32{3, 24}); !errors.Is(err, ErrPCRIndex) {
		t.Fatalf("err = %v, want ErrPCRIndex", err)
	}
}

// TestReadPCRsCounterRestart extends from a second connection between the
// rounds of a read and checks the result is from one epoch.
func TestReadPCRsCounterRestart(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	inj := &injectRW{next: tp.t}
	tp.t = inj
	vals, err := tp.ReadPCRs(all24())
	if err != nil {
		t.Fatal(err)
	}
	if inj.reads < 2 {
		t.Fatalf("only %d PCR_Read commands; expected several rounds", inj.reads)
	}
	if !inj.injected {
		t.Fatal("no extend was injected")
	}
	// PCR 0 was extended once in every bank before the final epoch began.
	for h, m := range vals {
		e := h.New()
		e.Write(make([]byte, h.Size()))
		e.Write(inj.digest[h])
		if !bytes.Equal(m[0], e.Sum(nil)) {
			t.Fatalf("%v PCR 0 = %x: not from the epoch after the extend", h, m[0])
		}
	}
}

// injectRW forwards commands and, right after the first PCR_Read, extends
// PCR 0 behind the reader's back (swtpm serves one connection at a time, so
// the extend goes through the same stream).
type injectRW struct {
	next     conn
	reads    int
	injected bool
	digest   map[crypto.Hash][]byte
}

func (i *injectRW) Send(cmd []byte) ([]byte, error) {
	rsp, err := i.next.Send(cmd)
	// Command code sits at offset 6..10; TPM_CC_PCR_Read = 0x17E.
	if len(cmd) >= 10 && cmd[6] == 0 && cmd[7] == 0 && cmd[8] == 0x01 && cmd[9] == 0x7e {
		i.reads++
		if i.reads == 1 {
			i.digest = map[crypto.Hash][]byte{}
			for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384} {
				hh := h.New()
				hh.Write([]byte("concurrent"))
				i.digest[h] = hh.Sum(nil)
			}
			other := &TPM{t: i.next}
			if e := other.Extend(0, i.digest); e != nil {
				return nil, e
			}
			i.injected = true
		}
	}
	return rsp, err
}

func (i *injectRW) Close() error { return nil }

func TestOpenNamesDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "no-tpm")
	_, err := Open(p)
	if !errors.Is(err, ErrNoDevice) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Open(%q) = %v; want ErrNoDevice wrapping ErrNotExist naming the path", p, err)
	}
}

// capProxy forwards to a real swtpm and lets edit rewrite the TPM_CAP_PCRS
// answer (header(10) moreData(1) capability(4) count(4) selections...).
type capProxy struct {
	next conn
	edit func([]byte) []byte
}

func (p *capProxy) Send(cmd []byte) ([]byte, error) {
	rsp, err := p.next.Send(cmd)
	if err == nil && len(cmd) >= 14 && bytes.Equal(cmd[6:10], []byte{0, 0, 0x01, 0x7a}) && bytes.Equal(cmd[10:14], []byte{0, 0, 0, 5}) {
		return p.edit(append([]byte(nil), rsp...)), nil
	}
	return rsp, err
}

func (p *capProxy) Close() error { return p.next.Close() }

// TestPartialAllocation: a bank without PCR 0 allocated is read without it.
func TestPartialAllocation(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	tp.t = &capProxy{next: tp.t, edit: func(r []byte) []byte {
		for off := 19; off+3 <= len(r); {
			alg, n := uint16(r[off])<<8|uint16(r[off+1]), int(r[off+2])
			if alg == 0x0004 && n > 0 && off+3 < len(r) {
				r[off+3] &^= 1 // SHA-1: PCR 0 not allocated
			}
			off += 3 + n
		}
		return r
	}}
	vals, err := tp.ReadPCRs(all24())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vals[crypto.SHA1][0]; ok || len(vals[crypto.SHA1]) != 23 {
		t.Fatalf("SHA-1 bank has %d PCRs (PCR 0 present: %v), want 23 without PCR 0", len(vals[crypto.SHA1]), ok)
	}
	if len(vals[crypto.SHA256]) != 24 || len(vals[crypto.SHA384]) != 24 {
		t.Fatal("other banks should have all 24 PCRs")
	}
}

// sm3Proxy forwards to a real swtpm but adds an allocated SM3_256 bank to
// the TPM_CAP_PCRS answer, as a TPM with a bank this package cannot hash
// would report it.
type sm3Proxy struct{ next conn }

func (p *sm3Proxy) Send(cmd []byte) ([]byte, error) {
	rsp, err := p.next.Send(cmd)
	if err != nil {
		return rsp, err
	}
	// TPM2_GetCapability = 0x17A, capability TPM_CAP_PCRS = 5 at offset 10.
	if len(cmd) >= 14 && bytes.Equal(cmd[6:10], []byte{0, 0, 0x01, 0x7a}) && bytes.Equal(cmd[10:14], []byte{0, 0, 0, 5}) {
		// header(10) moreData(1) capability(4) count(4) selections...
		if len(rsp) < 19 {
			return nil, fmt.Errorf("short capability response %x", rsp)
		}
		out := append([]byte(nil), rsp...)
		out[18]++ // count (< 256 in practice)
		out = append(out, 0x00, 0x12, 3, 0xff, 0xff, 0xff)
		n := uint32(len(out))
		out[2], out[3], out[4], out[5] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return out, nil
	}
	return rsp, nil
}

func (p *sm3Proxy) Close() error { return p.next.Close() }

func TestUnknownBank(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	tp.t = &sm3Proxy{next: tp.t}
	unk, err := tp.UnknownBanks()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unk, []tpm2.TPMIAlgHash{0x0012}) {
		t.Fatalf("UnknownBanks = %x, want [12]", unk)
	}
	banks, err := tp.ActiveBanks()
	if err != nil || len(banks) != 3 {
		t.Fatalf("lenient ActiveBanks = %v, %v; want the three known banks", banks, err)
	}
	ds := map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20), crypto.SHA256: make([]byte, 32), crypto.SHA384: make([]byte, 48)}
	if err := tp.Extend(12, ds); err != nil {
		t.Fatalf("lenient Extend: %v", err)
	}
	tp.Strict = true
	if _, err := tp.ActiveBanks(); !errors.Is(err, ErrUnknownBank) || !strings.Contains(err.Error(), "0x0012") {
		t.Fatalf("strict ActiveBanks: err = %v, want ErrUnknownBank naming 0x0012", err)
	}
	if _, err := tp.ReadPCRs([]uint32{12}); !errors.Is(err, ErrUnknownBank) {
		t.Fatalf("strict ReadPCRs: err = %v", err)
	}
	before, _ := (&TPM{t: tp.t.(*sm3Proxy).next}).ReadPCRs([]uint32{12})
	if err := tp.Extend(12, ds); !errors.Is(err, ErrUnknownBank) {
		t.Fatalf("strict Extend: err = %v", err)
	}
	after, _ := (&TPM{t: tp.t.(*sm3Proxy).next}).ReadPCRs([]uint32{12})
	if !bytes.Equal(before[crypto.SHA256][12], after[crypto.SHA256][12]) {
		t.Fatal("strict Extend changed PCR 12")
	}
}

// BenchmarkReadPCRs24 measures reading all 24 PCRs of three banks from
// swtpm over TCP (nine PCR_Read rounds).
func BenchmarkReadPCRs24(b *testing.B) {
	tp := startSwtpm(b, "sha1,sha256,sha384").open(b)
	for b.Loop() {
		if _, err := tp.ReadPCRs(all24()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtend(b *testing.B) {
	tp := startSwtpm(b, "sha1,sha256,sha384").open(b)
	ds := map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20), crypto.SHA256: make([]byte, 32), crypto.SHA384: make([]byte, 48)}
	for b.Loop() {
		if err := tp.Extend(11, ds); err != nil {
			b.Fatal(err)
		}
	}
}
