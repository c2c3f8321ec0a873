package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestVerifyMatchesReference compares the chunked, parallel Verify with the
// previous single-pass implementation (verifyReference) on a list that spans
// many chunks: every template (legacy "ima" included), violations, PCRs 10,
// 11 and 12, quotes at prefixes on and next to chunk boundaries, both
// methods, banks served by one-shot sums (sha1, sha256, sha384, sha512) and
// by a hash.Hash (sha3-256, md5), tampered data and digests, wrong-size and
// missing quotes.
func TestVerifyMatchesReference(t *testing.T) {
	defer func(c int) { verifyChunk = c }(verifyChunk)
	base := synthList(t, binary.LittleEndian)
	var es []Entry
	for len(es) < 120 {
		es = append(es, base...)
	}
	n := len(es)
	tamperData := slices.Clone(es)
	td := slices.Clone(tamperData[40].TemplateData)
	td[len(td)-1] ^= 1
	tamperData[40].TemplateData = td
	tamperDigest := slices.Clone(es)
	tamperDigest[77].TemplateDigest[0] ^= 1
	// Entry 72 extends PCR 12.
	tamperData12 := slices.Clone(es)
	td12 := slices.Clone(tamperData12[72].TemplateData)
	td12[len(td12)-1] ^= 1
	tamperData12[72].TemplateData = td12
	noPCR12 := func(q map[uint32][]byte) map[uint32][]byte { delete(q, 12); return q }

	type tc struct {
		name string
		es   []Entry
		q    PCRValues
	}
	var cases []tc
	for _, k := range []int{0, 1, 6, 7, 8, 13, 14, 40, 41, 72, 73, 77, 78, n - 1, n} {
		cases = append(cases,
			tc{fmt.Sprintf("sha1+sha256 at %d", k), es, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}},
			tc{fmt.Sprintf("padded sha256+sha384, sha512 at %d", k), es, PCRValues{
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodSHA1Padded),
				crypto.SHA384: quote(es, k, crypto.SHA384, MethodSHA1Padded),
				crypto.SHA512: quote(es, k, crypto.SHA512, MethodPerBank)}},
			tc{fmt.Sprintf("sha3-256+md5 at %d", k), es, PCRValues{
				crypto.SHA3_256: quote(es, k, crypto.SHA3_256, MethodPerBank),
				crypto.MD5:      quote(es, k, crypto.MD5, MethodSHA1Padded)}},
			tc{fmt.Sprintf("banks disagree at %d", k), es, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, max(k-1, 0), crypto.SHA256, MethodPerBank)}},
			// The kernel extended the original data; the list shows other
			// data under the original stored digest.
			tc{fmt.Sprintf("tampered data at %d", k), tamperData, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}},
			// PCRs extended from the tampered data in every bank, under
			// the original stored digest.
			tc{fmt.Sprintf("tampered data, measured at %d", k), tamperData, PCRValues{
				crypto.SHA1:   quote(tamperData, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(tamperData, k, crypto.SHA256, MethodPerBank)}},
			// Only the SHA-1 bank checks PCR 12, and its chain extends the
			// stored digests: the tampered entry must still be found.
			tc{fmt.Sprintf("tampered PCR 12 data, sha256 without PCR 12 at %d", k), tamperData12, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: noPCR12(quote(es, k, crypto.SHA256, MethodPerBank))}},
			tc{fmt.Sprintf("tampered digest, sha256+sha384 at %d", k), tamperDigest, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank),
				crypto.SHA384: quote(es, k, crypto.SHA384, MethodSHA1Padded)}},
			tc{fmt.Sprintf("tampered digest at %d", k), tamperDigest, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}},
		)
	}
	partial := quote(es, n, crypto.SHA256, MethodPerBank)
	delete(partial, 12)
	wrong := quote(es, n, crypto.SHA1, MethodPerBank)
	wrong[11] = wrong[11][:10]
	cases = append(cases,
		tc{"PCR 12 not quoted", es, PCRValues{crypto.SHA256: partial}},
		tc{"wrong-size value", es, PCRValues{crypto.SHA1: wrong, crypto.SHA256: quote(es, n, crypto.SHA256, MethodPerBank)}},
		tc{"firmware PCRs only", es, PCRValues{crypto.SHA256: {0: make([]byte, 32)}}},
		tc{"unknown bank", es, PCRValues{crypto.Hash(99): {10: make([]byte, 20)}, crypto.SHA1: quote(es, n, crypto.SHA1, MethodPerBank)}},
		tc{"empty list", nil, PCRValues{crypto.SHA256: {10: make([]byte, 32)}}},
		tc{"no quote", es, nil},
	)
	for _, chunk := range []int{1, 7, 64, 2048} {
		verifyChunk = chunk
		for _, c := range cases {
			got, want := Verify(c.es, c.q), verifyReference(c.es, c.q)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("chunk %d, %s:\n got  %+v\n want %+v", chunk, c.name, got, want)
			}
		}
	}
	// The cases must cover both outcomes, or the comparison proves little.
	var ok, bad int
	for _, c := range cases {
		if verifyReference(c.es, c.q).Consistent {
			ok++
		} else {
			bad++
		}
	}
	if ok < 10 || bad < 10 {
		t.Errorf("%d consistent and %d inconsistent cases", ok, bad)
	}
}

