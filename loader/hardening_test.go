package loader

// Regression tests for issue 11 ("Loader hardening"), one or more per
// finding, each built from the finding's reproducer. None of them makes a
// kexec or reboot system call: the host seams in host.go are replaced.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

const (
	testMemmap = "../plan/testdata/iomem-qemu-q35-1g-deb61.txt"
	testList   = "../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements"
)

// fakeHost replaces the running system for one test.
type fakeHost struct {
	list      []byte // the running kernel's list; nil: no securityfs
	loaded    bool
	boot      string
	kallsyms  kexec.KallsymsFacts
	executed  []*plan.Plan
	fileLoads [][2][]byte
	fileFDs   []*os.File
}

func installHost(t *testing.T, h *fakeHost) {
	t.Helper()
	saved := []any{readIMAList, executePlan, fileLoadFDs, kexecLoaded, bootID, readKallsyms, openTPMAt, tpmDefaults}
	readIMAList = func(path string) ([]byte, string, error) {
		if path != "" {
			return kexec.ReadIMAList(path)
		}
		if h.list == nil {
			return nil, "", kexec.ErrNoIMA
		}
		return h.list, kexec.IMAList, nil
	}
	executePlan = func(p *plan.Plan) error { h.executed = append(h.executed, p); h.loaded = true; return nil }
	fileLoadFDs = func(k, rd *os.File, cmdline string) error {
		var got [2][]byte
		for i, f := range []*os.File{k, rd} {
			if f == nil {
				continue
			}
			b := make([]byte, 64<<20)
			n, _ := f.ReadAt(b, 0)
			got[i] = b[:n]
		}
		h.fileLoads = append(h.fileLoads, got)
		h.fileFDs = append(h.fileFDs, k)
		h.loaded = true
		return nil
	}
	kexecLoaded = func() (bool, error) { return h.loaded, nil }
	bootID = func() (string, error) { return h.boot, nil }
	readKallsyms = func(root string) (kexec.KallsymsFacts, error) {
		if root != "" {
			return kexec.ReadKallsyms(root)
		}
		return h.kallsyms, nil
	}
	openTPMAt = func(path string) (*tpm.TPM, error) { return tpm.Open(path) }
	tpmDefaults = []string{filepath.Join(t.TempDir(), "tpmrm0"), filepath.Join(t.TempDir(), "tpm0")}
	t.Cleanup(func() {
		readIMAList = saved[0].(func(string) ([]byte, string, error))
		executePlan = saved[1].(func(*plan.Plan) error)
		fileLoadFDs = saved[2].(func(*os.File, *os.File, string) error)
		kexecLoaded = saved[3].(func() (bool, error))
		bootID = saved[4].(func() (string, error))
		readKallsyms = saved[5].(func(string) (kexec.KallsymsFacts, error))
		openTPMAt = saved[6].(func(string) (*tpm.TPM, error))
		tpmDefaults = saved[7].([]string)
	})
}

func readTestList(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testList)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLoad writes a stand-in kernel and initrd and loads them through
// Load with the fake host. It returns the options and the state dir.
func testLoad(t *testing.T, h *fakeHost, mode plan.Mode, edit func(*Options)) (*Options, *plan.Plan, error) {
	t.Helper()
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644); err != nil {
		t.Fatal(err)
	}
	rd := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(rd, bytes.Repeat([]byte("initrd"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &Options{Arch: "amd64", KernelPath: k, InitrdPath: rd, Cmdline: "console=ttyS0", IMAExtra: 64 << 10,
		MemMap: testMemmap, Mode: mode, StateDir: filepath.Join(dir, "run", "gokexec")}
	if edit != nil {
		edit(o)
	}
	p, err := Load(o, func(string) {})
	return o, p, err
}

// Finding 1: a mistyped --tpm-device is an error, not "no TPM".
func TestNamedTPMMissingIsError(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	_, _, err := testLoad(t, h, plan.ModeLoad, func(o *Options) { o.TPMDevice = "/dev/tpmrm9" })
	if !errors.Is(err, ErrTPM) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/dev/tpmrm9") {
		t.Fatalf("load with --tpm-device /dev/tpmrm9: %v", err)
	}
	if _, _, err := openTPM("/dev/tpmrm9"); !errors.Is(err, ErrTPM) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("finalize's open of /dev/tpmrm9: %v", err)
	}
	// A default device that exists but cannot be used is an error too
	// (a directory stands in for a busy or unreadable node).
	tpmDefaults = []string{t.TempDir()}
	if _, _, err := openTPM(""); !errors.Is(err, ErrTPM) {
		t.Fatalf("unusable default device: %v", err)
	}
}

