package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/gokexec/gokexec/ima"
)

// Binding is what a load records about the image it put into the kernel,
// so that a later finalize can tell whether that image is still the one
// loaded.
//
// What the kernel lets one observe is limited: /sys/kernel/kexec_loaded
// and kexec_crash_loaded (whether an image is loaded) and, when the IMA
// policy measures KEXEC_CMDLINE, one kexec-cmdline entry per
// kexec_file_load — for a crash kernel too. A new kexec-cmdline entry is
// a crash kernel's (kdump-tools' condreload, kdumpctl) when a crash image
// is loaded now and its command line carries what every capture kernel
// is given (reset_devices, or elfcorehdr=); any other is another tool's
// normal image, which replaced gokexec's. A kexec_load by another tool
// leaves no trace; Finalize then replaces it with the image of the load,
// so what boots is what was appraised and measured, but the other tool's
// load is lost. That limit is documented in docs/bad-inputs.md.
type Binding struct {
	BootID string `json:"boot_id"`
	// Entries and Bytes are the running list's length just after this
	// load, in entries and bytes; Entries is -1 when there was no list.
	// The kernel only appends to its list within a boot, so a later check
	// reads only what follows.
	Entries int    `json:"list_entries"`
	Bytes   uint64 `json:"list_bytes"`
}

// ErrStale says the recorded load no longer describes what the kernel
// has loaded.
var ErrStale = errors.New("the recorded gokexec load is not what is loaded now")

// ErrForeign (wrapping ErrStale) says another tool loaded a normal image
// after gokexec's load.
var ErrForeign = fmt.Errorf("%w: another tool loaded a normal kexec image since", ErrStale)

func listLen(h Facts) (int, uint64) {
	raw, err := h.IMAList()
	if err != nil {
		return -1, 0
	}
	es, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		return -1, 0
	}
	return len(es), uint64(len(raw))
}

// bind records the Binding of a load that just succeeded. snapshot, if
// not nil, is the running kernel's list as a kexec_load read it: the
// binding counts from it rather than reading the list again (the kernel
// measures nothing of a kexec_load; a kexec-cmdline entry after the
// snapshot is another tool's kexec_file_load, which finalize refuses). A
// kexec_file_load's binding reads the list after the load, which the
// kernel measured.
func bind(h Facts, snapshot []byte) (*Binding, error) {
	id, err := h.BootID()
	if err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	if snapshot != nil {
		if es, err := ima.ParseList(snapshot, binary.LittleEndian); err == nil {
			return &Binding{BootID: id, Entries: len(es), Bytes: uint64(len(snapshot))}, nil
		}
	}
	n, size := listLen(h)
	return &Binding{BootID: id, Entries: n, Bytes: size}, nil
}

// crashCmdline reports whether a kexec_file_load command line is a crash
// capture kernel's.
func crashCmdline(cl string) bool {
	for _, f := range strings.Fields(cl) {
		if f == "reset_devices" || strings.HasPrefix(f, "elfcorehdr=") {
			return true
		}
	}
	return false
}

// checkBinding refuses a load that does not describe what the kernel has
// loaded: made in another boot, nothing loaded any more, or another
// tool's normal image loaded since (a crash kernel's reload is not). It
// returns the running kernel's list as it read it (nil when it did not),
// for finalize to start from rather than read it again.
func checkBinding(h Facts, b *Binding) ([]byte, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: the state records no binding to a loaded image", ErrStale)
	}
	id, err := h.BootID()
	if err != nil {
		return nil, err
	}
	if id != b.BootID {
		return nil, fmt.Errorf("%w: the state was written in boot %s, this is boot %s", ErrStale, b.BootID, id)
	}
	loaded, err := h.KexecLoaded(false)
	if err != nil {
		return nil, err
	}
	if !loaded {
		return nil, fmt.Errorf("%w: no kernel is loaded (/sys/kernel/kexec_loaded is 0): something unloaded gokexec's image", ErrStale)
	}
	if b.Entries < 0 {
		return nil, nil
	}
	raw, err := h.IMAList()
	if err != nil {
		return nil, nil // no list to look in: finalize says what it needs
	}
	if uint64(len(raw)) < b.Bytes {
		return nil, nil // not the list of the load: finalize says so
	}
	es, err := ima.ParseList(raw[b.Bytes:], binary.LittleEndian)
	if err != nil {
		return nil, nil
	}
	crashLoaded, _ := h.KexecLoaded(true)
	for i := range es {
		if es[i].TemplateName != "ima-buf" {
			continue
		}
		d, err := es[i].Decode(binary.LittleEndian)
		if err != nil || d.Name != CmdlineEvent {
			continue
		}
		if crashLoaded && crashCmdline(string(d.Buf)) {
			continue // kdump reloaded its crash kernel
		}
		return nil, fmt.Errorf("%w (entry %d: kexec-cmdline \"%s\")", ErrForeign, b.Entries+i, ima.Escape(string(d.Buf)))
	}
	return raw, nil
}
