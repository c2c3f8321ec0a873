package tpm

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestAgainstGoTPM checks the hand-written codec against go-tpm's on the same
// swtpm: extends made here are read back by go-tpm and the other way round,
// and both see the same PCR allocation.
func TestAgainstGoTPM(t *testing.T) {
	tp := startSwtpm(t, "sha1,sha256,sha384").open(t)
	// go-tpm's transport.TPM is just Send, which conn has.
	gt := tp.t

	capRsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(gt)
	if err != nil {
		t.Fatal(err)
	}
	assigned, err := capRsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := tp.banks()
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != len(assigned.PCRSelections) {
		t.Fatalf("%d banks here, %d by go-tpm", len(ours), len(assigned.PCRSelections))
	}
	for i, s := range assigned.PCRSelections {
		if ours[i].alg != uint16(s.Hash) || !bytes.Equal(ours[i].alloc, s.PCRSelect) {
			t.Fatalf("bank %d: %04x %x here, %04x %x by go-tpm", i, ours[i].alg, ours[i].alloc, uint16(s.Hash), s.PCRSelect)
		}
	}

	algs := map[crypto.Hash]tpm2.TPMAlgID{crypto.SHA1: tpm2.TPMAlgSHA1, crypto.SHA256: tpm2.TPMAlgSHA256, crypto.SHA384: tpm2.TPMAlgSHA384}
	goRead := func(pcr uint32) map[crypto.Hash][]byte {
		t.Helper()
		out := map[crypto.Hash][]byte{}
		for h, alg := range algs {
			bm := selectBits([]uint32{pcr}, 3)
			r, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: alg, PCRSelect: bm}}}}.Execute(gt)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.PCRValues.Digests) != 1 {
				t.Fatalf("go-tpm read %d digests", len(r.PCRValues.Digests))
			}
			out[h] = r.PCRValues.Digests[0].Buffer
		}
		return out
	}
	ds := map[crypto.Hash][]byte{}
	for h := range algs {
		d := h.New()
		d.Write([]byte("cross-check"))
		ds[h] = d.Sum(nil)
	}
	// Ours extends PCR 16, go-tpm reads it.
	if err := tp.Extend(16, ds); err != nil {
		t.Fatal(err)
	}
	mine, err := tp.ReadPCRs([]uint32{16})
	if err != nil {
		t.Fatal(err)
	}
	theirs := goRead(16)
	for h := range algs {
		e := h.New()
		e.Write(make([]byte, h.Size()))
		e.Write(ds[h])
		if want := e.Sum(nil); !bytes.Equal(mine[h][16], want) || !bytes.Equal(theirs[h], want) {
			t.Fatalf("%v PCR 16: read here %x, by go-tpm %x, want %x", h, mine[h][16], theirs[h], want)
		}
	}
	// go-tpm extends PCR 15, ours reads it.
	var vals tpm2.TPMLDigestValues
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384} {
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: algs[h], Digest: ds[h]})
	}
	if _, err := (tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: 15, Auth: tpm2.PasswordAuth(nil)}, Digests: vals}).Execute(gt); err != nil {
		t.Fatal(err)
	}
	mine, err = tp.ReadPCRs([]uint32{15})
	if err != nil {
		t.Fatal(err)
	}
	theirs = goRead(15)
	for h := range algs {
		if !bytes.Equal(mine[h][15], theirs[h]) || bytes.Equal(theirs[h], make([]byte, h.Size())) {
			t.Fatalf("%v PCR 15: here %x, go-tpm %x", h, mine[h][15], theirs[h])
		}
	}
}

// trickle hands a stream's bytes over at most three at a time, as a socket
// may.
type trickle struct{ net.Conn }

func (t trickle) Read(b []byte) (int, error) {
	if len(b) > 3 {
		b = b[:3]
	}
	return t.Conn.Read(b)
}

func TestFragmentedResponses(t *testing.T) {
	s := startSwtpm(t, "sha1,sha256,sha384")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatal(err)
	}
	tp := New(trickle{c})
	defer tp.Close()
	vals, err := tp.ReadPCRs(all24())
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 3 || len(vals[crypto.SHA384]) != 24 || !bytes.Equal(vals[crypto.SHA384][17], bytes.Repeat([]byte{0xff}, 48)) {
		t.Fatalf("fragmented read gave %d banks, SHA-384 PCR 17 %x", len(vals), vals[crypto.SHA384][17])
	}
}

