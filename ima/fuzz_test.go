package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// The committed seed corpora under testdata/fuzz/ hold real kernel captures,
// kexec buffers built from them, the synthetic all-template lists in both
// byte orders, and PCR files in every accepted form.

func fuzzOrder(big bool) binary.ByteOrder {
	if big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func FuzzParseList(f *testing.F) {
	f.Add(AppendList(nil, synthList(f, binary.LittleEndian), binary.LittleEndian), false)
	f.Fuzz(func(t *testing.T, b []byte, big bool) {
		order := fuzzOrder(big)
		es, err := ParseList(b, order)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > int64(len(b)) || pe.Index != len(es) {
				t.Fatalf("error %v: not a ParseError with an offset inside the input", err)
			}
			return
		}
		if got := AppendList(nil, es, order); !bytes.Equal(got, b) {
			t.Fatal("round trip differs")
		}
		if _, err := AppendASCII(nil, es, order); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ASCII: %v", err)
		}
		for i := range es {
			es[i].Decode(order)
		}
		_ = CheckRestorable(es, order)
		BuildTimeline(es, order)
		r := Verify(es, order, PCRValues{crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank)}, VerifyOptions{})
		if len(es) > 0 && r.Prefix != len(es) && !outOfRangePCR(es) {
			t.Fatalf("list does not verify against its own replay: prefix %d of %d", r.Prefix, len(es))
		}
	})
}

func FuzzKexecBuffer(f *testing.F) {
	kb, err := MarshalKexecBuffer(restorable(synthList(f, binary.LittleEndian)), binary.LittleEndian)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kb, false)
	f.Fuzz(func(t *testing.T, b []byte, big bool) {
		order := fuzzOrder(big)
		r := SimulateRestore(b, order)
		if r.Restored < 0 || uint64(r.Restored) > r.Header.Count {
			t.Fatalf("restored %d of %d", r.Restored, r.Header.Count)
		}
		es, err := ParseKexecBuffer(b, order)
		// The streaming reader of hand-over buffers agrees with it.
		h, lr, serr := KexecListReader(bytes.NewReader(b), int64(len(b)), order)
		n := 0
		if serr == nil {
			serr = Scan(lr, order, func(int, int64, *Entry) error { n++; return nil })
		}
		if serr == nil {
			serr = CheckKexecCount(h, n)
		}
		if (err == nil) != (serr == nil) {
			t.Fatalf("ParseKexecBuffer: %v; KexecListReader+Scan: %v", err, serr)
		}
		if err != nil {
			return
		}
		// Two models of the same kernel must agree.
		var re *RestoreError
		switch err := CheckRestorable(es, order); {
		case err == nil:
			if !r.OK() || r.Restored != len(es) {
				t.Fatalf("CheckRestorable accepts, SimulateRestore restores %d of %d: %+v", r.Restored, len(es), r.Problems)
			}
		case errors.As(err, &re):
			if re.Restored != r.Restored {
				t.Fatalf("CheckRestorable says %d restored, SimulateRestore %d: %v / %+v", re.Restored, r.Restored, err, r.Problems)
			}
		default:
			t.Fatal(err)
		}
		if CheckRestorable(es, order) == nil {
			kb, err := MarshalKexecBuffer(es, order)
			if err != nil {
				t.Fatal(err)
			}
			h, _ := ParseKexecHeader(b, order)
			if !bytes.Equal(kb, b[:h.BufferSize]) && b[2]|b[3]|b[4]|b[5]|b[6]|b[7] == 0 {
				t.Fatal("re-marshaled buffer differs")
			}
		}
	})
}

func FuzzParsePCRFile(f *testing.F) {
	f.Add([]byte("PCR-10: 00 11 22 33 44 55 66 77 88 99 AA BB CC DD EE FF 00 11 22 33\n"), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, bankSel uint8) {
		banks := []crypto.Hash{0, crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
		bank := banks[int(bankSel)%len(banks)]
		v, err := ParsePCRFile(b, bank)
		if err != nil {
			if !errors.Is(err, ErrBadPCRFile) {
				t.Fatalf("error %v does not wrap ErrBadPCRFile", err)
			}
			return
		}
		for h, m := range v {
			for p, val := range m {
				if len(val) != h.Size() || p > maxPCRIndex {
					t.Fatalf("bank %v PCR %d: %d bytes", h, p, len(val))
				}
			}
		}
		js, err := MarshalPCRJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePCRFile(js, 0)
		if err != nil || len(back) != len(v) {
			t.Fatalf("JSON round trip: %v", err)
		}
	})
}

