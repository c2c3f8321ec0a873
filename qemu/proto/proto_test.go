package proto

import (
	"bytes"
	"errors"
	"math/rand"
	"strings"
	"testing"
)

func decodeAll(t *testing.T, text string) []*Record {
	t.Helper()
	var d Decoder
	var out []*Record
	for _, l := range strings.SplitAfter(text, "\n") {
		r, err := d.Feed(l)
		if err != nil {
			t.Fatalf("Feed(%.60q): %v", l, err)
		}
		if r != nil {
			out = append(out, r)
		}
	}
	if d.Incomplete() != 0 {
		t.Fatalf("%d records incomplete", d.Incomplete())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	big := make([]byte, 300000)
	rand.New(rand.NewSource(1)).Read(big) // incompressible: many parts
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	in := []*Record{
		{Step: "1", Type: TypeBoot, Action: -1, Release: "6.1.0", Cmdline: "console=ttyS0 gkt.step=1"},
		{Step: "1", Type: TypeList, Name: "binary_runtime_measurements", Data: big},
		{Step: "1", Type: TypePCRs, PCRs: map[string][]string{"sha256": {"00", "ff"}}},
		{Step: "2", Type: TypeBoot, Action: -1},
		{Step: "2", Type: TypeDone, Action: -1},
	}
	for _, r := range in {
		if err := e.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	text := buf.String()
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !strings.HasPrefix(l, Prefix) || len(l) > MaxLine+200 {
			t.Fatalf("bad line %.80q (len %d)", l, len(l))
		}
	}
	if n := strings.Count(text, "\n"); n < 5+len(big)/MaxLine {
		t.Errorf("only %d lines: the large record was not split", n)
	}
	// Kernel noise between lines must be ignored.
	noisy := "[    1.0] random: crng init done\n" + strings.ReplaceAll(text, "\n", "\r\n[    2.0] tpm: noise\n")
	out := decodeAll(t, noisy)
	if len(out) != len(in) {
		t.Fatalf("got %d records, want %d", len(out), len(in))
	}
	wantBoot := []int{1, 1, 1, 2, 2}
	for i := range in {
		if out[i].Type != in[i].Type || out[i].Step != in[i].Step || out[i].Boot != wantBoot[i] {
			t.Errorf("record %d: got %s/%s boot %d", i, out[i].Step, out[i].Type, out[i].Boot)
		}
	}
	if !bytes.Equal(out[1].Data, big) {
		t.Error("large payload changed in transit")
	}
	if out[2].PCRs["sha256"][1] != "ff" || out[0].Cmdline != in[0].Cmdline {
		t.Error("fields changed in transit")
	}
}

func TestDecoderErrors(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	data := make([]byte, 50000)
	rand.New(rand.NewSource(2)).Read(data)
	if err := e.Encode(&Record{Type: TypeFile, Data: data}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("want a multi-part record, got %d lines", len(lines))
	}
	cases := map[string][]string{
		"truncated json":  {`GKT {"type":"boot"`},
		"no type":         {`GKT {"step":"1"}`},
		"duplicate part":  {lines[0], lines[0]},
		"bad part index":  {`GKT {"part":{"id":1,"i":5,"n":2,"z":"AA=="}}`},
		"bad part count":  {`GKT {"part":{"id":1,"i":0,"n":0,"z":""}}`},
		"corrupt base64":  {`GKT {"part":{"id":9,"i":0,"n":1,"z":"@@@"}}`},
		"not gzip":        {`GKT {"part":{"id":9,"i":0,"n":1,"z":"aGVsbG8="}}`},
		"changed n":       {lines[0], strings.Replace(lines[1], `"n":`, `"n":9`, 1)},
		"corrupt payload": append(append([]string{}, lines[:len(lines)-1]...), corrupt(lines[len(lines)-1])),
	}
	for name, ls := range cases {
		var d Decoder
		var err error
		for _, l := range ls {
			if _, err = d.Feed(l); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrBadLine) {
			t.Errorf("%s: got %v, want ErrBadLine", name, err)
		}
	}
	// A missing part leaves the record incomplete, not decoded.
	var d Decoder
	for _, l := range lines[1:] {
		if r, err := d.Feed(l); r != nil || err != nil {
			t.Fatalf("partial record decoded: %v %v", r, err)
		}
	}
	if d.Incomplete() != 1 {
		t.Errorf("Incomplete() = %d, want 1", d.Incomplete())
	}
}

// corrupt flips a base64 character inside the part's payload.
func corrupt(l string) string {
	i := strings.Index(l, `"z":"`) + 10
	b := []byte(l)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestScenarioValidate(t *testing.T) {
	one := 0
	good := `{"steps":{"1":{"deadline_sec":5,"actions":[{"policy":"measure func=FILE_CHECK"},{"measure_files":3},
		{"report":["pcrs","list","ascii"]},{"run":["/bin/true"],"expect_exit":0},{"exec":["/sbin/kexec","-e"]}]}}}`
	s, err := ParseScenario([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Steps["1"].Actions[3]; a.Kind() != "run" || a.ExpectExit == nil || *a.ExpectExit != one {
		t.Errorf("run action parsed as %+v", a)
	}
	bad := []string{
		`{"steps":{}}`,
		`{"steps":{"1":{"actions":[{}]}}}`,
		`{"steps":{"1":{"actions":[{"policy":"x","add_key":true}]}}}`,
		`{"steps":{"1":{"actions":[{"report":["pcr"]}]}}}`,
		`{"steps":{"1":{"actions":[{"measure_files":-1}]}}}`,
		`not json`,
	}
	for _, b := range bad {
		if _, err := ParseScenario([]byte(b)); err == nil {
			t.Errorf("ParseScenario(%s) accepted", b)
		}
	}
}

// FuzzFeed: the decoder never panics, and what it decodes re-encodes to
// lines that decode to the same record.
func FuzzFeed(f *testing.F) {
	f.Add(`GKT {"step":"1","type":"boot","action":-1,"release":"6.1"}`)
	f.Add(`GKT {"part":{"id":1,"i":0,"n":1,"z":"H4sIAAAAAAAA/6pWKqksSFWyUkpKzE1VqgUAAAD//w=="}}`)
	f.Add(`[ 1.0] GKT {"type":"done","data":"AAEC"}`)
	f.Add("GKT {\"part\":{\"id\":1,\"i\":0,\"n\":2,\"z\":\"\"}}")
	var buf bytes.Buffer
	_ = NewEncoder(&buf).Encode(&Record{Type: TypeList, Data: bytes.Repeat([]byte("compressible "), 1000)})
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var d Decoder
		r, err := d.Feed(line)
		if err != nil || r == nil {
			return
		}
		var buf bytes.Buffer
		if err := NewEncoder(&buf).Encode(r); err != nil {
			t.Fatal(err)
		}
		var d2 Decoder
		var r2 *Record
		for _, l := range strings.SplitAfter(buf.String(), "\n") {
			if x, err := d2.Feed(l); err != nil {
				t.Fatal(err)
			} else if x != nil {
				r2 = x
			}
		}
		if r2 == nil || r2.Type != r.Type || !bytes.Equal(r2.Data, r.Data) || r2.Name != r.Name {
			t.Fatalf("re-encoded record differs: %+v vs %+v", r2, r)
		}
	})
}
