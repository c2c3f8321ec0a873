package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known values: the template data below was written by hand; its digests and
// the PCR extends were computed independently with `openssl dgst -sha1`,
// `-sha256` and `-sha384` over files holding exactly the bytes described.
const (
	knownTD     = "1a000000736861313a001111111111111111111111111111111111111111030000002f6100"
	knownSHA1   = "575c47255ce943161e7793fff3410d3f70e75783"
	knownSHA256 = "f124aa7308c0b3bafbe5989f2892130b6e08d5782520ac4f4d3bdb5b717397a1"
	knownSHA384 = "011c8b9690c27c4fc3df54578eaa64e6ee26686a86bafa424f6a410a882e7f510413ceb9b1b4f2400c8ad502fa3baf41"
	// sha256(32 zero bytes || knownSHA256)
	knownPCR256 = "689c28c7ba83388a6bc8c34942c9be9f046092cbd99b80591c5fcd75e8c289fe"
	// sha384(48 zero bytes || knownSHA1 zero-padded to 48)
	knownPCR384Padded = "fce42e81ecf9b1bec00673bc6d290aa93a8d27e237c27a93f1ad046dc30f907891c169d1de62e5d1c411950948fa1547"
	// sha1(20 zero bytes || 20 0xff bytes): one violation in the sha1 bank
	knownPCR1Violation = "bac37b84f007d0238af95af707cac8d61254870e"
)

func knownListBytes(t testing.TB) []byte {
	var b []byte
	b = append(b, 10, 0, 0, 0)
	b = append(b, mustHex(t, knownSHA1)...)
	b = append(b, 6, 0, 0, 0)
	b = append(b, "ima-ng"...)
	td := mustHex(t, knownTD)
	b = append(b, byte(len(td)), 0, 0, 0)
	return append(b, td...)
}

func TestKnownEntry(t *testing.T) {
	b := knownListBytes(t)
	es, err := ParseList(b, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].PCR != 10 || es[0].TemplateName != "ima-ng" {
		t.Fatalf("parsed %+v", es)
	}
	e := es[0]
	if got := hex.EncodeToString(TemplateDigest(e, crypto.SHA1, MethodPerBank)); got != knownSHA1 {
		t.Errorf("sha1 template digest %s", got)
	}
	if got := hex.EncodeToString(TemplateDigest(e, crypto.SHA256, MethodPerBank)); got != knownSHA256 {
		t.Errorf("sha256 template digest %s", got)
	}
	if got := hex.EncodeToString(TemplateDigest(e, crypto.SHA384, MethodPerBank)); got != knownSHA384 {
		t.Errorf("sha384 template digest %s", got)
	}
	want := knownSHA1 + strings.Repeat("00", 28)
	if got := hex.EncodeToString(TemplateDigest(e, crypto.SHA384, MethodSHA1Padded)); got != want {
		t.Errorf("sha384 padded digest %s", got)
	}
	if got := hex.EncodeToString(Replay(es, crypto.SHA256, MethodPerBank)[10]); got != knownPCR256 {
		t.Errorf("sha256 PCR %s", got)
	}
	if got := hex.EncodeToString(Replay(es, crypto.SHA384, MethodSHA1Padded)[10]); got != knownPCR384Padded {
		t.Errorf("sha384 padded PCR %s", got)
	}
	d, err := e.Decode(binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if d.DigestAlgo != "sha1" || d.Name != "/a" || !bytes.Equal(d.Digest, bytes.Repeat([]byte{0x11}, 20)) {
		t.Errorf("decoded %+v", d)
	}
	out, err := AppendASCII(nil, es, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	wantLine := "10 " + knownSHA1 + " ima-ng sha1:" + strings.Repeat("11", 20) + " /a\n"
	if string(out) != wantLine {
		t.Errorf("ascii %q, want %q", out, wantLine)
	}
	if got := AppendList(nil, es, binary.LittleEndian); !bytes.Equal(got, b) {
		t.Errorf("round trip differs")
	}
}

func TestViolationReplay(t *testing.T) {
	e := Entry{PCR: 10, TemplateName: "ima-ng", TemplateData: mustHex(t, knownTD)}
	if !e.Violation() {
		t.Fatal("zero digest is a violation")
	}
	if got := hex.EncodeToString(Replay([]Entry{e}, crypto.SHA1, MethodPerBank)[10]); got != knownPCR1Violation {
		t.Errorf("violation extend %s, want %s", got, knownPCR1Violation)
	}
	if d := TemplateDigest(e, crypto.SHA256, MethodPerBank); !bytes.Equal(d, bytes.Repeat([]byte{0xff}, 32)) {
		t.Errorf("violation digest %x", d)
	}
}

func TestRoundTripAllTemplates(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := synthList(t, order)
		b := AppendList(nil, es, order)
		got, err := ParseList(b, order)
		if err != nil {
			t.Fatalf("%v: %v", order, err)
		}
		if len(got) != len(es) {
			t.Fatalf("%v: %d entries, want %d", order, len(got), len(es))
		}
		for i := range es {
			if got[i].PCR != es[i].PCR || got[i].TemplateName != es[i].TemplateName ||
				got[i].TemplateDigest != es[i].TemplateDigest || !bytes.Equal(got[i].TemplateData, es[i].TemplateData) {
				t.Errorf("%v: entry %d differs", order, i)
			}
			if _, err := got[i].Decode(order); err != nil {
				t.Errorf("%v: entry %d (%s): decode: %v", order, i, got[i].TemplateName, err)
			}
		}
		if b2 := AppendList(nil, got, order); !bytes.Equal(b, b2) {
			t.Errorf("%v: re-serialized list differs", order)
		}
		// The other byte order must not parse silently into the same list.
		other := binary.ByteOrder(binary.BigEndian)
		if order == binary.BigEndian {
			other = binary.LittleEndian
		}
		if _, err := ParseList(b, other); err == nil {
			t.Errorf("%v list parsed as %v", order, other)
		}
	}
}

func TestDecodeFields(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)
	byName := map[string]Decoded{}
	for i := range es {
		d, err := es[i].Decode(order)
		if err != nil {
			t.Fatal(err)
		}
		byName[es[i].TemplateName+" "+d.Name] = d
	}
	ev := byName["evm-sig /etc/passwd"]
	if ev.UID == nil || *ev.UID != 1000 || *ev.GID != 100 || *ev.Mode != 0o100644 {
		t.Errorf("evm-sig ids %+v", ev)
	}
	if strings.Join(ev.XattrNames, ",") != "security.ima,security.selinux" || len(ev.XattrValues) != 2 ||
		!bytes.Equal(ev.XattrValues[0], []byte{1, 2, 3}) || !bytes.Equal(ev.XattrValues[1], []byte{4, 5}) {
		t.Errorf("evm-sig xattrs %+v", ev)
	}
	v2 := byName["ima-sigv2 /verity"]
	if v2.DigestType != "verity" || v2.DigestAlgo != "sha256" || len(v2.Digest) != 32 || !bytes.Equal(v2.Sig, []byte{6, 1, 2}) {
		t.Errorf("ima-sigv2 %+v", v2)
	}
	ms := byName["ima-modsig /lib/modules/m.ko"]
	if ms.ModsigAlgo != "sha256" || len(ms.ModsigDigest) != 32 || len(ms.Modsig) != 3 {
		t.Errorf("ima-modsig %+v", ms)
	}
	lg := byName["ima /legacy/file"]
	if lg.DigestAlgo != "" || len(lg.Digest) != 20 {
		t.Errorf("legacy %+v", lg)
	}
	cu := byName["d-ng|n-ng|iuid|imode /custom"]
	if cu.DigestAlgo != "sha512" || cu.UID == nil || *cu.UID != 0 || *cu.Mode != 0o755 {
		t.Errorf("custom %+v", cu)
	}
}

