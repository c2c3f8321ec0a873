package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
	"github.com/gokexec/gokexec/tpm"
)

// System is the Host of the machine this process runs on, through
// packages kexec and tpm. The zero value reads everything from the
// running system; the fields override single sources.
type System struct {
	// MemMap overrides the memory map: a /sys/firmware/memmap-style
	// directory or an /proc/iomem-style file.
	MemMap string
	// IMALog overrides the IMA list with a binary list file.
	IMALog string
	// TPM is the TPM device finalize extends; it must exist and open. ""
	// takes /dev/tpmrm0, then /dev/tpm0; only when neither exists does the
	// machine count as having no TPM.
	TPM string
}

var _ Host = (*System)(nil)

// tpmDefaults are the devices System tries when none is named.
var tpmDefaults = tpm.DefaultDevices

// MemoryMap reads the override, or this machine's map when arch is its own.
func (s *System) MemoryMap(arch string) (segment.Map, error) {
	if s.MemMap == "" && arch != runtime.GOARCH {
		return nil, fmt.Errorf("%w: planning for %s on %s needs the target's memory map (--memmap)", ErrNotDescribed, arch, runtime.GOARCH)
	}
	m, _, err := kexec.ReadMemoryMap(s.MemMap)
	return m, err
}

// Firmware reads boot_params and /sys/firmware/efi when planning for x86
// on this machine's own architecture.
func (s *System) Firmware(arch string) (*efi.Host, error) {
	if arch != runtime.GOARCH {
		return nil, nil
	}
	return kexec.ReadFirmware("")
}

// ACPIRSDP reads /sys/firmware/efi/systab.
func (s *System) ACPIRSDP() uint64 { return kexec.ACPIRSDP() }

// DeviceTree reads /sys/firmware/fdt.
func (s *System) DeviceTree() ([]byte, error) {
	return kexec.ReadInput("device tree", kexec.SysfsFDT, kexec.MaxDTBBytes)
}

// IMAList reads the override or securityfs.
func (s *System) IMAList() ([]byte, error) {
	b, _, err := kexec.ReadIMAList(s.IMALog)
	return b, err
}

// Lockdown reads /sys/kernel/security/lockdown.
func (s *System) Lockdown() string { return kexec.LockdownAt("") }

// KexecLoadDisabled reads the sysctl.
func (s *System) KexecLoadDisabled() bool { return kexec.KexecLoadDisabledAt("") }

// Kallsyms reads /proc/kallsyms.
func (s *System) Kallsyms() (kexec.KallsymsFacts, error) { return kexec.ReadKallsyms("") }

// TPMDevice is the named device (which must exist), the first default
// device that exists, or NoTPM.
func (s *System) TPMDevice() (string, error) {
	if s.TPM != "" {
		if _, err := os.Stat(s.TPM); err != nil {
			return "", fmt.Errorf("%w: --tpm-device: %w", ErrTPM, err)
		}
		return s.TPM, nil
	}
	for _, p := range tpmDefaults {
		if _, err := os.Stat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return NoTPM, nil
}

// OpenTPM opens the TPM. A named device that cannot be opened is an error;
// so is a default device that exists but cannot be opened.
func (s *System) OpenTPM() (TPM, string, error) {
	if s.TPM != "" {
		t, err := tpm.Open(s.TPM)
		if err != nil {
			return nil, "", fmt.Errorf("%w: --tpm-device %s: %w", ErrTPM, s.TPM, err)
		}
		return t, s.TPM, nil
	}
	dev, err := s.TPMDevice()
	if err != nil || dev == NoTPM {
		return nil, dev, err
	}
	t, err := tpm.Open(dev)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s exists but cannot be used: %w", ErrTPM, dev, err)
	}
	return t, dev, nil
}

// BootID reads /proc/sys/kernel/random/boot_id.
func (s *System) BootID() (string, error) { return kexec.BootID() }

