// Package loadertest is a machine in memory for testing code that uses
// package loader without a kexec system call, a reboot or a TPM device:
// Host implements loader.Host (its Facts, Kernel and TPMs); the kexec
// calls are recorded, the IMA list is a byte slice, and the TPM is
// whatever the test gives (a swtpm through package tpm, or none).
//
// It imports nothing of package loader (the seams' types live in package
// kexec, and loader.TPM is an alias of an interface literal), so the
// loader's own tests use it too: it is the one fake.
//
// Invariants: nothing here touches the machine; a Host answers only from
// its fields, and every act (load, unload, reboot, mount) is recorded in
// them.
package loadertest

import (
	"crypto"
	"errors"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/segment"
)

// TPM is loader.TPM.
type TPM = interface {
	ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error)
	Extend(pcr uint32, digests map[crypto.Hash][]byte) error
	Close() error
}

// NoTPM is loader.NoTPM.
const NoTPM = "none"

// Host is a machine in memory. NewHost gives one with 1 GiB of RAM, an
// empty IMA list and no TPM.
type Host struct {
	// Memory is the memory map; NoMemory makes MemoryMap answer
	// kexec.ErrNotDescribed (an arm64 plan then takes the DTB's).
	Memory   segment.Map
	NoMemory bool
	// FW is the x86 firmware description (nil: none); DTB the running
	// machine's device tree (nil: ErrNoDeviceTree).
	FW  *efi.Host
	DTB []byte
	// List is the running kernel's binary IMA list; nil: a kernel without
	// IMA. Unmounted: securityfs is not mounted until MountSecurityfs.
	// ListErr, if set, is what IMAList answers.
	List      []byte
	Unmounted bool
	ListErr   error
	// ListReads counts IMAList calls.
	ListReads int
	// Symbols is what /proc/kallsyms would say, KallsymsErr why it
	// cannot be read.
	Symbols      kexec.KallsymsFacts
	KallsymsErr  error
	LockdownMode string
	// TPM is the machine's TPM and TPMName its device name; nil: no TPM.
	// TPMErr, if set, is what TPMDevice and OpenTPM answer.
	TPM     TPM
	TPMName string
	TPMErr  error
	Boot    string // boot id
	// Crash is what CrashFacts answers (nil: kexec's ErrNoCrashRegion).
	Crash *kexec.CrashFacts

	// Loaded and CrashLoaded say whether an image is loaded; the acts set
	// them.
	Loaded, CrashLoaded bool
	// LoadErr and FileLoadErr fail the next kexec_load / kexec_file_load;
	// BeforeLoad, if set, runs at each kexec_load (entries arriving).
	LoadErr, FileLoadErr error
	BeforeLoad           func()
	// Loads, FileLoads, Unloads, Reboots and Mounts record what was done.
	Loads     []kexec.LoadRequest
	FileLoads []kexec.FileLoadRequest
	Unloads   int
	Reboots   int
	Mounts    int
}

// NewHost is a machine with 1 GiB of RAM above 1 MiB, an empty IMA list
// and no TPM.
func NewHost() *Host {
	return &Host{
		Memory: segment.Map{
			{Range: segment.Range{Start: 0, End: 0x9fc00}, Type: segment.TypeRAM},
			{Range: segment.Range{Start: 0x100000, End: 0x40000000}, Type: segment.TypeRAM},
		},
		List: []byte{},
		Boot: "loadertest-boot",
	}
}

// ErrNoDeviceTree: the fake has no device tree.
var ErrNoDeviceTree = errors.New("loadertest: no device tree")

// MemoryMap is Memory.
func (h *Host) MemoryMap(string) (segment.Map, error) {
	if h.NoMemory {
		return nil, kexec.ErrNotDescribed
	}
	return h.Memory, nil
}

// Firmware is FW.
func (h *Host) Firmware(string) (*efi.Host, error) { return h.FW, nil }

// ACPIRSDP is 0.
func (h *Host) ACPIRSDP() uint64 { return 0 }