// TestVerifyTrustsOneExtender pins down the one case where Verify departs
// from hashing every entry (see verifyPipelined): PCR values that no
// kernel produces, because the SHA-1 bank was extended with an entry's
// stored digest and the SHA-256 bank with the hash of other data. Both
// chains then reproduce their quotes, and the entry's stored digest is not
// compared with its data. The same list against the PCRs a kernel would
// have extended (the original data in both banks, or the tampered data in
// both) is inconsistent, and the mismatch is reported. The first case also
// shows that the fast path is taken at all.
func TestVerifyTrustsOneExtender(t *testing.T) {
	es := synthList(t, binary.LittleEndian)
	n := len(es)
	tampered := slices.Clone(es)
	td := slices.Clone(tampered[3].TemplateData)
	td[len(td)-1] ^= 1
	tampered[3].TemplateData = td

	split := PCRValues{
		crypto.SHA1:   quote(es, n, crypto.SHA1, MethodPerBank),
		crypto.SHA256: quote(tampered, n, crypto.SHA256, MethodPerBank)}
	if r := Verify(tampered, split); !r.Consistent || r.Prefix != n || len(r.DigestMismatches) != 0 {
		t.Errorf("banks extended from different data: %+v", r)
	}
	if r := verifyReference(tampered, split); r.Consistent || !slices.Equal(r.DigestMismatches, []int{3}) {
		t.Errorf("reference, banks extended from different data: %+v", r)
	}
	for name, src := range map[string][]Entry{"original": es, "tampered": tampered} {
		q := PCRValues{
			crypto.SHA1:   quote(src, n, crypto.SHA1, MethodPerBank),
			crypto.SHA256: quote(src, n, crypto.SHA256, MethodPerBank)}
		r := Verify(tampered, q)
		if r.Consistent || !slices.Equal(r.DigestMismatches, []int{3}) {
			t.Errorf("PCRs extended from the %s data: %+v", name, r)
		}
		if ref := verifyReference(tampered, q); !reflect.DeepEqual(r, ref) {
			t.Errorf("PCRs extended from the %s data:\n got  %+v\n want %+v", name, r, ref)
		}
	}
}

