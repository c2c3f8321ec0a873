package loader

// Regression tests for issue 11 ("Loader hardening"), one or more per
// finding, each built from the finding's reproducer, on the fake host
// (fake_test.go): none of them makes a kexec or reboot system call.

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

var ctx = context.Background()

// Finding 1: a mistyped --tpm-device is an error, not "no TPM".
func TestNamedTPMMissingIsError(t *testing.T) {
	sys := &tpm.Source{Device: "/dev/tpmrm9"}
	_, err := sys.TPMDevice()
	if !errors.Is(err, tpm.ErrUnavailable) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/dev/tpmrm9") {
		t.Fatalf("TPM fact of --tpm-device /dev/tpmrm9: %v", err)
	}
	if _, _, err := sys.OpenTPM(); !errors.Is(err, tpm.ErrUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("finalize's open of /dev/tpmrm9: %v", err)
	}
	// A load on such a host refuses.
	h := newFake(t, readTestList(t))
	h.TPMErr = err
	if _, _, lerr := testLoad(t, h, plan.ModeLoad, nil); !errors.Is(lerr, ErrTPM) {
		t.Fatalf("load: %v", lerr)
	}
	// A default device that exists but cannot be used is an error too
	// (a directory stands in for a busy or unreadable node).
	saved := tpm.DefaultDevices
	t.Cleanup(func() { tpm.DefaultDevices = saved })
	tpm.DefaultDevices = []string{t.TempDir()}
	if _, _, err := (&tpm.Source{}).OpenTPM(); !errors.Is(err, tpm.ErrUnavailable) {
		t.Fatalf("unusable default device: %v", err)
	}
	tpm.DefaultDevices = []string{filepath.Join(t.TempDir(), "tpmrm0")}
	if dev, err := (&tpm.Source{}).TPMDevice(); err != nil || dev != NoTPM {
		t.Fatalf("no device: %q %v", dev, err)
	}
}

