package loader

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// GatherFacts reads the facts of the syscall decision from the running system.
func GatherFacts(o *Options, imaList bool) plan.Facts {
	if o.Arch != "" && o.Arch != runtime.GOARCH {
		return plan.Facts{IMAList: imaList, HandoverWanted: !o.NoIMA, CrossArch: true}
	}
	f := plan.Facts{Lockdown: kexec.Lockdown(), IMAList: imaList, HandoverWanted: !o.NoIMA, KexecLoadDisabled: kexec.KexecLoadDisabled()}
	// Scanning /proc/kallsyms (100,000+ lines) is the slowest fact; read it
	// only when the decision turns on it (-a, a list to carry).
	if (o.Mode == "" || o.Mode == plan.ModeAuto) && f.IMAList && f.HandoverWanted {
		f.KernelHandsOver, _ = kexec.KernelHandsOverIMA()
	}
	return f
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
