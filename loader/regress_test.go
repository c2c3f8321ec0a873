package loader

import (
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
