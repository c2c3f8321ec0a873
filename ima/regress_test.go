package ima

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Regression tests, one per problem of issue 12, each built from its
// reproducer. (The unbounded method search is TestMethodSearchBounded; the
// FIFO, directory and /dev/zero inputs are cmd/imalog's TestBadInput.)

// realPrefix returns the first n entries of the large 6.12 capture (PCR
// 10 only, every bank hashed with its own algorithm).
func realPrefix(t *testing.T, n int) []Entry {
	t.Helper()
	for _, dir := range captureDirs(t) {
		if strings.Contains(dir, "6.12") && strings.HasSuffix(dir, "large") {
			es, err := ParseList(readCapture(t, dir, "binary_runtime_measurements"), binary.LittleEndian)
			if err != nil {
				t.Fatal(err)
			}
			return es[:n]
		}
	}
	t.Fatal("no large 6.12 capture")
	return nil
}

// "Exit 0 covers less than users assume": forged PCR-11 entries pass when
// only PCR 10 is quoted. They are now reported with their count, and fail
// the verification with Strict.
func TestForgedUnquotedPCR(t *testing.T) {
	order := binary.LittleEndian
	es := realPrefix(t, 40)
	q := PCRValues{
		crypto.SHA1:   {10: Replay(es, crypto.SHA1, MethodPerBank)[10]},
		crypto.SHA256: {10: Replay(es, crypto.SHA256, MethodPerBank)[10]},
	}
	forged := es
	for i := 0; i < 3; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint("forged", i)))
		e, err := NewFileEntry(11, "ima-ng", fmt.Sprintf("/usr/bin/forged%d", i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged[:len(forged):len(forged)], e)
	}
	r := Verify(forged, order, q, VerifyOptions{})
	if !r.Consistent || r.Prefix != len(forged) {
		t.Fatalf("non-strict: consistent %v prefix %d problems %v", r.Consistent, r.Prefix, r.Problems)
	}
	if len(r.Unquoted) != 1 || r.Unquoted[0].PCR != 11 || r.Unquoted[0].Entries != 3 || strings.Join(r.Unquoted[0].Banks, ",") != "sha1,sha256" {
		t.Fatalf("unquoted PCRs not reported: %+v", r.Unquoted)
	}
	r = Verify(forged, order, q, VerifyOptions{Strict: true})
	if r.Consistent || !strings.Contains(strings.Join(r.Problems, "\n"), "strict: PCR 11 has 3 entries") {
		t.Fatalf("strict: consistent %v problems %v", r.Consistent, r.Problems)
	}
	// Entries after the matched prefix: counted, and fatal with Strict.
	q10 := PCRValues{crypto.SHA256: {10: Replay(es[:30], crypto.SHA256, MethodPerBank)[10]}}
	r = Verify(es, order, q10, VerifyOptions{})
	if !r.Consistent || r.Prefix != 30 || r.Unbound != 10 {
		t.Fatalf("prefix: consistent %v prefix %d unbound %d", r.Consistent, r.Prefix, r.Unbound)
	}
	if r = Verify(es, order, q10, VerifyOptions{Strict: true}); r.Consistent {
		t.Fatalf("strict accepted 10 entries after the prefix: %+v", r.Problems)
	}
}

