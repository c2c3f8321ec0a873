package verdict

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gokexec/gokexec/attest"
	"github.com/gokexec/gokexec/ima"
	"github.com/google/go-tpm/tpm2"
)

// A case of the differential corpus: a list and the values that vouch
// for it, read as reads says.
type diffCase struct {
	name   string
	raw    []byte
	values ima.PCRValues
	reads  ima.Reads
}

var order = binary.LittleEndian

func entry(t testing.TB, pcr uint32, name string) ima.Entry {
	d := sha256.Sum256([]byte(name))
	e, err := ima.NewFileEntry(pcr, "ima-ng", name, d[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// replayAt is what a TPM's banks hold after the first k entries; a bank
// named in padded was extended with the padded SHA-1 (Debian 6.1's sha384).
func replayAt(es []ima.Entry, k int, padded crypto.Hash, banks ...crypto.Hash) ima.PCRValues {
	v := ima.PCRValues{}
	for _, b := range banks {
		m := ima.MethodPerBank
		if b == padded {
			m = ima.MethodSHA1Padded
		}
		v[b] = ima.Replay(es[:k], b, m)
	}
	return v
}

// perBoot replays bank with the padded method before entry at and with
// its own hash from there.
func perBoot(es []ima.Entry, bank crypto.Hash, at int) map[uint32][]byte {
	v := map[uint32][]byte{}
	for i, e := range es {
		m := ima.MethodSHA1Padded
		if i >= at {
			m = ima.MethodPerBank
		}
		cur, ok := v[e.PCR]
		if !ok {
			cur = make([]byte, bank.Size())
		}
		h := bank.New()
		h.Write(cur)
		h.Write(ima.TemplateDigest(e, bank, m))
		v[e.PCR] = h.Sum(nil)
	}
	return v
}

// synthetic lists: boots with markers, violations, PCRs 10 and 11.
func synthetic(t testing.TB, n int, lostMarker bool) []ima.Entry {
	var es []ima.Entry
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es = append(es, agg)
	for i := 1; i < n; i++ {
		switch {
		case i%41 == 0:
			v, _ := ima.NewViolation(10, "ima-ng", "/tmp/v", crypto.SHA256)
			es = append(es, v)
		case i%97 == 50:
			es = append(es, ima.NewBufEntry(10, ima.MarkerKexecLoad, []byte(ima.KexecMarkerPayload(0, 100, uint64(i))), crypto.SHA256))
		case i%97 == 52 && !lostMarker:
			es = append(es, ima.NewBufEntry(10, ima.MarkerKexecExec, []byte(ima.KexecMarkerPayload(0, 100, uint64(i))), crypto.SHA256))
		case i%97 == 53:
			es = append(es, agg)
		default:
			es = append(es, entry(t, uint32(10+i%3/2), fmt.Sprintf("/usr/bin/f%d", i)))
		}
	}
	return es
}

// tampered: 65 junk stored digests in PCR 10 that sha256 excuses, then a
// PCR-11 entry rewritten (issue 21's first finding).
func tampered(t testing.TB) ([]ima.Entry, ima.PCRValues) {
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	es := []ima.Entry{agg}
	for i := range 65 {
		e := entry(t, 10, fmt.Sprintf("/junk/%d", i))
		e.TemplateDigest[0] ^= 0xff
		es = append(es, e)
	}
	orig := entry(t, 11, "/etc/secret")
	es = append(es, orig)
	q := ima.PCRValues{
		crypto.SHA256: {10: ima.Replay(es, crypto.SHA256, ima.MethodPerBank)[10]},
		crypto.SHA1:   {11: ima.Replay(es, crypto.SHA1, ima.MethodPerBank)[11]},
	}
	f := entry(t, 11, "/etc/forged")
	f.TemplateDigest = orig.TemplateDigest
	es[len(es)-1] = f
	return es, q
}

func corpus(t testing.TB) []diffCase {
	var cs []diffCase
	add := func(name string, es []ima.Entry, v ima.PCRValues) {
		raw := ima.AppendList(nil, es, order)
		for _, r := range []ima.Reads{ima.ReadsInstant, ima.ReadsPerBank} {
			cs = append(cs, diffCase{fmt.Sprintf("%s/%v", name, r), raw, v, r})
		}
	}
	// the project's captures, with the values read at the end and earlier
	dirs, _ := filepath.Glob("../ima/testdata/captures/*/binary_runtime_measurements")
	more, _ := filepath.Glob("../ima/testdata/captures/*/*/binary_runtime_measurements")
	for _, l := range append(dirs, more...) {
		dir := filepath.Dir(l)
		raw, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, suffix := range []string{"", "-prefix"} {
			v := ima.PCRValues{}
			for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384} {
				pb, err := os.ReadFile(filepath.Join(dir, "pcr-"+ima.HashName(b)+suffix+".txt"))
				if err != nil {
					t.Fatal(err)
				}
				pv, err := ima.ParsePCRFile(pb, b)
				if err != nil {
					t.Fatal(err)
				}
				v.Merge(pv)
			}
			rel, _ := filepath.Rel("../ima/testdata/captures", dir)
			for _, r := range []ima.Reads{ima.ReadsInstant, ima.ReadsPerBank} {
				cs = append(cs, diffCase{fmt.Sprintf("capture %s%s/%v", rel, suffix, r), raw, v, r})
			}
		}
	}
	s := synthetic(t, 300, false)
	add("synthetic whole", s, replayAt(s, 300, 0, crypto.SHA1, crypto.SHA256))
	add("synthetic prefix", s, replayAt(s, 257, 0, crypto.SHA1, crypto.SHA256))
	add("synthetic sha384 padded", s, replayAt(s, 300, crypto.SHA384, crypto.SHA1, crypto.SHA256, crypto.SHA384))
	add("synthetic per-bank moments", s, func() ima.PCRValues {
		v := replayAt(s, 290, 0, crypto.SHA1)
		v.Merge(replayAt(s, 295, 0, crypto.SHA256))
		return v
	}())
	l := synthetic(t, 300, true)
	add("events lost", l, replayAt(l, 300, 0, crypto.SHA256))
	es, v := tampered(t)
	add("more than 64 excused mismatches", es, v)
	// a per-bank forgery: sha256 quoted for PCR 10 only, an entry of
	// PCR 11 changed with its stored digest kept
	f := synthetic(t, 120, false)
	fv := replayAt(f, 120, 0, crypto.SHA1, crypto.SHA256)
	delete(fv[crypto.SHA256], 11)
	for i := range f {
		if f[i].PCR == 11 && i > 60 {
			g := entry(t, 11, "/forged")
			g.TemplateDigest = f[i].TemplateDigest
			f[i] = g
			break
		}
	}
	add("per-bank forgery", f, fv)
	// a method change at a boot_aggregate (a 6.1 kernel kexec'ed into a
	// 6.12 one: sha384 padded, then per-bank)
	mc := synthetic(t, 150, false)
	mv := replayAt(mc, 150, 0, crypto.SHA1, crypto.SHA256)
	mv[crypto.SHA384] = perBoot(mc, crypto.SHA384, 53)
	add("method change", mc, mv)
	w := synthetic(t, 80, false)
	add("wrong values", w, replayAt(synthetic(t, 80, true), 80, 0, crypto.SHA256))
	return cs
}

// result is what every mode must agree on: the verdict, reason, exit
// and error, the prefixes, each bank's binding and method, the digest
// mismatches, the problems and the timeline. (How much a mode replayed
// on the side — the padded method of every bank on a stream — may
// differ.)
func result(v *Verdict) string {
	type bank struct {
		Bank      string
		PCRs      []uint32
		OwnPrefix int
		Method    *ima.Method
		Boot      []ima.Method
	}
	out := struct {
		Consistent                 bool
		Exit                       int
		Reason, Error              string
		Entries, Prefix, Some, Unb int
		Mism                       []int
		MismN                      int
		Problems                   []string
		Unquoted                   []ima.UnquotedPCR
		Banks                      []bank
		Timeline                   *ima.Timeline
	}{Consistent: v.Consistent, Exit: v.Exit, Reason: v.Reason, Error: v.Error, Timeline: v.Timeline}
	if r := v.Verify; r != nil {
		out.Entries, out.Prefix, out.Some, out.Unb = r.Entries, r.Prefix, r.Some, r.Unbound
		out.Mism, out.MismN, out.Problems, out.Unquoted = r.DigestMismatches, r.DigestMismatchCount, r.Problems, r.Unquoted
		for _, b := range r.Banks {
			out.Banks = append(out.Banks, bank{b.Bank, b.PCRs, b.OwnPrefix, b.Method, b.BootMethods})
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// quoteOf signs a quote over the values with a software ECDSA P-256 key,
// selecting every PCR given.
func quoteOf(t testing.TB, key *ecdsa.PrivateKey, v ima.PCRValues, nonce []byte) *Quote {
	var sels []tpm2.TPMSPCRSelection
	d := sha256.New()
	for _, b := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		m, ok := v[b]
		if !ok {
			continue
		}
		alg := map[crypto.Hash]tpm2.TPMAlgID{crypto.SHA1: tpm2.TPMAlgSHA1, crypto.SHA256: tpm2.TPMAlgSHA256, crypto.SHA384: tpm2.TPMAlgSHA384, crypto.SHA512: tpm2.TPMAlgSHA512}[b]
		bm := make([]byte, 3)
		ps := slices.Sorted(func(yield func(uint32) bool) {
			for p := range m {
				if p < 24 && !yield(p) {
					return
				}
			}
		})
		for _, p := range ps {
			bm[p/8] |= 1 << (p % 8)
			d.Write(m[p])
		}
		sels = append(sels, tpm2.TPMSPCRSelection{Hash: alg, PCRSelect: bm})
	}
	att := tpm2.TPMSAttest{Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0xb, 1, 2}}, ExtraData: tpm2.TPM2BData{Buffer: nonce},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: sels}, PCRDigest: tpm2.TPM2BDigest{Buffer: d.Sum(nil)}})}
	msg := tpm2.Marshal(att)
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: r.Bytes()}, SignatureS: tpm2.TPM2BECCParameter{Buffer: s.Bytes()}})})
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ak := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return &Quote{Message: msg, Signature: sig, AK: ak, Nonce: nonce, PCRs: attest.PCRValues(v)}
}