// Every truncation of a valid list either ends on an entry boundary (and
// parses to that prefix) or fails with a positional error; none panics.
func TestTruncationEverywhere(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)
	b := AppendList(nil, es, order)
	bounds := map[int]int{0: 0}
	off := 0
	for i := range es {
		off += es[i].EncodedSize()
		bounds[off] = i + 1
	}
	for n := 0; n < len(b); n++ {
		got, err := ParseList(b[:n], order)
		if want, ok := bounds[n]; ok {
			if err != nil || len(got) != want {
				t.Fatalf("cut at %d: %d entries, err %v; want %d", n, len(got), err, want)
			}
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("cut at %d: error %v is not a ParseError", n, err)
		}
		if pe.Offset < 0 || pe.Offset > int64(n) {
			t.Fatalf("cut at %d: offset %d out of range", n, pe.Offset)
		}
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrLength) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d: unexpected error class %v", n, err)
		}
	}
}

func TestLyingLengths(t *testing.T) {
	order := binary.LittleEndian
	good := knownListBytes(t)
	cases := []struct {
		name   string
		at     int
		val    uint32
		offset int64
		want   error
	}{
		{"name length", 24, 0xffffffff, 24, ErrTooLarge},
		{"data length", 34, 0xffffffff, 34, ErrTooLarge},
		{"name length past the end", 24, 1000, 24, ErrLength},
		{"data length past the end", 34, 1000, 34, ErrLength},
		{"first field length", 38, 0xffffffff, 38, ErrMalformed},
		{"second field length", 38 + 4 + 26, 0xfffffff0, 38 + 4 + 26, ErrMalformed},
		{"field length short", 38, 25, 38 + 4 + 25, ErrMalformed},
	}
	for _, c := range cases {
		b := bytes.Clone(good)
		order.PutUint32(b[c.at:], c.val)
		_, err := ParseList(b, order)
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			continue
		}
		if pe.Offset != c.offset || pe.Index != 0 {
			t.Errorf("%s: offset %d index %d, want %d 0 (%v)", c.name, pe.Offset, pe.Index, c.offset, err)
		}
		if !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: message %q names no offset", c.name, err)
		}
	}
}