// Finding 1: with no TPM device at all, "no TPM" is explicit in the plan
// and in the finalize report, and the entries still go into the list.
func TestNoTPMIsExplicit(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	o, p, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Decision.Facts.TPM != NoTPM {
		t.Fatalf("plan's tpm fact %q, want %q", p.Decision.Facts.TPM, NoTPM)
	}
	st, err := LoadState(o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Finalize(st)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NoTPM || rep.TPM != NoTPM || rep.Extended || len(rep.Entries) != 5 {
		t.Fatalf("report: noTPM %v tpm %q extended %v entries %d", rep.NoTPM, rep.TPM, rep.Extended, len(rep.Entries))
	}
	last := h.executed[len(h.executed)-1]
	kernel, err := ima.ParseList(h.list, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if last.IMA == nil || last.IMA.Entries != len(kernel)+5 {
		t.Fatalf("re-loaded hand-over: %+v", last.IMA)
	}
}

// Finding 1: a TPM the load saw that is gone at -e is an error.
func TestTPMGoneAtExec(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	o, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := LoadState(o.StateDir)
	st.Plan.Decision.Facts.TPM = "/dev/tpmrm0"
	if _, err := Finalize(st); !errors.Is(err, ErrTPM) {
		t.Fatalf("TPM gone: %v", err)
	}
}

// Finding 1: no securityfs at -e is an error unless NoIMA.
func TestNoSecurityfsAtExec(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	o, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.list = nil // securityfs unmounted by the shutdown
	st, _ := LoadState(o.StateDir)
	if _, err := Finalize(st); !errors.Is(err, ErrNoIMAList) {
		t.Fatalf("no securityfs at -e: %v", err)
	}
	st.Options.NoIMA = true
	rep, err := Finalize(st)
	if err != nil || !rep.NoIMA || len(rep.Entries) != 0 {
		t.Fatalf("--no-ima at -e: %+v %v", rep, err)
	}
	// And a real load without a list refuses too.
	if _, _, err := testLoad(t, h, plan.ModeLoad, nil); !errors.Is(err, ErrNoIMAList) {
		t.Fatalf("load without securityfs: %v", err)
	}
}

// Finding 2: the state directory is created 0700, and an existing one
// that is group/other accessible, or a link, is refused.
func TestStateDirChecked(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "gokexec")
	s := &State{Plan: &plan.Plan{Syscall: "kexec_load"}}
	if err := saveState(dir, s); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil || st.Mode&0o7777 != 0o700 || st.Uid != uint32(os.Geteuid()) {
		t.Fatalf("state dir mode %#o uid %d: %v", st.Mode&0o7777, st.Uid, err)
	}
	if err := unix.Lstat(filepath.Join(dir, stateFile), &st); err != nil || st.Mode&0o7777 != 0o600 {
		t.Fatalf("state file mode %#o: %v", st.Mode&0o7777, err)
	}
	os.Chmod(dir, 0o755)
	if _, err := LoadState(dir); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0755 state dir at -e: %v", err)
	}
	if err := saveState(dir, s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0755 state dir reused at -l: %v", err)
	}
	os.Chmod(dir, 0o700)
	// A group-writable state file.
	os.Chmod(filepath.Join(dir, stateFile), 0o666)
	if _, err := LoadState(dir); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0666 state file: %v", err)
	}
	// The directory a link to a directory someone else controls.
	other := t.TempDir()
	link := filepath.Join(base, "link")
	os.Symlink(other, link)
	if err := saveState(link, s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("state dir through a symlink: %v", err)
	}
	if _, err := LoadState(link); !errors.Is(err, ErrStateDir) {
		t.Fatalf("reading through a symlink: %v", err)
	}
}

// Finding 2: a link planted as state.json (or as the old fixed temporary
// name) is replaced, never written through.
func TestStateWriteDoesNotFollowLinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gokexec")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	for _, name := range []string{stateFile, "state.json.tmp", "." + stateFile + ".tmp"} {
		os.Symlink(victim, filepath.Join(dir, name))
	}
	if _, err := LoadState(dir); !errors.Is(err, ErrStateDir) {
		t.Fatalf("state.json as a symlink: %v", err)
	}
	if err := saveState(dir, &State{Plan: &plan.Plan{}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the link's target was written: %q", b)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, stateFile), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatal("state.json is not a regular file after the write")
	}
}

