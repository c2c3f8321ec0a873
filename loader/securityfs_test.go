package loader

import (
	"context"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/plan"
)

// Finding (issue 24, left open) "a dry run on a host whose securityfs is
// unmounted records the mount and then cannot read the list": a dry run
// never mounts. Plan and a Load over a DryRun say they would mount
// securityfs at /sys/kernel/security and read the list, and plan the rest
// as the real run would decide it, the hand-over marked as sized without
// the list. The real load still mounts, says so and reads the list.
func TestDryRunSecurityfsUnmountedNeverMounts(t *testing.T) {
	for _, mode := range []plan.Mode{plan.ModeLoad, plan.ModeAuto} {
		// Plan, as gokexec -l --dry-run runs it.
		h := newFake(t, readTestList(t))
		h.Unmounted = true
		img, _ := testImage(t)
		var said []string
		o := Options{Arch: "amd64", IMAExtra: 64 << 10, Mode: mode, Warn: func(s string) { said = append(said, s) }}
		p, err := Plan(context.Background(), h, img, o)
		if err != nil {
			t.Fatalf("%s: dry run on an unmounted securityfs: %v", mode, err)
		}
		checkUnread(t, string(mode)+" Plan", p, said, false)
		if h.Mounts != 0 || !h.Unmounted {
			t.Fatalf("%s: Plan mounted securityfs", mode)
		}
		// The decision is the real run's: IMA is active, gokexec hands
		// the list over with kexec_load.
		if p.Decision.Syscall != plan.SyscallKexecLoad || !p.Decision.Facts.IMAList {
			t.Fatalf("%s: dry run decided %s (ima_list %v): %s", mode, p.Decision.Syscall, p.Decision.Facts.IMAList, p.Decision.Reason)
		}

		// A Load over a DryRun (urootboot's dry run).
		said = nil
		d := NewDryRun(h)
		l, err := Load(context.Background(), d, img, o)
		if err != nil {
			t.Fatalf("%s: Load over a DryRun: %v", mode, err)
		}
		checkUnread(t, string(mode)+" DryRun", l.Plan(), said, true)
		for _, a := range d.Acts {
			if a.Op == "mount" {
				t.Fatalf("%s: the dry run recorded a mount it then could not read behind: %v", mode, d.Acts)
			}
		}
		if h.Mounts != 0 || len(h.Loads)+len(h.FileLoads) != 0 {
			t.Fatalf("%s: the dry run acted: %d mounts, %d loads", mode, h.Mounts, len(h.Loads)+len(h.FileLoads))
		}
	}

	// The real path, unchanged: mount, say so, read the list.
	h := newFake(t, readTestList(t))
	h.Unmounted = true
	var said []string
	_, l, err := testLoad(t, h, plan.ModeLoad, func(_ *Image, o *Options) { o.Warn = func(s string) { said = append(said, s) } })
	if err != nil {
		t.Fatal(err)
	}
	p := l.Plan()
	if h.Mounts != 1 || len(said) != 1 || !strings.Contains(said[0], "mounted it at /sys/kernel/security") {
		t.Fatalf("real load: %d mounts, said %q", h.Mounts, said)
	}
	if p.IMA == nil || p.IMA.ListUnread || p.IMA.ListBytes <= uint64(len(readTestList(t))) {
		t.Fatalf("real load's hand-over %+v, list of %d bytes", p.IMA, len(readTestList(t)))
	}
}

// checkUnread checks a plan made without reading the list: it says so
// (in the plan's warnings; through Options.Warn too when loaded), and its
// IMA segment is marked as an estimate.
func checkUnread(t *testing.T, what string, p *plan.Plan, said []string, load bool) {
	t.Helper()
	if load && (len(said) != 1 || said[0] != unreadNote) || !load && len(said) != 0 {
		t.Fatalf("%s said %q", what, said)
	}
	if !strings.Contains(unreadNote, "would mount it at /sys/kernel/security") || !strings.Contains(unreadNote, "estimate") {
		t.Fatalf("the note does not say what a real run would do: %q", unreadNote)
	}
	found := false
	for _, w := range p.Warnings {
		found = found || w == unreadNote
	}
	if !found {
		t.Fatalf("%s: plan warnings %q lack the note", what, p.Warnings)
	}
	if p.IMA == nil || !p.IMA.ListUnread || p.IMA.Entries != 1 {
		t.Fatalf("%s: hand-over %+v, want one marker, marked unread", what, p.IMA)
	}
}