// TestVerifyListMatchesParseVerify checks that VerifyList returns what
// ParseList, Verify and BuildTimelineOrder return, on raw lists (both byte
// orders) verified against quotes at several prefixes and with both methods,
// on lists with corrupted bytes and on truncations, for several chunk sizes.
func TestVerifyListMatchesParseVerify(t *testing.T) {
	defer func(c, r int) { verifyChunk, readSegment = c, r }(verifyChunk, readSegment)
	before := runtime.NumGoroutine()
	defer func() {
		// Every pipeline goroutine ends, also after a failed pass.
		for i := 0; i < 200 && runtime.NumGoroutine() > before; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > before {
			t.Errorf("%d goroutines left running (%d before)", g, before)
		}
	}()
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		base := synthList(t, order)
		var es []Entry
		for len(es) < 60 {
			es = append(es, base...)
		}
		raw := AppendList(nil, es, order)
		n := len(es)
		var quotes []PCRValues
		for _, k := range []int{0, 1, 9, n / 2, n} {
			quotes = append(quotes, PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank),
				crypto.SHA384: quote(es, k, crypto.SHA384, MethodSHA1Padded)})
		}
		quotes = append(quotes, nil, PCRValues{crypto.SHA256: {0: make([]byte, 32)}})
		// Quoted PCRs the list never extends (zero and non-zero), a missing
		// one, a wrong-size one, and more PCRs than a chain tracks.
		for _, k := range []int{n / 3, n} {
			q := PCRValues{
				crypto.SHA1:   quote(es, k, crypto.SHA1, MethodPerBank),
				crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}
			q[crypto.SHA1][0] = bytes.Repeat([]byte{7}, 20)
			q[crypto.SHA1][5] = make([]byte, 20)
			q[crypto.SHA256][1] = bytes.Repeat([]byte{9}, 32)
			delete(q[crypto.SHA256], 12)
			quotes = append(quotes, q)
			many := PCRValues{crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}
			for p := uint32(100); p < 400; p++ {
				many[crypto.SHA256][p] = bytes.Repeat([]byte{byte(p)}, 32)
			}
			quotes = append(quotes, many)
			wrong := PCRValues{crypto.SHA256: quote(es, k, crypto.SHA256, MethodPerBank)}
			wrong[crypto.SHA256][11] = wrong[crypto.SHA256][11][:5]
			wrong[crypto.SHA256][3] = []byte{1}
			quotes = append(quotes, wrong)
		}
		inputs := [][]byte{raw, nil}
		for i := 0; i < len(raw); i += 97 {
			c := append([]byte(nil), raw...)
			c[i] ^= 0x40
			inputs = append(inputs, c, raw[:i])
		}
		var parsed, failed, consistent int
		for _, chunk := range []int{1, 5, 16, 2048} {
			verifyChunk = chunk
			for _, in := range inputs {
				for _, q := range quotes {
					res, tl, err := VerifyList(in, order, q)
					list, perr := ParseList(in, order)
					if (err == nil) != (perr == nil) || (err != nil && err.Error() != perr.Error()) {
						t.Fatalf("chunk %d: error %v, ParseList %v", chunk, err, perr)
					}
					// The same through a reader, in segments of 40 bytes
					// (smaller than most entries) to 64 KiB.
					readSegment = []int{40, 97, 1000, 64 << 10}[(chunk+len(in))%4]
					rres, rtl, rerr := VerifyReaderAt(bytes.NewReader(in), int64(len(in)), order, q)
					if (rerr == nil) != (err == nil) || (rerr != nil && rerr.Error() != err.Error()) ||
						!reflect.DeepEqual(rres, res) || !reflect.DeepEqual(rtl, tl) {
						t.Fatalf("chunk %d, segment %d, %d bytes: VerifyReaderAt %+v %v, VerifyList %+v %v", chunk, readSegment, len(in), rres, rerr, res, err)
					}
					if perr != nil {
						failed++
						continue
					}
					parsed++
					if wres := VerifyOrder(list, q, order); !reflect.DeepEqual(res, wres) {
						t.Fatalf("chunk %d, %d bytes: VerifyList %+v\nVerify %+v", chunk, len(in), res, wres)
					}
					if ref := verifyReference(list, q); !reflect.DeepEqual(res, ref) {
						t.Fatalf("chunk %d, %d bytes: VerifyList %+v\nreference %+v", chunk, len(in), res, ref)
					}
					if res.Consistent {
						consistent++
					}
					if wtl := BuildTimelineOrder(list, order); !reflect.DeepEqual(tl, wtl) {
						t.Fatalf("chunk %d, %d bytes: timeline %+v\nwant %+v", chunk, len(in), tl, wtl)
					}
				}
			}
		}
		if parsed == 0 || failed == 0 || consistent == 0 {
			t.Errorf("parsed %d, failed %d, consistent %d: the inputs do not cover every outcome", parsed, failed, consistent)
		}
	}
}

