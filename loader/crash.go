package loader

import (
	"context"
	"errors"

	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

// Crash kernels (kexec -p). A crash load reads and appraises the image
// like any load, hands no IMA list over (README, "Crash kernels"), keeps
// no state (nothing is finalized: the kernel boots the image when it
// panics), and puts every segment inside the crash kernel region.

// crashed is a prepared crash load.
type crashed struct {
	plan  *plan.Plan
	read  *read
	crash *plan.Crash
}

func prepareCrash(h Host, img Image, o *Options, dry bool) (*crashed, error) {
	ch := h
	o.NoIMA = true
	r, err := readImage(h, img, o)
	if err != nil {
		return nil, err
	}
	if err := readFacts(h, r.in, dry); err != nil {
		return nil, err
	}
	as, err := appraiseAll(o, r)
	if err != nil {
		return nil, err
	}
	facts, err := gatherFacts(h, o, false)
	if err != nil {
		return nil, err
	}
	d := plan.DecideCrash(o.Mode, facts)
	// A kexec_load plan needs the notes; -a may fall back to one, so it
	// reads them too, and does without when they cannot be read.
	notes := d.Syscall == plan.SyscallKexecLoad || d.Mode == plan.ModeAuto
	cf, err := ch.CrashFacts(notes)
	if err != nil && notes && d.Syscall == plan.SyscallKexecFileLoad && !errors.Is(err, segment.ErrNoCrashRegion) {
		cf, err = ch.CrashFacts(false)
	}
	if err != nil {
		return nil, err
	}
	r.in.Memory = cf.Memory
	c := &plan.Crash{Regions: cf.Regions, CPUNotes: cf.CPUNotes, VMCoreInfo: cf.VMCoreInfo, PageOffset: cf.PageOffset, KernelText: cf.KernelText}
	p, err := planCrashFor(r, c, d.Syscall)
	if err != nil {
		return nil, err
	}
	if cf.KcoreErr != "" && p.Syscall == plan.SyscallKexecLoad {
		p.Warnings = append(p.Warnings, "/proc/kcore: "+cf.KcoreErr)
	}
	p.Decision = &d
	for _, a := range as {
		p.Appraisal = append(p.Appraisal, plan.Appraisal{Path: a.Path, Pass: a.Pass, Method: a.Method, Reason: a.Reason})
	}
	return &crashed{plan: p, read: r, crash: c}, nil
}

func planCrashFor(r *read, c *plan.Crash, syscall string) (*plan.Plan, error) {
	if syscall == plan.SyscallKexecFileLoad {
		return plan.FileLoadCrash(r.in, c)
	}
	return plan.BuildCrash(r.in, c)
}

// PlanCrash is a dry run of a crash load: the plan, nothing loaded.
func PlanCrash(ctx context.Context, h Facts, img Image, o Options) (*plan.Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := prepareCrash(factsOnly{Facts: h}, img, &o, true)
	if err != nil {
		return nil, err
	}
	return c.plan, nil
}

// LoadCrash plans, appraises and loads img as the crash kernel and
// returns the plan loaded. Under -a a kexec_file_load the kernel does not
// support falls back to kexec_load, and a kexec_load lockdown refuses to
// kexec_file_load. Warnings go to o.Warn.
func LoadCrash(ctx context.Context, h Host, img Image, o Options) (*plan.Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := prepareCrash(h, img, &o, false)
	if err != nil {
		return nil, err
	}
	p := c.plan
	if p.Decision.Warning != "" {
		o.warn(p.Decision.Warning)
	}
	for _, w := range p.Warnings {
		o.warn(w)
	}
	sealed := o.Appraiser != nil
	return loadFalling(p, o.Mode,
		func(p *plan.Plan) error { return execute(h, p, c.read.in, c.read.paths, sealed, true) },
		func(syscall string) (*plan.Plan, error) {
			if syscall == plan.SyscallKexecLoad && len(c.crash.CPUNotes) == 0 {
				return nil, plan.ErrCrashFacts
			}
			return planCrashFor(c.read, c.crash, syscall)
		}, o.warn, "")
}

// UnloadCrash unloads the crash kernel, whichever syscall loaded it.
func UnloadCrash(ctx context.Context, h Kernel) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.Unload(true)
}
