package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/internal/swtpmtest"
)

func copyTo(t *testing.T, src, dst string, edit func([]byte)) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(b)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func jsonLines(t *testing.T, out string) []testVerdict {
	t.Helper()
	var vs []testVerdict
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var v testVerdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		vs = append(vs, v)
	}
	return vs
}

// TestVerifyMachines: a directory of machines (real captures with their
// PCR files, a tampered one, an unreadable one, a quoted one) verified in
// one process gives, per machine, the verdict a single run gives; a
// manifest naming the same files gives the same verdicts.
func TestVerifyMachines(t *testing.T) {
	caps := captures(t)
	root := t.TempDir()
	fleet := filepath.Join(root, "fleet")
	var single []int // exit codes of one run per machine, in name order
	for i, c := range caps {
		d := filepath.Join(fleet, "a-capture-"+string(rune('0'+i)))
		copyTo(t, filepath.Join(c, "binary_runtime_measurements"), filepath.Join(d, "binary_runtime_measurements"), nil)
		for _, b := range []string{"sha1", "sha256", "sha384"} {
			copyTo(t, filepath.Join(c, "pcr-"+b+".txt"), filepath.Join(d, "pcr-"+b+".txt"), nil)
		}
	}
	// tampered: one byte of a file name in the first capture's list
	tm := filepath.Join(fleet, "b-tampered")
	copyTo(t, filepath.Join(caps[0], "binary_runtime_measurements"), filepath.Join(tm, "binary_runtime_measurements"), func(b []byte) {
		i := strings.Index(string(b), "/usr/")
		b[i+1] = 'X'
	})
	for _, bk := range []string{"sha1", "sha256", "sha384"} {
		copyTo(t, filepath.Join(caps[0], "pcr-"+bk+".txt"), filepath.Join(tm, "pcr-"+bk+".txt"), nil)
	}
	// unreadable: a list that is not one
	bad := filepath.Join(fleet, "c-garbage")
	copyTo(t, filepath.Join(caps[0], "info.txt"), filepath.Join(bad, "binary_runtime_measurements"), nil)
	copyTo(t, filepath.Join(caps[0], "pcr-sha256.txt"), filepath.Join(bad, "pcrs.txt"), nil)
	// quoted: a synthetic list extended into swtpm and quoted
	tpm := swtpmtest.Start(t)
	k := swtpmtest.AKSpecs[2] // ECDSA
	tpm.MakeAK(t, k)
	es := syntheticList(t, 20, 10, "q")
	extendInto(t, tpm, es)
	tpm.Quote(t, k, "q", "sha256:10", "c0ffee")
	qd := filepath.Join(fleet, "d-quoted")
	os.MkdirAll(qd, 0o755)
	writeQuoteList(t, filepath.Join(qd, "binary_runtime_measurements"), es)
	copyTo(t, tpm.Path("q.msg"), filepath.Join(qd, "quote.msg"), nil)
	copyTo(t, tpm.Path("q.sig"), filepath.Join(qd, "quote.sig"), nil)
	copyTo(t, tpm.Path("q.pcrs"), filepath.Join(qd, "quote.pcrs"), nil)
	copyTo(t, tpm.Path(k.Name+".pem"), filepath.Join(qd, "ak.pem"), nil)
	os.WriteFile(filepath.Join(qd, "nonce"), []byte("c0ffee\n"), 0o644)
	// the same machine with a nonce the server did not send
	rd := filepath.Join(fleet, "e-replayed")
	for _, f := range []string{"binary_runtime_measurements", "quote.msg", "quote.sig", "quote.pcrs", "ak.pem"} {
		copyTo(t, filepath.Join(qd, f), filepath.Join(rd, f), nil)
	}
	os.WriteFile(filepath.Join(rd, "nonce"), []byte("c0ffef\n"), 0o644)

	names, _ := os.ReadDir(fleet)
	for _, n := range names {
		d := filepath.Join(fleet, n.Name())
		args := []string{"verify", filepath.Join(d, "binary_runtime_measurements")}
		if _, err := os.Stat(filepath.Join(d, "quote.msg")); err == nil {
			nonce, _ := os.ReadFile(filepath.Join(d, "nonce"))
			args = append(args, "--quote", filepath.Join(d, "quote.msg"), "--sig", filepath.Join(d, "quote.sig"),
				"--ak", filepath.Join(d, "ak.pem"), "--pcrs", filepath.Join(d, "quote.pcrs"), "--nonce", strings.TrimSpace(string(nonce)))
		} else if _, err := os.Stat(filepath.Join(d, "pcrs.txt")); err == nil {
			args = append(args, "--pcrs", filepath.Join(d, "pcrs.txt"))
		} else {
			for _, b := range []string{"sha1", "sha256", "sha384"} {
				args = append(args, "--pcrs", b+","+filepath.Join(d, "pcr-"+b+".txt"))
			}
		}
		code, _, _ := imalog(t, args...)
		single = append(single, code)
	}

	code, out, errs := imalog(t, "verify", "--machines", fleet, "--jobs", "3")
	vs := jsonLines(t, out)
	if code != exitBad || len(vs) != len(single) {
		t.Fatalf("exit %d, %d verdicts for %d machines\n%s%s", code, len(vs), len(single), out, errs)
	}
	want := map[string]string{"b-tampered": ReasonListMismatch, "c-garbage": ReasonBadInput, "d-quoted": ReasonOK, "e-replayed": ReasonWrongNonce}
	for i, v := range vs {
		if v.Exit != single[i] || v.Schema != VerdictSchema || v.Machine != names[i].Name() {
			t.Errorf("machine %d %q: exit %d in the fleet, %d alone", i, v.Machine, v.Exit, single[i])
		}
		w, ok := want[v.Machine]
		if !ok {
			w = ReasonOK
		}
		if v.Reason != w {
			t.Errorf("%s: reason %q, want %q (%s)", v.Machine, v.Reason, w, v.Error)
		}
	}
	// The same machines through a manifest, paths relative to it.
	m := Manifest{Schema: ManifestSchema}
	for _, v := range vs {
		mm := ManifestMachine{Name: v.Machine, List: filepath.Join("fleet", v.Machine, "binary_runtime_measurements")}
		d := filepath.Join("fleet", v.Machine)
		switch {
		case v.Quote != nil:
			nonce, _ := os.ReadFile(filepath.Join(root, d, "nonce"))
			mm.Quote = &ManifestQuote{Message: filepath.Join(d, "quote.msg"), Signature: filepath.Join(d, "quote.sig"), AK: filepath.Join(d, "ak.pem"), Nonce: strings.TrimSpace(string(nonce))}
			mm.PCRs = []string{filepath.Join(d, "quote.pcrs")}
		case v.Machine == "c-garbage":
			mm.PCRs = []string{filepath.Join(d, "pcrs.txt")}
		default:
			for _, b := range []string{"sha1", "sha256", "sha384"} {
				mm.PCRs = append(mm.PCRs, b+","+filepath.Join(d, "pcr-"+b+".txt"))
			}
		}
		m.Machines = append(m.Machines, mm)
	}
	mb, _ := json.Marshal(m)
	mf := filepath.Join(root, "manifest.json")
	os.WriteFile(mf, mb, 0o644)
	code2, out2, errs2 := imalog(t, "verify", "--machines", mf)
	vs2 := jsonLines(t, out2)
	if code2 != code || len(vs2) != len(vs) {
		t.Fatalf("manifest: exit %d, %d verdicts\n%s", code2, len(vs2), errs2)
	}
	for i := range vs {
		if vs2[i].Machine != vs[i].Machine || vs2[i].Reason != vs[i].Reason || vs2[i].Exit != vs[i].Exit {
			t.Errorf("manifest %s: %s/%d, directory %s/%d", vs2[i].Machine, vs2[i].Reason, vs2[i].Exit, vs[i].Reason, vs[i].Exit)
		}
	}
	// A manifest of another version is refused whole.
	os.WriteFile(mf, []byte(`{"schema":"gokexec/imalog-manifest/9","machines":[]}`), 0o644)
	if code, _, _ := imalog(t, "verify", "--machines", mf); code != exitBad {
		t.Errorf("manifest version 9: exit %d", code)
	}
}