// timelineCandidate must equal the two substring searches it replaces.
func TestTimelineCandidate(t *testing.T) {
	inputs := []string{"", "_", "boot_aggregate", "xboot_aggregatey", "kexec_", "kexec", "_kexec_", "boot_aggregat",
		"oot_aggregate", "__boot__aggregate_kexec", "a_b_c_kexec_load", "/usr/lib/x86_64-linux-gnu/boot_aggregate",
		"exec_", "kexe_c", "boot_aggregate_late", "\\x00boot_aggregate\\x00"}
	for _, in := range inputs {
		for _, pre := range []string{"", "_", "k", "boot"} {
			d := []byte(pre + in)
			want := bytes.Contains(d, []byte("boot_aggregate")) || bytes.Contains(d, []byte("kexec_"))
			if got := timelineCandidate(&Entry{TemplateData: d}); got != want {
				t.Errorf("%q: %v, want %v", d, got, want)
			}
		}
	}
}

// nameCandidate, which reads only the event-name field, must select every
// entry whose event name the timeline acts on, in every template (the
// name first, second or third, legacy "ima") and both byte orders.
func TestNameCandidate(t *testing.T) {
	names := []string{BootAggregate, BootAggregateLate, MarkerKexecLoad, MarkerKexecExec, "kexec-cmdline", "/usr/bin/boot_aggregate", "x"}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := synthList(t, order)
		for _, n := range names {
			nul := append([]byte(n), 0)
			d := digestNG("", crypto.SHA256, make([]byte, 32))
			es = append(es,
				mkEntry(10, "ima-buf", fieldBytes(order, d, nul, []byte("payload"))),
				mkEntry(10, "n-ng|d-ng", fieldBytes(order, nul, d)),
				mkEntry(10, "d-ng|iuid|n", fieldBytes(order, d, u32(order, 0), []byte(n))),
				mkEntry(10, "d-ng|iuid", fieldBytes(order, d, u32(order, 0))),
				legacyEntry(order, 10, [20]byte{1}, n))
		}
		var tc templateCache
		found := 0
		for i := range es {
			e := &es[i]
			tpl, err := tc.lookup([]byte(e.TemplateName))
			if err != nil {
				t.Fatal(err)
			}
			want := false
			switch e.EventName(order) {
			case BootAggregate, BootAggregateLate, MarkerKexecLoad, MarkerKexecExec:
				want = true
				found++
			}
			if want && !nameCandidate(e, tpl, endianOf(order)) {
				t.Errorf("entry %d (%s, %q) is not a candidate", i, e.TemplateName, e.EventName(order))
			}
		}
		if found < 15 {
			t.Errorf("only %d entries carry a timeline event name", found)
		}
	}
}

