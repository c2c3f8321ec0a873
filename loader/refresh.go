package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/gokexec/gokexec/ima"
)

// ErrRefresh (errors.go) is wrapped when the kexec_file_load that finalize
// runs again just before the reboot fails. The image loaded at -l is then
// still loaded (the kernel swaps images only after a load succeeded), but
// its hand-over buffer is the one sized at -l: rebooting into it could
// lose the end of the list, so -e does not reboot.

// refreshFileLoad is finalize for a kexec_file_load load on a kernel that
// hands its IMA list over itself (CONFIG_IMA_KEXEC).
//
// Such a kernel sizes its hand-over buffer when the image is loaded: the
// list at that moment plus CONFIG_IMA_KEXEC_EXTRA_MEMORY_KB (half a page
// when 0), page-rounded. At the reboot it measures its kexec_execute entry,
// then copies as much of the list as fits and drops the rest; a list that
// grew by more than the headroom since -l loses its newest entries, the
// kexec_execute marker first, and a verifier must call for a cold boot.
// Loading the same image again right before the reboot makes the kernel
// reserve a buffer for the list as it is now (and measure a new
// kexec_load marker), so only what is measured in the last moments before
// the reboot has to fit in the headroom.
//
// Invariants:
//   - The kernel gets the bytes of the load, read once at load: the file
//     itself when it still holds them and appraisal is off, else a sealed
//     memfd of them (kexec.OpenFileInput). The command line is the
//     recorded one. Nothing needs the kernel's files to be readable.
//   - Nothing is refreshed when it cannot help: with NoIMA, or when the
//     load's facts say the kernel does not hand the list over.
//   - A failed refresh wraps ErrRefresh and leaves the image of the load
//     loaded.
//   - After a refresh the load's binding is renewed (the load may have
//     added a kexec-cmdline measurement), so a later finalize or exec
//     still recognizes the load as gokexec's.
//
// The report's Count and ListBytes describe the list the kernel sized its
// buffer for.
func (l *Loaded) refreshFileLoad() (*Report, error) {
	rep := &Report{Plan: l.plan}
	if l.opts.NoIMA {
		rep.NoIMA = true
		return rep, nil
	}
	if d := l.plan.Decision; d == nil || !d.Facts.KernelHandsOver {
		return rep, nil
	}
	list, err := l.host.IMAList()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoIMAList, err)
	}
	if err := execute(l.host, l.plan, l.in, l.paths, l.sealed, false); err != nil {
		return nil, fmt.Errorf("%w: %w (the image of the load stays loaded with the hand-over buffer sized then)", ErrRefresh, err)
	}
	b, err := bind(l.host, nil) // kexec_file_load: the kernel measured this load
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefresh, err)
	}
	l.binding = b
	rep.ListBytes = uint64(len(list))
	if es, err := ima.ParseList(list, binary.LittleEndian); err == nil {
		rep.Count = len(es)
	}
	return rep, nil
}