func FuzzMarkerPayload(f *testing.F) {
	f.Add("kexec_segment_size=4096;ima_binary_runtime_size=100;ima_runtime_measurements_count=3;", uint64(1), uint64(2), uint64(3))
	f.Fuzz(func(t *testing.T, s string, a, b, c uint64) {
		ParseMarkerPayload(s)
		x, y, z, err := ParseMarkerPayload(KexecMarkerPayload(a, b, c))
		if err != nil || x != a || y != b || z != c {
			t.Fatalf("round trip %d %d %d -> %d %d %d %v", a, b, c, x, y, z, err)
		}
	})
}

// FuzzVerifyReader: the streaming engine (VerifyReader, read once, in tiny
// chunks; VerifyReaderAt, read as often as it likes; Scan) on arbitrary
// input gives what ParseList followed by Verify gives, and never more
// than ParseList's error.
func FuzzVerifyReader(f *testing.F) {
	f.Add(AppendList(nil, synthList(f, binary.LittleEndian), binary.LittleEndian), false, uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, big bool, cut uint8) {
		order := fuzzOrder(big)
		defer func(c, e int) { chunkBytes, chunkEntries = c, e }(chunkBytes, chunkEntries)
		chunkBytes, chunkEntries = 16+int(cut), 1+int(cut%7)
		es, perr := ParseList(b, order)
		n := 0
		serr := Scan(bytes.NewReader(b), order, func(i int, off int64, e *Entry) error {
			if i != n || i >= len(es) || e.TemplateName != es[i].TemplateName || !bytes.Equal(e.TemplateData, es[i].TemplateData) {
				t.Fatalf("Scan entry %d differs from ParseList's", i)
			}
			n++
			return nil
		})
		if fmt.Sprint(serr) != fmt.Sprint(perr) || n != len(es) {
			t.Fatalf("Scan: %d entries, %v; ParseList: %d, %v", n, serr, len(es), perr)
		}
		q := PCRValues{
			crypto.SHA1:   Replay(es[:len(es)/2], crypto.SHA1, MethodPerBank),
			crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank),
		}
		r1, err1 := VerifyReader(bytes.NewReader(b), order, q, VerifyOptions{Reads: ReadsPerBank})
		r2, err2 := VerifyReaderAt(bytes.NewReader(b), int64(len(b)), order, q, VerifyOptions{Reads: ReadsPerBank})
		if outOfRangePCR(es) {
			// Verification refuses them (before or at ParseList's error).
			if !errors.Is(err1, ErrPCRIndex) && fmt.Sprint(err1) != fmt.Sprint(perr) || !errors.Is(err2, ErrPCRIndex) && fmt.Sprint(err2) != fmt.Sprint(perr) {
				t.Fatalf("PCR out of range: VerifyReader %v, VerifyReaderAt %v", err1, err2)
			}
			return
		}
		if fmt.Sprint(err1) != fmt.Sprint(perr) || fmt.Sprint(err2) != fmt.Sprint(perr) {
			t.Fatalf("errors: VerifyReader %v, VerifyReaderAt %v, ParseList %v", err1, err2, perr)
		}
		if perr != nil {
			return
		}
		r3 := Verify(es, order, q, VerifyOptions{Reads: ReadsPerBank})
		for _, r := range []VerifyResult{r1, r2} {
			if r.Consistent != r3.Consistent || r.Prefix != r3.Prefix || r.Some != r3.Some || r.Entries != len(es) {
				t.Fatalf("stream %v/%d/%d/%d, entries %v/%d/%d", r.Consistent, r.Prefix, r.Some, r.Entries, r3.Consistent, r3.Prefix, r3.Some)
			}
			tb := NewTimelineBuilder(order)
			tb.SetFirmware(q) // as verification compares boot_aggregates
			for i := range es {
				tb.Add(i, &es[i])
			}
			if fmt.Sprint(r.Timeline) != fmt.Sprint(tb.Finish(len(es))) {
				t.Fatal("timeline differs")
			}
		}
	})
}

func outOfRangePCR(es []Entry) bool {
	for i := range es {
		if es[i].PCR > maxPCRIndex {
			return true
		}
	}
	return false
}