// FuzzVerifyList: on any input, VerifyList (chunks of 3 entries, so that
// small inputs span several) returns what ParseList, Verify and
// BuildTimelineOrder return, and what the reference implementation
// returns.
func FuzzVerifyList(f *testing.F) {
	es := synthList(f, binary.LittleEndian)
	f.Add(AppendList(nil, es, binary.LittleEndian), false, uint8(len(es)))
	f.Add(AppendList(nil, synthList(f, binary.BigEndian), binary.BigEndian), true, uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, big bool, k uint8) {
		defer func(c int) { verifyChunk = c }(verifyChunk)
		verifyChunk = 3
		order := fuzzOrder(big)
		ref := synthList(t, order)
		n := min(int(k), len(ref))
		q := PCRValues{
			crypto.SHA1:   quote(ref, n, crypto.SHA1, MethodPerBank),
			crypto.SHA256: quote(ref, n, crypto.SHA256, MethodPerBank),
			crypto.SHA384: quote(ref, n, crypto.SHA384, MethodSHA1Padded)}
		res, tl, err := VerifyList(b, order, q)
		list, perr := ParseList(b, order)
		if (err == nil) != (perr == nil) || (err != nil && err.Error() != perr.Error()) {
			t.Fatalf("error %v, ParseList %v", err, perr)
		}
		if perr != nil {
			return
		}
		if want := VerifyOrder(list, q, order); !reflect.DeepEqual(res, want) {
			t.Fatalf("VerifyList %+v\nVerify %+v", res, want)
		}
		// The quotes come from a list a kernel could have extended, so
		// skipping SHA-1 digests changes nothing (see verifyPipelined).
		if want := verifyReference(list, q); !reflect.DeepEqual(res, want) {
			t.Fatalf("VerifyList %+v\nreference %+v", res, want)
		}
		if want := BuildTimelineOrder(list, order); !reflect.DeepEqual(tl, want) {
			t.Fatalf("timeline %+v\nwant %+v", tl, want)
		}
	})
}

// failingReader fails every read that reaches past limit.
type failingReader struct {
	b     []byte
	limit int64
}

var errInjected = errors.New("injected read error")

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.limit {
		n := max(0, min(len(p), int(r.limit-off)))
		copy(p, r.b[off:off+int64(n)])
		return n, errInjected
	}
	return copy(p, r.b[off:]), nil
}

// A read error anywhere in the list is VerifyReaderAt's error.
func TestVerifyReaderAtReadError(t *testing.T) {
	defer func(r int) { readSegment = r }(readSegment)
	readSegment = 100
	order := binary.LittleEndian
	es := synthList(t, order)
	raw := AppendList(nil, es, order)
	q := PCRValues{crypto.SHA256: quote(es, len(es), crypto.SHA256, MethodPerBank)}
	if r, _, err := VerifyReaderAt(failingReader{raw, int64(len(raw))}, int64(len(raw)), order, q); err != nil || !r.Consistent {
		t.Fatalf("no failure injected: %v %+v", err, r)
	}
	for _, limit := range []int64{0, 1, 99, 100, 1000, int64(len(raw)) - 1} {
		if _, _, err := VerifyReaderAt(failingReader{raw, limit}, int64(len(raw)), order, q); !errors.Is(err, errInjected) {
			t.Errorf("read error at %d: %v", limit, err)
		}
	}
}

// ReplayAll returns what Replay returns for every bank and method, on a
// list with every template, violations and PCRs past 31, for several chunk
// sizes; an unavailable bank gives nil, an empty list empty maps.
func TestReplayAllMatchesReplay(t *testing.T) {
	defer func(c int) { verifyChunk = c }(verifyChunk)
	es := synthList(t, binary.LittleEndian)
	for i := 0; i < 40; i++ {
		e := es[i%len(es)]
		e.PCR = uint32(i % 50)
		es = append(es, e)
	}
	var runs []BankMethod
	for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.Hash(99)} {
		for _, m := range []Method{MethodPerBank, MethodSHA1Padded} {
			runs = append(runs, BankMethod{b, m})
		}
	}
	for _, chunk := range []int{1, 7, 2048} {
		verifyChunk = chunk
		for _, list := range [][]Entry{es, nil} {
			got := ReplayAll(list, runs)
			for i, r := range runs {
				want := Replay(list, r.Bank, r.Method)
				if !reflect.DeepEqual(got[i], want) {
					t.Fatalf("chunk %d, %d entries, %v %v: %x, want %x", chunk, len(list), HashName(r.Bank), r.Method, got[i], want)
				}
			}
		}
	}
}