// Finding 1: with no TPM device at all, "no TPM" is explicit in the plan
// and in the finalize report, and the entries still go into the list.
func TestNoTPMIsExplicit(t *testing.T) {
	h := newFake(t, readTestList(t))
	sd, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Plan().Decision.Facts.TPM != NoTPM {
		t.Fatalf("plan's tpm fact %q, want %q", l.Plan().Decision.Facts.TPM, NoTPM)
	}
	rep, err := sd.Finalize(ctx, h, false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.NoTPM || rep.TPM != NoTPM || rep.Extended || len(rep.Entries) != 5 {
		t.Fatalf("report: noTPM %v tpm %q extended %v entries %d", rep.NoTPM, rep.TPM, rep.Extended, len(rep.Entries))
	}
	kernel, err := ima.ParseList(h.List, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Plan.IMA == nil || rep.Plan.IMA.Entries != len(kernel)+5 || len(h.Loads) != 2 {
		t.Fatalf("re-loaded hand-over: %+v (%d kexec_loads)", rep.Plan.IMA, len(h.Loads))
	}
}

// Finding 1: a TPM the load saw that is gone at -e is an error.
func TestTPMGoneAtExec(t *testing.T) {
	h := newFake(t, readTestList(t))
	_, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.plan.Decision.Facts.TPM = "/dev/tpmrm0"
	if _, err := l.Finalize(ctx); !errors.Is(err, ErrTPM) {
		t.Fatalf("TPM gone: %v", err)
	}
	if err := l.Exec(); !errors.Is(err, ErrNotFinalized) || h.Reboots != 0 {
		t.Fatalf("Exec after a failed finalize: %v (%d reboots)", err, h.Reboots)
	}
}

// Finding 1: no securityfs at -e is an error unless NoIMA.
func TestNoSecurityfsAtExec(t *testing.T) {
	h := newFake(t, readTestList(t))
	sd, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.List = nil // securityfs unmounted by the shutdown
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrNoIMAList) {
		t.Fatalf("no securityfs at -e: %v", err)
	}
	rep, err := sd.Finalize(ctx, h, true)
	if err != nil || !rep.NoIMA || len(rep.Entries) != 0 {
		t.Fatalf("--no-ima at -e: %+v %v", rep, err)
	}
	// A load on a kernel without IMA loads, and says so in one line.
	var said []string
	_, l, err := testLoad(t, h, plan.ModeLoad, func(_ *Image, o *Options) { o.Warn = func(s string) { said = append(said, s) } })
	if err != nil || l.Plan().IMA != nil || len(said) != 1 || said[0] != noIMANote {
		t.Fatalf("load without IMA: %v, said %q", err, said)
	}
}

// Finding 2: the state directory is created 0700, and an existing one
// that is group/other accessible, or a link, is refused.
func TestStateDirChecked(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "gokexec")
	sd := StateDir(dir)
	s := &State{Plan: &plan.Plan{Syscall: "kexec_load"}}
	if err := sd.Save(s); err != nil {
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
	if _, err := sd.Read(); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0755 state dir at -e: %v", err)
	}
	if err := sd.Save(s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0755 state dir reused at -l: %v", err)
	}
	os.Chmod(dir, 0o700)
	// A group-writable state file.
	os.Chmod(filepath.Join(dir, stateFile), 0o666)
	if _, err := sd.Read(); !errors.Is(err, ErrStateDir) {
		t.Fatalf("0666 state file: %v", err)
	}
	// The directory a link to a directory someone else controls.
	other := t.TempDir()
	link := filepath.Join(base, "link")
	os.Symlink(other, link)
	if err := StateDir(link).Save(s); !errors.Is(err, ErrStateDir) {
		t.Fatalf("state dir through a symlink: %v", err)
	}
	if _, err := StateDir(link).Read(); !errors.Is(err, ErrStateDir) {
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
	sd := StateDir(dir)
	if _, err := sd.Read(); !errors.Is(err, ErrStateDir) {
		t.Fatalf("state.json as a symlink: %v", err)
	}
	if err := sd.Save(&State{Plan: &plan.Plan{}}); err != nil {
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
	h := newFake(t, readTestList(t))
	sd, l, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sd.Read()
	if err != nil || st.Binding == nil || st.Binding.BootID != "b1" || st.Binding.Entries < 0 {
		t.Fatalf("binding %+v %v", st.Binding, err)
	}
	good := *st.Binding

	// Another tool's kexec_file_load: the kernel measured its command line.
	other := ima.NewBufEntry(10, CmdlineEvent, []byte("root=/dev/other"), entryHash)
	h.List = ima.AppendList(append([]byte(nil), h.List...), []ima.Entry{other}, binary.LittleEndian)
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "another tool") {
		t.Fatalf("foreign kexec_file_load: %v", err)
	}
	h.List = readTestList(t)

	// Unloaded since (kexec -u): nothing loaded at all.
	h.Loaded = false
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrNothingLoaded) {
		t.Fatalf("unloaded: %v", err)
	}
	if _, err := l.Finalize(ctx); !errors.Is(err, ErrStale) {
		t.Fatalf("unloaded, in process: %v", err)
	}
	h.Loaded = true

	// State from another boot (a --state-dir that survived a reboot).
	st.Binding.BootID = "b0"
	if err := sd.Save(st); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrStale) {
		t.Fatalf("other boot: %v", err)
	}
	*st.Binding = good
	if err := sd.Save(st); err != nil {
		t.Fatal(err)
	}

	// The kernel file changed since: the state's kept bytes are loaded,
	// not the file.
	os.WriteFile(st.Plan.Kernel.Path, testkernel.Bytes(t, testkernel.Deb61, 0xdd), 0o644)
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatalf("changed kernel file: %v", err)
	}
	if k := h.Loads[len(h.Loads)-1].Segments[0].Buf; k[len(k)-1] != 0xcc {
		t.Fatal("finalize loaded the changed file, not the bytes of the load")
	}
}

