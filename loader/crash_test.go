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

// crashHost is the fake host with a crash region and notes; it records
// the crash flag of every kexec_file_load.
type crashHost struct {
	*fakeHost
	facts      *kexec.CrashFacts
	fileCrash  []bool
	unloadedAs []bool
}

func (h *crashHost) CrashFacts(notes bool) (*kexec.CrashFacts, error) {
	if h.facts == nil {
		return nil, segment.ErrNoCrashRegion
	}
	f := *h.facts
	if !notes {
		f.CPUNotes, f.VMCoreInfo = nil, elfcore.Note{}
	}
	return &f, nil
}

func (h *crashHost) KexecFileLoad(r FileLoadRequest) error {
	h.fileCrash = append(h.fileCrash, r.Crash)
	return h.fakeHost.KexecFileLoad(r)
}

func (h *crashHost) Unload(crash bool) error {
	h.unloadedAs = append(h.unloadedAs, crash)
	return h.fakeHost.Unload(crash)
}

func newCrashHost(t *testing.T) *crashHost {
	h := &crashHost{fakeHost: &fakeHost{list: readTestList(t), boot: "b1"}}
	m, err := h.fakeHost.MemoryMap("amd64")
	if err != nil {
		t.Fatal(err)
	}
	h.facts = &kexec.CrashFacts{Regions: []segment.Range{{Start: 0x2e000000, End: 0x3e000000}}, Memory: m,
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
	if len(h.executed) != 1 || !h.executed[0].Crash || p.Syscall != plan.SyscallKexecLoad || p.IMA != nil || h.listReads != 0 {
		t.Fatalf("executed %+v, plan %s, IMA %+v, list reads %d", h.executed, p.Syscall, p.IMA, h.listReads)
	}
	for _, s := range h.executed[0].Segments {
		if !h.facts.Regions[0].Contains(segment.Range{Start: s.Mem, End: s.Mem + s.Memsz}) {
			t.Fatalf("segment %s at %#x outside the crash region", s.Name, s.Mem)
		}
	}

	// -a: kexec_file_load with KEXEC_FILE_ON_CRASH; on ENOSYS, kexec_load.
	h = newCrashHost(t)
	if p, err = LoadCrash(ctx, h, img, Options{Arch: "amd64"}); err != nil || p.Syscall != plan.SyscallKexecFileLoad || len(h.fileCrash) != 1 || !h.fileCrash[0] {
		t.Fatalf("-a: %v, plan %v, file loads %v", err, p, h.fileCrash)
	}
	h = newCrashHost(t)
	h.fileErr = &kexec.Error{Op: "kexec_file_load", Errno: unix.ENOSYS}
	var warned []string
	p, err = LoadCrash(ctx, h, img, Options{Arch: "amd64", Warn: func(s string) { warned = append(warned, s) }})
	if err != nil || p.Syscall != plan.SyscallKexecLoad || len(h.executed) != 1 || !h.executed[0].Crash || len(warned) == 0 {
		t.Fatalf("fallback: %v, plan %v, executed %+v, warned %v", err, p, h.executed, warned)
	}

	// No crash region: a typed error and nothing loaded.
	h = newCrashHost(t)
	h.facts = nil
	if _, err := LoadCrash(ctx, h, img, Options{Arch: "amd64"}); !errors.Is(err, plan.ErrNoCrashRegion) || len(h.executed)+len(h.fileCrash) != 0 {
		t.Fatalf("no region: %v, executed %v %v", err, h.executed, h.fileCrash)
	}
	// A crash region too small: nothing loaded either.
	h = newCrashHost(t)
	h.facts.Regions = []segment.Range{{Start: 0x2e000000, End: 0x2e400000}}
	if _, err := LoadCrash(ctx, h, img, Options{Arch: "amd64", Mode: plan.ModeLoad}); !errors.Is(err, plan.ErrCrashNoFit) || len(h.executed) != 0 {
		t.Fatalf("small region: %v, executed %v", err, h.executed)
	}

	// -p -u unloads the crash image only.
	if err := UnloadCrash(ctx, h); err != nil || len(h.unloadedAs) != 1 || !h.unloadedAs[0] {
		t.Fatalf("unload: %v %v", err, h.unloadedAs)
	}
	// A host that cannot describe a crash dump says so.
	if _, err := PlanCrash(ctx, &fakeHost{}, img, Options{Arch: "amd64"}); !errors.Is(err, ErrNotDescribed) {
		t.Fatalf("plain fake host: %v", err)
	}
}