// DeviceTree is DTB.
func (h *Host) DeviceTree() ([]byte, error) {
	if h.DTB == nil {
		return nil, ErrNoDeviceTree
	}
	return h.DTB, nil
}

// Lockdown is LockdownMode ("none" when empty).
func (h *Host) Lockdown() string {
	if h.LockdownMode == "" {
		return "none"
	}
	return h.LockdownMode
}

// KexecLoadDisabled is false.
func (h *Host) KexecLoadDisabled() bool { return false }

// Kallsyms is Symbols, KallsymsErr.
func (h *Host) Kallsyms() (kexec.KallsymsFacts, error) { return h.Symbols, h.KallsymsErr }

// BootID is Boot.
func (h *Host) BootID() (string, error) { return h.Boot, nil }

// KexecLoaded is Loaded (or CrashLoaded).
func (h *Host) KexecLoaded(crash bool) (bool, error) {
	if crash {
		return h.CrashLoaded, nil
	}
	return h.Loaded, nil
}

// CrashFacts is Crash.
func (h *Host) CrashFacts(bool) (*kexec.CrashFacts, error) {
	if h.Crash == nil {
		return nil, segment.ErrNoCrashRegion
	}
	return h.Crash, nil
}

// IMAList returns a copy of List: kexec.ErrNoIMA when it is nil,
// kexec.ErrSecurityfsUnmounted while Unmounted, ListErr when set.
func (h *Host) IMAList() ([]byte, error) {
	h.ListReads++
	switch {
	case h.ListErr != nil:
		return nil, h.ListErr
	case h.Unmounted:
		return nil, kexec.ErrSecurityfsUnmounted
	case h.List == nil:
		return nil, kexec.ErrNoIMA
	}
	return append([]byte(nil), h.List...), nil
}

// TPMDevice is TPMName, or NoTPM without a TPM.
func (h *Host) TPMDevice() (string, error) {
	switch {
	case h.TPMErr != nil:
		return "", h.TPMErr
	case h.TPM == nil:
		return NoTPM, nil
	}
	return h.TPMName, nil
}

// OpenTPM returns TPM (its Close does nothing: the test owns it).
func (h *Host) OpenTPM() (TPM, string, error) {
	switch {
	case h.TPMErr != nil:
		return nil, "", h.TPMErr
	case h.TPM == nil:
		return nil, NoTPM, nil
	}
	return keepOpen{h.TPM}, h.TPMName, nil
}

type keepOpen struct{ TPM }

func (keepOpen) Close() error { return nil }

// KexecLoad records the request.
func (h *Host) KexecLoad(r kexec.LoadRequest) error {
	if h.BeforeLoad != nil {
		h.BeforeLoad()
	}
	if err := h.LoadErr; err != nil {
		h.LoadErr = nil
		return err
	}
	h.Loads = append(h.Loads, r)
	h.setLoaded(r.Crash)
	return nil
}

func (h *Host) setLoaded(crash bool) {
	if crash {
		h.CrashLoaded = true
	} else {
		h.Loaded = true
	}
}

// KexecFileLoad records the request (its Data is what the kernel reads).
func (h *Host) KexecFileLoad(r kexec.FileLoadRequest) error {
	if err := h.FileLoadErr; err != nil {
		h.FileLoadErr = nil
		return err
	}
	h.FileLoads = append(h.FileLoads, r)
	h.setLoaded(r.Crash)
	return nil
}

// Unload records the unload.
func (h *Host) Unload(crash bool) error {
	h.Unloads++
	if crash {
		h.CrashLoaded = false
	} else {
		h.Loaded = false
	}
	return nil
}

// Reboot records the reboot (and returns nil, which a real reboot never
// does).
func (h *Host) Reboot() error {
	if !h.Loaded {
		return errors.New("loadertest: reboot with nothing loaded")
	}
	h.Reboots++
	return nil
}

// MountSecurityfs records the mount; the list is readable afterwards.
func (h *Host) MountSecurityfs() error {
	h.Mounts++
	h.Unmounted = false
	return nil
}
