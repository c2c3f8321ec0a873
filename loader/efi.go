package loader

import (
	"fmt"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// readFirmware is the host's firmware description (package kexec's reader);
// tests replace it.
var readFirmware = kexec.ReadFirmware

// firmware adds the host's firmware description to an x86 plan's inputs:
// the running kernel's boot_params and /sys/firmware/efi, read from the
// captured tree o.Host when one is given, else from the running system
// (only when planning for this machine's own architecture). --noefi keeps
// the reading, for screen_info and the ACPI root pointer, and tells the
// planner to hand no EFI state over.
func (o *Options) firmware(in *plan.Inputs, native bool) error {
	if in.Arch != plan.ArchAMD64 || (!native && o.Host == "") {
		return nil
	}
	h, err := readFirmware(o.Host)
	if err != nil {
		return fmt.Errorf("%w: firmware: %w", plan.ErrInput, err)
	}
	in.EFI, in.NoEFI = h, o.NoEFI
	return nil
}
