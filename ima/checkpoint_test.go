package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// growingList is a list with two boots handed over by kexec markers, a
// third boot, violations and PCRs 10 and 11, n entries long.
func growingList(t testing.TB, n int) []Entry {
	t.Helper()
	order := binary.LittleEndian
	es := synthList(t, order)
	for i := len(es); len(es) < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint("g", i)))
		pcr := uint32(10)
		if i%7 == 3 {
			pcr = 11
		}
		e, err := NewFileEntry(pcr, "ima-sig", fmt.Sprintf("/usr/lib/g-%d.so", i), d[:], crypto.SHA256, []byte{})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i%97 == 0:
			e, _ = NewViolation(pcr, "ima-sig", "/tmp/v", crypto.SHA256)
		case i == n/2:
			p := KexecMarkerPayload(1<<20, 1000, uint64(i))
			e = NewBufEntry(10, MarkerKexecLoad, []byte(p), crypto.SHA256)
		case i == n/2+3:
			p := KexecMarkerPayload(1<<20, 1000, uint64(i))
			e = NewBufEntry(10, MarkerKexecExec, []byte(p), crypto.SHA256)
		case i == n/2+4:
			e, _ = NewFileEntry(10, "ima-ng", BootAggregate, make([]byte, 32), crypto.SHA256, nil)
		}
		es = append(es, e)
	}
	return es[:n]
}

// quoteAt is what a TPM would quote after the first k entries.
func quoteAt(es []Entry, k int, banks ...crypto.Hash) PCRValues {
	q := PCRValues{}
	for _, b := range banks {
		m := MethodPerBank
		if b == crypto.SHA384 {
			m = MethodSHA1Padded // as Debian 6.1 extends it
		}
		v := Replay(es[:k], b, m)
		for _, p := range []uint32{0, 10, 11} { // a quote also holds PCRs the list does not use
			if _, ok := v[p]; !ok {
				v[p] = make([]byte, b.Size())
			}
		}
		q[b] = v
	}
	return q
}

func sameVerdict(t *testing.T, what string, got, want VerifyResult) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	gt, _ := json.Marshal(got.Timeline)
	wt, _ := json.Marshal(want.Timeline)
	if !bytes.Equal(g, w) || !bytes.Equal(gt, wt) {
		t.Fatalf("%s: resumed verdict differs from the full run's\nresumed %s\n        %s\nfull    %s\n        %s", what, g, gt, w, wt)
	}
}

// TestCheckpointSameVerdict grows a list step by step; at every step a
// run from the previous checkpoint (through its JSON) reads only the new
// entries and gives exactly the full run's result.
func TestCheckpointSameVerdict(t *testing.T) {
	order := binary.LittleEndian
	all := growingList(t, 3000)
	banksets := [][]crypto.Hash{{crypto.SHA1, crypto.SHA256, crypto.SHA384}, {crypto.SHA256}}
	for _, banks := range banksets {
		for _, reads := range []Reads{ReadsInstant, ReadsPerBank} {
			var cp *Checkpoint
			steps := []struct{ n, quoted int }{{5, 5}, {23, 20}, {24, 24}, {200, 200}, {1501, 1499}, {1510, 1510}, {2999, 2990}, {3000, 3000}}
			for _, s := range steps {
				raw := AppendList(nil, all[:s.n], order)
				q := quoteAt(all, s.quoted, banks...)
				opt := VerifyOptions{Reads: reads}
				full, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, opt)
				if err != nil {
					t.Fatal(err)
				}
				res, info, err := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), order, cp, q, opt)
				if err != nil {
					t.Fatal(err)
				}
				what := fmt.Sprintf("banks %v %v, %d entries quoted at %d", banks, reads, s.n, s.quoted)
				sameVerdict(t, what, res, full)
				if !full.Consistent {
					t.Fatalf("%s: full run inconsistent: %v", what, full.Problems)
				}
				if cp != nil && s.quoted >= cp.Entries && info.Restart != "" {
					t.Errorf("%s: restarted (%s) though the quote reaches the checkpoint", what, info.Restart)
				}
				if cp != nil && info.Restart == "" && (info.From != cp.Entries || info.Read != s.n-cp.Entries) {
					t.Errorf("%s: from %d read %d", what, info.From, info.Read)
				}
				if info.Next == nil {
					t.Fatalf("%s: no next checkpoint", what)
				}
				b, err := MarshalCheckpoint(info.Next)
				if err != nil {
					t.Fatal(err)
				}
				if cp, err = ParseCheckpoint(b); err != nil {
					t.Fatalf("%s: %v\n%s", what, err, b)
				}
				if cp.Entries != s.n || cp.Offset != int64(len(raw)) {
					t.Fatalf("%s: checkpoint at %d/%d", what, cp.Entries, cp.Offset)
				}
				sum := sha256.Sum256(raw)
				if cp.Consumed != fmt.Sprintf("%x", sum) {
					t.Fatalf("%s: consumed digest is not the SHA-256 of the list", what)
				}
			}
		}
	}
}