// ReplayList and ReplayReaderAt return what ParseList and ReplayAll
// return, on valid, truncated and corrupted lists in both byte orders,
// with segments smaller and larger than entries.
func TestReplayListMatchesParseReplay(t *testing.T) {
	defer func(c, r int) { verifyChunk, readSegment = c, r }(verifyChunk, readSegment)
	runs := []BankMethod{{crypto.SHA1, MethodPerBank}, {crypto.SHA256, MethodPerBank}, {crypto.SHA384, MethodSHA1Padded}, {crypto.SHA512, MethodPerBank}}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		var es []Entry
		for len(es) < 50 {
			es = append(es, synthList(t, order)...)
		}
		raw := AppendList(nil, es, order)
		inputs := [][]byte{raw, nil}
		for i := 0; i < len(raw); i += 131 {
			c := bytes.Clone(raw)
			c[i] ^= 0x20
			inputs = append(inputs, c, raw[:i])
		}
		var ok, bad int
		for k, in := range inputs {
			verifyChunk = []int{1, 5, 2048}[k%3]
			readSegment = []int{40, 333, 64 << 10}[k%3]
			list, perr := ParseList(in, order)
			got, n, err := ReplayList(in, order, runs)
			rgot, rn, rerr := ReplayReaderAt(bytes.NewReader(in), int64(len(in)), order, runs)
			for _, c := range []struct {
				name string
				got  []map[uint32][]byte
				n    int
				err  error
			}{{"ReplayList", got, n, err}, {"ReplayReaderAt", rgot, rn, rerr}} {
				if (c.err == nil) != (perr == nil) || c.err != nil && c.err.Error() != perr.Error() {
					t.Fatalf("%s, input %d: error %v, ParseList %v", c.name, k, c.err, perr)
				}
				if perr != nil {
					continue
				}
				if want := ReplayAll(list, runs); c.n != len(list) || !reflect.DeepEqual(c.got, want) {
					t.Fatalf("%s, input %d: %d entries %x, want %d %x", c.name, k, c.n, c.got, len(list), want)
				}
			}
			if perr != nil {
				bad++
			} else {
				ok++
			}
		}
		if ok == 0 || bad == 0 {
			t.Errorf("%d inputs parsed, %d failed: not every outcome covered", ok, bad)
		}
	}
}

// FuzzReplayList: on any input, ReplayList and ReplayReaderAt (chunks of
// 3 entries, segments of 100 bytes) return what ParseList and ReplayAll
// return.
func FuzzReplayList(f *testing.F) {
	f.Add(AppendList(nil, synthList(f, binary.LittleEndian), binary.LittleEndian), false)
	f.Add(AppendList(nil, synthList(f, binary.BigEndian), binary.BigEndian), true)
	runs := []BankMethod{{crypto.SHA1, MethodPerBank}, {crypto.SHA256, MethodPerBank}, {crypto.SHA384, MethodSHA1Padded}}
	f.Fuzz(func(t *testing.T, b []byte, big bool) {
		defer func(c, r int) { verifyChunk, readSegment = c, r }(verifyChunk, readSegment)
		verifyChunk, readSegment = 3, 100
		order := fuzzOrder(big)
		list, perr := ParseList(b, order)
		got, n, err := ReplayList(b, order, runs)
		rgot, rn, rerr := ReplayReaderAt(bytes.NewReader(b), int64(len(b)), order, runs)
		for _, e := range []error{err, rerr} {
			if (e == nil) != (perr == nil) || e != nil && e.Error() != perr.Error() {
				t.Fatalf("error %v, ParseList %v", e, perr)
			}
		}
		if perr != nil {
			return
		}
		want := ReplayAll(list, runs)
		if n != len(list) || rn != len(list) || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(rgot, want) {
			t.Fatalf("ReplayList %d %x, ReplayReaderAt %d %x, want %d %x", n, got, rn, rgot, len(list), want)
		}
	})
}
