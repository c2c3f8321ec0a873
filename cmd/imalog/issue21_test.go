package main

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// tamperedExcused is issue 21's first reproducer: 65 junk stored
// digests in PCR 10 (sha256 binds their data; sha1 does not quote
// PCR 10), then a PCR-11 entry rewritten after it was measured (sha1,
// which binds only its stored digest, quotes PCR 11).
func tamperedExcused(t *testing.T, junk int) ([]ima.Entry, ima.PCRValues) {
	t.Helper()
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es := []ima.Entry{agg}
	for i := range junk {
		d := sha256.Sum256(fmt.Appendf(nil, "junk %d", i))
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/bin/j%d", i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.TemplateDigest[0] ^= 0xff
		es = append(es, e)
	}
	d := sha256.Sum256([]byte("real"))
	orig, _ := ima.NewFileEntry(11, "ima-ng", "/etc/secret", d[:], crypto.SHA256, nil)
	es = append(es, orig)
	q := ima.PCRValues{
		crypto.SHA256: {10: ima.Replay(es, crypto.SHA256, ima.MethodPerBank)[10]},
		crypto.SHA1:   {11: ima.Replay(es, crypto.SHA1, ima.MethodPerBank)[11]},
	}
	f := sha256.Sum256([]byte("forged"))
	fe, _ := ima.NewFileEntry(11, "ima-ng", "/etc/secret", f[:], crypto.SHA256, nil)
	fe.TemplateDigest = orig.TemplateDigest
	es[len(es)-1] = fe
	return es, q
}

// TestTamperedListJudgedConsistentFromStdinCheckpoint: the same list and
// values were "inconsistent" (exit 1) from the file and "consistent"
// (exit 0) from standard input and --checkpoint.
func TestTamperedListJudgedConsistentFromStdinCheckpoint(t *testing.T) {
	dir := t.TempDir()
	es, q := tamperedExcused(t, 65)
	raw := ima.AppendList(nil, es, binary.LittleEndian)
	list := filepath.Join(dir, "list")
	os.WriteFile(list, raw, 0o644)
	pj, _ := ima.MarshalPCRJSON(q)
	pcrs := filepath.Join(dir, "pcrs.json")
	os.WriteFile(pcrs, pj, 0o644)
	runIn := func(stdin []byte, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(args, bytes.NewReader(stdin), &out, &errb)
		return code, out.String() + errb.String()
	}
	for _, c := range []struct {
		name  string
		stdin []byte
		args  []string
	}{
		{"file", nil, []string{"verify", list, "--pcrs", pcrs}},
		{"stdin", raw, []string{"verify", "-", "--pcrs", pcrs}},
		{"checkpoint", nil, []string{"verify", list, "--pcrs", pcrs, "--checkpoint", filepath.Join(dir, "cp")}},
		{"checkpoint-resumed", nil, []string{"verify", list, "--pcrs", pcrs, "--checkpoint", filepath.Join(dir, "cp")}},
	} {
		code, out := runIn(c.stdin, c.args...)
		if code != exitMismatch || !strings.Contains(out, fmt.Sprintf("entry %d: stored template digest differs", len(es)-1)) {
			t.Errorf("%s: exit %d, want 1 naming entry %d:\n%s", c.name, code, len(es)-1, out)
		}
	}
}
