package main

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
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

// TestFleetHostileMachine: in --machines DIR, a machine whose nonce is a
// symlink to /dev/zero ended the run in an out-of-memory crash, a FIFO
// hung it, and a symlink to a secret file put the secret in that
// machine's error. Each is now that machine's own bad_input; the others
// still get their verdicts, and nothing of the secret is printed.
func TestFleetHostileMachine(t *testing.T) {
	fleet := t.TempDir()
	capture := captures(t)[0]
	good := filepath.Join(fleet, "a-good")
	copyTo(t, filepath.Join(capture, "binary_runtime_measurements"), filepath.Join(good, "binary_runtime_measurements"), nil)
	copyTo(t, filepath.Join(capture, "pcr-sha256.txt"), filepath.Join(good, "pcr-sha256.txt"), nil)
	secret := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(secret, []byte("root:$6$SECRETHASH:19000:0:99999:7:::\n"), 0o600)
	quoteDir := "../../attest/testdata/swtpm-rsassa-sha256"
	hostile := map[string]func(d string){
		"nonce-dev-zero": func(d string) { os.Symlink("/dev/zero", filepath.Join(d, "nonce")) },
		"nonce-fifo":     func(d string) { unixMkfifo(t, filepath.Join(d, "nonce")) },
		"nonce-secret":   func(d string) { os.Symlink(secret, filepath.Join(d, "nonce")) },
		"nonce-relative": func(d string) {
			os.Symlink("../../"+filepath.Base(filepath.Dir(secret))+"/shadow", filepath.Join(d, "nonce"))
		},
		"list-dev-zero": func(d string) {
			os.Remove(filepath.Join(d, "binary_runtime_measurements"))
			os.Symlink("/dev/zero", filepath.Join(d, "binary_runtime_measurements"))
		},
		"list-fifo": func(d string) {
			os.Remove(filepath.Join(d, "binary_runtime_measurements"))
			unixMkfifo(t, filepath.Join(d, "binary_runtime_measurements"))
		},
		"pcrs-secret": func(d string) {
			os.Symlink(secret, filepath.Join(d, "quote.pcrs.x"))
			os.Remove(filepath.Join(d, "quote.pcrs"))
			os.Symlink(secret, filepath.Join(d, "quote.pcrs"))
		},
	}
	for name, mk := range hostile {
		d := filepath.Join(fleet, "h-"+name)
		copyTo(t, filepath.Join(capture, "binary_runtime_measurements"), filepath.Join(d, "binary_runtime_measurements"), nil)
		for _, f := range []string{"q.msg:quote.msg", "q.sig:quote.sig", "ak.pub:ak.pub", "q.pcrs:quote.pcrs", "nonce:nonce"} {
			from, to, _ := strings.Cut(f, ":")
			copyTo(t, filepath.Join(quoteDir, from), filepath.Join(d, to), nil)
		}
		if strings.HasPrefix(name, "nonce") {
			os.Remove(filepath.Join(d, "nonce"))
		}
		mk(d)
	}
	done := make(chan struct{})
	var code int
	var out, errs string
	go func() {
		code, out, errs = imalog(t, "verify", "--machines", fleet, "--jobs", "2")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("imalog verify --machines hangs on a hostile machine")
	}
	if strings.Contains(out+errs, "SECRETHASH") {
		t.Errorf("the secret file's contents reached the output:\n%s%s", out, errs)
	}
	vs := jsonLines(t, out)
	if code != exitBad || len(vs) != len(hostile)+1 {
		t.Fatalf("exit %d, %d verdicts, want 2 and %d:\n%s%s", code, len(vs), len(hostile)+1, out, errs)
	}
	for _, v := range vs {
		t.Logf("%s: %s: %s", v.Machine, v.Reason, v.Error)
		switch {
		case v.Machine == "a-good":
			if v.Reason != ReasonOK {
				t.Errorf("good machine: %s %s", v.Reason, v.Error)
			}
		case v.Reason != ReasonBadInput:
			t.Errorf("%s: reason %s (%s), want bad_input", v.Machine, v.Reason, v.Error)
		}
	}
}

func unixMkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStatThenOpenFIFOSwap: a list checked with stat and then opened by
// name blocked when a symlink was swapped to a FIFO in between; the open
// itself must not block, and a FIFO is refused by what was opened.
func TestStatThenOpenFIFOSwap(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	unixMkfifo(t, fifo)
	link := filepath.Join(dir, "list")
	os.Symlink(fifo, link)
	done := make(chan struct{})
	var code int
	var errs string
	go func() {
		code, _, errs = imalog(t, "verify", link, "--pcrs", "sha256,"+filepath.Join(captures(t)[0], "pcr-sha256.txt"))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("opening a FIFO blocks")
	}
	if code != exitBad || !strings.Contains(errs, "FIFO") {
		t.Errorf("exit %d: %s", code, errs)
	}
}

// TestFleetAKRestricted: --machines could not require a restricted AK.
// A machine whose AK is a PEM key (attributes unknown) is refused with
// --ak-restricted or the manifest's ak_restricted, and not without.
func TestFleetAKRestricted(t *testing.T) {
	fleet := t.TempDir()
	d := filepath.Join(fleet, "m")
	quoteDir := "../../attest/testdata/swtpm-rsassa-sha256"
	copyTo(t, filepath.Join(captures(t)[0], "binary_runtime_measurements"), filepath.Join(d, "binary_runtime_measurements"), nil)
	for _, f := range []string{"q.msg:quote.msg", "q.sig:quote.sig", "ak.pem:ak.pem", "q.pcrs:quote.pcrs", "nonce:nonce"} {
		from, to, _ := strings.Cut(f, ":")
		copyTo(t, filepath.Join(quoteDir, from), filepath.Join(d, to), nil)
	}
	_, out, _ := imalog(t, "verify", "--machines", fleet)
	if vs := jsonLines(t, out); len(vs) != 1 || vs[0].Reason == ReasonNotRestricted {
		t.Fatalf("without --ak-restricted: %s", out)
	}
	code, out, _ := imalog(t, "verify", "--machines", fleet, "--ak-restricted")
	if vs := jsonLines(t, out); code != exitMismatch || len(vs) != 1 || vs[0].Reason != ReasonNotRestricted {
		t.Fatalf("with --ak-restricted: exit %d %s", code, out)
	}
	manifest := filepath.Join(fleet, "manifest.json")
	os.WriteFile(manifest, []byte(`{"schema":"gokexec/imalog-manifest/1","machines":[{"name":"m","list":"m/binary_runtime_measurements",
		"pcrs":["m/quote.pcrs"],"quote":{"message":"m/quote.msg","signature":"m/quote.sig","ak":"m/ak.pem","nonce":"`+
		strings.TrimSpace(string(mustRead(t, filepath.Join(d, "nonce"))))+`"},"ak_restricted":true}]}`), 0o644)
	code, out, _ = imalog(t, "verify", "--machines", manifest)
	if vs := jsonLines(t, out); code != exitMismatch || len(vs) != 1 || vs[0].Reason != ReasonNotRestricted {
		t.Fatalf("manifest ak_restricted: exit %d %s", code, out)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBankNameControlCharacters: a PCR JSON bank name holding CR, LF or
// U+0085 reached stderr raw, so it could print a line of its own such
// as a forged verdict.
func TestBankNameControlCharacters(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(captures(t)[0], "binary_runtime_measurements")
	for _, name := range []string{"sha256\r\nverdict: consistent", "sha256\nverdict: consistent", "sha256\u0085verdict: consistent", "\x1b[2Ksha256"} {
		p := filepath.Join(dir, "pcrs.json")
		b, _ := json.Marshal(map[string]map[string]string{name: {"10": strings.Repeat("00", 32)}})
		os.WriteFile(p, b, 0o644)
		code, out, errs := imalog(t, "verify", list, "--pcrs", p)
		if code != exitBad {
			t.Errorf("%q: exit %d", name, code)
		}
		if strings.Count(errs, "\n") != 1 || strings.ContainsAny(errs, "\r\x1b") || strings.Contains(errs, "\u0085") || strings.Contains(out, "verdict") {
			t.Errorf("%q reached the output raw:\nstdout %q\nstderr %q", name, out, errs)
		}
	}
}

func TestEscapeText(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok":    "plain text: ok",
		"a\nb":              `a\x0ab`,
		"a\rb":              `a\x0db`,
		"nel\u0085":         `nel\xc2\x85`,
		"bad \xff utf8":     `bad \xff utf8`,
		`back\slash`:        `back\\slash`,
		"bidi \u202e":       `bidi \xe2\x80\xae`,
		"ünïcode":           "ünïcode",
		"\xef\xbf\xbd real": `\xef\xbf\xbd real`, // U+FFFD itself is escaped: it cannot pass for an invalid byte
	} {
		if got := escapeText(in); got != want {
			t.Errorf("escapeText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHelpVersion: `imalog verify --help` exited 2 with the general
// usage; --quote, --checkpoint, --machines and restore were in no help;
// `imalog --version` was an unknown command.
func TestHelpVersion(t *testing.T) {
	for _, c := range helpCmds {
		code, out, errs := imalog(t, c.name, "--help")
		if code != exitOK || errs != "" || !strings.HasPrefix(out, "usage:\n  imalog "+c.name) {
			t.Errorf("%s --help: exit %d\n%s%s", c.name, code, out, errs)
		}
		for _, o := range c.opts {
			if strings.Count(out, "--"+o.long+" ")+strings.Count(out, "--"+o.long+"[")+strings.Count(out, "--"+o.long+"\n") == 0 {
				t.Errorf("%s --help lacks --%s", c.name, o.long)
			}
			// every option the help names, the command takes
			args := []string{c.name, "--" + o.long}
			if o.long == "help" {
				continue
			}
			if o.arg != "" && !strings.HasPrefix(o.arg, "[=") {
				args = append(args, "x")
			}
			if o.long == "machines" {
				args = []string{c.name, "--machines=/nonexistent"}
			}
			_, _, errs := imalog(t, append(args, "/nonexistent-list")...)
			if strings.Contains(errs, "unknown flag") {
				t.Errorf("%s: --%s is in the help but not taken: %s", c.name, o.long, errs)
			}
		}
		// every option line is one line
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "-") && !strings.HasPrefix(l, "  ") {
				t.Errorf("%s: option line not indented: %q", c.name, l)
			}
		}
	}
	code, out, _ := imalog(t, "--help")
	for _, want := range []string{"imalog restore", "--quote MSG", "--checkpoint CPFILE", "--machines DIR|MANIFEST", "--version"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("imalog --help lacks %q", want)
		}
	}
	code, out, errs := imalog(t, "--version")
	if code != exitOK || !strings.HasPrefix(out, "imalog ") || !strings.Contains(out, "commit ") || errs != "" {
		t.Errorf("--version: exit %d %q %q", code, out, errs)
	}
}

// TestSysfsPCRFilesAccepted: the bare-hex sysfs pcr-<bank>/<n> files
// were refused; a capture verifies from them as from its evmctl files.
func TestSysfsPCRFilesAccepted(t *testing.T) {
	capture := captures(t)[0]
	v, err := ima.ParsePCRFile(mustRead(t, filepath.Join(capture, "pcr-sha256.txt")), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(t.TempDir(), "pcr-sha256")
	os.MkdirAll(sys, 0o755)
	args := []string{"verify", filepath.Join(capture, "binary_runtime_measurements")}
	for _, p := range []uint32{10, 11} {
		f := filepath.Join(sys, fmt.Sprint(p))
		os.WriteFile(f, []byte(strings.ToUpper(fmt.Sprintf("%x", v[crypto.SHA256][p]))+"\n"), 0o444)
		args = append(args, "--pcrs", f)
	}
	code, out, errs := imalog(t, args...)
	if code != exitOK || !strings.Contains(out, "verdict: consistent") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}

// TestBoundedTimelineManyBootsAndMarkers: every boot_aggregate and every
// marker was kept and printed: 400k boot_aggregates cost ~100 MiB and 34
// MB of output, 400k markers ~200 MiB and 51 MB. Output (text and JSON)
// stays under 1 MiB with the counts exact, and what is kept is bounded.
func TestBoundedTimelineManyBootsAndMarkers(t *testing.T) {
	n := 400000
	if testing.Short() {
		n = 100000
	}
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	p := ima.KexecMarkerPayload(0, 1000, 5)
	load := ima.NewBufEntry(10, ima.MarkerKexecLoad, []byte(p), crypto.SHA256)
	for name, es := range map[string][]ima.Entry{
		"boot_aggregates": {agg},
		"markers":         {agg, load},
	} {
		one := ima.AppendList(nil, es[len(es)-1:], binary.LittleEndian)
		raw := ima.AppendList(nil, es[:len(es)-1], binary.LittleEndian)
		for range n {
			raw = append(raw, one...)
		}
		dir := t.TempDir()
		list := filepath.Join(dir, "list")
		os.WriteFile(list, raw, 0o644)
		all, err := ima.ParseList(raw, binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		pj, _ := ima.MarshalPCRJSON(ima.PCRValues{crypto.SHA256: ima.Replay(all, crypto.SHA256, ima.MethodPerBank)})
		pcrs := filepath.Join(dir, "pcrs.json")
		os.WriteFile(pcrs, pj, 0o644)
		for _, js := range []bool{false, true} {
			args := []string{"verify", list, "--pcrs", pcrs, "--checkpoint", filepath.Join(dir, "cp")}
			if js {
				args = append(args, "--json")
			}
			code, out, errs := imalog(t, args...)
			if len(out)+len(errs) > 1<<20 {
				t.Errorf("%s json=%v: %d bytes of output", name, js, len(out)+len(errs))
			}
			if code == exitBad {
				t.Fatalf("%s: %s", name, errs)
			}
			boots := n
			if name == "markers" {
				boots = 1
			}
			if !js && !strings.Contains(out, fmt.Sprintf("%d entries, %d boot(s)", len(all), boots)) {
				t.Errorf("%s: counts not exact:\n%.2000s", name, out)
			}
			if js && !strings.Contains(out, fmt.Sprintf(`"boot_count": %d`, boots)) {
				t.Errorf("%s json: boot_count not exact", name)
			}
			// the checkpoint written is accepted by the next run (it
			// once was refused past 4096 boots)
			if strings.Contains(out+errs, "checkpoint") && (strings.Contains(out+errs, "bad input") || code == exitBad) {
				t.Errorf("%s: checkpoint refused: %s", name, errs)
			}
		}
		tl := ima.BuildTimeline(all, binary.LittleEndian)
		if len(tl.Boots) > ima.MaxTimelineBoots {
			t.Errorf("%s: %d boots kept", name, len(tl.Boots))
		}
		for _, b := range tl.Boots {
			if len(b.Markers) > ima.KeepMarkers+2 {
				t.Errorf("%s: %d markers kept in boot %d", name, len(b.Markers), b.Number)
			}
		}
	}
}

// TestCheckpointMoreThan4096Boots: a list with more than 4096 boots
// wrote a checkpoint that every later run refused as bad input.
func TestCheckpointMoreThan4096Boots(t *testing.T) {
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es := make([]ima.Entry, 5000)
	for i := range es {
		es[i] = agg
	}
	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	writeQuoteList(t, list, es)
	writePCRJSON(t, filepath.Join(dir, "pcrs.json"), es)
	cp := filepath.Join(dir, "cp")
	for run := range 2 {
		code, out, errs := imalog(t, "verify", list, "--pcrs", filepath.Join(dir, "pcrs.json"), "--checkpoint", cp)
		if code != exitOK {
			t.Fatalf("run %d: exit %d\n%s%s", run+1, code, out, errs)
		}
		if run == 1 && !strings.Contains(out, "resumed after 5000 entries") {
			t.Errorf("second run did not resume:\n%s", out)
		}
	}
}

// TestJSONEnvelopeEveryCommand: every command's --json output is one
// object with a versioned schema, bad input included (it was a message on
// stderr only, and show/replay/restore had no schema).
func TestJSONEnvelopeEveryCommand(t *testing.T) {
	capture := captures(t)[0]
	list := filepath.Join(capture, "binary_runtime_measurements")
	pcrs := "sha256," + filepath.Join(capture, "pcr-sha256.txt")
	for _, c := range []struct {
		args   []string
		schema string
		code   int
	}{
		{[]string{"show", "--format", "json", list}, SchemaShow, 0},
		{[]string{"replay", "--json", list}, SchemaReplay, 0},
		{[]string{"restore", "--list", "--json", list}, SchemaRestore, 0},
		{[]string{"verify", "--json", list, "--pcrs", pcrs}, VerdictSchema, 0},
		{[]string{"show", "--format", "json", "/nonexistent"}, SchemaShow, 2},
		{[]string{"replay", "--json", "/nonexistent"}, SchemaReplay, 2},
		{[]string{"restore", "--json", "/nonexistent"}, SchemaRestore, 2},
		{[]string{"verify", "--json", "/nonexistent", "--pcrs", pcrs}, VerdictSchema, 2},
		{[]string{"verify", "--json", list, "--pcrs", "/nonexistent"}, VerdictSchema, 2},
	} {
		code, out, _ := imalog(t, c.args...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || code != c.code || v["schema"] != c.schema {
			t.Errorf("%v: exit %d, schema %v (%v):\n%.300s", c.args, code, v["schema"], err, out)
			continue
		}
		if c.code == exitBad && (v["reason"] != ReasonBadInput || v["exit"] != float64(exitBad) || v["error"] == "") {
			t.Errorf("%v: bad input envelope %v", c.args, v)
		}
	}
}

// TestEventLogOption: --event-log FILE gives PCRs 0-9 for each boot's
// boot_aggregate (a real firmware log from go-attestation's test data);
// a missing one is named by its option.
func TestEventLogOption(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-attestation").Output()
	if err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(strings.TrimSpace(string(dir)), "attest", "testdata", "ubuntu_2104_shielded_vm_no_secure_boot_eventlog")
	_, fw, err := verdict.ReplayEventLog(mustRead(t, logf))
	if err != nil {
		t.Fatal(err)
	}
	agg, _ := ima.BootAggregateOf(fw[crypto.SHA256], crypto.SHA256)
	e, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, agg, crypto.SHA256, nil)
	es := append([]ima.Entry{e}, syntheticList(t, 5, 10, "el")[1:]...)
	d := t.TempDir()
	list := filepath.Join(d, "list")
	writeQuoteList(t, list, es)
	writePCRJSON(t, filepath.Join(d, "pcrs.json"), es)
	code, out, errs := imalog(t, "verify", list, "--pcrs", filepath.Join(d, "pcrs.json"), "--event-log", logf)
	if code != exitOK || !strings.Contains(out, "boot_aggregate matches PCRs 0-9 (sha256)") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	code, _, errs = imalog(t, "verify", list, "--pcrs", filepath.Join(d, "pcrs.json"), "--event-log", filepath.Join(d, "missing"))
	if code != exitBad || !strings.Contains(errs, "--event-log") {
		t.Errorf("missing log: exit %d %s", code, errs)
	}
}
