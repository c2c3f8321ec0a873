package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// restorable drops the entries a restoring kernel refuses (legacy ima).
func restorable(es []Entry) []Entry {
	var out []Entry
	for _, e := range es {
		if e.TemplateName != "ima" {
			out = append(out, e)
		}
	}
	return out
}

func TestKexecBufferRoundTrip(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := restorable(synthList(t, order))
		b, err := MarshalKexecBuffer(es, order)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := ParseKexecHeader(b, order)
		list := AppendList(nil, es, order)
		if h.Version != 1 || h.Count != uint64(len(es)) || h.BufferSize != uint64(len(b)) || len(b) != KexecHeaderSize+len(list) {
			t.Fatalf("header %+v, len %d", h, len(b))
		}
		if !bytes.Equal(b[KexecHeaderSize:], list) || !bytes.Equal(b[2:8], make([]byte, 6)) {
			t.Fatal("buffer body is not the binary list / reserved bytes not zero")
		}
		got, err := ParseKexecBuffer(append(b, make([]byte, 100)...), order) // page padding
		if err != nil || len(got) != len(es) {
			t.Fatalf("parse: %d entries, %v", len(got), err)
		}
		if r := SimulateRestore(b, order); !r.OK() || r.Restored != len(es) {
			t.Fatalf("simulate: %+v", r)
		}
	}
}

func TestCheckRestorable(t *testing.T) {
	order := binary.LittleEndian
	es := synthList(t, order)
	err := CheckRestorable(es, binary.LittleEndian)
	var re *RestoreError
	if !errors.As(err, &re) || !errors.Is(err, ErrNotRestorable) {
		t.Fatalf("legacy ima entry not reported: %v", err)
	}
	if len(re.Problems) != 1 || es[re.Problems[0].Index].TemplateName != "ima" || re.Problems[0].Kind != KindRejected || re.Restored != re.Problems[0].Index {
		t.Fatalf("problems %+v", re)
	}
	if _, err := MarshalKexecBuffer(es, order); !errors.Is(err, ErrNotRestorable) {
		t.Fatalf("MarshalKexecBuffer accepted a legacy entry: %v", err)
	}

	ok := restorable(es)
	// a stored digest that differs from the data is altered on restore
	bad := append([]Entry(nil), ok...)
	bad[3].TemplateDigest[0] ^= 1
	err = CheckRestorable(bad, binary.LittleEndian)
	if !errors.As(err, &re) || len(re.Problems) != 1 || re.Problems[0].Kind != KindAltered || re.Problems[0].Index != 3 || re.Restored != len(bad) {
		t.Fatalf("altered digest: %v", err)
	}
	// a name of MAX_TEMPLATE_NAME_LEN bytes is refused
	long := ok[0]
	long.TemplateName = "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode|"
	if err := CheckRestorable([]Entry{long}, binary.LittleEndian); !errors.As(err, &re) || !strings.Contains(re.Problems[0].Reason, "at most 68") {
		t.Fatalf("long name: %v", err)
	}
	// the longest built-in format is within the limit
	full := ok[8] // evm-sig
	full.TemplateName = "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"
	// (the restoring kernel accepts it, under the built-in name)
	if err := CheckRestorable([]Entry{full}, binary.LittleEndian); !errors.As(err, &re) || re.Restored != 1 || re.Problems[0].Kind != KindAltered || !strings.Contains(re.Problems[0].Reason, `"evm-sig"`) {
		t.Fatalf("evm-sig format string: %v", err)
	}
	// unknown names stop the restore silently
	unk := ok[1]
	unk.TemplateName = "ima-future"
	if err := CheckRestorable([]Entry{ok[0], unk, ok[2]}, binary.LittleEndian); !errors.As(err, &re) || re.Problems[0].Kind != KindDropped || re.Restored != 1 {
		t.Fatalf("unknown name: %v", err)
	}
	// template data that does not split into the template's fields
	short := ok[1]
	short.TemplateData = short.TemplateData[:len(short.TemplateData)-1]
	if err := CheckRestorable([]Entry{short}, binary.LittleEndian); !errors.As(err, &re) || re.Problems[0].Kind != KindRejected {
		t.Fatalf("short data: %v", err)
	}
}

