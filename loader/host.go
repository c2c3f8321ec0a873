package loader

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/segment"
)

// Facts are what the loader reads from a machine: the facts a plan is made
// from, the IMA list, and what tells whether a load is still the one the
// kernel has. Read-only. kexec.System (this machine) and kexec.Captured (a
// tree from gokexec capture-host) implement every method.
type Facts interface {
	// MemoryMap is the physical memory map of a machine of architecture
	// arch; an error wrapping kexec.ErrNotDescribed when the host cannot
	// describe it (this machine asked about another architecture).
	MemoryMap(arch string) (segment.Map, error)
	// Firmware is the x86 firmware description (boot_params, EFI) for a
	// plan of architecture arch; nil, nil when there is none to hand over.
	Firmware(arch string) (*efi.Host, error)
	// ACPIRSDP is the ACPI root pointer an EFI boot recorded, or 0.
	ACPIRSDP() uint64
	// DeviceTree is the running machine's flattened device tree (arm64).
	DeviceTree() ([]byte, error)
	// IMAList is the running kernel's binary measurement list. A kernel
	// without IMA is kexec.ErrNoIMA; securityfs not mounted is
	// kexec.ErrSecurityfsUnmounted.
	IMAList() ([]byte, error)
	// Lockdown is the active lockdown mode ("" without the lockdown LSM).
	Lockdown() string
	// KexecLoadDisabled reports sysctl kernel.kexec_load_disabled.
	KexecLoadDisabled() bool
	// Kallsyms says what /proc/kallsyms tells about IMA's kexec support.
	Kallsyms() (kexec.KallsymsFacts, error)
	// BootID identifies the current boot (/proc/sys/kernel/random/boot_id).
	BootID() (string, error)
	// KexecLoaded reports whether an image is loaded (crash: the crash
	// image).
	KexecLoaded(crash bool) (bool, error)
	// CrashFacts describes the running kernel for a crash dump (its crash
	// region and memory; with notes, the per-CPU crash notes, VMCOREINFO
	// and /proc/kcore's direct map base).
	CrashFacts(notes bool) (*kexec.CrashFacts, error)
}

// Kernel is the acts on the running kernel. kexec.Kernel is the real one;
// a DryRun records them instead.
type Kernel interface {
	// KexecLoad runs kexec_load.
	KexecLoad(LoadRequest) error
	// KexecFileLoad runs kexec_file_load; the implementation opens the
	// files or sealed memfds the kernel reads (kexec.OpenFileInput).
	KexecFileLoad(FileLoadRequest) error
	// Unload unloads what either syscall loaded (crash: the crash image).
	Unload(crash bool) error
	// Reboot reboots into the loaded image; it returns only on failure.
	Reboot() error
	// MountSecurityfs mounts securityfs at /sys/kernel/security.
	MountSecurityfs() error
}

// TPMs is where finalize finds the TPM. tpm.Source is the real one.
type TPMs interface {
	// TPMDevice names the TPM a load expects finalize to extend: a
	// device, NoTPM when the machine has none, or "" when the host cannot
	// tell. A named device that does not exist is an error.
	TPMDevice() (string, error)
	// OpenTPM opens the TPM for finalize. It returns nil, NoTPM, nil only
	// when the machine has no TPM at all.
	OpenTPM() (TPM, string, error)
}

// Host is a machine as the loader sees it: its facts, its kernel and its
// TPM. Machine puts three separate implementations together;
// loadertest.Host is one in memory.
type Host interface {
	Facts
	Kernel
	TPMs
}

// Machine is a Host made of its three seams.
type Machine struct {
	Facts
	Kernel
	TPMs
}

// NoTPMs is the TPMs of a host whose TPM is not known (a captured tree):
// device "", and opening it is refused (ErrTPM).
type NoTPMs struct{}

// TPMDevice is "": unknown.
func (NoTPMs) TPMDevice() (string, error) { return "", nil }

// OpenTPM refuses.
func (NoTPMs) OpenTPM() (TPM, string, error) {
	return nil, "", fmt.Errorf("%w: the host's TPM is not known", ErrTPM)
}

// OffTarget is the Kernel of a host that is only described (a captured
// tree): every act is refused with ErrOffTarget. Wrap the Machine in a
// DryRun to see what the acts would be.
type OffTarget struct{}

// ErrOffTarget says an act was asked of a host that is only described.
var ErrOffTarget = errors.New("a captured host can be planned against, not loaded into or booted")

func (OffTarget) KexecLoad(LoadRequest) error         { return ErrOffTarget }
func (OffTarget) KexecFileLoad(FileLoadRequest) error { return ErrOffTarget }
func (OffTarget) Unload(bool) error                   { return ErrOffTarget }
func (OffTarget) Reboot() error                       { return ErrOffTarget }
func (OffTarget) MountSecurityfs() error              { return ErrOffTarget }

// LoadRequest is one kexec_load.
type LoadRequest = kexec.LoadRequest

// FileLoadRequest is one kexec_file_load.
type FileLoadRequest = kexec.FileLoadRequest

// TPM is the part of a TPM 2.0 finalize uses (package tpm's *TPM is one).
// It is an alias of an interface literal so that implementations
// (tpm.Source, loadertest.Host) need not import this package.
type TPM = interface {
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
	// ErrNotDescribed says a host cannot describe what was asked.
	ErrNotDescribed = kexec.ErrNotDescribed
)
