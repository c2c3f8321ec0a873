package loader

// Finalize, its self-check and its re-plan on the fake host with a real
// TPM (swtpm, package tpm/tpmtest): the fake kernel's list is extended
// into the TPM as a kernel would, and every successful finalize must leave
// a loaded hand-over list that replays to the TPM's PCRs in every bank.

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
	"github.com/gokexec/gokexec/tpm/tpmtest"
)

var testBanks = []crypto.Hash{crypto.SHA1, crypto.SHA256}

// tpmHost is a fake machine with a swtpm (sha1, sha256) whose PCR 10
// holds a boot_aggregate and n measurements, as the list does.
func tpmHost(t *testing.T, n int) (*fakeHost, *tpm.TPM) {
	t.Helper()
	if testing.Short() {
		t.Skip("swtpm test; skipped with -short")
	}
	tp := tpm.New(tpmtest.Start(t, "sha1,sha256").Dial(t))
	h := newFake(t, []byte{})
	h.TPM, h.TPMName = tp, "swtpm"
	measure(h, t, "boot_aggregate")
	for i := 0; i < n; i++ {
		measure(h, t, fmt.Sprintf("/usr/bin/tool-%d", i))
	}
	return h, tp
}

// measure does what the kernel does for a file: append its entry to the
// list and extend it into PCR 10 of every bank.
func measure(h *fakeHost, t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		d := sha256.Sum256([]byte(name))
		e, err := ima.NewFileEntry(10, "ima-ng", name, d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		extendEntry(t, h.TPM, e)
		h.List = ima.AppendList(h.List, []ima.Entry{e}, binary.LittleEndian)
	}
}

// extendEntry extends e as a kernel would, with digests computed here by
// crypto/sha1 and crypto/sha256 over the template data (not by ima), so a
// digest bug in ima that both extends and replays cannot cancel out.
func extendEntry(t *testing.T, tp TPM, e ima.Entry) {
	t.Helper()
	ds := map[crypto.Hash][]byte{}
	for _, b := range testBanks {
		ds[b] = stdDigest(t, b, e.TemplateData)
	}
	if err := tp.Extend(e.PCR, ds); err != nil {
		t.Fatal(err)
	}
}

func pcr10(t *testing.T, tp TPM) map[crypto.Hash][]byte {
	t.Helper()
	v, err := tp.ReadPCRs([]uint32{10})
	if err != nil {
		t.Fatal(err)
	}
	out := map[crypto.Hash][]byte{}
	for b, m := range v {
		out[b] = m[10]
	}
	return out
}

// loadedList is the hand-over list in the IMA segment of the last
// kexec_load.
func loadedList(t *testing.T, h *fakeHost, p *plan.Plan) []ima.Entry {
	t.Helper()
	if len(h.Loads) == 0 || p.IMA == nil {
		t.Fatal("no kexec_load with an IMA segment")
	}
	for _, s := range h.Loads[len(h.Loads)-1].Segments {
		if s.Name == p.IMA.Segment {
			es, err := ima.ParseKexecBuffer(s.Buf, binary.LittleEndian)
			if err != nil {
				t.Fatal(err)
			}
			return es
		}
	}
	t.Fatalf("no segment %q in the last kexec_load", p.IMA.Segment)
	return nil
}

