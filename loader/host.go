package loader

import (
	"crypto"
	"errors"
	"fmt"
	"os"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/segment"
)

// Host is everything the loader reads from or does to the machine: the
// facts a plan is made from, the IMA list, the TPM, and the kexec
// syscalls. The loader reaches the machine through nothing else.
//
// Three implementations exist: System (this machine, through packages
// kexec and tpm), Captured (a tree written by gokexec capture-host, for
// planning off-target; it refuses every act) and the tests' fake.
type Host interface {
	// MemoryMap is the physical memory map of a machine of architecture
	// arch. A host that cannot describe arch's memory (the live system
	// asked about another architecture) returns an error wrapping
	// ErrNotDescribed.
	MemoryMap(arch string) (segment.Map, error)
	// Firmware is the x86 firmware description (boot_params, EFI) for a
	// plan of architecture arch; nil, nil when there is none to hand over.
	Firmware(arch string) (*efi.Host, error)
	// ACPIRSDP is the ACPI root pointer an EFI boot recorded, or 0.
	ACPIRSDP() uint64
	// DeviceTree is the running machine's flattened device tree (arm64).
	DeviceTree() ([]byte, error)
	// IMAList is the running kernel's binary measurement list (securityfs).
	// No list at all is an error wrapping kexec.ErrNoIMA.
	IMAList() ([]byte, error)
	// Lockdown is the active lockdown mode ("" without the lockdown LSM).
	Lockdown() string
	// KexecLoadDisabled reports sysctl kernel.kexec_load_disabled.
	KexecLoadDisabled() bool
	// Kallsyms says what /proc/kallsyms tells about IMA's kexec support.
	Kallsyms() (kexec.KallsymsFacts, error)
	// TPMDevice names the TPM a load expects finalize to extend: a
	// device, NoTPM when the machine has none, or "" when the host cannot
	// tell (a captured tree). A named device that does not exist is an
	// error wrapping ErrTPM.
	TPMDevice() (string, error)
	// OpenTPM opens the TPM for finalize. It returns nil, NoTPM, nil only
	// when the machine has no TPM at all.
	OpenTPM() (TPM, string, error)
	// BootID identifies the current boot (/proc/sys/kernel/random/boot_id).
	BootID() (string, error)
	// KexecLoaded reports whether an image is loaded (crash: the crash
	// image).
	KexecLoaded(crash bool) (bool, error)

	// KexecLoad runs kexec_load.
	KexecLoad(LoadRequest) error
	// KexecFileLoad runs kexec_file_load.
	KexecFileLoad(FileLoadRequest) error
	// Unload unloads what either syscall loaded.
	Unload(crash bool) error
	// Reboot reboots into the loaded image; it returns only on failure.
	Reboot() error
}

// LoadRequest is one kexec_load.
type LoadRequest struct {
	Entry    uint64
	Segments []segment.Segment
	Arch     string // plan.ArchAMD64, plan.ArchARM64
	Crash    bool   // KEXEC_ON_CRASH
}

// FileLoadRequest is one kexec_file_load.
type FileLoadRequest struct {
	Kernel  *os.File
	Initrd  *os.File // nil: no initramfs
	Cmdline string
	Crash   bool // KEXEC_FILE_ON_CRASH
}

// TPM is the part of a TPM 2.0 finalize uses (package tpm's *TPM is one).
type TPM interface {
	// ReadPCRs reads the given PCRs of every active bank, all at one
	// instant.
	ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error)
	// Extend extends pcr in every active bank with that bank's digest.
	Extend(pcr uint32, digests map[crypto.Hash][]byte) error
	Close() error
}

// NoTPM is the plan's TPM fact on a machine without a TPM.
const NoTPM = "none"

// Sentinels of the host side.
var (
	// ErrTPM says the TPM finalize must extend cannot be used.
	ErrTPM = errors.New("TPM unavailable")
	// ErrNotDescribed says a host cannot describe what was asked (the
	// live system asked for another architecture's memory map).
	ErrNotDescribed = errors.New("the host does not describe this")
	// ErrOffTarget says a captured host tree was asked to act: it can be
	// planned against, not loaded into.
	ErrOffTarget = errors.New("a captured host tree can be planned against, not loaded or booted")
)

// Binding is what a load records about the image it put into the kernel,
// so that a later finalize can tell whether that image is still the one
// loaded.
//
// What the kernel lets one observe is limited: /sys/kernel/kexec_loaded
// (whether any image is loaded) and, when the IMA policy measures
// KEXEC_CMDLINE, one kexec-cmdline entry per kexec_file_load. A
// kexec_load by another tool after gokexec's leaves no trace; Finalize
// then replaces it with an image rebuilt from inputs that still hash to
// the recorded digests, so what boots is what was appraised and measured,
// but the other tool's load is lost. That limit is documented in
// docs/bad-inputs.md.
type Binding struct {
	BootID string `json:"boot_id"`
	// KexecCmdlines counts the running list's kexec-cmdline entries just
	// after this load; -1 when there was no list to count in.
	KexecCmdlines int `json:"kexec_cmdlines"`
}

// ErrStale says the recorded load no longer describes what the kernel
// has loaded.
var ErrStale = errors.New("the recorded gokexec load is not what is loaded now")

// countKexecCmdlines counts the kernel's kexec_file_load measurements.
func countKexecCmdlines(h Host) int {
	raw, err := h.IMAList()
	if err != nil {
		return -1
	}
	n, err := countCmdlines(raw)
	if err != nil {
		return -1
	}
	return n
}

// bind records the Binding of a load that just succeeded.
func bind(h Host) (*Binding, error) {
	id, err := h.BootID()
	if err != nil {
		return nil, fmt.Errorf("binding: %w", err)
	}
	return &Binding{BootID: id, KexecCmdlines: countKexecCmdlines(h)}, nil
}

// checkBinding refuses a load that does not describe what the kernel has
// loaded: made in another boot, nothing loaded any more, or another
// kexec_file_load measured since.
func checkBinding(h Host, b *Binding) error {
	if b == nil {
		return fmt.Errorf("%w: the state records no binding to a loaded image", ErrStale)
	}
	id, err := h.BootID()
	if err != nil {
		return err
	}
	if id != b.BootID {
		return fmt.Errorf("%w: the state was written in boot %s, this is boot %s", ErrStale, b.BootID, id)
	}
	loaded, err := h.KexecLoaded(false)
	if err != nil {
		return err
	}
	if !loaded {
		return fmt.Errorf("%w: no kernel is loaded (/sys/kernel/kexec_loaded is 0): something unloaded gokexec's image", ErrStale)
	}
	if b.KexecCmdlines >= 0 {
		if n := countKexecCmdlines(h); n > b.KexecCmdlines {
			return fmt.Errorf("%w: the kernel measured %d kexec_file_load(s) since gokexec's load (kexec-cmdline entries %d → %d): another tool loaded an image; load again with gokexec -l, or boot the other image with its own tool",
				ErrStale, n-b.KexecCmdlines, b.KexecCmdlines, n)
		}
	}
	return nil
}
