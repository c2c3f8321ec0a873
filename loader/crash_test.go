package loader

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// newCrashHost is the fake host with a crash region and notes.
func newCrashHost(t *testing.T) *fakeHost {
	h := newFake(t, readTestList(t))
	m, err := h.MemoryMap("amd64")
	if err != nil {
		t.Fatal(err)
	}
	h.Crash = &kexec.CrashFacts{Regions: []segment.Range{{Start: 0x2e000000, End: 0x3e000000}}, Memory: m,
		CPUNotes: []elfcore.Note{{Addr: 0x3fc1d000, Size: 0x170}}, VMCoreInfo: elfcore.Note{Addr: 0x2c2a000, Size: 0x1024},
		PageOffset: 0xffff9b0000000000}
	return h
}

func TestLoadCrash(t *testing.T) {
	ctx := context.Background()
	img, _ := testImage(t)

	// -c: a kexec_load with KEXEC_ON_CRASH, every segment in the region,
	// no IMA list read or handed over.
	h := newCrashHost(t)
	p, err := LoadCrash(ctx, h, img, Options{Arch: "amd64", Mode: plan.ModeLoad})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Loads) != 1 || !h.Loads[0].Crash || p.Syscall != plan.SyscallKexecLoad || p.IMA != nil || h.ListReads != 0 {
		t.Fatalf("executed %+v, plan %s, IMA %+v, list reads %d", h.Loads, p.Syscall, p.IMA, h.ListReads)
	}
	for _, s := range h.Loads[0].Segments {
		if !h.Crash.Regions[0].Contains(segment.Range{Start: s.Mem, End: s.Mem + s.Memsz}) {
			t.Fatalf("segment %s at %#x outside the crash region", s.Name, s.Mem)
		}
	}

	// -a: kexec_file_load with KEXEC_FILE_ON_CRASH; on ENOSYS, kexec_load.
	h = newCrashHost(t)
	if p, err = LoadCrash(ctx, h, img, Options{Arch: "amd64"}); err != nil || p.Syscall != plan.SyscallKexecFileLoad || len(h.FileLoads) != 1 || !h.FileLoads[0].Crash || h.Loaded || !h.CrashLoaded {
		t.Fatalf("-a: %v, plan %v, file loads %+v", err, p, h.FileLoads)
	}
	h = newCrashHost(t)
	h.FileLoadErr = &kexec.Error{Op: "kexec_file_load", Errno: unix.ENOSYS}
	var warned []string
	p, err = LoadCrash(ctx, h, img, Options{Arch: "amd64", Warn: func(s string) { warned = append(warned, s) }})
	if err != nil || p.Syscall != plan.SyscallKexecLoad || len(h.Loads) != 1 || !h.Loads[0].Crash || len(warned) == 0 {
		t.Fatalf("fallback: %v, plan %v, executed %+v, warned %v", err, p, h.Loads, warned)
	}

	// kexec_file_load missing and no crash notes to build a kexec_load
	// header from: the error keeps both causes, nothing is loaded.
	h = newCrashHost(t)
	h.FileLoadErr = &kexec.Error{Op: "kexec_file_load", Errno: unix.ENOSYS}
	h.Crash.CPUNotes = nil
	var ke *kexec.Error
	if _, err := LoadCrash(ctx, h, img, Options{Arch: "amd64"}); !errors.Is(err, plan.ErrCrashFacts) || !errors.As(err, &ke) || ke.Errno != unix.ENOSYS || len(h.Loads) != 0 || h.CrashLoaded {
		t.Fatalf("no fallback: %v, executed %v", err, h.Loads)
	}

	// No crash region: a typed error and nothing loaded.
	h = newCrashHost(t)
	h.Crash = nil
	if _, err := LoadCrash(ctx, h, img, Options{Arch: "amd64"}); !errors.Is(err, plan.ErrNoCrashRegion) || len(h.Loads)+len(h.FileLoads) != 0 {
		t.Fatalf("no region: %v, executed %v %v", err, h.Loads, h.FileLoads)
	}
	// A crash region too small: nothing loaded either.
	h = newCrashHost(t)
	h.Crash.Regions = []segment.Range{{Start: 0x2e000000, End: 0x2e400000}}
	if _, err := LoadCrash(ctx, h, img, Options{Arch: "amd64", Mode: plan.ModeLoad}); !errors.Is(err, plan.ErrCrashNoFit) || len(h.Loads) != 0 {
		t.Fatalf("small region: %v, executed %v", err, h.Loads)
	}

	// -p -u unloads the crash image only.
	h.Loaded, h.CrashLoaded = true, true
	if err := UnloadCrash(ctx, h); err != nil || h.Unloads != 1 || h.CrashLoaded || !h.Loaded {
		t.Fatalf("unload: %v %+v", err, h)
	}
}
