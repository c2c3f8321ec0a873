package loader

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// gatherFacts reads the facts of the syscall decision from the host.
// /proc/kallsyms (100,000+ lines, the slowest fact) is read only when
// there is a list to carry: it says whether the kernel hands the list over
// itself and whether it measures after a snapshot (which refuses a
// kexec_load hand-over, whatever the mode). A named TPM that does not
// exist is an error; a captured host leaves the TPM fact empty.
func gatherFacts(h Host, o *Options, imaList bool) (plan.Facts, error) {
	if o.arch() != runtime.GOARCH {
		return plan.Facts{IMAList: imaList, HandoverWanted: !o.NoIMA, CrossArch: true}, nil
	}
	f := plan.Facts{Lockdown: h.Lockdown(), IMAList: imaList, HandoverWanted: !o.NoIMA, KexecLoadDisabled: h.KexecLoadDisabled()}
	if f.IMAList && f.HandoverWanted {
		ks, err := h.Kallsyms()
		if err != nil {
			// Not a silent "no": the plan records why, and the load says so.
			f.Kallsyms = err.Error()
			o.warn(fmt.Sprintf("%v: whether the running kernel hands the IMA list over itself, or measures at kexec, is unknown; planning as if it does neither", err))
		}
		f.KernelHandsOver, f.KernelMeasuresExec = ks.HandsOver, ks.MeasuresAtExec
	}
	var err error
	if f.TPM, err = h.TPMDevice(); err != nil {
		return f, fmt.Errorf("%w: %w", ErrTPM, err)
	}
	return f, nil
}

// fallbackToFile says whether a failed kexec_load should be retried with
// kexec_file_load under -a: only when lockdown refused it.
func fallbackToFile(err error) bool {
	return errors.Is(err, kexec.ErrLockdown)
}

// fallbackToLoad says whether a failed kexec_file_load should be retried
// with kexec_load under -a: the syscall is missing or the kernel does not
// understand the image. Signature errors are never retried.
func fallbackToLoad(err error) bool {
	var ke *kexec.Error
	if !errors.As(err, &ke) {
		return false
	}
	return ke.Errno == unix.ENOSYS || ke.Errno == unix.ENOEXEC
}

// loadFalling runs p. Under mode auto ("" or plan.ModeAuto), a refusal
// the other syscall can get past (lockdown for kexec_load; a missing
// syscall or an image the kernel does not take for kexec_file_load) is
// retried once with the plan replan makes for that syscall, carrying p's
// decision and appraisal, and warn says so (fileNote is added when the
// retry is kexec_file_load). When the retry cannot be planned or fails as
// well, the error wraps both causes: the first refusal is never hidden
// behind the second.
func loadFalling(p *plan.Plan, mode plan.Mode, run func(*plan.Plan) error, replan func(syscall string) (*plan.Plan, error), warn func(string), fileNote string) (*plan.Plan, error) {
	auto := mode == "" || mode == plan.ModeAuto
	err := run(p)
	if err == nil {
		return p, nil
	}
	var other string
	switch {
	case auto && p.Syscall == plan.SyscallKexecLoad && fallbackToFile(err):
		other = plan.SyscallKexecFileLoad
	case auto && p.Syscall == plan.SyscallKexecFileLoad && fallbackToLoad(err):
		other = plan.SyscallKexecLoad
	default:
		return nil, err
	}
	np, perr := replan(other)
	if perr != nil {
		return nil, fmt.Errorf("%s: %w; and %s cannot be used instead: %w", p.Syscall, err, other, perr)
	}
	np.Decision, np.Appraisal = p.Decision, p.Appraisal
	note := ""
	if other == plan.SyscallKexecFileLoad {
		note = fileNote
	}
	warn(fmt.Sprintf("%s failed (%v); falling back to %s%s", p.Syscall, err, other, note))
	if ferr := run(np); ferr != nil {
		return nil, fmt.Errorf("%s: %w; then %s: %w", p.Syscall, err, other, ferr)
	}
	return np, nil
}