func TestSimulateRestoreBuffers(t *testing.T) {
	order := binary.LittleEndian
	es := restorable(synthList(t, order))
	good, err := MarshalKexecBuffer(es, order)
	if err != nil {
		t.Fatal(err)
	}
	setCount := func(b []byte, n uint64) []byte { b = bytes.Clone(b); order.PutUint64(b[16:], n); return b }
	setSize := func(b []byte, n uint64) []byte { b = bytes.Clone(b); order.PutUint64(b[8:], n); return b }
	n := uint64(len(es))
	cases := []struct {
		name     string
		buf      []byte
		restored int
		kind     string
		index    int
	}{
		{"count too high: silent partial restore", setCount(good, n+5), int(n), KindDropped, int(n)},
		{"count too low: last counted entry must end the buffer", setCount(good, n-1), int(n - 2), KindRejected, int(n - 2)},
		{"count zero: nothing restored", setCount(good, 0), 0, "", 0},
		{"buffer_size cuts the last entry", setSize(good, uint64(len(good)-3)), int(n - 1), KindRejected, int(n - 1)},
		{"buffer_size beyond the buffer", setSize(good, uint64(len(good)+1)), 0, KindRejected, -1},
		{"version 2", func() []byte { b := bytes.Clone(good); order.PutUint16(b, 2); return b }(), 0, KindRejected, -1},
		{"short header", good[:10], 0, KindDropped, -1},
	}
	for _, c := range cases {
		r := SimulateRestore(c.buf, order)
		if r.Restored != c.restored {
			t.Errorf("%s: restored %d, want %d (%+v)", c.name, r.Restored, c.restored, r.Problems)
		}
		if c.kind == "" {
			continue
		}
		if len(r.Problems) == 0 || r.Problems[0].Kind != c.kind || r.Problems[0].Index != c.index {
			t.Errorf("%s: problems %+v, want %s at %d", c.name, r.Problems, c.kind, c.index)
		}
		if _, err := ParseKexecBuffer(c.buf, order); err == nil {
			t.Errorf("%s: ParseKexecBuffer accepted it", c.name)
		}
	}
	// count zero is not OK for the loader even though the kernel is silent
	if r := SimulateRestore(setCount(good, 0), order); r.Restored != 0 {
		t.Errorf("count 0 restored %d", r.Restored)
	}

	// A legacy entry in the middle: restore stops there with an error.
	withLegacy := append(append([]Entry{}, es[:3]...), legacyEntry(order, 10, [20]byte{1}, "/x"))
	withLegacy = append(withLegacy, es[3:]...)
	list := AppendList(nil, withLegacy, order)
	buf := make([]byte, KexecHeaderSize)
	order.PutUint16(buf, 1)
	order.PutUint64(buf[8:], uint64(KexecHeaderSize+len(list)))
	order.PutUint64(buf[16:], uint64(len(withLegacy)))
	buf = append(buf, list...)
	r := SimulateRestore(buf, order)
	if r.Restored != 3 || r.Problems[0].Index != 3 || r.Problems[0].Kind != KindRejected || !strings.Contains(r.Problems[0].Reason, "legacy") {
		t.Errorf("legacy: %+v", r)
	}
	if r.Problems[0].Offset != int64(KexecHeaderSize+es[0].EncodedSize()+es[1].EncodedSize()+es[2].EncodedSize()) {
		t.Errorf("legacy offset %d", r.Problems[0].Offset)
	}
}

func TestNewEntries(t *testing.T) {
	payload := KexecMarkerPayload(1<<20, 123456, 789)
	if payload != "kexec_segment_size=1048576;ima_binary_runtime_size=123456;ima_runtime_measurements_count=789;" {
		t.Fatalf("payload %q", payload)
	}
	e := NewBufEntry(10, "kexec_load", []byte(payload), crypto.SHA256)
	d, err := e.Decode(binary.LittleEndian)
	if err != nil || d.Name != "kexec_load" || string(d.Buf) != payload || d.DigestAlgo != "sha256" {
		t.Fatalf("%+v %v", d, err)
	}
	h := crypto.SHA256.New()
	h.Write([]byte(payload))
	if !bytes.Equal(d.Digest, h.Sum(nil)) {
		t.Error("buf digest is not H(buf)")
	}
	if err := CheckRestorable([]Entry{e}, binary.LittleEndian); err != nil {
		t.Error(err)
	}
	s, l, c, err := ParseMarkerPayload(payload)
	if err != nil || s != 1<<20 || l != 123456 || c != 789 {
		t.Errorf("marker payload %d %d %d %v", s, l, c, err)
	}
	fe, err := NewFileEntry(10, "ima-sig", "/boot/vmlinuz new", make([]byte, 48), crypto.SHA384, []byte{3, 2})
	if err != nil {
		t.Fatal(err)
	}
	fd, _ := fe.Decode(binary.LittleEndian)
	if fd.Name != "/boot/vmlinuz_new" || fd.DigestAlgo != "sha384" || !bytes.Equal(fd.Sig, []byte{3, 2}) {
		t.Errorf("file entry %+v", fd)
	}
	if _, err := NewFileEntry(10, "ima-ng", "/x", make([]byte, 31), crypto.SHA256, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("short digest: %v", err)
	}
	if _, err := NewFileEntry(10, "ima", "/x", make([]byte, 20), crypto.SHA1, nil); !errors.Is(err, ErrUnknownTemplate) {
		t.Errorf("legacy template: %v", err)
	}
}
