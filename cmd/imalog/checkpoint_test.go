package main

import (
	"bytes"
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

func writePCRJSON(t *testing.T, path string, es []ima.Entry) {
	t.Helper()
	v := ima.PCRValues{
		crypto.SHA1:   ima.Replay(es, crypto.SHA1, ima.MethodPerBank),
		crypto.SHA256: ima.Replay(es, crypto.SHA256, ima.MethodPerBank),
	}
	b, err := ima.MarshalPCRJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rawVerify is the "verify" member of a JSON verdict, as bytes.
func rawVerify(t *testing.T, out string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var buf bytes.Buffer
	json.Compact(&buf, m["verify"])
	return buf.Bytes()
}

// TestVerifyCheckpoint: a list grows between runs; each run with
// --checkpoint reads only what is new and prints the full run's result;
// a list whose consumed part changed is refused and the checkpoint kept.
func TestVerifyCheckpoint(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	all := syntheticList(t, 400, 10, "cp")
	cp := p("machine.checkpoint")
	steps := []int{50, 51, 200, 401}
	prev := 0
	for i, n := range steps {
		writeQuoteList(t, p("list"), all[:n])
		writePCRJSON(t, p("pcrs.json"), all[:n])
		full := []string{"verify", p("list"), "--pcrs", p("pcrs.json"), "--json"}
		code, fullOut, errs := imalog(t, full...)
		if code != 0 {
			t.Fatalf("full run: exit %d %s", code, errs)
		}
		code, v, out := verdictOf(t, "verify", p("list"), "--pcrs", p("pcrs.json"), "--checkpoint", cp)
		if code != 0 || v.Checkpoint == nil || !v.Checkpoint.Written {
			t.Fatalf("step %d: exit %d\n%s", i, code, out)
		}
		if i > 0 && (!v.Checkpoint.Resumed || v.Checkpoint.From != prev || v.Checkpoint.Read != n-prev) {
			t.Errorf("step %d: checkpoint %+v, want resumed from %d", i, v.Checkpoint, prev)
		}
		_, again, _ := imalog(t, "verify", p("list"), "--pcrs", p("pcrs.json"), "--checkpoint", cp, "--json")
		if !bytes.Equal(rawVerify(t, again), rawVerify(t, fullOut)) {
			t.Errorf("step %d: resumed and full results differ:\n%s\n%s", i, rawVerify(t, again), rawVerify(t, fullOut))
		}
		prev = n
	}
	// the consumed part's tail changed
	b, _ := os.ReadFile(p("list"))
	before, _ := os.ReadFile(cp)
	b[len(b)-20] ^= 1
	os.WriteFile(p("list"), b, 0o644)
	code, v, out := verdictOf(t, "verify", p("list"), "--pcrs", p("pcrs.json"), "--checkpoint", cp)
	if code != exitMismatch || v.Reason != ReasonCheckpointBroken {
		t.Errorf("changed list: exit %d reason %q\n%s", code, v.Reason, out)
	}
	if after, _ := os.ReadFile(cp); !bytes.Equal(after, before) {
		t.Error("a refused run rewrote the checkpoint")
	}
	// --checkpoint-check full sees a change before the tail
	writeQuoteList(t, p("list"), all[:401])
	b, _ = os.ReadFile(p("list"))
	b[30] ^= 1
	os.WriteFile(p("list"), b, 0o644)
	if code, v, _ := verdictOf(t, "verify", p("list"), "--pcrs", p("pcrs.json"), "--checkpoint", cp, "--checkpoint-check", "full"); code != exitMismatch || v.Reason != ReasonCheckpointBroken {
		t.Errorf("full check: exit %d reason %q", code, v.Reason)
	}
	// text output says what happened
	writeQuoteList(t, p("list"), all[:401])
	if code, text, _ := imalog(t, "verify", p("list"), "--pcrs", p("pcrs.json"), "--checkpoint", cp); code != 0 || !bytes.Contains([]byte(text), []byte("resumed after 401 entries, read 0 new")) {
		t.Errorf("text: exit %d\n%s", code, text)
	}
	// a manifest machine with a checkpoint
	m := Manifest{Schema: ManifestSchema, Machines: []ManifestMachine{{Name: "m", List: "list", PCRs: []string{"pcrs.json"}, Checkpoint: "machine.checkpoint"}}}
	mb, _ := json.Marshal(m)
	os.WriteFile(p("manifest.json"), mb, 0o644)
	code, out, _ = imalog(t, "verify", "--machines", p("manifest.json"))
	vs := jsonLines(t, out)
	if code != 0 || len(vs) != 1 || vs[0].Checkpoint == nil || !vs[0].Checkpoint.Resumed {
		t.Errorf("manifest with a checkpoint: exit %d\n%s", code, out)
	}
}
