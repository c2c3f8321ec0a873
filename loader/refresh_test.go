package loader

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// On a kernel that hands its list over itself, finalize loads the same
// bytes with kexec_file_load once more (issue 18: the kernel sizes its
// buffer at load time), and a second finalize still finds the load.
func TestRefreshReloadsFileLoad(t *testing.T) {
	h := newFake(t, readTestList(t))
	h.Symbols = kexec.KallsymsFacts{HandsOver: true, MeasuresAtExec: true}
	sd, l, err := testLoad(t, h, plan.ModeAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Plan().Syscall != plan.SyscallKexecFileLoad || len(h.FileLoads) != 1 {
		t.Fatalf("load: syscall %s, %d kexec_file_loads", l.Plan().Syscall, len(h.FileLoads))
	}
	for round := 2; round <= 3; round++ {
		rep, err := sd.Finalize(ctx, h, false)
		if err != nil {
			t.Fatalf("finalize %d: %v", round-1, err)
		}
		if len(h.FileLoads) != round {
			t.Fatalf("after finalize %d: %d kexec_file_loads, want %d", round-1, len(h.FileLoads), round)
		}
		last := h.FileLoads[len(h.FileLoads)-1]
		if !bytes.Equal(last.Kernel.Data, h.FileLoads[0].Kernel.Data) || !bytes.Equal(last.Initrd.Data, h.FileLoads[0].Initrd.Data) {
			t.Fatal("the refresh loaded other bytes than -l")
		}
		if rep.ListBytes != uint64(len(h.List)) || rep.Count == 0 {
			t.Fatalf("report: %d bytes, %d entries; the list has %d bytes", rep.ListBytes, rep.Count, len(h.List))
		}
	}
	if len(h.Loads) != 0 {
		t.Fatalf("a kexec_load happened: %d", len(h.Loads))
	}
}

// A kernel without CONFIG_IMA_KEXEC (-s on Debian's kernels) gains nothing
// from loading again: finalize leaves the image alone.
func TestRefreshNotOnKernelsThatDoNotHandOver(t *testing.T) {
	h := newFake(t, readTestList(t))
	sd, _, err := testLoad(t, h, plan.ModeFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatal(err)
	}
	if len(h.FileLoads) != 1 {
		t.Fatalf("%d kexec_file_loads; want only the one of -l", len(h.FileLoads))
	}
}

// A reload the kernel refuses wraps ErrRefresh; a kernel file changed
// since the load is not what the reload hands over (the bytes of the load
// are, as a sealed memfd since the file no longer holds them).
func TestRefreshRefusals(t *testing.T) {
	h := newFake(t, readTestList(t))
	h.Symbols = kexec.KallsymsFacts{HandsOver: true}
	sd, l, err := testLoad(t, h, plan.ModeAuto, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.FileLoadErr = errors.New("EBUSY stand-in")
	if _, err := sd.Finalize(ctx, h, false); !errors.Is(err, ErrRefresh) {
		t.Fatalf("failed reload: %v", err)
	}
	if err := os.WriteFile(l.Plan().Kernel.Path, []byte("replaced"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Finalize(ctx, h, false); err != nil {
		t.Fatalf("changed kernel file: %v", err)
	}
	last := h.FileLoads[len(h.FileLoads)-1].Kernel
	f, err := kexec.OpenFileInput(last)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if len(h.FileLoads) != 2 || !bytes.Equal(got, h.FileLoads[0].Kernel.Data) || f.Name() == last.Path {
		t.Fatalf("%d kexec_file_loads; the reload reads %s", len(h.FileLoads), f.Name())
	}
}