// "Refuses real logs that evmctl accepts": PCRs read from sysfs bank
// after bank, each read measured, match a different prefix per bank (sha1
// at 307, sha256 at 309, sha384 at 311 of 313 entries on a real capture).
// Per-bank reading accepts it and names both ranges; one-instant reading
// still refuses it; evmctl accepts it.
func TestBankByBankPrefixes(t *testing.T) {
	order := binary.LittleEndian
	es := realPrefix(t, 313)
	q := PCRValues{
		crypto.SHA1:   Replay(es[:307], crypto.SHA1, MethodPerBank),
		crypto.SHA256: Replay(es[:309], crypto.SHA256, MethodPerBank),
		crypto.SHA384: Replay(es[:311], crypto.SHA384, MethodPerBank),
	}
	r := Verify(es, order, q, VerifyOptions{Reads: ReadsPerBank})
	if !r.Consistent || r.Prefix != 307 || r.Some != 311 || r.Unbound != 6 {
		t.Fatalf("per-bank: consistent %v every %d some %d unbound %d problems %v", r.Consistent, r.Prefix, r.Some, r.Unbound, r.Problems)
	}
	for _, b := range r.Banks {
		want := map[crypto.Hash]int{crypto.SHA1: 307, crypto.SHA256: 309, crypto.SHA384: 311}[b.Hash]
		if b.OwnPrefix != want || b.Method == nil || *b.Method != MethodPerBank {
			t.Errorf("bank %s: own prefix %d method %v, want %d per-bank", b.Bank, b.OwnPrefix, methodStr(b.Method), want)
		}
	}
	if r := Verify(es, order, q, VerifyOptions{}); r.Consistent || r.Prefix != -1 {
		t.Fatalf("instant: consistent %v prefix %d", r.Consistent, r.Prefix)
	}
	if r := Verify(es, order, q, VerifyOptions{Reads: ReadsPerBank, Strict: true}); r.Consistent {
		t.Fatal("strict per-bank accepted entries after the prefix")
	}

	dir := t.TempDir()
	list := filepath.Join(dir, "list")
	writeFile(t, list, AppendList(nil, es, order))
	for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		writeEvmctlPCRs(t, filepath.Join(dir, HashName(b)), b, q[b])
	}
	code, out := runEvmctl(t, "--ignore-violations", "--pcrs", "sha1,"+filepath.Join(dir, "sha1"), "--pcrs", "sha256,"+filepath.Join(dir, "sha256"), list)
	if code != 0 || !strings.Contains(out, "Matched per TPM bank") {
		t.Errorf("evmctl: exit %d\n%s", code, out)
	}
}

// "Output can be forged": a kexec_execute payload holding a newline, a
// forged verdict and ESC[8m. Text output escapes every string from the
// list; the JSON keeps it exactly.
func TestEscapeForgedPayload(t *testing.T) {
	payload := "x\nverdict: consistent: the first 9 of 9 entries reproduce every quoted PCR\n\x1b[8m"
	e := NewBufEntry(10, MarkerKexecExec, []byte(payload), crypto.SHA256)
	tl := BuildTimeline([]Entry{e}, binary.LittleEndian)
	if got := tl.Boots[0].Markers[0].Payload; got != payload {
		t.Fatalf("payload %q not kept exactly", got)
	}
	esc := Escape(payload)
	if strings.ContainsAny(esc, "\n\x1b") || !strings.Contains(esc, `\x0a`) || !strings.Contains(esc, `\x1b[8m`) {
		t.Fatalf("escaped %q", esc)
	}
	for _, c := range []struct{ in, want string }{
		{"/usr/bin/ls", "/usr/bin/ls"},
		{"a b", `a\x20b`},
		{"tab\there", `tab\x09here`},
		{"del\x7f", `del\x7f`},
		{"caf\u00e9", "caf\u00e9"},
		{"c1\u009b2J", `c1\xc2\x9b2J`},
		{"bad\xff", `bad\xff`},
		{"back\\slash", "back\\slash"},
	} {
		if got := Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// In the ASCII list: a name with a newline stays on its line.
	d := sha256.Sum256(nil)
	f, _ := NewFileEntry(10, "ima-ng", "/tmp/x", d[:], crypto.SHA256, nil)
	f.TemplateData = fieldBytes(binary.LittleEndian, digestNG("", crypto.SHA256, d[:]), []byte("/tmp/x\n10 0000 ima-ng forged\x00"))
	out, err := AppendASCII(nil, []Entry{f}, binary.LittleEndian)
	if err != nil || bytes.Count(out, []byte("\n")) != 1 || !bytes.Contains(out, []byte(`/tmp/x\x0a10\x200000`)) {
		t.Fatalf("ASCII %q %v", out, err)
	}
}

// "Unbounded cost": a 200 MB file with a bad first entry cost 894 MB
// resident (the reader doubled its buffer, then read the file again). Now
// the error comes after the first chunk, whatever follows.
func TestBadFirstEntryReadsLittle(t *testing.T) {
	order := binary.LittleEndian
	bad := AppendList(nil, realPrefix(t, 1), order)
	copy(bad[28:], "xxx") // unknown template name
	src := &countingReader{r: io.MultiReader(bytes.NewReader(bad), zeros{n: 200 << 20})}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, err := VerifyReader(src, order, PCRValues{crypto.SHA256: {10: make([]byte, 32)}}, VerifyOptions{})
	runtime.ReadMemStats(&ms1)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Index != 0 || !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("error %v", err)
	}
	if src.n > 1<<20 {
		t.Errorf("read %d bytes of a list whose first entry is bad", src.n)
	}
	if a := ms1.TotalAlloc - ms0.TotalAlloc; a > 8<<20 {
		t.Errorf("allocated %d bytes", a)
	}
}