// entryOffsets are the byte offsets where each entry of raw starts, and
// its end.
func entryOffsets(t testing.TB, raw []byte) []int {
	var offs []int
	err := ima.Scan(bytes.NewReader(raw), order, func(i int, off int64, e *ima.Entry) error {
		offs = append(offs, int(off))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(offs, len(raw))
}

// TestModesSameVerdict: standard input, a checkpoint resumed at every
// split point, and a quote over the same values give the full file run's
// verdict, reason and exit, over the corpus.
func TestModesSameVerdict(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range corpus(t) {
		t.Run(c.name, func(t *testing.T) {
			checkModes(t, c, key, testing.Short())
		})
	}
}

func checkModes(t testing.TB, c diffCase, key *ecdsa.PrivateKey, sparse bool) {
	ev := Evidence{Values: c.values, Reads: c.reads}
	file, _, ferr := Verify(List{RA: bytes.NewReader(c.raw), Size: int64(len(c.raw)), Order: order}, ev, Options{})
	stream, _, serr := Verify(List{R: bytes.NewReader(c.raw), Order: order}, ev, Options{})
	if (ferr == nil) != (serr == nil) {
		t.Fatalf("file error %v, stream error %v", ferr, serr)
	}
	if ferr != nil {
		return
	}
	want := result(file)
	if got := result(stream); got != want {
		t.Errorf("stdin differs from the file:\nfile   %s\nstream %s", want, got)
	}
	offs := entryOffsets(t, c.raw)
	step := 1
	if sparse && len(offs) > 60 {
		step = len(offs) / 23
	}
	for k := 0; k < len(offs); k += step {
		part := c.raw[:offs[k]]
		_, cp, err := Verify(List{RA: bytes.NewReader(part), Size: int64(len(part)), Order: order}, ev, Options{WantCheckpoint: true})
		if err != nil {
			t.Fatalf("checkpoint at %d: %v", k, err)
		}
		if cp == nil {
			continue // a method per boot: no checkpoint
		}
		res, _, err := Verify(List{RA: bytes.NewReader(c.raw), Size: int64(len(c.raw)), Order: order}, ev, Options{Checkpoint: cp})
		if err != nil {
			t.Fatalf("resumed at %d: %v", k, err)
		}
		if got := result(res); got != want {
			t.Errorf("resumed at entry %d differs from the file:\nfile    %s\nresumed %s", k, want, got)
			break
		}
	}
	if c.reads != ima.ReadsInstant {
		return
	}
	nonce := []byte("fresh nonce")
	qv, _, err := Verify(List{RA: bytes.NewReader(c.raw), Size: int64(len(c.raw)), Order: order}, Evidence{Quote: quoteOf(t, key, c.values, nonce)}, Options{})
	if err != nil {
		t.Fatalf("quote: %v", err)
	}
	if !qv.Quote.Verified {
		t.Fatalf("quote refused: %s %s", qv.Reason, qv.Error)
	}
	if got := result(qv); got != want && qv.Reason != ReasonPCRNotSelected {
		t.Errorf("the quote differs from the file:\nfile  %s\nquote %s", want, got)
	}
}

// FuzzModesSameVerdict: a fuzzed list (from the corpus's lists) judged
// against the corpus's values gives one verdict from the file, standard
// input, and a checkpoint at a fuzzed split.
func FuzzModesSameVerdict(f *testing.F) {
	cs := corpus(f)
	for i, c := range cs {
		if len(c.raw) < 64<<10 {
			f.Add(c.raw, uint16(i), uint16(len(c.raw)/2))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, which, split uint16) {
		c := cs[int(which)%len(cs)]
		ev := Evidence{Values: c.values, Reads: c.reads}
		file, _, ferr := Verify(List{RA: bytes.NewReader(raw), Size: int64(len(raw)), Order: order}, ev, Options{})
		stream, _, serr := Verify(List{R: bytes.NewReader(raw), Order: order}, ev, Options{})
		if (ferr == nil) != (serr == nil) {
			t.Fatalf("file error %v, stream error %v", ferr, serr)
		}
		if ferr != nil {
			return
		}
		want := result(file)
		if got := result(stream); got != want {
			t.Fatalf("stdin differs from the file:\nfile   %s\nstream %s", want, got)
		}
		offs := entryOffsets(t, raw)
		k := int(split) % len(offs)
		part := raw[:offs[k]]
		_, cp, err := Verify(List{RA: bytes.NewReader(part), Size: int64(len(part)), Order: order}, ev, Options{WantCheckpoint: true})
		if err != nil || cp == nil {
			return
		}
		res, _, err := Verify(List{RA: bytes.NewReader(raw), Size: int64(len(raw)), Order: order}, ev, Options{Checkpoint: cp})
		if err != nil {
			t.Fatalf("resumed at %d: %v", k, err)
		}
		if got := result(res); got != want {
			t.Fatalf("resumed at entry %d differs from the file:\nfile    %s\nresumed %s", k, want, got)
		}
	})
}

// TestLongStreamSameVerdict: a stream longer than MaxSpool is read once
// (not held); it still gives the file's verdict (lists without a method
// change), excused mismatches and a rewritten entry included.
func TestLongStreamSameVerdict(t *testing.T) {
	es, _ := tampered(t)
	var long []ima.Entry
	long = append(long, es[:len(es)-1]...)
	for i := 0; len(ima.AppendList(nil, long[:min(len(long), 1)], order))*len(long) < MaxSpool+(1<<20); i++ {
		long = append(long, entry(t, 10, fmt.Sprintf("/usr/lib/long/%06d", i)))
	}
	long = append(long, es[len(es)-1]) // the rewritten PCR-11 entry last
	raw := ima.AppendList(nil, long, order)
	if len(raw) <= MaxSpool {
		t.Fatalf("list of %d bytes is not longer than MaxSpool", len(raw))
	}
	v := ima.PCRValues{crypto.SHA256: {10: ima.Replay(long, crypto.SHA256, ima.MethodPerBank)[10]}, crypto.SHA1: {}}
	orig := entry(t, 11, "/etc/secret")
	v[crypto.SHA1][11] = ima.Replay(append(slices.Clone(long[:len(long)-1]), orig), crypto.SHA1, ima.MethodPerBank)[11]
	for _, r := range []ima.Reads{ima.ReadsInstant, ima.ReadsPerBank} {
		ev := Evidence{Values: v, Reads: r}
		file, _, err := Verify(List{RA: bytes.NewReader(raw), Size: int64(len(raw))}, ev, Options{})
		if err != nil {
			t.Fatal(err)
		}
		stream, _, err := Verify(List{R: bytes.NewReader(raw)}, ev, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if result(file) != result(stream) || file.Consistent || file.Verify.DigestMismatchCount != 1 {
			t.Errorf("%v: file %s\nstream %s", r, result(file), result(stream))
		}
	}
}
