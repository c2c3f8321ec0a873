package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// TestReplayKexecIsReplayCheckAndMarshal: the one pass finalize uses
// (issue 24: the restorability check hashed every entry's SHA-1 again and
// the buffer was encoded again) gives what the three separate calls give:
// ReplayAll's values, CheckRestorable's verdict, MarshalKexecBuffer's
// buffer — from the list's own bytes or by encoding, across many chunks.
func TestReplayKexecIsReplayCheckAndMarshal(t *testing.T) {
	defer func(e int) { chunkEntries = e }(chunkEntries)
	chunkEntries = 7
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		es := restorable(synthList(t, order))
		list := AppendList(nil, es, order)
		parsed, err := ParseList(list, order)
		if err != nil {
			t.Fatal(err)
		}
		runs := []BankMethod{{crypto.SHA1, MethodPerBank}, {crypto.SHA256, MethodPerBank}, {crypto.SHA384, MethodSHA1Padded}}
		want := ReplayAll(es, runs)
		buf, err := MarshalKexecBuffer(es, order)
		if err != nil {
			t.Fatal(err)
		}
		for _, withList := range []bool{false, true} {
			var l []byte
			if withList {
				l = list
			}
			got, kl, err := ReplayKexec(l, parsed, order, runs)
			if err != nil {
				t.Fatalf("list given %v: %v", withList, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("list given %v: values differ from ReplayAll's", withList)
			}
			if !bytes.Equal(kl.Buffer(), buf) || kl.Count() != len(es) || kl.ListBytes() != len(list) {
				t.Fatalf("list given %v: buffer differs from MarshalKexecBuffer's", withList)
			}
		}
	}
}

// TestReplayKexecRefusesWhatCheckRestorableRefuses: the same problems,
// at the same indices, whichever chunk they fall in.
func TestReplayKexecRefusesWhatCheckRestorableRefuses(t *testing.T) {
	defer func(e int) { chunkEntries = e }(chunkEntries)
	chunkEntries = 3
	order := binary.LittleEndian
	es := restorable(synthList(t, order))
	es[1].TemplateDigest[0] ^= 1 // altered: the kernel recomputes it
	es[len(es)-2].TemplateDigest[5] ^= 1
	want := CheckRestorable(es, order)
	var wre *RestoreError
	if !errors.As(want, &wre) || len(wre.Problems) != 2 || wre.Problems[1].Index != len(es)-2 {
		t.Fatalf("CheckRestorable: %v", want)
	}
	_, kl, err := ReplayKexec(nil, es, order, []BankMethod{{crypto.SHA256, MethodPerBank}})
	var re *RestoreError
	if kl != nil || !errors.As(err, &re) || !reflect.DeepEqual(re, wre) {
		t.Fatalf("ReplayKexec: %v, want %v", err, want)
	}
}

// TestReplayKexecListMustEncodeTheEntries: the bytes given with the
// entries are taken only when they are the entries' encoding.
func TestReplayKexecListMustEncodeTheEntries(t *testing.T) {
	order := binary.LittleEndian
	es := restorable(synthList(t, order))
	list := AppendList(nil, es, order)
	runs := []BankMethod{{crypto.SHA256, MethodPerBank}}
	for name, l := range map[string][]byte{
		"a changed byte":  func() []byte { b := bytes.Clone(list); b[len(b)-1] ^= 1; return b }(),
		"a trailing byte": append(bytes.Clone(list), 0),
		"one entry short": list[:len(list)-es[len(es)-1].EncodedSize()],
	} {
		if _, kl, err := ReplayKexec(l, es, order, runs); kl != nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestKexecListAppendChecks: what is appended is checked, problems are
// counted from the start of the list, and a refused append adds nothing.
func TestKexecListAppendChecks(t *testing.T) {
	order := binary.LittleEndian
	es := restorable(synthList(t, order))
	kl, err := NewKexecList(es[:3], order)
	if err != nil {
		t.Fatal(err)
	}
	bad := es[3]
	bad.TemplateDigest[0] ^= 1
	var re *RestoreError
	if err := kl.Append(es[3], bad); !errors.As(err, &re) || re.Problems[0].Index != 4 || re.Total != 5 || kl.Count() != 3 {
		t.Fatalf("append of an altered entry: %v (count %d)", err, kl.Count())
	}
	if err := kl.Append(es[3:]...); err != nil {
		t.Fatal(err)
	}
	want, _ := MarshalKexecBuffer(es, order)
	if !bytes.Equal(kl.Buffer(), want) {
		t.Fatal("appended list differs from MarshalKexecBuffer's")
	}
}
