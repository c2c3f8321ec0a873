package plan

import (
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	cases := []struct {
		name    string
		mode    Mode
		f       Facts
		syscall string
		warn    string
	}{
		{"auto, IMA, stock kernel", ModeAuto, Facts{Lockdown: "none", IMAList: true, HandoverWanted: true}, SyscallKexecLoad, ""},
		{"auto, IMA, kernel hands over", ModeAuto, Facts{Lockdown: "none", IMAList: true, HandoverWanted: true, KernelHandsOver: true}, SyscallKexecFileLoad, ""},
		{"auto, no IMA", ModeAuto, Facts{Lockdown: "none"}, SyscallKexecFileLoad, ""},
		{"auto, --no-ima", ModeAuto, Facts{IMAList: true}, SyscallKexecFileLoad, ""},
		{"auto, lockdown, IMA", ModeAuto, Facts{Lockdown: "integrity", IMAList: true, HandoverWanted: true}, SyscallKexecFileLoad, "will not be carried"},
		{"auto, lockdown, kernel hands over", ModeAuto, Facts{Lockdown: "confidentiality", IMAList: true, HandoverWanted: true, KernelHandsOver: true}, SyscallKexecFileLoad, ""},
		{"-c under lockdown", ModeLoad, Facts{Lockdown: "integrity"}, SyscallKexecLoad, "forbids kexec_load"},
		{"-s with IMA", ModeFile, Facts{IMAList: true, HandoverWanted: true}, SyscallKexecFileLoad, "will not be carried"},
		{"-s, kernel hands over", ModeFile, Facts{IMAList: true, HandoverWanted: true, KernelHandsOver: true}, SyscallKexecFileLoad, ""},
		{"cross-arch dry run", ModeAuto, Facts{CrossArch: true}, SyscallKexecLoad, ""},
		{"empty mode is auto", "", Facts{IMAList: true, HandoverWanted: true}, SyscallKexecLoad, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.mode, c.f)
			if d.Syscall != c.syscall || d.Reason == "" {
				t.Fatalf("got %s (%s), want %s", d.Syscall, d.Reason, c.syscall)
			}
			if (c.warn == "") != (d.Warning == "") || !strings.Contains(d.Warning, c.warn) {
				t.Fatalf("warning %q, want one containing %q", d.Warning, c.warn)
			}
		})
	}
}