// TestCheckpointRestarts: an older quote, other banks, a tampered list,
// a shorter list; and inconsistent quotes give the full run's verdict.
func TestCheckpointRestarts(t *testing.T) {
	order := binary.LittleEndian
	all := growingList(t, 600)
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256}
	raw := AppendList(nil, all[:400], order)
	_, info, err := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), order, nil, quoteAt(all, 400, banks...), VerifyOptions{})
	if err != nil || info.Next == nil {
		t.Fatal(err)
	}
	cp := info.Next
	raw2 := AppendList(nil, all, order)
	r2 := bytes.NewReader(raw2)
	n2 := int64(len(raw2))
	cases := []struct {
		name    string
		q       PCRValues
		restart bool
	}{
		{"quote taken before the checkpoint", quoteAt(all, 300, banks...), true},
		{"other banks", quoteAt(all, 600, crypto.SHA256), true},
		{"a quote matching nothing", quoteAt(all[100:], 400, banks...), true},
		{"fresh", quoteAt(all, 590, banks...), false},
	}
	for _, c := range cases {
		full, _ := VerifyReaderAt(r2, n2, order, c.q, VerifyOptions{})
		res, info, err := VerifyFrom(r2, n2, order, cp, c.q, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sameVerdict(t, c.name, res, full)
		if (info.Restart != "") != c.restart {
			t.Errorf("%s: restart %q", c.name, info.Restart)
		}
	}
	// the consumed part changed in its last 4 KiB: refused
	bad := bytes.Clone(raw2)
	bad[len(raw)-10] ^= 1
	if _, _, err := VerifyFrom(bytes.NewReader(bad), n2, order, cp, quoteAt(all, 600, banks...), VerifyOptions{}); !errors.Is(err, ErrCheckpointMismatch) {
		t.Errorf("tail changed: %v", err)
	}
	// changed before the tail: not seen by the resumed run, seen by CheckConsumed
	bad = bytes.Clone(raw2)
	bad[100] ^= 1
	if _, _, err := VerifyFrom(bytes.NewReader(bad), n2, order, cp, quoteAt(all, 600, banks...), VerifyOptions{}); err != nil {
		t.Errorf("an early change is beyond the tail check: %v", err)
	}
	if err := CheckConsumed(bytes.NewReader(bad), n2, cp); !errors.Is(err, ErrCheckpointMismatch) {
		t.Errorf("CheckConsumed: %v", err)
	}
	if err := CheckConsumed(r2, n2, cp); err != nil {
		t.Errorf("CheckConsumed on the grown list: %v", err)
	}
	// shorter than the checkpoint (a new boot's list)
	short := AppendList(nil, all[:50], order)
	if _, _, err := VerifyFrom(bytes.NewReader(short), int64(len(short)), order, cp, quoteAt(all, 50, banks...), VerifyOptions{}); !errors.Is(err, ErrCheckpointMismatch) {
		t.Errorf("shorter list: %v", err)
	}
	// a big-endian list with a little-endian checkpoint
	if _, _, err := VerifyFrom(r2, n2, binary.BigEndian, cp, quoteAt(all, 600, banks...), VerifyOptions{}); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("byte order: %v", err)
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	order := binary.LittleEndian
	all := growingList(t, 100)
	raw := AppendList(nil, all, order)
	_, info, err := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), order, nil, quoteAt(all, 100, crypto.SHA256), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := MarshalCheckpoint(info.Next)
	for _, edit := range []struct{ from, to string }{
		{CheckpointFormat, "gokexec/ima-checkpoint/9"},
		{`"byte_order": "little"`, `"byte_order": "middle"`},
		{`"entries": 100`, `"entries": 99`},
		{`"method": "per-bank"`, `"method": "sha3"`},
		{`"tail_len": 4096`, `"tail_len": 4097`},
	} {
		b := bytes.Replace(good, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(b, good) {
			t.Fatalf("edit %q not applied:\n%s", edit.from, good)
		}
		if _, err := ParseCheckpoint(b); !errors.Is(err, ErrCheckpoint) {
			t.Errorf("%s -> %s: %v", edit.from, edit.to, err)
		}
	}
	if _, err := ParseCheckpoint(good); err != nil {
		t.Fatal(err)
	}
	old := bytes.Replace(good, []byte(CheckpointFormat), []byte(checkpointFormatV1), 1)
	if _, err := ParseCheckpoint(old); !errors.Is(err, ErrCheckpointVersion) {
		t.Errorf("a version-1 checkpoint: %v, want ErrCheckpointVersion", err)
	}
}

