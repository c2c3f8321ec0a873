package integration

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/swtpmtest"
	"github.com/gokexec/gokexec/qemu/proto"
)

// tpm2Tools puts tpm2-tools' multi-call binary, with its libraries, into
// the guest, and the device TCTI it dlopens (ldd does not see that one).
func tpm2Tools(t *testing.T, g *guest) {
	t.Helper()
	bin := swtpmtest.NeedTool(t, "tpm2")
	g.hostBin["/bin/tpm2"] = bin
	tcti, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0")
	if err != nil {
		t.Fatalf("the device TCTI of tpm2-tools (libtss2-tcti-device0): %v", err)
	}
	g.hostBin["/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0"] = tcti
}

func freshNonce(t *testing.T) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestQuoteAfterHandover: the guest hands its list over with gokexec;
// the second kernel creates an AK and makes two quotes with tpm2-tools,
// each over a nonce the host drew for this run, then reports the list
// and the quote files. On the host, imalog verifies the newer quote and
// the list; the list with one entry changed, the older quote presented
// for the newer nonce (a replay), and a quote from another TPM (a host
// swtpm, with its own AK or with the guest's) are each refused, with the
// reason named in the JSON verdict. Then the two lists the guest reported
// (after the old quote and after the new one) are verified incrementally
// with a checkpoint, giving the full run's verdict.
func TestQuoteAfterHandover(t *testing.T) {
	g := newGuest(t, "./cmd/imalog")
	tpm2Tools(t, g)
	g.files["/boot/vmlinuz-2"] = g.k2
	old, fresh := freshNonce(t), freshNonce(t)
	const sel = "sha1:10+sha256:0,10"
	tcti := []string{"-T", "device:/dev/tpmrm0"}
	tool := func(args ...string) proto.Action {
		return proto.Action{Run: append(append([]string{"/bin/tpm2"}, args...), tcti...), ExpectExit: intp(0)}
	}
	quote := func(out, nonce string) proto.Action {
		return tool("quote", "-c", "/tmp/ak.ctx", "-l", sel, "-g", "sha256", "-q", nonce,
			"-m", "/tmp/"+out+".msg", "-s", "/tmp/"+out+".sig", "-o", "/tmp/"+out+".pcrs")
	}
	step2 := []proto.Action{
		{Policy: basePolicy}, // a kexec'ed kernel starts with its built-in policy
		tool("createek", "-c", "/tmp/ek.ctx", "-G", "rsa", "-u", "/tmp/ek.pub"),
		tool("createak", "-C", "/tmp/ek.ctx", "-c", "/tmp/ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u", "/tmp/ak.pub"),
		quote("old", old),
		{Report: []string{"list"}}, // what a server got with the old quote
		{MeasureFiles: 5, Dir: "/tmp/between"},
		quote("q", fresh),
		{MeasureFiles: 3, Dir: "/tmp/after"}, // entries after the quote: a prefix is quoted
		{Report: []string{"boot", "pcrs", "list"}},
	}
	for _, f := range []string{"ak.pub", "old.msg", "old.sig", "old.pcrs", "q.msg", "q.sig", "q.pcrs"} {
		step2 = append(step2, proto.Action{File: "/tmp/" + f})
	}
	// Generous deadlines: under software emulation on a loaded machine
	// the repack, the load and the key creations take minutes.
	g.timeout = 15 * time.Minute
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2"), "--ima-extra", "64K"}, ExpectExit: intp(0)},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 600, Actions: step2},
	}}
	res := g.run(g.k1, sc)
	dir := filepath.Join(g.art, "quote")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, f := range []string{"ak.pub", "old.msg", "old.sig", "old.pcrs", "q.msg", "q.sig", "q.pcrs"} {
		recs := res.Find(2, proto.TypeFile, "/tmp/"+f)
		if len(recs) == 0 {
			t.Fatalf("boot 2 reported no /tmp/%s", f)
		}
		writeFile(t, p(f), recs[len(recs)-1].Data)
	}
	lists := res.Find(2, proto.TypeList, "binary_runtime_measurements")
	if len(lists) != 2 {
		t.Fatalf("boot 2 reported %d lists, want 2", len(lists))
	}
	writeFile(t, p("list-old"), lists[0].Data)
	listBytes := lists[1].Data
	list := parseList(t, listBytes, "boot 2")
	writeFile(t, p("list"), listBytes)
	if tl := ima.BuildTimeline(list, binary.LittleEndian); tl.Verdict != ima.VerdictSoftReboots || len(tl.Boots) != 2 {
		t.Fatalf("boot 2 list: timeline %s, %d boots; want a gokexec hand-over", tl.Verdict, len(tl.Boots))
	}
	// The tampered list: one measured file's name changed in place.
	tampered := []byte(string(listBytes))
	i := strings.Index(string(tampered), "/tmp/m/")
	if i < 0 {
		t.Fatal("no /tmp/m/ file in the list")
	}
	tampered[i+1] = 'X'
	writeFile(t, p("tampered"), tampered)
	// Another TPM: a host swtpm with its own AK quotes the same nonce.
	other := swtpmtest.Start(t)
	k := swtpmtest.AKSpecs[0]
	other.MakeAK(t, k)
	other.Quote(t, k, "other", sel, fresh)
	for _, f := range []string{"other.msg", "other.sig", "other.pcrs", k.Name + ".pub"} {
		b, err := os.ReadFile(other.Path(f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, p(f), b)
	}

	imalog := g.bins["./cmd/imalog"]
	verify := func(list, q, ak, nonce string) (int, map[string]any, string) {
		args := []string{"verify", p(list), "--quote", p(q + ".msg"), "--sig", p(q + ".sig"), "--ak", p(ak), "--pcrs", p(q + ".pcrs"), "--nonce", nonce}
		out, err := exec.Command(imalog, append(args, "--json")...).Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("imalog %v: %v\n%s", args, err, out)
		}
		text, _ := exec.Command(imalog, args...).CombinedOutput()
		return code, v, string(text)
	}
	cases := []struct {
		name, list, quote, ak, nonce string
		code                         int
		reason                       string
	}{
		{"the quote and the list", "list", "q", "ak.pub", fresh, 0, "ok"},
		{"a tampered list", "tampered", "q", "ak.pub", fresh, 1, "list_mismatch"},
		{"a replayed old quote", "list", "old", "ak.pub", fresh, 1, "wrong_nonce"},
		{"the old quote for its own nonce", "list", "old", "ak.pub", old, 0, "ok"},
		{"another TPM's quote", "list", "other", "ak.pub", fresh, 1, "bad_signature"},
		{"another TPM's AK", "list", "q", k.Name + ".pub", fresh, 1, "bad_signature"},
	}
	for _, c := range cases {
		code, v, text := verify(c.list, c.quote, c.ak, c.nonce)
		if code != c.code || v["reason"] != c.reason || v["schema"] != "gokexec/imalog-verdict/1" {
			t.Errorf("%s: exit %d reason %v, want %d %s\n%s", c.name, code, v["reason"], c.code, c.reason, text)
			continue
		}
		if c.name == "the quote and the list" {
			vr := v["verify"].(map[string]any)
			prefix, entries := int(vr["prefix"].(float64)), int(vr["entries"].(float64))
			if prefix <= 0 || prefix >= entries {
				t.Errorf("the quote binds %d of %d entries; want a proper prefix (files were read after it)", prefix, entries)
			}
			writeFile(t, p("verify.txt"), []byte(text))
			t.Logf("imalog verify:\n%s", text)
		}
	}
	// Incrementally, as a server polls: the old list with the old quote
	// writes a checkpoint; the new list with the new quote resumes from
	// it, reads only the entries since, and gives the full run's verdict.
	cp := p("checkpoint")
	incremental := func(list, q, nonce string) map[string]any {
		out, err := exec.Command(imalog, "verify", p(list), "--quote", p(q+".msg"), "--sig", p(q+".sig"), "--ak", p("ak.pub"),
			"--pcrs", p(q+".pcrs"), "--nonce", nonce, "--checkpoint", cp, "--json").Output()
		if err != nil {
			t.Fatalf("imalog --checkpoint on %s: %v\n%s", list, err, out)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	first := incremental("list-old", "old", old)
	second := incremental("list", "q", fresh)
	c1, c2 := first["checkpoint"].(map[string]any), second["checkpoint"].(map[string]any)
	_, full, _ := verify("list", "q", "ak.pub", fresh)
	fv, _ := json.Marshal(full["verify"])
	sv, _ := json.Marshal(second["verify"])
	if second["reason"] != "ok" || c2["resumed"] != true || c2["from"] != c1["read"] || string(fv) != string(sv) {
		t.Fatalf("incremental: first %v, second %v %v; same as full: %v", c1, second["reason"], c2, string(fv) == string(sv))
	}
	t.Logf("incremental: the old quote's run read %v entries; the new one resumed and read %v", c1["read"], c2["read"])
}
