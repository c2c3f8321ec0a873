package plan

import "fmt"

// Mode is the user's syscall choice: kexec-tools' -c, -s and -a.
type Mode string

// Syscall modes.
const (
	ModeAuto Mode = "auto" // -a, the default
	ModeLoad Mode = "load" // -c: kexec_load only
	ModeFile Mode = "file" // -s: kexec_file_load only
)

// Facts are what the syscall decision rests on; --dry-run --json shows them.
type Facts struct {
	Lockdown          string `json:"lockdown"`            // "none", "integrity", "confidentiality" or "" (no lockdown LSM)
	IMAList           bool   `json:"ima_list"`            // the running kernel has a measurement list to hand over
	HandoverWanted    bool   `json:"handover_wanted"`     // not --no-ima
	KernelHandsOver   bool   `json:"kernel_hands_over"`   // CONFIG_IMA_KEXEC: ima_add_kexec_buffer in /proc/kallsyms (looked up only when it decides)
	KexecLoadDisabled bool   `json:"kexec_load_disabled"` // sysctl kernel.kexec_load_disabled
	// KernelMeasuresExec: the running kernel measures its own
	// kexec_execute entry in a reboot notifier (CONFIG_IMA_KEXEC with
	// ima_update_kexec_buffer or ima_measure_kexec_event in
	// /proc/kallsyms), after any snapshot a loader took: a kexec_load
	// hand-over would be one entry short, so the loader refuses it.
	KernelMeasuresExec bool `json:"kernel_measures_exec"`
	// Kallsyms is why /proc/kallsyms could not be read ("" when it was, or
	// when the decision did not need it); the two facts above are then
	// unknown (false).
	Kallsyms string `json:"kallsyms,omitempty"`
	// TPM is the device finalize will extend ("none": this machine has no
	// TPM, the loader's entries will not be extended and a verifier will
	// see them unbacked by PCRs).
	TPM string `json:"tpm,omitempty"`
	// CrossArch: planning for another architecture than this machine's;
	// the other facts describe this machine and do not apply.
	CrossArch bool `json:"cross_arch,omitempty"`
}

// Decision is the syscall chosen and why.
type Decision struct {
	Mode    Mode     `json:"mode"`
	Syscall string   `json:"syscall"`
	Reason  string   `json:"reason"`
	Facts   Facts    `json:"facts"`
	Warning string   `json:"warning,omitempty"`
	Plan    []string `json:"fallbacks,omitempty"` // syscalls tried after the first, in order, and on what
}

func lockedDown(l string) bool { return l == "integrity" || l == "confidentiality" }

// Decide applies gokexec's decision table (README, "Choosing the syscall").
// It is a pure function of the mode and the facts.
func Decide(mode Mode, f Facts) Decision {
	d := Decision{Mode: mode, Facts: f}
	carry := f.HandoverWanted && f.IMAList
	noCarry := "the IMA measurement list will not be carried to the next kernel (this kernel lacks CONFIG_IMA_KEXEC); attestation will fail until a cold boot"
	switch mode {
	case ModeLoad:
		d.Syscall, d.Reason = SyscallKexecLoad, "kexec_load requested"
		if lockedDown(f.Lockdown) {
			d.Warning = fmt.Sprintf("kernel lockdown (%s) forbids kexec_load; the load will be refused", f.Lockdown)
		}
	case ModeFile:
		d.Syscall, d.Reason = SyscallKexecFileLoad, "kexec_file_load requested"
		if carry && !f.KernelHandsOver {
			d.Warning = noCarry
		}
	default:
		d.Mode = ModeAuto
		switch {
		case f.CrossArch:
			d.Syscall = SyscallKexecLoad
			d.Reason = "planning for another architecture: the layout gokexec itself would load with kexec_load"
		case lockedDown(f.Lockdown):
			d.Syscall = SyscallKexecFileLoad
			d.Reason = fmt.Sprintf("kernel lockdown (%s) forbids kexec_load", f.Lockdown)
			if carry && !f.KernelHandsOver {
				d.Warning = noCarry
			}
		case carry && f.KernelHandsOver:
			d.Syscall = SyscallKexecFileLoad
			d.Reason = "the running kernel hands the IMA list over itself on kexec_file_load (CONFIG_IMA_KEXEC)"
			d.Plan = []string{"kexec_load on ENOSYS or ENOEXEC"}
		case carry:
			d.Syscall = SyscallKexecLoad
			d.Reason = "IMA is active and this kernel cannot hand its list over itself: gokexec builds the hand-over with kexec_load"
			d.Plan = []string{"kexec_file_load on EPERM under lockdown (the list is then not carried)"}
		default:
			d.Syscall = SyscallKexecFileLoad
			d.Reason = "no IMA list to hand over: kexec_file_load, as kexec-tools chooses by default"
			d.Plan = []string{"kexec_load on ENOSYS or ENOEXEC"}
		}
	}
	return d
}