// FuzzParseCheckpoint: whatever checkpoint the parser accepts, a list
// whose last entry was rewritten after it was measured never verifies
// from it. The seeds are honest checkpoints of the list's untampered
// prefix at every split (the fuzzer mutates them); the rewritten entry
// lies after every one of them, so the resumed run must read it, and
// only a SHA-256 preimage could make it replay to the quote.
func FuzzParseCheckpoint(f *testing.F) {
	order := binary.LittleEndian
	honest := growingList(f, 30)
	q := quoteAt(honest, 30, crypto.SHA1, crypto.SHA256)
	tampered := slices.Clone(honest)
	last := tampered[29]
	d := sha256.Sum256([]byte("rewritten"))
	fe, err := NewFileEntry(last.PCR, "ima-sig", "/usr/lib/rewritten.so", d[:], crypto.SHA256, []byte{})
	if err != nil {
		f.Fatal(err)
	}
	fe.TemplateDigest = last.TemplateDigest
	tampered[29] = fe
	raw := AppendList(nil, tampered, order)
	if full, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), order, q, VerifyOptions{}); err != nil || full.Consistent {
		f.Fatalf("the tampered list verifies from the start: %v", err)
	}
	f.Add([]byte(`{"format":"gokexec/ima-checkpoint/2","byte_order":"little","entries":0,"offset":0}`))
	for k := 1; k < 29; k += 3 {
		part := AppendList(nil, honest[:k], order)
		_, info, err := VerifyFrom(bytes.NewReader(part), int64(len(part)), order, nil, quoteAt(honest, k, crypto.SHA1, crypto.SHA256), VerifyOptions{})
		if err != nil || info.Next == nil {
			f.Fatal(err)
		}
		b, _ := MarshalCheckpoint(info.Next)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		for _, reads := range []Reads{ReadsInstant, ReadsPerBank} {
			res, _, err := VerifyFrom(bytes.NewReader(raw), int64(len(raw)), order, cp, q, VerifyOptions{Reads: reads})
			if err == nil && res.Consistent {
				t.Fatalf("a checkpoint made the rewritten list verify (%v):\n%s", reads, b)
			}
		}
	})
}

