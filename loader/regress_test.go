package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// Issue 25 finding "kexec -e at the end of shutdown reads the kernel and
// initrd again": files removed (a separate /boot unmounted) between the
// load and the exec still finalize and exec, from the state's kept bytes.
func TestExecAfterKernelFilesRemoved(t *testing.T) {
	for _, mode := range []plan.Mode{plan.ModeLoad, plan.ModeFile} {
		h := newFake(t, readTestList(t))
		if mode == plan.ModeFile {
			h.Symbols = kexec.KallsymsFacts{HandsOver: true}
		}
		sd, l, err := testLoad(t, h, mode, nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(l.Plan().Kernel.Path)
		if err := os.Remove(l.Plan().Kernel.Path); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(l.Plan().Initrd.Path); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		if err := sd.Exec(ctx, h); err != nil || h.Reboots != 1 {
			t.Fatalf("%s: exec with /boot gone: %v (%d reboots)", mode, err, h.Reboots)
		}
	}
}

// Issue 25 finding "a kdump reload between -l and -e": a crash kernel's
// kexec_file_load (kdump-tools' condreload) is not another tool's normal
// image; a normal one is.
func TestCrashReloadIsNotForeignLoad(t *testing.T) {
	h := newFake(t, readTestList(t))
	sd, _, err := testLoad(t, h, plan.ModeLoad, nil)
	if err != nil {
		t.Fatal(err)
	}
	kdump := ima.NewBufEntry(10, CmdlineEvent, []byte("root=/dev/vda1 reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll nousb"), entryHash)
	h.List = ima.AppendList(h.List, []ima.Entry{kdump}, binary.LittleEndian)
	h.CrashLoaded = true
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatalf("after a kdump reload: %v", err)
	}
	other := ima.NewBufEntry(10, CmdlineEvent, []byte("root=/dev/vda1 quiet"), entryHash)
	h.List = ima.AppendList(h.List, []ima.Entry{other}, binary.LittleEndian)
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrForeign) {
		t.Fatalf("after another tool's normal load: %v", err)
	}
}

// Finding "a kexec-tools replacement that refuses most machines": no IMA
// loads with one line; securityfs unmounted is mounted and said; an
// active list that cannot be read is refused naming why; privilege is
// named as such.
func TestNoIMANoRefusal(t *testing.T) {
	var said []string
	warn := func(_ *Image, o *Options) { o.Warn = func(s string) { said = append(said, s) } }
	h := newFake(t, nil)
	if _, l, err := testLoad(t, h, plan.ModeAuto, warn); err != nil || l.Plan().IMA != nil || len(said) != 1 || said[0] != noIMANote {
		t.Fatalf("no IMA: %v, said %q", err, said)
	}
	said = nil
	h = newFake(t, readTestList(t))
	h.Unmounted = true
	_, l, err := testLoad(t, h, plan.ModeLoad, warn)
	if err != nil || h.Mounts != 1 || l.Plan().IMA == nil || len(said) != 1 || !strings.Contains(said[0], "mounted it at /sys/kernel/security") {
		t.Fatalf("securityfs unmounted: %v, mounts %d, said %q", err, h.Mounts, said)
	}
	h = newFake(t, readTestList(t))
	h.ListErr = fmt.Errorf("%w: %w", kexec.ErrPrivilege, fs.ErrPermission)
	if _, _, err := testLoad(t, h, plan.ModeLoad, nil); !errors.Is(err, ErrPrivilege) || len(h.Loads) != 0 {
		t.Fatalf("non-root: %v", err)
	}
	h.ListErr = fmt.Errorf("read: %w", errors.New("EIO stand-in"))
	if _, _, err := testLoad(t, h, plan.ModeLoad, nil); !errors.Is(err, ErrIMAUnreadable) || len(h.Loads) != 0 {
		t.Fatalf("unreadable list: %v", err)
	}
}