// Finding 2: after gokexec -l K1, kexec -l K2 (kexec_file_load, measured
// as a kexec-cmdline entry), gokexec -e refused to reload K1 silently.
func TestStaleStateRefused(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	o, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(o.StateDir)
	if err != nil || st.Binding == nil || st.Binding.BootID != "b1" || st.Binding.KexecCmdlines < 0 {
		t.Fatalf("binding %+v %v", st.Binding, err)
	}
	good := *st.Binding

	// Another tool's kexec_file_load: the kernel measured its command line.
	other := ima.NewBufEntry(10, CmdlineEvent, []byte("root=/dev/other"), entryHash)
	h.list = ima.AppendList(append([]byte(nil), h.list...), []ima.Entry{other}, binary.LittleEndian)
	if _, err := Finalize(st); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "another tool") {
		t.Fatalf("foreign kexec_file_load: %v", err)
	}
	h.list = readTestList(t)

	// Unloaded since (kexec -u).
	h.loaded = false
	if _, err := Finalize(st); !errors.Is(err, ErrStale) {
		t.Fatalf("unloaded: %v", err)
	}
	h.loaded = true

	// State from another boot (a --state-dir that survived a reboot).
	st.Binding.BootID = "b0"
	if _, err := Finalize(st); !errors.Is(err, ErrStale) {
		t.Fatalf("other boot: %v", err)
	}
	*st.Binding = good

	// The kernel file changed since: refused, nothing re-loaded.
	n := len(h.executed)
	os.WriteFile(o.KernelPath, testkernel.Bytes(t, testkernel.Deb61, 0xdd), 0o644)
	if _, err := Finalize(st); !errors.Is(err, ErrInputChanged) || len(h.executed) != n {
		t.Fatalf("changed kernel: %v (%d re-loads)", err, len(h.executed)-n)
	}
}

// Finding 3: with appraisal on, kexec_file_load reads a sealed memfd
// holding the appraised bytes; swapping the file after appraisal changes
// nothing the kernel reads.
func TestFileLoadGetsAppraisedBytes(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	kb := testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	os.WriteFile(k, kb, 0o644)
	sum := sha256.Sum256(kb)
	al := filepath.Join(dir, "allow")
	os.WriteFile(al, []byte(hex.EncodeToString(sum[:])+"  "+k+"\n"), 0o644)
	o := &Options{Arch: "amd64", KernelPath: k, MemMap: testMemmap, Mode: plan.ModeFile, NoIMA: true,
		Appraise: appraise.ModeEnforce, Allowlists: []string{al}, StateDir: filepath.Join(dir, "state")}
	p, in, err := Plan(o)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker swaps the file between the hash and the load.
	os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0x66), 0o644)
	if err := execute(p, in, true); err != nil {
		t.Fatal(err)
	}
	got := h.fileLoads[0][0]
	if !bytes.Equal(got, kb) {
		t.Fatal("kexec_file_load read bytes other than the appraised ones")
	}
	seals, err := unix.FcntlInt(h.fileFDs[0].Fd(), unix.F_GET_SEALS, 0)
	want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if err == nil && seals&want != want {
		t.Fatalf("seals %#x", seals)
	}
}