// KexecLoaded reads /sys/kernel/kexec_loaded (or kexec_crash_loaded).
func (s *System) KexecLoaded(crash bool) (bool, error) {
	path := "/sys/kernel/kexec_loaded"
	if crash {
		path = "/sys/kernel/kexec_crash_loaded"
	}
	b, err := kexec.ReadInput("status", path, kexec.MaxSmallBytes)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

func archFlag(arch string) uint64 {
	switch arch {
	case plan.ArchAMD64:
		return kexec.ArchX86_64
	case plan.ArchARM64:
		return kexec.ArchAArch64
	}
	return kexec.ArchDefault
}

// kexecOnCrash is KEXEC_ON_CRASH of kexec_load.
const kexecOnCrash = 0x1

// KexecLoad calls kexec_load.
func (s *System) KexecLoad(r LoadRequest) error {
	flags := archFlag(r.Arch)
	if r.Crash {
		flags |= kexecOnCrash
	}
	return kexec.Load(r.Entry, r.Segments, flags)
}

// KexecFileLoad calls kexec_file_load.
func (s *System) KexecFileLoad(r FileLoadRequest) error {
	flags := 0
	if r.Crash {
		flags |= kexec.FileOnCrash
	}
	return kexec.FileLoad(r.Kernel, r.Initrd, r.Cmdline, flags)
}

// Unload unloads with both syscalls; it fails only when both fail.
func (s *System) Unload(crash bool) error {
	flags := archFlag(runtime.GOARCH)
	if crash {
		flags |= kexecOnCrash
	}
	errLoad := kexec.UnloadLoad(flags)
	unloadFile := kexec.UnloadFile
	if crash {
		unloadFile = kexec.UnloadFileCrash // the normal image stays loaded
	}
	errFile := unloadFile()
	if errLoad != nil && errFile != nil {
		return errLoad
	}
	return nil
}

// Reboot calls reboot(LINUX_REBOOT_CMD_KEXEC).
func (s *System) Reboot() error { return kexec.Exec() }

// Captured is the Host of a tree written by gokexec capture-host (laid out
// like /: sys/firmware/..., sys/kernel/boot_params/data, proc/iomem,
// proc/kallsyms, securityfs): a plan made against it is the plan the
// captured machine would get. It describes; it never acts: the kexec
// calls, the TPM and the binding facts are refused with ErrOffTarget, and
// the TPM fact is left open ("").
type Captured struct {
	Root string
	// MemMap and IMALog override the tree's files, as for System.
	MemMap, IMALog string
}

var _ Host = (*Captured)(nil)

func (c *Captured) first(rels ...string) string {
	for _, p := range rels {
		if _, err := os.Stat(filepath.Join(c.Root, p)); err == nil {
			return filepath.Join(c.Root, p)
		}
	}
	return ""
}

// MemoryMap reads the tree's sys/firmware/memmap, else its proc/iomem.
func (c *Captured) MemoryMap(string) (segment.Map, error) {
	p := c.MemMap
	if p == "" {
		if p = c.first("sys/firmware/memmap", "proc/iomem"); p == "" {
			return nil, fmt.Errorf("%w: the captured tree %s has no memory map", ErrNotDescribed, c.Root)
		}
	}
	m, _, err := kexec.ReadMemoryMap(p)
	return m, err
}

// Firmware reads the tree's boot_params and sys/firmware/efi.
func (c *Captured) Firmware(arch string) (*efi.Host, error) {
	if arch != plan.ArchAMD64 {
		return nil, nil
	}
	return kexec.ReadFirmware(c.Root)
}

// ACPIRSDP is 0: a dry run needs none.
func (c *Captured) ACPIRSDP() uint64 { return 0 }

// DeviceTree reads the tree's sys/firmware/fdt.
func (c *Captured) DeviceTree() ([]byte, error) {
	return kexec.ReadInput("device tree", filepath.Join(c.Root, "sys/firmware/fdt"), kexec.MaxDTBBytes)
}

// IMAList reads the override or the tree's securityfs list.
func (c *Captured) IMAList() ([]byte, error) {
	p := c.IMALog
	if p == "" {
		if p = c.first("sys/kernel/security/ima/binary_runtime_measurements", "sys/kernel/security/integrity/ima/binary_runtime_measurements"); p == "" {
			return nil, kexec.ErrNoIMA
		}
	}
	b, _, err := kexec.ReadIMAList(p)
	return b, err
}

// Lockdown reads the tree's lockdown file.
func (c *Captured) Lockdown() string { return kexec.LockdownAt(c.Root) }

// KexecLoadDisabled reads the tree's sysctl file.
func (c *Captured) KexecLoadDisabled() bool { return kexec.KexecLoadDisabledAt(c.Root) }

// Kallsyms reads the tree's proc/kallsyms (capture-host keeps the IMA names).
func (c *Captured) Kallsyms() (kexec.KallsymsFacts, error) { return kexec.ReadKallsyms(c.Root) }

// TPMDevice is "": the captured machine's TPM is not here.
func (c *Captured) TPMDevice() (string, error) { return "", nil }

// OpenTPM refuses.
func (c *Captured) OpenTPM() (TPM, string, error) { return nil, "", ErrOffTarget }

// BootID refuses.
func (c *Captured) BootID() (string, error) { return "", ErrOffTarget }

// KexecLoaded refuses.
func (c *Captured) KexecLoaded(bool) (bool, error) { return false, ErrOffTarget }

// KexecLoad refuses.
func (c *Captured) KexecLoad(LoadRequest) error { return ErrOffTarget }

// KexecFileLoad refuses.
func (c *Captured) KexecFileLoad(FileLoadRequest) error { return ErrOffTarget }

// Unload refuses.
func (c *Captured) Unload(bool) error { return ErrOffTarget }

// Reboot refuses.
func (c *Captured) Reboot() error { return ErrOffTarget }
