package loader

import "errors"

// The refusals of the loader. Every error Load, Plan, Finalize and Exec
// return for a refusal wraps one of these, or one of the lower packages'
// sentinels they pass on: plan.ErrInput (a bad input: not a regular file,
// too large, empty, malformed), plan.ErrIMAList, appraise's errors
// (appraise.ErrNotListed, appraise.ErrBadSignature, appraise.ErrWeak, ...),
// kexec.ErrLockdown and *kexec.Error (a syscall's errno), and the Host
// sentinels ErrTPM, ErrNotDescribed and ErrOffTarget (host.go). Callers
// match them with errors.Is and errors.As, never by text.
var (
	// ErrNoIMAList: there is no IMA measurement list to hand over and
	// NoIMA was not given.
	ErrNoIMAList = errors.New("no IMA measurement list to hand over (securityfs not mounted at /sys/kernel/security, or IMA inactive); pass --no-ima to go on without the hand-over")

	// ErrKernelMeasuresExec: a kexec_load hand-over was refused because
	// the running kernel measures its own kexec_execute entry after the
	// snapshot (DESIGN §3.3.1): the next kernel would get a list one entry
	// short of the PCRs.
	ErrKernelMeasuresExec = errors.New("the running kernel measures its own kexec_execute entry in its reboot notifier (CONFIG_IMA_KEXEC: ima_update_kexec_buffer/ima_measure_kexec_event in /proc/kallsyms), after gokexec's snapshot; a kexec_load hand-over would be one entry short. Use kexec_file_load (-s or -a: the kernel hands its list over itself) or --no-ima")

	// ErrInputChanged: an input no longer holds the bytes that were loaded.
	ErrInputChanged = errors.New("input changed since it was loaded")

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
	ErrNotFinalized = errors.New("the load is not finalized: call Finalize (and check its error) before Exec")

	// ErrNotRebooted is wrapped by StateDir.Exec's errors from before the
	// reboot (a refused finalize): the machine was not rebooted.
	ErrNotRebooted = errors.New("not rebooting")

	// ErrNothingLoaded: there is no loaded kernel to finalize or boot.
	ErrNothingLoaded = errors.New("no kernel is loaded (load one with -l first)")

	// ErrNoState: a state directory holds no record of a gokexec load.
	ErrNoState = errors.New("no gokexec load recorded")

	// ErrStateDir: the state directory or a file in it is not safe to use.
	ErrStateDir = errors.New("unsafe state directory")
)