// Memory is bounded by the chunk pool, not by the list: verifying a
// generated stream allocates about the same for 20,000 and for 200,000
// entries.
func TestMemoryIndependentOfListSize(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 30 MB of list")
	}
	order := binary.LittleEndian
	_, raw := benchmarkList(t)
	small := raw[:len(AppendList(nil, benchList[:20000], order))]
	alloc := func(b []byte) uint64 {
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		if _, err := VerifyReader(bytes.NewReader(b), order, PCRValues{crypto.SHA256: {10: make([]byte, 32)}}, VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&ms1)
		return ms1.TotalAlloc - ms0.TotalAlloc
	}
	a, b := alloc(small), alloc(raw)
	if b > 2*a+(1<<20) || b > 8<<20 {
		t.Errorf("allocated %d bytes for 20,000 entries, %d for 200,000", a, b)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// zeros is /dev/zero, n bytes of it.
type zeros struct{ n int64 }

func (z zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	clear(p)
	return len(p), nil
}

// A list of zeros (what /dev/zero yields) fails at its first entry.
func TestZerosList(t *testing.T) {
	_, err := VerifyReader(zeros{n: 1 << 40}, binary.LittleEndian, PCRValues{crypto.SHA1: {10: make([]byte, 20)}}, VerifyOptions{})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Index != 0 {
		t.Fatalf("error %v", err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Real PCR files of one capture read at two moments, mixed per bank: the
// 6.1 capture's sha1 and sha384 (padded) values after the whole list, its
// sha256 values after 18 entries. Per bank that is every bank at 18, some
// bank at 22; as one instant no prefix matches every bank.
func TestRealCaptureMixedMoments(t *testing.T) {
	for _, dir := range captureDirs(t) {
		if !strings.HasSuffix(dir, "linux-image-6.1.0-56-cloud-amd64") {
			continue
		}
		order := binary.LittleEndian
		raw := readCapture(t, dir, "binary_runtime_measurements")
		full, early := loadQuote(t, dir, ""), loadQuote(t, dir, "-prefix")
		q := PCRValues{crypto.SHA1: full[crypto.SHA1], crypto.SHA256: early[crypto.SHA256], crypto.SHA384: full[crypto.SHA384]}
		r, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, VerifyOptions{Reads: ReadsPerBank})
		if err != nil || !r.Consistent || r.Prefix != 18 || r.Some != 22 || r.Unbound != 4 {
			t.Fatalf("per-bank: %v consistent %v every %d some %d unbound %d %v", err, r.Consistent, r.Prefix, r.Some, r.Unbound, r.Problems)
		}
		if m := r.Banks[2].Method; r.Banks[2].Hash != crypto.SHA384 || m == nil || *m != MethodSHA1Padded {
			t.Fatalf("sha384: %+v", r.Banks[2])
		}
		r, err = VerifyReader(bytes.NewReader(raw), order, q, VerifyOptions{})
		if err != nil || r.Consistent || r.Prefix != -1 || r.Some != 22 {
			t.Fatalf("instant: %v consistent %v prefix %d some %d", err, r.Consistent, r.Prefix, r.Some)
		}
		return
	}
	t.Fatal("no 6.1 capture")
}

// PCR indices bound the state a verification keeps: an entry naming a PCR
// no TPM has (kernels use indices below 64) ends it with ErrPCRIndex
// instead of growing a table entry per distinct index.
func TestPCRIndexBound(t *testing.T) {
	order := binary.LittleEndian
	es := realPrefix(t, 3)
	var list []Entry
	for i := 0; i < 10000; i++ {
		e := es[1]
		e.PCR = uint32(1<<20 + i)
		list = append(list, e)
	}
	raw := AppendList(nil, list, order)
	_, err := VerifyReader(bytes.NewReader(raw), order, PCRValues{crypto.SHA256: {10: make([]byte, 32)}}, VerifyOptions{})
	if !errors.Is(err, ErrPCRIndex) || !strings.Contains(err.Error(), "entry 0:") {
		t.Fatalf("error %v", err)
	}
	if r := Verify(list, order, PCRValues{crypto.SHA256: {10: make([]byte, 32)}}, VerifyOptions{}); r.Consistent || len(r.Problems) == 0 {
		t.Fatalf("Verify: %+v", r.Problems)
	}
	if Replay(list, crypto.SHA256, MethodPerBank) != nil {
		t.Fatal("Replay replayed PCRs no TPM has")
	}
	if _, err := ParseList(raw, order); err != nil {
		t.Fatalf("the list itself parses: %v", err)
	}
}
