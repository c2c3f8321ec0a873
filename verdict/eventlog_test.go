package verdict

import (
	"bytes"
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	tcg "github.com/google/go-attestation/attest"
)

// realEventLogs are the firmware event logs go-attestation tests itself
// with (real machines: GCP shielded VMs, crypto-agile and legacy logs),
// read from the module cache.
func realEventLogs(t *testing.T) map[string][]byte {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-attestation").Output()
	if err != nil {
		t.Fatalf("go list go-attestation: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(dir)), "attest", "testdata", "*eventlog"))
	logs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tcg.ParseEventLog(b); err == nil {
			logs[filepath.Base(f)] = b
		}
	}
	if len(logs) == 0 {
		t.Fatal("no event log in go-attestation's testdata")
	}
	return logs
}

// TestEventLogBootAggregate: with the firmware's event log as evidence,
// every boot's boot_aggregate of a kexec chain is compared with the PCRs
// 0-9 the log replays to; go-attestation's own replay accepts those
// values; a log that does not replay to quoted PCRs is refused.
func TestEventLogBootAggregate(t *testing.T) {
	for name, log := range realEventLogs(t) {
		t.Logf("%s: %d bytes", name, len(log))
		el, fw, err := ReplayEventLog(log)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// go-attestation's replay agrees with ours on PCRs 0-7
		for h, vals := range fw {
			var pcrs []tcg.PCR
			for p := 0; p < 8; p++ {
				pcrs = append(pcrs, tcg.PCR{Index: p, Digest: vals[uint32(p)], DigestAlg: h})
			}
			if _, err := el.Verify(pcrs); err != nil {
				t.Errorf("%s %v: go-attestation refuses the replayed PCRs 0-7: %v", name, h, err)
			}
		}
		bank := crypto.SHA256
		if fw[bank] == nil {
			bank = crypto.SHA1
		}
		agg, ok := ima.BootAggregateOf(fw[bank], bank)
		if !ok {
			t.Fatalf("%s: no aggregate", name)
		}
		chain := func(aggs ...[]byte) []ima.Entry {
			var es []ima.Entry
			for i, a := range aggs {
				e, err := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, a, bank, nil)
				if err != nil {
					t.Fatal(err)
				}
				es = append(es, e, entry(t, 10, "/bin/"+string(rune('a'+i))))
				if i < len(aggs)-1 {
					es = append(es, ima.NewBufEntry(10, ima.MarkerKexecLoad, []byte(ima.KexecMarkerPayload(0, 1, 1)), crypto.SHA256),
						ima.NewBufEntry(10, ima.MarkerKexecExec, []byte(ima.KexecMarkerPayload(0, 1, 2)), crypto.SHA256))
				}
			}
			return es
		}
		bad := make([]byte, len(agg))
		for _, c := range []struct {
			what   string
			es     []ima.Entry
			log    []byte
			reason string
			match  string
		}{
			{"chain, with the log", chain(agg, agg, agg), log, ReasonOK, "match"},
			{"chain, without the log", chain(agg, agg, agg), nil, ReasonOK, "unknown"},
			{"a boot with another aggregate", chain(agg, bad, agg), log, ReasonBootAggregate, ""},
		} {
			v := replayAt(c.es, len(c.es), 0, crypto.SHA256)
			raw := ima.AppendList(nil, c.es, order)
			res, _, err := Verify(List{RA: bytes.NewReader(raw), Size: int64(len(raw))}, Evidence{Values: v, EventLog: c.log}, Options{})
			if err != nil {
				t.Fatalf("%s %s: %v", name, c.what, err)
			}
			if res.Reason != c.reason {
				t.Errorf("%s %s: reason %s, want %s (%s)", name, c.what, res.Reason, c.reason, res.Error)
			}
			if c.match != "" {
				for _, b := range res.Timeline.Boots {
					if b.AggregateMatch != c.match {
						t.Errorf("%s %s: boot %d %q", name, c.what, b.Number, b.AggregateMatch)
					}
				}
			}
		}
		// quoted PCR 0 that the log does not replay to
		v := replayAt(chain(agg), 2, 0, crypto.SHA256)
		v[bank] = map[uint32][]byte{0: make([]byte, bank.Size()), 10: v[crypto.SHA256][10]}
		if bank != crypto.SHA256 {
			v[bank] = map[uint32][]byte{0: make([]byte, bank.Size())}
		}
		raw := ima.AppendList(nil, chain(agg), order)
		res, _, err := Verify(List{R: bytes.NewReader(raw)}, Evidence{Values: v, EventLog: log}, Options{})
		if err != nil || res.Reason != ReasonEventLog {
			t.Errorf("%s: a log that does not replay to quoted PCR 0: %v %v", name, err, res)
		}
	}
	if _, _, err := Verify(List{R: bytes.NewReader(nil)}, Evidence{Values: ima.PCRValues{}, EventLog: []byte("not a log")}, Options{}); err == nil {
		t.Error("a malformed event log accepted")
	}
}
