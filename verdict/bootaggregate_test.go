package verdict

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// TestBootAggregateOfMatchesEvmctl: ima.BootAggregateOf gives what
// `evmctl ima_boot_aggregate --pcrs BANK,FILE` gives, and what the real
// kernels recorded, on every capture and bank.
func TestBootAggregateOfMatchesEvmctl(t *testing.T) {
	ev, err := exec.LookPath("evmctl")
	if err != nil {
		t.Fatalf("evmctl (ima-evm-utils, scripts/setup.sh): %v", err)
	}
	dirs, _ := filepath.Glob("../ima/testdata/captures/*/pcr-sha256.txt")
	for _, f := range dirs {
		dir := filepath.Dir(f)
		// (evmctl 1.4 knows no sha384 for ima_boot_aggregate)
		for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			file := filepath.Join(dir, "pcr-"+ima.HashName(b)+".txt")
			pb, _ := os.ReadFile(file)
			v, err := ima.ParsePCRFile(pb, b)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ima.BootAggregateOf(v[b], b)
			out, err := exec.Command(ev, "ima_boot_aggregate", "--pcrs", ima.HashName(b)+","+file).Output()
			if err != nil || !ok {
				t.Fatalf("%s: evmctl %v, ok %v", file, err, ok)
			}
			if want := strings.TrimSpace(string(out)); want != ima.HashName(b)+":"+hex.EncodeToString(got) {
				t.Errorf("%s: evmctl %s, BootAggregateOf %x", file, want, got)
			}
		}
	}
}

// TestBootAggregateAgainstFirmware: the verdict says for every boot
// whether its boot_aggregate matches the quoted PCRs 0-9; after a kexec
// chain every boot's must (the firmware's PCRs do not change), and one
// that does not makes the list inconsistent (boot_aggregate_mismatch) in
// every mode.
func TestBootAggregateAgainstFirmware(t *testing.T) {
	fw := map[uint32][]byte{}
	for p := uint32(0); p < 10; p++ {
		d := sha256.Sum256([]byte{byte(p)})
		fw[p] = d[:]
	}
	agg, _ := ima.BootAggregateOf(fw, crypto.SHA256)
	mk := func(aggs ...[]byte) []ima.Entry {
		var es []ima.Entry
		for i, a := range aggs {
			e, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, a, crypto.SHA256, nil)
			es = append(es, e, entry(t, 10, "/bin/x"+string(rune('a'+i))))
			if i < len(aggs)-1 {
				es = append(es, ima.NewBufEntry(10, ima.MarkerKexecLoad, []byte(ima.KexecMarkerPayload(0, 1, 1)), crypto.SHA256),
					ima.NewBufEntry(10, ima.MarkerKexecExec, []byte(ima.KexecMarkerPayload(0, 1, 2)), crypto.SHA256))
			}
		}
		return es
	}
	other := sha256.Sum256([]byte("another firmware"))
	for _, c := range []struct {
		name   string
		es     []ima.Entry
		reason string
		match  []string
	}{
		{"chain of three", mk(agg, agg, agg), ReasonOK, []string{"match", "match", "match"}},
		{"second boot's aggregate differs", mk(agg, other[:], agg), ReasonBootAggregate, []string{"match", "mismatch", "match"}},
	} {
		v := replayAt(c.es, len(c.es), 0, crypto.SHA256)
		for p, x := range fw {
			v[crypto.SHA256][p] = x
		}
		raw := ima.AppendList(nil, c.es, order)
		for mode, list := range map[string]List{
			"file":   {RA: bytes.NewReader(raw), Size: int64(len(raw))},
			"stream": {R: bytes.NewReader(raw)},
		} {
			res, _, err := Verify(list, Evidence{Values: v}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != c.reason {
				t.Errorf("%s %s: reason %s, want %s (%v)", c.name, mode, res.Reason, c.reason, res.Verify.Problems)
			}
			for i, b := range res.Timeline.Boots {
				if b.AggregateMatch != c.match[i] {
					t.Errorf("%s %s: boot %d %q, want %q", c.name, mode, b.Number, b.AggregateMatch, c.match[i])
				}
			}
		}
		// without PCRs 0-9 nothing is compared
		delete(v[crypto.SHA256], 9)
		res, _, _ := Verify(List{R: bytes.NewReader(raw)}, Evidence{Values: v}, Options{})
		if res.Reason != ReasonOK || res.Timeline.Boots[0].AggregateMatch != ima.AggregateUnknown {
			t.Errorf("%s without PCR 9: %s %q", c.name, res.Reason, res.Timeline.Boots[0].AggregateMatch)
		}
	}
}

// TestTamperedListJudgedConsistentViaQuote: issue 21's first finding
// through a signed quote (the path that said "consistent", exit 0): the
// quote verifies, and the list is still refused.
func TestTamperedListJudgedConsistentViaQuote(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es, v := tampered(t)
	raw := ima.AppendList(nil, es, order)
	for _, list := range []List{{RA: bytes.NewReader(raw), Size: int64(len(raw))}, {R: bytes.NewReader(raw)}} {
		res, _, err := Verify(list, Evidence{Quote: quoteOf(t, key, v, []byte("n"))}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Quote.Verified || res.Consistent || res.Exit != ExitMismatch || res.Reason != ReasonListMismatch || res.Verify.DigestMismatchCount != 1 {
			t.Errorf("quote verified %v, consistent %v, exit %d, reason %s, mismatches %d", res.Quote.Verified, res.Consistent, res.Exit, res.Reason, res.Verify.DigestMismatchCount)
		}
	}
}
