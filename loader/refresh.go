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
//   - The kernel gets the bytes of the load: kernel and initrd are read
//     again and must hash to the digests recorded at -l (ErrInputChanged
//     otherwise), and are handed over the same way as at -l (a sealed
//     memfd when appraisal is on). The command line is the recorded one.
//   - Nothing is refreshed when it cannot help: with NoIMA, or when the
//     load's facts say the kernel does not hand the list over.
//   - A failed refresh wraps ErrRefresh and leaves the image of -l loaded.
//   - After a refresh the load's binding is renewed (the load may have
//     added a kexec-cmdline measurement), so a later finalize or -e still
//     recognizes the load as gokexec's.
//
// The report's Count and ListBytes describe the list the kernel sized its
// buffer for.
func (l *Loaded) refreshFileLoad() (*Report, error) {
	rep := &Report{Plan: l.plan}
	o := &l.opts
	if o.NoIMA {
		rep.NoIMA = true
		return rep, nil
	}
	if d := l.plan.Decision; d == nil || !d.Facts.KernelHandsOver {
		return rep, nil
	}
	r, err := inputs(l.host, l.img, o, false)
	if err != nil {
		return nil, err
	}
	if err := checkInputs(l.plan, r.in, r.dtbName); err != nil {
		return nil, err
	}
	if err := fileLoad(l.host, r, o.appraised()); err != nil {
		return nil, fmt.Errorf("%w: %w (the image of -l stays loaded with the hand-over buffer sized at -l)", ErrRefresh, err)
	}
	b, err := bind(l.host)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefresh, err)
	}
	l.binding = b
	rep.ListBytes = uint64(len(r.in.IMAList))
	if es, err := ima.ParseList(r.in.IMAList, binary.LittleEndian); err == nil {
		rep.Count = len(es)
	}
	return rep, nil
}