// BenchmarkIncremental1kAfter1M: 1,000 new entries verified from the
// checkpoint of a 1,000,000-entry history (sha1, sha256, sha384-padded
// quoted at the end), the checkpoint read and the next one written as
// JSON each time. The target (DESIGN §7) is at most 5 ms.
func BenchmarkIncremental1kAfter1M(b *testing.B) {
	order := binary.LittleEndian
	const hist, fresh = 1_000_000, 1000
	es := make([]Entry, 0, hist+fresh)
	for i := 0; i < hist+fresh; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		pcr := uint32(10)
		if i%50 == 49 {
			pcr = 11
		}
		e, err := NewFileEntry(pcr, "ima-sig", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%07d.so.1", i), d[:], crypto.SHA256, []byte{})
		if err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
	}
	raw := AppendList(nil, es, order)
	oldLen := len(AppendList(nil, es[:hist], order))
	banks := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384}
	qOld := benchQuote(es[:hist])
	_, info, err := VerifyFrom(bytes.NewReader(raw[:oldLen]), int64(oldLen), order, nil, qOld, VerifyOptions{})
	if err != nil || info.Next == nil {
		b.Fatal(err)
	}
	cpJSON, _ := MarshalCheckpoint(info.Next)
	q := quoteAt(es, hist+fresh, banks...)
	r := bytes.NewReader(raw)
	b.Run("incremental", func(b *testing.B) {
		b.ReportMetric(float64(len(cpJSON)), "checkpoint-bytes")
		defer reportCPU(b)()
		for b.Loop() {
			cp, err := ParseCheckpoint(cpJSON)
			if err != nil {
				b.Fatal(err)
			}
			res, info, err := VerifyFrom(r, int64(len(raw)), order, cp, q, VerifyOptions{})
			if err != nil || !res.Consistent || info.Restart != "" || info.Read != fresh {
				b.Fatalf("%v consistent=%v restart=%q read=%d", err, res.Consistent, info.Restart, info.Read)
			}
			if _, err := MarshalCheckpoint(info.Next); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The hashing floor of the 1,000 new entries for these banks: each
	// entry's template data hashed with SHA-1 (the stored-digest check),
	// SHA-256 and SHA-384, and the extends of the sha1, sha256 and
	// sha384 chains and sha384's padded one; standard-library one-shot
	// hashes, one goroutine, the entries already parsed.
	b.Run("floor", func(b *testing.B) {
		fr := es[hist:]
		var s1 [20]byte
		var s256 [32]byte
		var s384, p384 [48]byte
		var buf [96]byte
		for b.Loop() {
			for i := range fr {
				d1 := sha1.Sum(fr[i].TemplateData)
				d256 := sha256.Sum256(fr[i].TemplateData)
				d384 := sha512.Sum384(fr[i].TemplateData)
				s1 = sha1.Sum(append(append(buf[:0], s1[:]...), d1[:]...))
				s256 = sha256.Sum256(append(append(buf[:0], s256[:]...), d256[:]...))
				s384 = sha512.Sum384(append(append(buf[:0], s384[:]...), d384[:]...))
				var pad [48]byte
				copy(pad[:], d1[:])
				p384 = sha512.Sum384(append(append(buf[:0], p384[:]...), pad[:]...))
			}
		}
		if s1[0]+s256[0]+s384[0]+p384[0] == 0 {
			b.Log("(keeps the work)")
		}
	})
	// The same verdict from a full run, side by side.
	b.Run("full", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			res, err := VerifyReaderAt(r, int64(len(raw)), order, q, VerifyOptions{})
			if err != nil || !res.Consistent {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU reports the process's CPU time (user + system, all threads)
// per iteration when the returned function runs: on a loaded machine it
// moves less than the wall time.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		b.ReportMetric(float64(cpu()-start)/1e6/float64(b.N), "cpu-ms/op")
	}
}