// Finding "--dry-run is ignored by four actions": over a DryRun, load,
// finalize, exec, unload and the crash load act on nothing and say what
// they would do.
func TestDryRunActsOnNothing(t *testing.T) {
	h := newFake(t, readTestList(t))
	d := NewDryRun(h)
	l, err := Load(ctx, d, mustImage(t), Options{Arch: "amd64", Mode: plan.ModeLoad})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Exec(); err != nil {
		t.Fatal(err)
	}
	if err := Unload(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := UnloadCrash(ctx, d); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, a := range d.Acts {
		ops = append(ops, a.Op)
	}
	if got := strings.Join(ops, " "); got != "kexec_load kexec_load reboot unload unload" {
		t.Fatalf("acts %q", got)
	}
	if len(h.Loads)+len(h.FileLoads)+h.Reboots+h.Unloads+h.Mounts != 0 || h.Loaded {
		t.Fatalf("the dry run acted: %+v", h)
	}
}

func mustImage(t *testing.T) Image {
	img, _ := testImage(t)
	return img
}

// Finding "hard to adopt as a library": importing loader links neither
// crypto/x509 nor net (appraisal plugs in from loader/appraisal).
func TestLoaderLinksNoX509NorNet(t *testing.T) {
	if testing.Short() {
		t.Skip("go list in -short")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/gokexec/gokexec/loader").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		if d == "crypto/x509" || d == "net" {
			t.Errorf("package loader links %s", d)
		}
	}
	t.Logf("package loader links %d packages", len(deps))
}

// Finding "an unreadable kallsyms silently means no": the plan records why
// and the load says so.
func TestKallsymsUnreadableIsStated(t *testing.T) {
	h := newFake(t, readTestList(t))
	h.KallsymsErr = fmt.Errorf("kallsyms: %w", kexec.ErrNotRegular)
	var said []string
	_, l, err := testLoad(t, h, plan.ModeAuto, func(_ *Image, o *Options) { o.Warn = func(s string) { said = append(said, s) } })
	if err != nil {
		t.Fatal(err)
	}
	if f := l.Plan().Decision.Facts; f.Kallsyms == "" || len(said) == 0 || !strings.Contains(said[0], "unknown") {
		t.Fatalf("facts %+v, said %q", f, said)
	}
}

