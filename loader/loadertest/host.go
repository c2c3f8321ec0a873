// Package loadertest is a loader.Host in memory, for testing a bootloader
// that uses package loader without a kexec system call, a reboot or a TPM
// device: the kexec calls are recorded, the IMA list is a byte slice, and
// the TPM is whatever loader.TPM the test gives (a swtpm through package
// tpm, or none).
//
// Invariants: nothing here touches the machine; a Host answers only from
// its fields, and every act (load, unload, reboot) is recorded in them.
package loadertest

import (
	"errors"
	"io"
	"os"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/segment"
)

// Host is a machine in memory. The zero value has no memory; NewHost
// gives one with 1 GiB of RAM, an empty IMA list and no TPM.
type Host struct {
	Memory segment.Map
	List   []byte              // the running kernel's binary IMA list; nil: no securityfs
	Kernel kexec.KallsymsFacts // what /proc/kallsyms would say
	// TPM is the machine's TPM and TPMName its device name; nil: no TPM.
	TPM     loader.TPM
	TPMName string
	Boot    string // boot id

	// Loaded says whether an image is loaded; the acts set it.
	Loaded bool
	// Loads, FileLoads (the kernel's and initrd's bytes), Unloads and
	// Reboots record what the loader did.
	Loads     []loader.LoadRequest
	FileLoads [][2][]byte
	Unloads   int
	Reboots   int
}

var _ loader.Host = (*Host)(nil)

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

func (h *Host) MemoryMap(string) (segment.Map, error)  { return h.Memory, nil }
func (h *Host) Firmware(string) (*efi.Host, error)     { return nil, nil }
func (h *Host) ACPIRSDP() uint64                       { return 0 }
func (h *Host) DeviceTree() ([]byte, error)            { return nil, ErrNoDeviceTree }
func (h *Host) Lockdown() string                       { return "none" }
func (h *Host) KexecLoadDisabled() bool                { return false }
func (h *Host) Kallsyms() (kexec.KallsymsFacts, error) { return h.Kernel, nil }
func (h *Host) BootID() (string, error)                { return h.Boot, nil }
func (h *Host) KexecLoaded(bool) (bool, error)         { return h.Loaded, nil }

// IMAList returns a copy of List (kexec.ErrNoIMA when it is nil).
func (h *Host) IMAList() ([]byte, error) {
	if h.List == nil {
		return nil, kexec.ErrNoIMA
	}
	return append([]byte(nil), h.List...), nil
}

// TPMDevice is TPMName, or loader.NoTPM without a TPM.
func (h *Host) TPMDevice() (string, error) {
	if h.TPM == nil {
		return loader.NoTPM, nil
	}
	return h.TPMName, nil
}

// OpenTPM returns TPM (its Close does nothing: the test owns it).
func (h *Host) OpenTPM() (loader.TPM, string, error) {
	if h.TPM == nil {
		return nil, loader.NoTPM, nil
	}
	return keepOpen{h.TPM}, h.TPMName, nil
}

type keepOpen struct{ loader.TPM }

func (keepOpen) Close() error { return nil }

// KexecLoad records the request.
func (h *Host) KexecLoad(r loader.LoadRequest) error {
	h.Loads = append(h.Loads, r)
	h.Loaded = true
	return nil
}

// KexecFileLoad records the bytes the kernel would read.
func (h *Host) KexecFileLoad(r loader.FileLoadRequest) error {
	var got [2][]byte
	for i, f := range []*os.File{r.Kernel, r.Initrd} {
		if f == nil {
			continue
		}
		b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<31))
		if err != nil {
			return err
		}
		got[i] = b
	}
	h.FileLoads = append(h.FileLoads, got)
	h.Loaded = true
	return nil
}

// Unload records the unload.
func (h *Host) Unload(bool) error { h.Unloads++; h.Loaded = false; return nil }

// Reboot records the reboot (and returns nil, which a real reboot never
// does).
func (h *Host) Reboot() error {
	if !h.Loaded {
		return errors.New("loadertest: reboot with nothing loaded")
	}
	h.Reboots++
	return nil
}
