package loader

import (
	"errors"

	"github.com/gokexec/gokexec/kexec"
)

// The refusals of the loader. Every error Load, Plan, Finalize and Exec
// return for a refusal wraps one of these, or one of the lower packages'
// sentinels they pass on: plan.ErrInput (a bad input: not a regular file,
// too large, empty, malformed), plan.ErrIMAList, an Appraiser's errors,
// kexec.ErrLockdown and *kexec.Error (a syscall's errno), and the host
// sentinels ErrTPM, ErrNotDescribed, ErrStale, ErrForeign. They name host
// and kernel conditions; a command line adds its own advice (which flag
// to give) by matching them with errors.Is and errors.As, never by text.
var (
	// ErrNoIMAList: the load handed an IMA list over, and at finalize
	// there is none to read (securityfs unmounted, IMA gone).
	ErrNoIMAList = errors.New("the IMA measurement list handed over at load cannot be read any more")

	// ErrIMAUnreadable: IMA is active (or securityfs could not be mounted
	// to tell) and its list cannot be read.
	ErrIMAUnreadable = errors.New("the running kernel's IMA measurement list cannot be read")

	// ErrPrivilege: reading the list or acting on the kernel needs root.
	ErrPrivilege = kexec.ErrPrivilege

	// ErrKernelMeasuresExec: a kexec_load hand-over was refused because
	// the running kernel measures its own kexec_execute entry after the
	// snapshot (DESIGN §3.3.1): the next kernel would get a list one entry
	// short. kexec_file_load (the kernel hands its list over itself) or no
	// hand-over are what remain.
	ErrKernelMeasuresExec = errors.New("the running kernel measures its own kexec_execute entry in its reboot notifier (CONFIG_IMA_KEXEC: ima_update_kexec_buffer/ima_measure_kexec_event in /proc/kallsyms), after a user-space snapshot; a kexec_load hand-over would be one entry short")

	// ErrSelfCheck: the list to hand over does not replay to the TPM.
	ErrSelfCheck = errors.New("the hand-over list does not reproduce the TPM's PCRs")

	// ErrExtended is wrapped by errors that happen after the loader's
	// entries were extended into the TPM: the running kernel's own list
	// then no longer matches the PCRs, which only a reboot into the
	// prepared hand-over (or a cold boot) mends.
	ErrExtended = errors.New("the TPM already holds the loader's entries; the running kernel's list no longer matches the TPM")

	// ErrRefresh: the kexec_file_load that finalize runs again just before
	// the reboot failed (refresh.go).
	ErrRefresh = errors.New("re-running kexec_file_load before the reboot failed")

	// ErrNotFinalized: Exec was called on a load whose last Finalize did
	// not succeed.
	ErrNotFinalized = errors.New("the load is not finalized")

	// ErrNothingLoaded: there is no loaded kernel to finalize or boot.
	ErrNothingLoaded = errors.New("no kernel is loaded")

	// ErrNoState: a state directory holds no record of a gokexec load.
	ErrNoState = errors.New("no gokexec load recorded")

	// ErrStateDir: the state directory or a file in it is not safe to use.
	ErrStateDir = errors.New("unsafe state directory")
)
