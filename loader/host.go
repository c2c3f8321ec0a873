package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/tpm"
)

// The running system, as the loader reaches it. Tests replace these; the
// real ones are package kexec's and package tpm's.
var (
	readIMAList  = kexec.ReadIMAList
	executePlan  = Execute
	fileLoadFDs  = func(k, rd *os.File, cmdline string) error { return kexec.FileLoad(k, rd, cmdline, 0) }
	kexecLoaded  = kexec.Loaded
	bootID       = kexec.BootID
	readKallsyms = kexec.ReadKallsyms
	openTPMAt    = func(path string) (*tpm.TPM, error) { return tpm.Open(path) }
	tpmDefaults  = tpm.DefaultDevices
)

// NoTPM is the plan's TPM fact on a machine without a TPM.
const NoTPM = "none"

// ErrTPM says the TPM finalize must extend cannot be used.
var ErrTPM = errors.New("TPM unavailable")

// tpmFact names the TPM a load expects finalize to extend: the named
// device (which must exist), the first default device that exists, or
// NoTPM when none does.
func tpmFact(named string) (string, error) {
	if named != "" {
		if _, err := os.Stat(named); err != nil {
			return "", fmt.Errorf("%w: --tpm-device: %w", ErrTPM, err)
		}
		return named, nil
	}
	for _, p := range tpmDefaults {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return NoTPM, nil
}

// openTPM opens the TPM for finalize. A named device that cannot be opened
// is an error; so is a default device that exists but cannot be opened.
// Only when no default device exists at all is the answer "no TPM" (nil,
// NoTPM, nil).
func openTPM(named string) (*tpm.TPM, string, error) {
	if named != "" {
		t, err := openTPMAt(named)
		if err != nil {
			return nil, "", fmt.Errorf("%w: --tpm-device %s: %w", ErrTPM, named, err)
		}
		return t, named, nil
	}
	dev, err := tpmFact("")
	if err != nil || dev == NoTPM {
		return nil, dev, err
	}
	t, err := openTPMAt(dev)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s exists but cannot be used: %w", ErrTPM, dev, err)
	}
	return t, dev, nil
}

// Binding is what a load records about the image it put into the kernel,
// so that -e can tell whether that image is still the one loaded.
//
// What the kernel lets one observe is limited: /sys/kernel/kexec_loaded
// (whether any image is loaded) and, when the IMA policy measures
// KEXEC_CMDLINE, one kexec-cmdline entry per kexec_file_load. A
// kexec_load by another tool after gokexec's leaves no trace; Finalize
// then replaces it with an image rebuilt from files that still hash to
// the recorded digests, so what boots is what was appraised and measured,
// but the other tool's load is lost. That limit is documented in
// docs/bad-inputs.md.
type Binding struct {
	BootID string `json:"boot_id"`
	// KexecCmdlines counts the running list's kexec-cmdline entries just
	// after this load; -1 when there was no list to count in.
	KexecCmdlines int `json:"kexec_cmdlines"`
}

// ErrStale says the recorded state no longer describes what the kernel
// has loaded.
var ErrStale = errors.New("the recorded gokexec load is not what is loaded now")

// countKexecCmdlines counts the kernel's kexec_file_load measurements.
func countKexecCmdlines() int {
	raw, _, err := readIMAList("")
	if err != nil {
		return -1
	}
	es, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		return -1
	}
	n := 0
	for i := range es {
		if es[i].TemplateName != "ima-buf" {
			continue
		}
		if d, err := es[i].Decode(binary.LittleEndian); err == nil && d.Name == CmdlineEvent {
			n++
		}
	}
	return n
}

// bind records the Binding of a load that just succeeded.
func bind() (*Binding, error) {
	id, err := bootID()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &Binding{BootID: id, KexecCmdlines: countKexecCmdlines()}, nil
}

// CheckBinding refuses a state that does not describe what the kernel
// has loaded: made in another boot, nothing loaded any more, or another
// kexec_file_load measured since.
func CheckBinding(s *State) error {
	if s.Binding == nil {
		return fmt.Errorf("%w: the state records no binding to a loaded image", ErrStale)
	}
	id, err := bootID()
	if err != nil {
		return err
	}
	if id != s.Binding.BootID {
		return fmt.Errorf("%w: the state was written in boot %s, this is boot %s", ErrStale, s.Binding.BootID, id)
	}
	loaded, err := kexecLoaded()
	if err != nil {
		return err
	}
	if !loaded {
		return fmt.Errorf("%w: no kernel is loaded (/sys/kernel/kexec_loaded is 0): something unloaded gokexec's image", ErrStale)
	}
	if s.Binding.KexecCmdlines >= 0 {
		if n := countKexecCmdlines(); n > s.Binding.KexecCmdlines {
			return fmt.Errorf("%w: the kernel measured %d kexec_file_load(s) since gokexec's load (kexec-cmdline entries %d → %d): another tool loaded an image; load again with gokexec -l, or boot the other image with its own tool",
				ErrStale, n-s.Binding.KexecCmdlines, s.Binding.KexecCmdlines, n)
		}
	}
	return nil
}

// checkInputs re-reads nothing; it compares the digests of inputs read at
// -e with those the plan recorded at load.
func checkInputs(p *plan.Plan, in *plan.Inputs, dtbPath string) error {
	if d := plan.Digest(in.Kernel); d != p.Kernel.SHA256 {
		return fmt.Errorf("%w: kernel %s (sha256 now %s, loaded %s)", ErrInputChanged, p.Kernel.Path, d, p.Kernel.SHA256)
	}
	if p.Initrd != nil && plan.Digest(in.Initrd) != p.Initrd.SHA256 {
		return fmt.Errorf("%w: initrd %s (sha256 now %s, loaded %s)", ErrInputChanged, p.Initrd.Path, plan.Digest(in.Initrd), p.Initrd.SHA256)
	}
	if p.DTBInput != nil {
		if in.DTB == nil || dtbPath != p.DTBInput.Path {
			return fmt.Errorf("%w: device tree %s is no longer the source (now %q)", ErrInputChanged, p.DTBInput.Path, dtbPath)
		}
		if d := plan.Digest(in.DTB); d != p.DTBInput.SHA256 {
			return fmt.Errorf("%w: device tree %s (sha256 now %s, loaded %s)", ErrInputChanged, p.DTBInput.Path, d, p.DTBInput.SHA256)
		}
	}
	return nil
}
