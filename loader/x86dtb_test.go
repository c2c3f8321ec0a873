package loader

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/bzimage"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"golang.org/x/sys/unix"
)

// withDTB is a testLoad edit giving the image a device tree file.
func withDTB(t *testing.T) (func(*Image, *Options), []byte) {
	t.Helper()
	dtb, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "board.dtb")
	if err := os.WriteFile(path, dtb, 0o644); err != nil {
		t.Fatal(err)
	}
	return func(img *Image, _ *Options) {
		in, err := FileInput("device tree", path, kexec.MaxDTBBytes)
		if err != nil {
			t.Fatal(err)
		}
		img.DTB = in
	}, dtb
}

// dtbEntries counts the loader's entries whose digest is the tree's.
func dtbEntries(t *testing.T, rep *Report, dtb []byte) int {
	t.Helper()
	sum := sha256.Sum256(dtb)
	n := 0
	for i := range rep.Entries {
		d, err := rep.Entries[i].Decode(binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(d.Digest, sum[:]) {
			n++
		}
	}
	return n
}

// Finding "--dtb on x86 is accepted, appraised and measured as loaded, but
// never passed": the measurement records the device tree exactly when a
// SETUP_DTB node carries it. Auto takes kexec_load for it even on a kernel
// that would hand the list over itself on kexec_file_load; -s is refused
// before anything is loaded; on a kernel that measures at exec the
// kexec_load hand-over is refused as without a tree.
func TestX86DTBMeasuredOnlyWhenPassed(t *testing.T) {
	edit, dtb := withDTB(t)

	h := newFake(t, readTestList(t))
	h.Symbols = kexec.KallsymsFacts{HandsOver: true}
	_, l, err := testLoad(t, h, plan.ModeAuto, edit)
	if err != nil {
		t.Fatal(err)
	}
	p := l.Plan()
	if p.Syscall != plan.SyscallKexecLoad || len(h.Loads) != 1 || p.DTBInput == nil || p.DTBInput.Size != uint64(len(dtb)) {
		t.Fatalf("auto with a tree: %s, %d kexec_load, dtb_input %+v (%s)", p.Syscall, len(h.Loads), p.DTBInput, p.Decision.Reason)
	}
	nodes := 0
	for _, sd := range p.BootParams.SetupData {
		if sd.Type == bzimage.SetupDTB {
			nodes++
		}
	}
	if nodes != 1 {
		t.Fatalf("setup_data %+v: %d SETUP_DTB nodes", p.BootParams.SetupData, nodes)
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := dtbEntries(t, rep, dtb); n != 1 {
		t.Fatalf("finalize measured the passed tree %d times", n)
	}

	h = newFake(t, readTestList(t))
	_, l, err = testLoad(t, h, plan.ModeAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err = l.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Plan().DTBInput != nil || dtbEntries(t, rep, dtb) != 0 {
		t.Fatalf("no tree given: dtb_input %+v", l.Plan().DTBInput)
	}

	h = newFake(t, readTestList(t))
	if _, _, err := testLoad(t, h, plan.ModeFile, edit); !errors.Is(err, plan.ErrFileLoadDTB) || len(h.FileLoads)+len(h.Loads) != 0 || h.Loaded {
		t.Fatalf("-s with a tree: %v, %d file loads, %d loads", err, len(h.FileLoads), len(h.Loads))
	}

	h = newFake(t, readTestList(t))
	h.Symbols = kexec.KallsymsFacts{HandsOver: true, MeasuresAtExec: true}
	if _, _, err := testLoad(t, h, plan.ModeAuto, edit); !errors.Is(err, ErrKernelMeasuresExec) || len(h.FileLoads)+len(h.Loads) != 0 {
		t.Fatalf("auto with a tree on a kernel that measures at exec: %v", err)
	}
}

// Under -a, lockdown refusing the tree's kexec_load cannot fall back (x86
// kexec_file_load takes no tree): the error names both causes, the
// lockdown first, and nothing is loaded. It used to say only
// ErrFileLoadDTB, hiding why kexec_load had been left.
func TestX86DTBLockdownKeepsBothCauses(t *testing.T) {
	edit, _ := withDTB(t)
	h := newFake(t, readTestList(t))
	h.LoadErr = kexec.Explain("kexec_load", unix.EPERM, "integrity", "")
	var warned []string
	_, _, err := testLoad(t, h, plan.ModeAuto, func(img *Image, o *Options) {
		edit(img, o)
		o.Warn = func(s string) { warned = append(warned, s) }
	})
	if !errors.Is(err, kexec.ErrLockdown) || !errors.Is(err, plan.ErrFileLoadDTB) {
		t.Fatalf("lockdown with a tree: %v; want both kexec.ErrLockdown and plan.ErrFileLoadDTB", err)
	}
	if h.Loaded || len(h.FileLoads) != 0 || len(warned) != 0 {
		t.Fatalf("loaded %v, file loads %d, warned %q: a fallback that cannot be planned loads and announces nothing", h.Loaded, len(h.FileLoads), warned)
	}
}