// requireReplays checks that the loaded hand-over list replays to the
// TPM's PCR 10 in every bank and holds the running kernel's whole list.
func requireReplays(t *testing.T, h *fakeHost, tp TPM, p *plan.Plan) []ima.Entry {
	t.Helper()
	es := loadedList(t, h, p)
	for b, want := range pcr10(t, tp) {
		if got := ima.Replay(es, b, ima.MethodPerBank)[10]; !bytes.Equal(got, want) {
			t.Fatalf("%v: the hand-over list (%d entries) replays to %x, the TPM holds %x", b, len(es), got, want)
		}
		// The same replay by crypto/sha* directly (issue 23).
		got := make([]byte, b.Size())
		for _, e := range es {
			if e.PCR == 10 {
				got = stdDigest(t, b, append(got, stdDigest(t, b, e.TemplateData)...))
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: the hand-over list (%d entries) replays by crypto/%v to %x, the TPM holds %x", b, len(es), b, got, want)
		}
	}
	requireMarkerPositions(t, es)
	kernel, err := ima.ParseList(h.List, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, e := range es {
		d, _ := e.Decode(binary.LittleEndian)
		names[d.Name]++
	}
	for _, e := range kernel {
		if d, _ := e.Decode(binary.LittleEndian); names[d.Name] == 0 {
			t.Fatalf("the kernel's entry %q is missing from the hand-over", d.Name)
		}
	}
	return es
}

// stdDigest hashes b with the standard library's hash for bank h.
func stdDigest(t *testing.T, h crypto.Hash, b []byte) []byte {
	t.Helper()
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(b)
		return s[:]
	case crypto.SHA256:
		s := sha256.Sum256(b)
		return s[:]
	}
	t.Fatalf("no test digest for %v", h)
	return nil
}

// requireMarkerPositions checks every kexec_load/kexec_execute payload of
// a hand-over list against the marker's position, counted as the kernel
// counts (DESIGN §4.3): the entries before it, and their bytes plus the
// 24-byte hand-over header.
func requireMarkerPositions(t *testing.T, es []ima.Entry) {
	t.Helper()
	var before uint64
	for i, e := range es {
		d, err := e.Decode(binary.LittleEndian)
		if err == nil && (d.Name == MarkerLoad || d.Name == MarkerExecute) {
			var seg, size, count uint64
			if _, err := fmt.Sscanf(string(d.Buf), "kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", &seg, &size, &count); err != nil {
				t.Fatalf("%s at %d: payload %q: %v", d.Name, i, d.Buf, err)
			}
			if count != uint64(i) || size != 24+before {
				t.Fatalf("%s at %d says count=%d size=%d; %d entries of %d bytes (+24-byte header) precede it", d.Name, i, count, size, i, before)
			}
		}
		before += uint64(len(ima.AppendList(nil, []ima.Entry{e}, binary.LittleEndian)))
	}
}

func markers(es []ima.Entry) (load, exec int) {
	for _, e := range es {
		d, _ := e.Decode(binary.LittleEndian)
		switch d.Name {
		case MarkerLoad:
			load++
		case MarkerExecute:
			exec++
		}
	}
	return
}

// Nothing measured since the load: finalize extends the loader's five
// entries, the hand-over replays, a second finalize has nothing to do, and
// Exec reboots.
func TestFinalizeNothingMeasuredSinceLoad(t *testing.T) {
	h, tp := tpmHost(t, 20)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Plan().Decision.Facts.TPM != "swtpm" {
		t.Fatalf("TPM fact %q", l.Plan().Decision.Facts.TPM)
	}
	if err := l.Exec(); !errors.Is(err, ErrNotFinalized) {
		t.Fatalf("Exec before Finalize: %v", err)
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Extended || rep.NoTPM || len(rep.Entries) != 5 || rep.Relayout || rep.Count != 21+5 {
		t.Fatalf("report: extended %v entries %d relayout %v count %d", rep.Extended, len(rep.Entries), rep.Relayout, rep.Count)
	}
	es := requireReplays(t, h, tp, rep.Plan)
	if ld, ex := markers(es); ld != 1 || ex != 1 {
		t.Fatalf("markers: %d kexec_load, %d kexec_execute", ld, ex)
	}
	n := len(h.Loads)
	rep, err = l.Finalize(ctx)
	if err != nil || !rep.Skipped || len(h.Loads) != n {
		t.Fatalf("second finalize with nothing new: skipped %v, %d re-loads, %v", rep != nil && rep.Skipped, len(h.Loads)-n, err)
	}
	if err := l.Exec(); err != nil || h.Reboots != 1 {
		t.Fatalf("Exec: %v (%d reboots)", err, h.Reboots)
	}
}

// arriveTPM measures a kernel entry right after the loader's last extend,
// as a kernel that keeps measuring during finalize does.
type arriveTPM struct {
	TPM
	h       *fakeHost
	t       *testing.T
	after   int // extends before the arrival
	extends int
}

func (a *arriveTPM) Extend(pcr uint32, d map[crypto.Hash][]byte) error {
	if err := a.TPM.Extend(pcr, d); err != nil {
		return err
	}
	a.extends++
	if a.extends == a.after {
		measure(a.h, a.t, "/usr/bin/arrived-during-finalize")
	}
	return nil
}

// Entries arrived: some after the load, one while finalize extended its
// own; finalize places them where the PCRs say, and a later finalize
// continues from the loaded list with what arrived after it.
func TestFinalizeEntriesArrived(t *testing.T) {
	h, tp := tpmHost(t, 5)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	measure(h, t, "/usr/bin/after-load-1", "/usr/bin/after-load-2")
	h.TPM = &arriveTPM{TPM: tp, h: h, t: t, after: 5}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es := requireReplays(t, h, tp, rep.Plan)
	last, _ := es[len(es)-1].Decode(binary.LittleEndian)
	if last.Name != "/usr/bin/arrived-during-finalize" {
		t.Fatalf("the entry that arrived after the loader's extends is not last: %q", last.Name)
	}
	// More arrive before the reboot: a second finalize adds them and a
	// new kexec_execute, without a second kexec_load marker.
	h.TPM = tp
	measure(h, t, "/usr/bin/after-finalize")
	rep, err = l.Finalize(ctx)
	if err != nil || rep.Skipped {
		t.Fatalf("second finalize: %+v %v", rep, err)
	}
	es = requireReplays(t, h, tp, rep.Plan)
	if ld, ex := markers(es); ld != 1 || ex != 2 {
		t.Fatalf("markers after two finalizes: %d kexec_load, %d kexec_execute", ld, ex)
	}
}

// Headroom outgrown: more was measured after the load than the IMA
// segment has room for; finalize re-plans with a larger segment and drops
// nothing.
func TestFinalizeHeadroomOutgrown(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, func(_ *Image, o *Options) { o.IMAExtra = 0 })
	if err != nil {
		t.Fatal(err)
	}
	before := *l.Plan().IMA
	var names []string
	for i := 0; i < 60; i++ {
		names = append(names, "/usr/lib/x86_64-linux-gnu/"+strings.Repeat("long-name-", 10)+fmt.Sprint(i)+".so")
	}
	measure(h, t, names...)
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Relayout || rep.Plan.IMA.Size <= before.Size || rep.Plan.IMA.Size < rep.ListBytes {
		t.Fatalf("relayout %v: segment %#x -> %#x for %d bytes", rep.Relayout, before.Size, rep.Plan.IMA.Size, rep.ListBytes)
	}
	if es := requireReplays(t, h, tp, rep.Plan); len(es) != 4+60+5 {
		t.Fatalf("%d entries handed over, want %d", len(es), 4+60+5)
	}
}

// TPM absent at finalize (it cannot be opened): refused before anything
// is extended or loaded.
func TestFinalizeTPMAbsent(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	was := pcr10(t, tp)
	h.TPMErr = fmt.Errorf("%w: /dev/tpmrm0: device gone", ErrTPM)
	if _, err := l.Finalize(ctx); !errors.Is(err, ErrTPM) || errors.Is(err, ErrExtended) {
		t.Fatalf("finalize without its TPM: %v", err)
	}
	if now := pcr10(t, tp); !bytes.Equal(now[crypto.SHA256], was[crypto.SHA256]) || len(h.Loads) != 1 {
		t.Fatal("something was extended or loaded")
	}
	if err := l.Exec(); !errors.Is(err, ErrNotFinalized) {
		t.Fatalf("Exec: %v", err)
	}
}

// Each input is read once: a kernel rewritten after the load does not
// reach the kernel at finalize; the re-load carries the bytes that were
// read, hashed and measured at load.
func TestFinalizeUsesBytesReadAtLoad(t *testing.T) {
	h, _ := tpmHost(t, 3)
	k := filepath.Join(t.TempDir(), "vmlinuz")
	orig := testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	if err := os.WriteFile(k, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(k, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := Image{Kernel: Input{Name: "/boot/vmlinuz", R: f}, Initrd: Bytes("/boot/initrd.img", []byte("initrd")), Cmdline: "console=ttyS0"}
	l, err := Load(ctx, h, img, Options{Arch: "amd64", Mode: plan.ModeLoad, IMAExtra: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xdd}, int64(len(orig))-1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.Loads) != 2 {
		t.Fatalf("%d loads", len(h.Loads))
	}
	kseg := h.Loads[1].Segments[0]
	if kseg.Name != "kernel" || kseg.Buf[len(kseg.Buf)-1] != 0xcc {
		t.Fatalf("finalize re-loaded %s ending in %#x, not the bytes read at load", kseg.Name, kseg.Buf[len(kseg.Buf)-1])
	}
}

// failTPM fails the loader's extend number n (1-based).
type failTPM struct {
	TPM
	n, extends int
}

func (f *failTPM) Extend(pcr uint32, d map[crypto.Hash][]byte) error {
	f.extends++
	if f.extends == f.n {
		return errors.New("TPM stand-in: command failed")
	}
	return f.TPM.Extend(pcr, d)
}

// An extend that fails half-way: the error says the TPM already holds
// some of the loader's entries (ErrExtended), the old hand-over is not
// replaced, and Exec refuses.
func TestFinalizeExtendFailsHalfway(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	was := pcr10(t, tp)
	h.TPM = &failTPM{TPM: tp, n: 3}
	_, err = l.Finalize(ctx)
	if !errors.Is(err, ErrExtended) || !strings.Contains(err.Error(), "PCR 10") {
		t.Fatalf("half-way failure: %v", err)
	}
	if now := pcr10(t, tp); bytes.Equal(now[crypto.SHA256], was[crypto.SHA256]) {
		t.Fatal("the first two extends did not reach the TPM (the test's premise)")
	}
	if len(h.Loads) != 1 {
		t.Fatalf("%d kexec_loads: the hand-over was replaced after a failed extend", len(h.Loads))
	}
	if err := l.Exec(); !errors.Is(err, ErrNotFinalized) || h.Reboots != 0 {
		t.Fatalf("Exec after a failed finalize: %v", err)
	}
}

// Self-check: a PCR 10 the list does not explain (something extended it
// behind IMA's back) is refused before the loader extends anything.
func TestFinalizeSelfCheckRefuses(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	stray := ima.NewBufEntry(10, "not-in-the-list", []byte("x"), crypto.SHA256)
	extendEntry(t, tp, stray)
	was := pcr10(t, tp)
	_, err = l.Finalize(ctx)
	if !errors.Is(err, ErrSelfCheck) || errors.Is(err, ErrExtended) {
		t.Fatalf("unexplained PCR 10: %v", err)
	}
	if now := pcr10(t, tp); !bytes.Equal(now[crypto.SHA256], was[crypto.SHA256]) || len(h.Loads) != 1 {
		t.Fatal("the loader extended or loaded after a failed self-check")
	}
}

// An entry the next kernel would not restore unchanged (its stored digest
// is not the SHA-1 of its template data) is found by the replay's own pass
// (issue 24: the check ran again, a SHA-1 per entry, after the TPM was
// extended) and refused before the loader extends or loads anything.
func TestFinalizeRefusesUnrestorableBeforeExtending(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	e, err := ima.NewFileEntry(10, "ima-ng", "/usr/bin/altered", d[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	extendEntry(t, tp, e) // the PCRs are the template data's
	e.TemplateDigest[0] ^= 1
	h.List = ima.AppendList(h.List, []ima.Entry{e}, binary.LittleEndian)
	was := pcr10(t, tp)
	_, err = l.Finalize(ctx)
	if !errors.Is(err, ima.ErrNotRestorable) || !errors.Is(err, plan.ErrIMAList) || errors.Is(err, ErrExtended) {
		t.Fatalf("unrestorable entry: %v", err)
	}
	if now := pcr10(t, tp); !bytes.Equal(now[crypto.SHA256], was[crypto.SHA256]) || len(h.Loads) != 1 {
		t.Fatal("the loader extended or loaded before refusing the list")
	}
}

// pcrArriveTPM measures an entry just before its first PCR read: the list
// read before it lacks the entry the PCRs hold.
type pcrArriveTPM struct {
	TPM
	h     *fakeHost
	t     *testing.T
	reads int
}

func (a *pcrArriveTPM) ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error) {
	if a.reads++; a.reads == 1 {
		measure(a.h, a.t, "/usr/bin/arrived-before-the-pcr-read")
	}
	return a.TPM.ReadPCRs(pcrs)
}

// Issue 24: finalize no longer reads the list a second time to learn that
// the PCRs it read belong to it (the replay reproducing them proves it).
// An entry that arrives between the list read and the PCR read makes the
// replay miss; the list is read again, found grown, and the base taken
// again: the arrival is in the hand-over, which replays.
func TestFinalizeArrivalBeforePCRReadRetried(t *testing.T) {
	h, tp := tpmHost(t, 3)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.TPM = &pcrArriveTPM{TPM: tp, h: h, t: t}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	es := requireReplays(t, h, tp, rep.Plan)
	found := false
	for _, e := range es {
		if d, err := e.Decode(binary.LittleEndian); err == nil && d.Name == "/usr/bin/arrived-before-the-pcr-read" {
			found = true
		}
	}
	if !found {
		t.Fatal("the entry that arrived before the PCR read is not handed over")
	}
	// Without the arrival: one read for the binding check, which is the
	// base, and one after the extends.
	h.TPM = tp
	measure(h, t, "/usr/bin/after-finalize")
	reads := h.ListReads
	if _, err := l.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.ListReads - reads; n != 2 { // binding (the base), after the extends
		t.Fatalf("a finalize read the list %d times", n)
	}
}

// Issue 24: -c -l read the whole IMA list twice, the second time only to
// count it for the binding. A kexec_load binds to the list it read (the
// kernel measures nothing of it); the binding is the same.
func TestKexecLoadReadsTheListOnce(t *testing.T) {
	var list []byte
	for i := 0; i < 50; i++ {
		d := sha256.Sum256([]byte{byte(i)})
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/bin/t%d", i), d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		list = ima.AppendList(list, []ima.Entry{e}, binary.LittleEndian)
	}
	h := newFake(t, list)
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := l.State().Binding; h.ListReads != 1 || b.Entries != 50 || b.Bytes != uint64(len(list)) {
		t.Fatalf("%d list reads, binding %+v", h.ListReads, b)
	}
}

// Issue 24: -e rewrote the kept kernel and initrd (tens of MiB) into the
// state directory after finalizing, though a finalize never changes them.
// They stay the files the load wrote; the finalized state reads back.
func TestFinalizeSaveLeavesKeptInputs(t *testing.T) {
	h, _ := tpmHost(t, 3)
	sd, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := string(sd.StateDir)
	stat := func(name string) os.FileInfo {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	kernel, initrd, state := stat(kernelFile), stat(initrdFile), stat(stateFile)
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(kernel, stat(kernelFile)) || !os.SameFile(initrd, stat(initrdFile)) {
		t.Fatal("finalize wrote the kept kernel or initrd again")
	}
	if os.SameFile(state, stat(stateFile)) {
		t.Fatal("finalize did not record its result")
	}
	s, err := sd.Read()
	if err != nil || s.Finalized == nil || s.Handover == nil {
		t.Fatalf("the finalized state: %+v %v", s, err)
	}
}

// countDigests makes the state checks count the inputs they hash, by
// size, until the test ends.
func countDigests(t *testing.T) map[int]int {
	hashed := map[int]int{}
	d := stateDigest
	t.Cleanup(func() { stateDigest = d })
	stateDigest = func(b []byte) string { hashed[len(b)]++; return plan.Digest(b) }
	return hashed
}

// loadAndRead loads the stand-in image with a TPM, as gokexec -l does, and
// reads the recorded state back with the state checks' hashing counted.
func loadAndRead(t *testing.T) (*fakeHost, testSD, *State, map[int]int) {
	t.Helper()
	h, _ := tpmHost(t, 3)
	sd, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	hashed := countDigests(t)
	s, err := sd.Read()
	if err != nil {
		t.Fatal(err)
	}
	return h, sd, s, hashed
}

// Issue 24 (-e at 1.5x kexec-tools' -e): Read hashed the kept kernel and
// initrd against the plan's digests and Resume hashed them again, 43 MB
// twice under emulation. Kept files that are still the ones Save wrote are
// not hashed at all (TestReadHashesOnlyChangedKeptFiles); a State whose
// bytes or digests were replaced after Read is checked again and refused.
func TestResumeHashesReadStateOnce(t *testing.T) {
	h, sd, s, hashed := loadAndRead(t)
	if _, err := Resume(h, s); err != nil {
		t.Fatal(err)
	}
	if hashed[len(s.Kernel)] != 0 || hashed[len(s.Initrd)] != 0 {
		t.Fatalf("kernel hashed %d times, initrd %d times; want none (the files are the ones Save wrote)", hashed[len(s.Kernel)], hashed[len(s.Initrd)])
	}
	if _, _, err := sd.finalize(ctx, h, false); err != nil {
		t.Fatal(err)
	}

	s, err := sd.Read()
	if err != nil {
		t.Fatal(err)
	}
	s.Kernel = append([]byte(nil), s.Kernel...) // equal bytes, not the ones Read checked
	s.Kernel[len(s.Kernel)-1] ^= 1
	if _, err := Resume(h, s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("replaced kernel bytes: %v; want ErrStateDir", err)
	}
	s, err = sd.Read()
	if err != nil {
		t.Fatal(err)
	}
	s.Plan.Initrd.SHA256 = plan.Digest(s.Initrd[:1]) // the bytes Read checked, another digest
	if _, err := Resume(h, s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("replaced initrd digest: %v; want ErrStateDir", err)
	}
}

// Issue 24 (-e at 1.38x kexec-tools' -e): Read hashed the 43 MB it had
// written itself at -l. It now hashes a kept input only when its file is
// not the one Save left: changed in place (even with its modification time
// put back), or replaced by another file with the same bytes. A changed
// file is refused, a replaced one with the recorded bytes accepted.
func TestReadHashesOnlyChangedKeptFiles(t *testing.T) {
	_, sd, s, hashed := loadAndRead(t)
	if len(s.KeptFiles) != 2 || hashed[len(s.Kernel)]+hashed[len(s.Initrd)] != 0 {
		t.Fatalf("kept files %v; hashed %v: want the kernel and initrd recorded and neither hashed", s.KeptFiles, hashed)
	}
	kernel, initrd := s.Kernel, s.Initrd
	path := filepath.Join(string(sd.StateDir), initrdFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	// Changed in place, same size, modification time put back.
	changed := bytes.Clone(initrd)
	changed[0] ^= 1
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Read(); !errors.Is(err, ErrStateDir) {
		t.Fatalf("initrd changed in place with its mtime restored: %v; want ErrStateDir", err)
	}
	if hashed[len(initrd)] != 1 {
		t.Fatalf("initrd hashed %d times; want once", hashed[len(initrd)])
	}

	// Replaced by another file holding the recorded bytes: hashed, accepted.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, initrd, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	s, err = sd.Read()
	if err != nil {
		t.Fatalf("initrd replaced by its recorded bytes: %v", err)
	}
	if hashed[len(initrd)] != 2 || hashed[len(kernel)] != 0 || !bytes.Equal(s.Initrd, initrd) {
		t.Fatalf("hashed %v after the replacement; want the initrd once more, the kernel never", hashed)
	}
}

// Issue 24: -e read the kept initrd with io.ReadAll, whose growing buffer
// peaked at twice its size (gokexec --finalize: 100 MB RSS for 43 MB of
// inputs). A kept file is read into one buffer sized from stat.
func TestStateFileReadIntoOneBuffer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xa5}, 8<<20)
	if err := os.WriteFile(filepath.Join(dir, initrdFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b, _, err := readStateFile(dir, initrdFile, kexec.MaxInitrdBytes)
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > uint64(len(data))+1<<20 {
		t.Fatalf("reading %d bytes allocated %d", len(data), n)
	}
}