func TestUnknownTemplateAndGarbage(t *testing.T) {
	order := binary.LittleEndian
	b := knownListBytes(t)
	copy(b[28:34], "ima-xx")
	_, err := ParseList(b, order)
	var pe *ParseError
	if !errors.Is(err, ErrUnknownTemplate) || !errors.As(err, &pe) || pe.Offset != 28 {
		t.Errorf("unknown template: %v", err)
	}
	// A second entry of garbage after a good one: index 1 is named.
	g := append(knownListBytes(t), []byte("this is not an IMA measurement list at all")...)
	_, err = ParseList(g, order)
	if !errors.As(err, &pe) || pe.Index != 1 || pe.Offset < int64(len(knownListBytes(t))) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := LookupTemplate("d-ng|n-ng|d-ng|n-ng|d-ng|n-ng|d-ng|n-ng|d-ng|n-ng|d-ng|n-ng|d-ng|n-ng|d-ng|n-ng"); !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("16 fields accepted: %v", err)
	}
	if tp, err := LookupTemplate("d-ng|n-ng"); err != nil || tp.Name != "ima-ng" {
		t.Errorf("format of a built-in template resolves to %+v, %v", tp, err)
	}
}

func TestASCIIFieldRules(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)
	out, err := AppendASCII(nil, es, order)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(es) {
		t.Fatalf("%d lines for %d entries", len(lines), len(es))
	}
	checks := map[int]string{
		2:  " ima-sig sha256:",              // empty sig leaves a trailing space
		4:  " ima-ngv2 ima:sha256:",         // d-ngv2 keeps type and algo
		5:  " ima-sigv2 verity:sha256:",     // verity type
		9:  " d-ng|n-ng|iuid|imode sha512:", // custom format named by its format
		10: " ima ",                         // legacy
	}
	for i, want := range checks {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
	if !strings.HasSuffix(lines[2], "/bin/sh ") {
		t.Errorf("empty sig field: %q", lines[2])
	}
	if !strings.HasSuffix(lines[7], "/lib/modules/n.ko   ") {
		t.Errorf("empty modsig fields: %q", lines[7])
	}
	if !strings.HasSuffix(lines[8], " 1000 100 33188") {
		t.Errorf("evm-sig uints: %q", lines[8])
	}
	if !strings.HasSuffix(lines[9], "/custom 0 493") {
		t.Errorf("custom uints: %q", lines[9])
	}
	if !strings.HasPrefix(lines[11], "10 0000000000000000000000000000000000000000 ima-ng sha256:"+strings.Repeat("00", 32)+" /tmp/tomtou") {
		t.Errorf("violation line %q", lines[11])
	}
	if !strings.HasPrefix(lines[10], "10 ") || !strings.HasSuffix(lines[10], " /legacy/file") {
		t.Errorf("legacy line %q", lines[10])
	}
	// PCR below 10 is padded to two columns as "%2d " does.
	e := es[1]
	e.PCR = 7
	one, _ := AppendASCII(nil, []Entry{e}, order)
	if !strings.HasPrefix(string(one), " 7 ") {
		t.Errorf("pcr 7 rendered %q", one)
	}
}

// A list may name a built-in template by its format string (a kernel booted
// with ima_template_fmt=d-ng|n-ng does); the name must survive a round trip
// and show in the ASCII list, and a restoring kernel renames it.
func TestFormatNameOfBuiltin(t *testing.T) {
	order := binary.LittleEndian
	e := synthList(t, order)[1]
	e.TemplateName = "d-ng|n-ng"
	b := AppendList(nil, []Entry{e}, order)
	es, err := ParseList(b, order)
	if err != nil || es[0].TemplateName != "d-ng|n-ng" || !bytes.Equal(AppendList(nil, es, order), b) {
		t.Fatalf("%v %+v", err, es)
	}
	out, _ := AppendASCII(nil, es, order)
	if !strings.Contains(string(out), " d-ng|n-ng sha256:") {
		t.Errorf("ascii %q", out)
	}
	var re *RestoreError
	if err := CheckRestorable(es, binary.LittleEndian); !errors.As(err, &re) || re.Problems[0].Kind != KindAltered || !strings.Contains(re.Problems[0].Reason, `"ima-ng"`) {
		t.Errorf("restore: %v", err)
	}
}

func TestASCIIErrorNamesEntry(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)[:3]
	bad := es[2]
	bad.TemplateData = fieldBytes(order, []byte("sha256-no-colon"), []byte("/x\x00"), nil)
	es[2] = bad
	_, err := AppendASCII(nil, es, order)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Index != 2 || pe.Offset != int64(es[0].EncodedSize()+es[1].EncodedSize()) || !errors.Is(err, ErrMalformed) {
		t.Errorf("error %v", err)
	}
}

// Splitting an entry into fields allocates nothing, in either byte order
// given as an interface (the ASCII rendering and EventName do it per entry).
func TestSplitFieldsDoesNotAllocate(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := synthList(t, order)
		e := &es[1]
		tpl, err := e.Template()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]Field, 0, maxTemplateFields)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := splitFields(e, tpl, order, out); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v: %v allocations per call", order, n)
		}
	}
}
