package loader

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// On a kernel that hands its list over itself, finalize loads the same
// bytes with kexec_file_load once more (issue 18: the kernel sizes its
// buffer at load time), and a second finalize still finds the load.
func TestRefreshReloadsFileLoad(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1", kallsyms: kexec.KallsymsFacts{HandsOver: true, MeasuresAtExec: true}}
	sd, l, err := testLoad(t, h, plan.ModeAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Plan().Syscall != plan.SyscallKexecFileLoad || len(h.fileLoads) != 1 {
		t.Fatalf("load: syscall %s, %d kexec_file_loads", l.Plan().Syscall, len(h.fileLoads))
	}
	for round := 2; round <= 3; round++ {
		rep, err := sd.Finalize(ctx, h, false)
		if err != nil {
			t.Fatalf("finalize %d: %v", round-1, err)
		}
		if len(h.fileLoads) != round {
			t.Fatalf("after finalize %d: %d kexec_file_loads, want %d", round-1, len(h.fileLoads), round)
		}
		last := h.fileLoads[len(h.fileLoads)-1]
		if !bytes.Equal(last[0], h.fileLoads[0][0]) || !bytes.Equal(last[1], h.fileLoads[0][1]) {
			t.Fatal("the refresh loaded other bytes than -l")
		}
		if rep.ListBytes != uint64(len(h.list)) || rep.Count == 0 {
			t.Fatalf("report: %d bytes, %d entries; the list has %d bytes", rep.ListBytes, rep.Count, len(h.list))
		}
	}
	if len(h.executed) != 0 {
		t.Fatalf("a kexec_load happened: %d", len(h.executed))
	}
}

// A kernel without CONFIG_IMA_KEXEC (-s on Debian's kernels) gains nothing
// from loading again: finalize leaves the image alone.
func TestRefreshNotOnKernelsThatDoNotHandOver(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1"}
	sd, _, err := testLoad(t, h, plan.ModeFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatal(err)
	}
	if len(h.fileLoads) != 1 {
		t.Fatalf("%d kexec_file_loads; want only the one of -l", len(h.fileLoads))
	}
}

// A kernel file changed since -l is refused, not loaded again; a reload
// the kernel refuses wraps ErrRefresh.
func TestRefreshRefusals(t *testing.T) {
	h := &fakeHost{list: readTestList(t), boot: "b1", kallsyms: kexec.KallsymsFacts{HandsOver: true}}
	sd, l, err := testLoad(t, h, plan.ModeAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.fileErr = errors.New("EBUSY stand-in")
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrRefresh) {
		t.Fatalf("failed reload: %v", err)
	}
	if err := os.WriteFile(l.Plan().Kernel.Path, []byte("replaced"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrInputChanged) {
		t.Fatalf("changed kernel: %v", err)
	}
	if len(h.fileLoads) != 1 {
		t.Fatalf("%d kexec_file_loads; the changed kernel was loaded", len(h.fileLoads))
	}
}
