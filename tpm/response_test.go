package tpm

import (
	"crypto"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// canned answers every command with rsp.
type canned struct{ rsp []byte }

func (c *canned) Send([]byte) ([]byte, error) { return c.rsp, nil }
func (c *canned) Close() error                { return nil }

// reply frames body as a TPM_ST_NO_SESSIONS response with code rc.
func reply(rc uint32, body ...byte) []byte {
	b := make([]byte, 10, 10+len(body))
	binary.BigEndian.PutUint16(b, 0x8001)
	binary.BigEndian.PutUint32(b[2:], uint32(10+len(body)))
	binary.BigEndian.PutUint32(b[6:], rc)
	return append(b, body...)
}

// A TPM's error response code is ErrTPM, with go-tpm's TPMRC inside.
func TestResponseCode(t *testing.T) {
	tp := &TPM{t: &canned{reply(0x101)}} // TPM_RC_FAILURE
	_, err := tp.ActiveBanks()
	var rc tpm2.TPMRC
	if !errors.Is(err, ErrTPM) || !errors.As(err, &rc) || rc != tpm2.TPMRCFailure {
		t.Fatalf("error response: %v", err)
	}
	if err := tp.Extend(10, map[crypto.Hash][]byte{}); !errors.Is(err, ErrTPM) {
		t.Fatalf("extend over an erroring TPM: %v", err)
	}
}

// Responses that end early, claim more than they hold, or answer with a
// selection that was not asked for are errors, never panics.
func TestMalformedResponses(t *testing.T) {
	capPCRs := func(sel ...byte) []byte {
		return reply(0, append([]byte{0, 0, 0, 0, 5}, sel...)...)
	}
	for name, rsp := range map[string][]byte{
		"empty":              nil,
		"header only":        reply(0),
		"short capability":   reply(0, 0, 0, 0),
		"count past the end": capPCRs(0, 0, 0, 9, 0, 0x0b, 3, 0xff),
		"select too large":   capPCRs(0, 0, 0, 1, 0, 0x0b, 200, 0xff),
	} {
		tp := &TPM{t: &canned{rsp}}
		if _, err := tp.ReadPCRs([]uint32{10}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzResponses' reproducer (a clean-clone CI run, 2026-12-07): a
// TPM_CAP_PCRS answer listing SHA-1 twice made ActiveBanks report
// [SHA-1 SHA-1], so every SHA-1 PCR would be read, extended and replayed
// twice. It is ErrBadResponse for every command that asks.
func TestBankListedTwiceRefused(t *testing.T) {
	rsp := reply(0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0x04, 3, 0xff, 0xff, 0xff, 0, 0x04, 3, 0x01, 0x04, 0x80)
	tp := &TPM{t: &canned{rsp}}
	if banks, err := tp.ActiveBanks(); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("ActiveBanks: %v, %v; want ErrBadResponse", banks, err)
	}
	if _, err := tp.ReadPCRs([]uint32{10}); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("ReadPCRs: %v; want ErrBadResponse", err)
	}
	if err := tp.Extend(10, map[crypto.Hash][]byte{crypto.SHA1: make([]byte, 20)}); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("Extend: %v; want ErrBadResponse", err)
	}
}

// FuzzResponses feeds arbitrary answers to every command. Beyond "no
// panic": a well-framed error response is ErrTPM for every command; the
// banks reported active are distinct and available; PCR values come back
// only for the PCRs asked, each of its bank's digest size.
func FuzzResponses(f *testing.F) {
	f.Add(reply(0, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0x0b, 3, 0xff, 0xff, 0xff))
	f.Add(reply(0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0x04, 3, 0xff, 0xff, 0xff, 0, 0x0b, 3, 0x01, 0x04, 0x80))
	f.Add(reply(0x184))
	f.Fuzz(func(t *testing.T, rsp []byte) {
		tp := &TPM{t: &canned{rsp}}
		banks, bErr := tp.ActiveBanks()
		pcrs, rErr := tp.ReadPCRs([]uint32{0, 10, 23})
		eErr := tp.Extend(10, map[crypto.Hash][]byte{crypto.SHA256: make([]byte, 32)})
		if len(rsp) >= 10 && binary.BigEndian.Uint16(rsp) == 0x8001 && int(binary.BigEndian.Uint32(rsp[2:])) == len(rsp) && binary.BigEndian.Uint32(rsp[6:]) != 0 {
			for name, err := range map[string]error{"ActiveBanks": bErr, "ReadPCRs": rErr, "Extend": eErr} {
				if !errors.Is(err, ErrTPM) {
					t.Fatalf("%s over an error response: %v", name, err)
				}
			}
		}
		if bErr == nil {
			seen := map[crypto.Hash]bool{}
			for _, b := range banks {
				if seen[b] || !b.Available() {
					t.Fatalf("active banks %v", banks)
				}
				seen[b] = true
			}
		}
		if rErr == nil {
			for b, m := range pcrs {
				for i, v := range m {
					if i != 0 && i != 10 && i != 23 {
						t.Fatalf("%v: PCR %d returned, not asked", b, i)
					}
					if len(v) != b.Size() {
						t.Fatalf("%v PCR %d: %d bytes", b, i, len(v))
					}
				}
			}
		}
	})
}