// Finding 6: a kernel that measures its own kexec_execute entry after the
// snapshot refuses -c with the hand-over, says why, and the plan's facts
// say which kind of kernel it is.
func TestKernelMeasuringAtExecRefusesKexecLoad(t *testing.T) {
	h := newFake(t, readTestList(t))
	h.Symbols = kexec.KallsymsFacts{HandsOver: true, MeasuresAtExec: true}
	img, _ := testImage(t)
	o := Options{Arch: "amd64", Mode: plan.ModeLoad}
	if _, err := Plan(ctx, h, img, o); !errors.Is(err, ErrKernelMeasuresExec) || !strings.Contains(err.Error(), "ima_measure_kexec_event") {
		t.Fatalf("-c on a 6.15+ CONFIG_IMA_KEXEC kernel: %v", err)
	}
	// -a picks kexec_file_load there, and the facts say why.
	o.Mode = plan.ModeAuto
	p, err := Plan(ctx, h, img, o)
	if err != nil || p.Syscall != plan.SyscallKexecFileLoad || !p.Decision.Facts.KernelMeasuresExec || !p.Decision.Facts.KernelHandsOver {
		t.Fatalf("-a: %v %+v", err, p)
	}
	// --no-ima: nothing to carry, nothing to refuse.
	o.Mode, o.NoIMA = plan.ModeLoad, true
	if _, err := Plan(ctx, h, img, o); err != nil {
		t.Fatalf("-c --no-ima: %v", err)
	}
	// A kernel without the notifier: -c plans, and says so.
	h.Symbols = kexec.KallsymsFacts{}
	o.NoIMA = false
	p, err = Plan(ctx, h, img, o)
	if err != nil || p.Syscall != plan.SyscallKexecLoad || p.Decision.Facts.KernelMeasuresExec {
		t.Fatalf("-c on 6.1: %v", err)
	}
}

// Finding 7: every input is a bounded regular file; /dev/zero is refused
// by name, never read.
func TestDevZeroInputs(t *testing.T) {
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644)
	for name, try := range map[string]func() error{
		"kernel":      func() error { _, err := FileImage("/dev/zero", "", "", ""); return err },
		"initrd":      func() error { _, err := FileImage(k, "/dev/zero", "", ""); return err },
		"device tree": func() error { _, err := FileImage(k, "", "/dev/zero", ""); return err },
		"IMA list": func() error {
			img, _ := FileImage(k, "", "", "")
			_, err := Plan(ctx, &kexec.Captured{Root: dir, MemMap: testMemmap, IMALog: "/dev/zero"}, img, Options{Arch: "amd64"})
			return err
		},
		"memory map": func() error {
			img, _ := FileImage(k, "", "", "")
			_, err := Plan(ctx, &kexec.Captured{Root: dir, MemMap: "/dev/zero", IMALog: testList}, img, Options{Arch: "amd64"})
			return err
		},
	} {
		err := try()
		if !errors.Is(err, kexec.ErrNotRegular) || !strings.Contains(err.Error(), name+" /dev/zero") {
			t.Errorf("%s /dev/zero: %v", name, err)
		}
	}
}

// Finding 6 with --host: the facts come from the captured tree's
// proc/kallsyms (capture-host keeps the IMA names), not this machine's.
func TestCapturedHostKallsyms(t *testing.T) {
	img, _ := testImage(t)
	for fixture, refused := range map[string]bool{"ima-kexec-6.16.txt": true, "debian-6.1-no-ima-kexec.txt": false} {
		tree := t.TempDir()
		os.MkdirAll(filepath.Join(tree, "proc"), 0o755)
		b, err := os.ReadFile(filepath.Join("../kexec/testdata/kallsyms", fixture))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tree, "proc/kallsyms"), b, 0o644)
		h := &kexec.Captured{Root: tree, MemMap: testMemmap, IMALog: testList}
		p, err := Plan(ctx, h, img, Options{Arch: "amd64", Mode: plan.ModeLoad})
		if refused != errors.Is(err, ErrKernelMeasuresExec) {
			t.Errorf("%s: %v", fixture, err)
		}
		if !refused && (err != nil || p.Decision.Facts.KernelMeasuresExec || p.Decision.Facts.TPM != "") {
			t.Errorf("%s: %v %+v", fixture, err, p.Decision.Facts)
		}
	}
}