// Finding 4: paths are resolved before lookup and measurement, and
// excludes do not admit a kernel.
func TestPathsResolvedAndExcludesIgnored(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	dir := t.TempDir()
	realDir := filepath.Join(dir, "home", "x")
	tmp := filepath.Join(dir, "var", "tmp")
	os.MkdirAll(realDir, 0o755)
	os.MkdirAll(tmp, 0o755)
	kb := testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	real := filepath.Join(realDir, "kernel")
	os.WriteFile(real, kb, 0o644)
	os.Symlink(real, filepath.Join(tmp, "link"))
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"meta": {"version": 1}, "digests": {}, "excludes": ["`+tmp+`/.*", ""]}`), 0o644)
	for _, typed := range []string{filepath.Join(tmp, "..", "..", "home", "x", "kernel"), filepath.Join(tmp, "link")} {
		o := &Options{Arch: "amd64", KernelPath: typed, MemMap: testMemmap, NoIMA: true, DryRun: true,
			Appraise: appraise.ModeEnforce, Allowlists: []string{policy}}
		if _, _, err := Plan(o); !errors.Is(err, appraise.ErrNotListed) || !strings.Contains(err.Error(), real) {
			t.Errorf("%s under excludes: %v", typed, err)
		}
		o.Appraise = appraise.ModeOff
		p, _, err := Plan(o)
		if err != nil || p.Kernel.Path != real {
			t.Errorf("%s planned as %q: %v", typed, p.Kernel.Path, err)
		}
	}
	// Listed under its resolved name, it passes; the measurement names it.
	sum := sha256.Sum256(kb)
	os.WriteFile(policy, []byte(`{"meta": {"version": 1}, "digests": {"`+real+`": ["`+hex.EncodeToString(sum[:])+`"]}}`), 0o644)
	o := &Options{Arch: "amd64", KernelPath: filepath.Join(tmp, "link"), MemMap: testMemmap, NoIMA: true, DryRun: true,
		Appraise: appraise.ModeEnforce, Allowlists: []string{policy}}
	p, _, err := Plan(o)
	if err != nil || len(p.Appraisal) != 1 || p.Appraisal[0].Path != real || p.Appraisal[0].Method != "allowlist" {
		t.Fatalf("%+v %v", p.Appraisal, err)
	}
	es, err := measurements(p, 10, nil)
	if d, derr := es[0].Decode(binary.LittleEndian); err != nil || derr != nil || d.Name != real {
		t.Fatalf("measured as %q", d.Name)
	}
}

// Finding 5: the DTB is measured, appraised and re-checked at -e.
func TestDTBMeasuredAppraisedRechecked(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	dir := t.TempDir()
	hdr, err := os.ReadFile("../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	k := filepath.Join(dir, "Image")
	os.WriteFile(k, append(hdr, make([]byte, 1<<20)...), 0o644)
	dtbBytes, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	dtb := filepath.Join(dir, "board.dtb")
	os.WriteFile(dtb, dtbBytes, 0o644)
	ksum, dsum := sha256.Sum256(append(hdr, make([]byte, 1<<20)...)), sha256.Sum256(dtbBytes)
	al := filepath.Join(dir, "allow")
	os.WriteFile(al, []byte(hex.EncodeToString(ksum[:])+"  "+k+"\n"), 0o644)
	o := &Options{Arch: "arm64", KernelPath: k, DTBPath: dtb, IMALog: testList, Mode: plan.ModeLoad,
		Appraise: appraise.ModeEnforce, Allowlists: []string{al}, StateDir: filepath.Join(dir, "state")}
	// Appraised: a DTB the allowlist does not list is refused.
	if _, err := Load(o, func(string) {}); !errors.Is(err, appraise.ErrNotListed) || !strings.Contains(err.Error(), dtb) {
		t.Fatalf("unlisted DTB: %v", err)
	}
	os.WriteFile(al, []byte(hex.EncodeToString(ksum[:])+"  "+k+"\n"+hex.EncodeToString(dsum[:])+"  "+dtb+"\n"), 0o644)
	p, err := Load(o, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if p.DTBInput == nil || p.DTBInput.Path != dtb || p.DTBInput.SHA256 != hex.EncodeToString(dsum[:]) || len(p.Appraisal) != 2 {
		t.Fatalf("dtb input %+v appraisals %+v", p.DTBInput, p.Appraisal)
	}
	// Measured: finalize's entries name it with its digest.
	st, err := LoadState(o.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Finalize(st)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range rep.Entries {
		if d, err := e.Decode(binary.LittleEndian); err == nil && d.Name == dtb && bytes.Equal(d.Digest, dsum[:]) {
			found = true
		}
	}
	if !found {
		t.Fatal("no measurement of the DTB among finalize's entries")
	}
	// Re-checked: a DTB changed after the load is refused at -e.
	// (Appraisal at -e would refuse it too; the digest check holds
	// without appraisal.)
	st, _ = LoadState(o.StateDir)
	st.Finalized = nil
	st.Options.Appraise = appraise.ModeOff
	changed := append([]byte(nil), dtbBytes...)
	changed[len(changed)-1] ^= 1
	os.WriteFile(dtb, changed, 0o644)
	if _, err := Finalize(st); !errors.Is(err, ErrInputChanged) || !strings.Contains(err.Error(), "device tree") {
		t.Fatalf("changed DTB at -e: %v", err)
	}
}

// Finding 6: a kernel that measures its own kexec_execute entry after the
// snapshot refuses -c with the hand-over, says why, and the plan's facts
// say which kind of kernel it is.
func TestKernelMeasuringAtExecRefusesKexecLoad(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1", kallsyms: kexec.KallsymsFacts{HandsOver: true, MeasuresAtExec: true}}
	installHost(t, h)
	o := &Options{Arch: "amd64", KernelPath: "", MemMap: testMemmap, IMALog: testList, DryRun: true}
	dir := t.TempDir()
	o.KernelPath = filepath.Join(dir, "vmlinuz")
	os.WriteFile(o.KernelPath, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644)
	o.Mode = plan.ModeLoad
	if _, _, err := Plan(o); !errors.Is(err, ErrKernelMeasuresExec) || !strings.Contains(err.Error(), "ima_measure_kexec_event") {
		t.Fatalf("-c on a 6.15+ CONFIG_IMA_KEXEC kernel: %v", err)
	}
	// -a picks kexec_file_load there, and the facts say why.
	o.Mode = plan.ModeAuto
	p, _, err := Plan(o)
	if err != nil || p.Syscall != plan.SyscallKexecFileLoad || !p.Decision.Facts.KernelMeasuresExec || !p.Decision.Facts.KernelHandsOver {
		t.Fatalf("-a: %v %+v", err, p)
	}
	// --no-ima: nothing to carry, nothing to refuse.
	o.Mode, o.NoIMA = plan.ModeLoad, true
	if _, _, err := Plan(o); err != nil {
		t.Fatalf("-c --no-ima: %v", err)
	}
	// A kernel without the notifier: -c plans, and says so.
	h.kallsyms = kexec.KallsymsFacts{}
	o.NoIMA = false
	p, _, err = Plan(o)
	if err != nil || p.Syscall != plan.SyscallKexecLoad || p.Decision.Facts.KernelMeasuresExec {
		t.Fatalf("-c on 6.1: %v", err)
	}
}

// Finding 7: every input is a bounded regular file; /dev/zero is refused
// by name, never read.
func TestDevZeroInputs(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644)
	base := func() *Options {
		return &Options{Arch: "amd64", KernelPath: k, MemMap: testMemmap, IMALog: testList, DryRun: true}
	}
	for name, edit := range map[string]func(*Options){
		"kernel":      func(o *Options) { o.KernelPath = "/dev/zero" },
		"--initrd":    func(o *Options) { o.InitrdPath = "/dev/zero" },
		"--dtb":       func(o *Options) { o.DTBPath = "/dev/zero" },
		"IMA list":    func(o *Options) { o.IMALog = "/dev/zero" },
		"--key":       func(o *Options) { o.Appraise, o.Keys = appraise.ModeEnforce, []string{"/dev/zero"} },
		"--allowlist": func(o *Options) { o.Appraise, o.Allowlists = appraise.ModeEnforce, []string{"/dev/zero"} },
		"memory map":  func(o *Options) { o.MemMap = "/dev/zero" },
	} {
		o := base()
		edit(o)
		_, _, err := Plan(o)
		if !errors.Is(err, kexec.ErrNotRegular) || !strings.Contains(err.Error(), name+" /dev/zero") {
			t.Errorf("%s /dev/zero: %v", name, err)
		}
	}
}

// Finding 6 with --host: the facts come from the captured tree's
// proc/kallsyms (capture-host keeps the IMA names), not this machine's.
func TestCapturedHostKallsyms(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	installHost(t, h)
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644)
	for fixture, refused := range map[string]bool{"ima-kexec-6.16.txt": true, "debian-6.1-no-ima-kexec.txt": false} {
		tree := t.TempDir()
		os.MkdirAll(filepath.Join(tree, "proc"), 0o755)
		b, err := os.ReadFile(filepath.Join("../kexec/testdata/kallsyms", fixture))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tree, "proc/kallsyms"), b, 0o644)
		o := &Options{Arch: "amd64", KernelPath: k, MemMap: testMemmap, IMALog: testList, DryRun: true, Mode: plan.ModeLoad, Host: tree}
		p, _, err := Plan(o)
		if refused != errors.Is(err, ErrKernelMeasuresExec) {
			t.Errorf("%s: %v", fixture, err)
		}
		if !refused && (err != nil || p.Decision.Facts.KernelMeasuresExec || p.Decision.Facts.TPM != "") {
			t.Errorf("%s: %v %+v", fixture, err, p.Decision.Facts)
		}
	}
}