// TestResponseCode: a command the TPM refuses comes back as a ResponseError
// with swtpm's code. PCR_Extend without a session lacks its authorization:
// TPM_RC_AUTH_MISSING (0x125).
func TestResponseCode(t *testing.T) {
	tp := startSwtpm(t, "sha256").open(t)
	body := binary.BigEndian.AppendUint32(nil, 10)
	body = binary.BigEndian.AppendUint32(body, 0)
	_, err := tp.run(tagNoSessions, ccPCRExtend, body)
	var re *ResponseError
	if !errors.Is(err, ErrTPM) || !errors.As(err, &re) || re.Command != ccPCRExtend || re.Code != 0x125 {
		t.Fatalf("err = %v; want ResponseError{PCR_Extend, 0x125}", err)
	}
}

// retryProxy answers the first n commands with TPM_RC_RETRY itself.
type retryProxy struct {
	next conn
	n    int
	sent int
}

func (p *retryProxy) Send(cmd []byte) ([]byte, error) {
	p.sent++
	if p.n > 0 {
		p.n--
		return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22}, nil
	}
	return p.next.Send(cmd)
}

func (p *retryProxy) Close() error { return p.next.Close() }

func TestRetryWarning(t *testing.T) {
	tp := startSwtpm(t, "sha256").open(t)
	rp := &retryProxy{next: tp.t, n: 3}
	tp.t = rp
	if _, err := tp.ActiveBanks(); err != nil {
		t.Fatalf("after three TPM_RC_RETRY: %v", err)
	}
	if rp.sent != 4 {
		t.Fatalf("%d sends, want 4", rp.sent)
	}
	rp.n = retryTries
	_, err := tp.ActiveBanks()
	var re *ResponseError
	if !errors.As(err, &re) || re.Code != rcRetry {
		t.Fatalf("endless TPM_RC_RETRY: err = %v, want ResponseError 0x922", err)
	}
}

// canned answers every command with a fixed response.
type canned struct{ rsp []byte }

func (c *canned) Send([]byte) ([]byte, error) { return c.rsp, nil }
func (c *canned) Close() error                { return nil }

func reply(body ...byte) []byte {
	r := []byte{0x80, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
	r = append(r, body...)
	binary.BigEndian.PutUint32(r[2:], uint32(len(r)))
	return r
}

func TestMalformedResponses(t *testing.T) {
	for _, tc := range []struct {
		name string
		rsp  []byte
	}{
		{"short header", []byte{0x80, 0x01, 0, 0}},
		{"size disagrees", []byte{0x80, 0x01, 0, 0, 0, 11, 0, 0, 0, 0}},
		{"truncated capability", reply(0, 0, 0, 0)},
		{"wrong capability", reply(0, 0, 0, 0, 6, 0, 0, 0, 0)},
		{"too many banks", reply(0, 0, 0, 0, 5, 0, 0, 1, 0)},
		{"selection too long", reply(0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 4, 200)},
		{"selection past end", reply(0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 4, 3, 0xff)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := &TPM{t: &canned{tc.rsp}}
			if _, err := tp.ActiveBanks(); !errors.Is(err, ErrBadResponse) {
				t.Fatalf("err = %v, want ErrBadResponse", err)
			}
		})
	}
}

// TestStreamSize: a stream whose header announces more than maxReply, or
// that ends early, is refused without reading on.
func TestStreamSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"huge", []byte{0x80, 0x01, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}, ErrBadResponse},
		{"tiny", []byte{0x80, 0x01, 0, 0, 0, 2, 0, 0, 0, 0}, ErrBadResponse},
		{"eof", []byte{0x80, 0x01, 0, 0, 0, 20, 0, 0, 0, 0}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stream{rw: rwc{bytes.NewReader(tc.in)}}
			if _, err := s.Send([]byte{1}); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

type rwc struct{ io.Reader }

func (rwc) Write(b []byte) (int, error) { return len(b), nil }
func (rwc) Close() error                { return nil }

// FuzzResponses feeds arbitrary responses to every decoder: none may panic,
// and whatever ReadPCRs accepts has digests of its bank's size.
func FuzzResponses(f *testing.F) {
	f.Add(reply(0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0xff, 0xff))
	f.Add(reply(0, 0, 0, 1, 0, 0, 0, 1, 0, 0x0b, 3, 1, 0, 0, 0, 0, 0, 1, 0, 32))
	f.Fuzz(func(t *testing.T, rsp []byte) {
		tp := &TPM{t: &canned{rsp}}
		_, _ = tp.banks()
		_, _ = tp.pcrRead([]pcrSelection{{alg: algSHA256, bits: []byte{1, 0, 0}}})
		_ = tp.pcrExtend(10, nil)
		if vals, err := tp.ReadPCRs([]uint32{0}); err == nil {
			for h, m := range vals {
				for _, d := range m {
					if len(d) != h.Size() {
						t.Fatalf("%v digest of %d bytes accepted", h, len(d))
					}
				}
			}
		}
	})
}
