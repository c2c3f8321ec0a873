package loader

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// GatherFacts reads the facts of the syscall decision from the running
// system. /proc/kallsyms (100,000+ lines, the slowest fact) is read only
// when there is a list to carry: it says whether the kernel hands the list
// over itself and whether it measures after a snapshot (which refuses a
// kexec_load hand-over, whatever the mode). A named TPM that does not
// exist is an error. With o.Host the facts are the captured tree's
// (lockdown, kexec_load_disabled, the kallsyms names capture-host keeps),
// and the TPM fact is left empty: the captured machine's TPM is not here.
func GatherFacts(o *Options, imaList bool) (plan.Facts, error) {
	if o.Arch != "" && o.Arch != runtime.GOARCH {
		return plan.Facts{IMAList: imaList, HandoverWanted: !o.NoIMA, CrossArch: true}, nil
	}
	f := plan.Facts{Lockdown: kexec.LockdownAt(o.Host), IMAList: imaList, HandoverWanted: !o.NoIMA, KexecLoadDisabled: kexec.KexecLoadDisabledAt(o.Host)}
	if f.IMAList && f.HandoverWanted {
		ks, err := readKallsyms(o.Host)
		if err != nil {
			f.Kallsyms = err.Error()
		}
		f.KernelHandsOver, f.KernelMeasuresExec = ks.HandsOver, ks.MeasuresAtExec
	}
	if o.Host != "" {
		return f, nil
	}
	var err error
	if f.TPM, err = tpmFact(o.TPMDevice); err != nil {
		return f, err
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