// Finding "the hand-over is sized in four places": one rule sizes it for
// load and finalize — header, list, the entries still to come, headroom,
// rounded to the plan's page size (not a hard-coded 4096); a finalize keeps
// the load's segment while everything fits and grows it by the same rule.
func TestHandoverSizedByOneRule(t *testing.T) {
	es, err := ima.ParseList(readTestList(t), binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	bytesOf := listSize(es)
	for _, page := range []uint64{4096, 16384, 65536} {
		load, err := handover(handoverIn{base: es, baseBytes: bytesOf, load: true, pcr: 10, extra: 1000, page: page})
		if err != nil {
			t.Fatal(err)
		}
		need := uint64(ima.KexecHeaderSize) + bytesOf + uint64(maxMarkerSize(MarkerLoad)) + 1000
		if load.segment%page != 0 || load.segment < need || load.segment >= need+page || load.relayout {
			t.Fatalf("page %d: load segment %d for %d bytes", page, load.segment, need)
		}
		// Finalize within the segment: same layout.
		fin, err := handover(handoverIn{base: es, baseBytes: bytesOf, load: true, exec: true, pcr: 10, extra: 1000, segment: load.segment, page: page})
		if err != nil {
			t.Fatal(err)
		}
		if fin.segment != load.segment || fin.relayout || len(fin.ours) != 2 {
			t.Fatalf("page %d: finalize segment %d (load %d), relayout %v", page, fin.segment, load.segment, fin.relayout)
		}
		// Outgrown: the same rule, larger.
		big := make([]ima.Entry, 0, 200)
		for i := 0; i < 200; i++ {
			big = append(big, ima.NewBufEntry(10, CmdlineEvent, bytes.Repeat([]byte{'x'}, 500), entryHash))
		}
		grown, err := handover(handoverIn{base: es, baseBytes: bytesOf, ours: big, load: true, exec: true, pcr: 10, extra: 1000, segment: load.segment, page: page})
		if err != nil {
			t.Fatal(err)
		}
		need = uint64(ima.KexecHeaderSize) + bytesOf + listSize(big) + uint64(maxMarkerSize(MarkerLoad)+maxMarkerSize(MarkerExecute)) + 1000
		if !grown.relayout || grown.segment%page != 0 || grown.segment < need || grown.segment >= need+page {
			t.Fatalf("page %d: grown segment %d for %d bytes", page, grown.segment, need)
		}
		// The markers name the segment they land in.
		d, _ := grown.ours[len(grown.ours)-1].Decode(binary.LittleEndian)
		if seg, _, _, err := ima.ParseMarkerPayload(string(d.Buf)); err != nil || seg != grown.segment {
			t.Fatalf("kexec_execute names segment %d, want %d", seg, grown.segment)
		}
	}
}

// Finding "Captured stubs seven methods with ErrOffTarget": a captured
// tree answers every fact from its files.
func TestCapturedTreeAnswersEveryFact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "host")
	if err := os.CopyFS(dir, os.DirFS(ovmfCapture)); err != nil {
		t.Fatal(err)
	}
	for rel, v := range map[string]string{"proc/sys/kernel/random/boot_id": "6f2c\n", "sys/kernel/kexec_loaded": "1\n", "sys/kernel/kexec_crash_loaded": "0\n"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755)
		os.WriteFile(filepath.Join(dir, rel), []byte(v), 0o644)
	}
	var f Facts = &kexec.Captured{Root: dir}
	if _, err := f.MemoryMap("amd64"); err != nil {
		t.Error(err)
	}
	if fw, err := f.Firmware("amd64"); err != nil || fw == nil || !fw.EFI {
		t.Errorf("firmware %v %v", fw, err)
	}
	if _, err := f.IMAList(); err != nil {
		t.Error(err)
	}
	if _, err := f.Kallsyms(); err != nil {
		t.Error(err)
	}
	if id, err := f.BootID(); err != nil || id != "6f2c" {
		t.Errorf("boot id %q %v", id, err)
	}
	if l, err := f.KexecLoaded(false); err != nil || !l {
		t.Errorf("kexec_loaded %v %v", l, err)
	}
	if l, err := f.KexecLoaded(true); err != nil || l {
		t.Errorf("kexec_crash_loaded %v %v", l, err)
	}
	if _, err := f.CrashFacts(false); !errors.Is(err, segment.ErrNoCrashRegion) {
		t.Errorf("crash facts of a machine without a crash region: %v", err)
	}
	_ = f.Lockdown()
	_ = f.KexecLoadDisabled()
	_ = f.ACPIRSDP()
}

// A captured tree is planned against, never acted on: a load over it is
// refused before anything is recorded as loaded.
func TestCapturedTreeRefusesActs(t *testing.T) {
	m := Machine{Facts: &kexec.Captured{Root: ovmfCapture}, Kernel: OffTarget{}, TPMs: NoTPMs{}}
	if _, err := Load(ctx, m, mustImage(t), Options{Arch: "amd64", Mode: plan.ModeLoad}); !errors.Is(err, ErrOffTarget) {
		t.Fatalf("load into a captured tree: %v", err)
	}
	if err := Unload(ctx, m); !errors.Is(err, ErrOffTarget) {
		t.Fatalf("unload of a captured tree: %v", err)
	}
	if _, err := Plan(ctx, m, mustImage(t), Options{Arch: "amd64"}); err != nil {
		t.Fatalf("plan against a captured tree: %v", err)
	}
}
