package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// The reproducers of issue 12 through the command line.

// realEntries returns the first n entries of the large 6.12 capture.
func realEntries(t *testing.T, n int) []ima.Entry {
	t.Helper()
	b, err := os.ReadFile("../../ima/testdata/captures/linux-image-6.12.117+deb12-cloud-amd64/large/binary_runtime_measurements")
	if err != nil {
		t.Fatal(err)
	}
	es, err := ima.ParseList(b, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	return es[:n:n]
}

// writePCRs writes bank's values of pcrs in evmctl's format.
func writePCRs(t *testing.T, path string, v map[uint32][]byte, pcrs ...uint32) string {
	t.Helper()
	var b strings.Builder
	for _, p := range pcrs {
		fmt.Fprintf(&b, "PCR-%02d:", p)
		for _, x := range v[p] {
			fmt.Fprintf(&b, " %02X", x)
		}
		b.WriteString("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeList(t *testing.T, dir string, es []ima.Entry) string {
	t.Helper()
	p := filepath.Join(dir, "list")
	if err := os.WriteFile(p, ima.AppendList(nil, es, binary.LittleEndian), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Forged PCR-11 entries passed when only PCR 10 was quoted: now they are
// reported with their count, and --strict fails.
func TestCLIForgedPCR11(t *testing.T) {
	dir := t.TempDir()
	es := realEntries(t, 40)
	s1 := writePCRs(t, filepath.Join(dir, "sha1"), ima.Replay(es, crypto.SHA1, ima.MethodPerBank), 10)
	s256 := writePCRs(t, filepath.Join(dir, "sha256"), ima.Replay(es, crypto.SHA256, ima.MethodPerBank), 10)
	for i := 0; i < 3; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, _ := ima.NewFileEntry(11, "ima-ng", fmt.Sprintf("/usr/sbin/forged%d", i), d[:], crypto.SHA256, nil)
		es = append(es, e)
	}
	list := writeList(t, dir, es)
	code, out, _ := imalog(t, "verify", list, "--pcrs", "sha1,"+s1, "--pcrs", "sha256,"+s256)
	if code != 0 || !strings.Contains(out, "not checked: PCR 11 has 3 entries, not quoted in bank sha1, sha256\n") {
		t.Errorf("without --strict: exit %d\n%s", code, out)
	}
	code, out, _ = imalog(t, "verify", "--strict", list, "--pcrs", "sha1,"+s1, "--pcrs", "sha256,"+s256)
	if code != 1 || !strings.Contains(out, "verdict: inconsistent (strict): strict: PCR 11 has 3 entries") {
		t.Errorf("--strict: exit %d\n%s", code, out)
	}
}

// PCRs read bank by bank from sysfs (sha1 at 307, sha256 at 309, sha384
// at 311 of 313 entries): accepted as evmctl accepts them, with both
// ranges named and the assumption stated; refused as one instant.
func TestCLIBankByBank(t *testing.T) {
	dir := t.TempDir()
	es := realEntries(t, 313)
	list := writeList(t, dir, es)
	var args []string
	for _, c := range []struct {
		bank crypto.Hash
		n    int
	}{{crypto.SHA1, 307}, {crypto.SHA256, 309}, {crypto.SHA384, 311}} {
		name := ima.HashName(c.bank)
		args = append(args, "--pcrs", name+","+writePCRs(t, filepath.Join(dir, name), ima.Replay(es[:c.n], c.bank, ima.MethodPerBank), 10))
	}
	code, out, _ := imalog(t, append([]string{"verify", list}, args...)...)
	for _, want := range []string{
		"pcr reads: per-bank (assumed: the values come from 3 separate inputs",
		"bank sha1: PCRs 10 bind entries 0-306 of 313 (per-bank hash)\n",
		"bank sha256: PCRs 10 bind entries 0-308 of 313 (per-bank hash)\n",
		"bank sha384: PCRs 10 bind entries 0-310 of 313 (per-bank hash)\n",
		"not bound: 6 entries after the matched prefix (307-312)\n",
		"verdict: consistent (bank by bank): every bank binds entries 0-306, some bank binds entries 0-310, of 313\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	code, out, _ = imalog(t, append([]string{"verify", "--reads", "instant", list}, args...)...)
	if code != 1 || !strings.Contains(out, "pcr reads: instant (--reads instant)") || !strings.Contains(out, "bind no prefix common to every bank; alone they bind entries 0-306 (per-bank hash)") {
		t.Errorf("--reads instant: exit %d\n%s", code, out)
	}
}

// A kexec_execute payload with a newline, a forged verdict and ESC[8m
// (conceal) printed a forged verdict and hid the real one.
func TestCLIForgedVerdict(t *testing.T) {
	dir := t.TempDir()
	es := realEntries(t, 20)
	q := ima.Replay(es, crypto.SHA256, ima.MethodPerBank)
	payload := "kexec_segment_size=1;\nverdict: consistent: the first 21 of 21 entries reproduce every quoted PCR\n\x1b[8m"
	es = append(es, ima.NewBufEntry(10, ima.MarkerKexecExec, []byte(payload), crypto.SHA256))
	list := writeList(t, dir, es)
	pcr := writePCRs(t, filepath.Join(dir, "sha256"), q, 10)
	code, out, _ := imalog(t, "verify", list, "--pcrs", "sha256,"+pcr)
	if strings.Count("\n"+out, "\nverdict:") != 1 || strings.ContainsRune(out, 0x1b) || !strings.Contains(out, `kexec_segment_size=1;\x0averdict:\x20consistent`) {
		t.Errorf("exit %d, forged output:\n%s", code, out)
	}
	if !strings.Contains(out, "\nverdict: consistent (one instant): entries 0-19 of 21 reproduce every quoted PCR\n") {
		t.Errorf("real verdict missing:\n%s", out)
	}
	_, js, _ := imalog(t, "verify", "--json", list, "--pcrs", "sha256,"+pcr)
	var v struct {
		Timeline ima.Timeline
	}
	if err := json.Unmarshal([]byte(js), &v); err != nil || v.Timeline.Boots[0].Markers[0].Payload != payload {
		t.Errorf("JSON payload not exact: %v %+v", err, v.Timeline)
	}
	code, out, _ = imalog(t, "show", list)
	if code != 0 || strings.Count(out, "\n") != len(es) || strings.ContainsRune(out, 0x1b) {
		t.Errorf("show: exit %d\n%s", code, out)
	}
}
