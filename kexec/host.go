package kexec

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/segment"
)

// The host seams' real implementations (package loader defines the
// interfaces; these satisfy them without importing it):
//   - System: the facts of the machine this process runs on (read-only);
//   - Captured: the same facts read from a tree written by gokexec
//     capture-host, for planning off-target; it answers every fact from its
//     files and acts on nothing;
//   - Kernel: the acts (kexec_load, kexec_file_load, unload, reboot,
//     mounting securityfs), with the memfds and opens behind them.

// LoadRequest is one kexec_load.
type LoadRequest struct {
	Entry    uint64
	Segments []segment.Segment
	Arch     string // "amd64", "arm64"
	Crash    bool   // KEXEC_ON_CRASH
}

// FileInput is one file a kexec_file_load hands the kernel: the bytes that
// were read (and hashed, and appraised), and the resolved file they came
// from, if any.
type FileInput struct {
	Name string // names a memfd
	Data []byte
	// Path, when set, is handed to the kernel itself (so its own IMA
	// measures it under that name) if it still holds exactly Data;
	// otherwise, and always when Sealed, the kernel reads a sealed memfd
	// of Data.
	Path   string
	Sealed bool
}

// FileLoadRequest is one kexec_file_load.
type FileLoadRequest struct {
	Kernel  FileInput
	Initrd  *FileInput // nil: no initramfs
	Cmdline string
	Crash   bool // KEXEC_FILE_ON_CRASH
}

// ErrNotDescribed says a host cannot describe what was asked (this
// machine asked for another architecture's memory map, a tree without a
// memory map).
var ErrNotDescribed = errors.New("the host does not describe this")

// ErrSecurityfsUnmounted says the kernel supports securityfs but it is not
// mounted at /sys/kernel/security (the usual state in an initramfs):
// whether IMA is active shows only once it is mounted.
var ErrSecurityfsUnmounted = errors.New("securityfs is not mounted at /sys/kernel/security")

// ErrPrivilege says reading or doing something needs root (CAP_SYS_ADMIN
// or CAP_SYS_BOOT) that this process lacks.
var ErrPrivilege = errors.New("permission denied: this needs root")

// System is the facts of the machine this process runs on. The zero value
// reads everything from the running system; MemMap and IMALog override
// single sources (a /sys/firmware/memmap-style directory or an
// /proc/iomem-style file; a binary list file).
type System struct {
	MemMap string
	IMALog string
}

// MemoryMap reads the override, or this machine's map when arch is its own.
func (s *System) MemoryMap(arch string) (segment.Map, error) {
	if s.MemMap == "" && arch != runtime.GOARCH {
		return nil, fmt.Errorf("%w: planning for %s on %s needs the target's memory map", ErrNotDescribed, arch, runtime.GOARCH)
	}
	m, _, err := ReadMemoryMap(s.MemMap)
	return m, err
}

// Firmware reads boot_params and /sys/firmware/efi when planning for this
// machine's own architecture.
func (s *System) Firmware(arch string) (*efi.Host, error) {
	if arch != runtime.GOARCH {
		return nil, nil
	}
	return ReadFirmware("")
}

// ACPIRSDP reads /sys/firmware/efi/systab.
func (s *System) ACPIRSDP() uint64 { return ACPIRSDP() }

// DeviceTree reads /sys/firmware/fdt.
func (s *System) DeviceTree() ([]byte, error) {
	return ReadInput("device tree", SysfsFDT, MaxDTBBytes)
}

// IMAList reads the override or securityfs. No list because the kernel
// has no IMA is ErrNoIMA; securityfs not mounted is
// ErrSecurityfsUnmounted; a list root may read and this process may not
// wraps ErrPrivilege.
func (s *System) IMAList() ([]byte, error) {
	if s.IMALog == "" && !securityfsMounted("/sys/kernel/security") {
		if fsSupported("securityfs") {
			return nil, ErrSecurityfsUnmounted
		}
		return nil, ErrNoIMA
	}
	b, _, err := ReadIMAList(s.IMALog)
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w: %w", ErrPrivilege, err)
	}
	return b, err
}

// securityfsMagic is SECURITYFS_MAGIC (statfs f_type).
const securityfsMagic = 0x73636673

func securityfsMounted(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == securityfsMagic
}

// fsSupported reports whether /proc/filesystems lists name.
func fsSupported(name string) bool {
	b, err := readSmall("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// Lockdown reads /sys/kernel/security/lockdown.
func (s *System) Lockdown() string { return LockdownAt("") }

// KexecLoadDisabled reads the sysctl.
func (s *System) KexecLoadDisabled() bool { return KexecLoadDisabledAt("") }

// Kallsyms reads /proc/kallsyms.
func (s *System) Kallsyms() (KallsymsFacts, error) { return ReadKallsyms("") }

// BootID reads /proc/sys/kernel/random/boot_id.
func (s *System) BootID() (string, error) { return BootID() }

// KexecLoaded reads /sys/kernel/kexec_loaded (or kexec_crash_loaded).
func (s *System) KexecLoaded(crash bool) (bool, error) { return loadedAt("", crash) }

func loadedAt(root string, crash bool) (bool, error) {
	rel := "sys/kernel/kexec_loaded"
	if crash {
		rel = "sys/kernel/kexec_crash_loaded"
	}
	b, err := ReadInput("status", filepath.Join(rootOr(root), rel), MaxSmallBytes)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// CrashFacts reads this machine's crash facts; a MemMap file stands for
// /proc/iomem.
func (s *System) CrashFacts(notes bool) (*CrashFacts, error) {
	return ReadCrashFacts("", iomemFile(s.MemMap), notes)
}

// iomemFile is override when it names a file (an /proc/iomem copy), else
// "" (the host's own /proc/iomem).
func iomemFile(override string) string {
	if override == "" {
		return ""
	}
	if st, err := os.Stat(override); err == nil && !st.IsDir() {
		return override
	}
	return ""
}

// Captured is the facts of a tree written by gokexec capture-host (laid
// out like /: sys/firmware/..., sys/kernel/boot_params/data, proc/iomem,
// proc/kallsyms, securityfs, boot_id, kexec_loaded): a plan made against
// it is the plan the captured machine would get. Every fact is read from
// the tree; a fact the tree lacks is an error naming the file (a missing
// IMA list: the captured machine had none).
//
// The tree is untrusted input: every path is resolved inside it (a
// symbolic link that leads out is refused with ErrEscapes, and nothing
// outside is read or echoed), every file is opened non-blocking and read
// only when it is a regular file (a FIFO never hangs), and every read is
// bounded.
type Captured struct {
	Root string
	// MemMap and IMALog override the tree's files, as for System (they
	// are the user's own files, read as inputs).
	MemMap, IMALog string
}

func (c *Captured) tree() tree { return tree{c.Root} }

// MemoryMap reads the tree's sys/firmware/memmap, else its proc/iomem.
func (c *Captured) MemoryMap(string) (segment.Map, error) {
	if c.MemMap != "" {
		m, _, err := ReadMemoryMap(c.MemMap)
		return m, err
	}
	t := c.tree()
	for _, rel := range []string{"sys/firmware/memmap", "proc/iomem"} {
		if !exists(t, rel) {
			continue
		}
		b, dir, err := readMemoryMapIn(t, rel)
		if err != nil {
			return nil, err
		}
		var m segment.Map
		if dir != nil {
			m, err = segment.ParseSysfsMemmap(dir)
		} else {
			m, err = segment.ParseIomemUsable(bytes.NewReader(b))
		}
		if err != nil {
			return nil, fmt.Errorf("memory map %s: %w", t.name(rel), err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: the captured tree %s has no memory map", ErrNotDescribed, c.Root)
}

// Firmware reads the tree's boot_params and sys/firmware/efi.
func (c *Captured) Firmware(arch string) (*efi.Host, error) {
	if arch != "amd64" {
		return nil, nil
	}
	return firmwareIn(c.tree())
}

// ACPIRSDP reads the tree's sys/firmware/efi/systab.
func (c *Captured) ACPIRSDP() uint64 {
	b, err := c.tree().readFile("system file", "sys/firmware/efi/systab", MaxSmallBytes)
	if err != nil {
		return 0
	}
	return parseSystab(string(b))
}

// DeviceTree reads the tree's sys/firmware/fdt.
func (c *Captured) DeviceTree() ([]byte, error) {
	return c.tree().readFile("device tree", "sys/firmware/fdt", MaxDTBBytes)
}

// IMAList reads the override or the tree's securityfs list.
func (c *Captured) IMAList() ([]byte, error) {
	if c.IMALog != "" {
		b, _, err := ReadIMAList(c.IMALog)
		return b, err
	}
	t := c.tree()
	for _, rel := range []string{"sys/kernel/security/ima/binary_runtime_measurements", "sys/kernel/security/integrity/ima/binary_runtime_measurements"} {
		if exists(t, rel) {
			return t.readFile("IMA list", rel, MaxIMAListBytes)
		}
	}
	return nil, ErrNoIMA
}

// Lockdown reads the tree's lockdown file.
func (c *Captured) Lockdown() string { return lockdownIn(c.tree()) }

// KexecLoadDisabled reads the tree's sysctl file.
func (c *Captured) KexecLoadDisabled() bool { return kexecLoadDisabledIn(c.tree()) }

// Kallsyms reads the tree's proc/kallsyms (capture-host keeps the IMA
// names). A tree without it is an error, never a silent "no".
func (c *Captured) Kallsyms() (KallsymsFacts, error) { return kallsymsIn(c.tree()) }

// BootID reads the tree's proc/sys/kernel/random/boot_id.
func (c *Captured) BootID() (string, error) {
	b, err := c.tree().readFile("boot id", "proc/sys/kernel/random/boot_id", MaxSmallBytes)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// KexecLoaded reads the tree's sys/kernel/kexec_loaded (or
// kexec_crash_loaded).
func (c *Captured) KexecLoaded(crash bool) (bool, error) {
	rel := "sys/kernel/kexec_loaded"
	if crash {
		rel = "sys/kernel/kexec_crash_loaded"
	}
	b, err := c.tree().readFile("status", rel, MaxSmallBytes)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// CrashFacts reads the captured tree's crash facts.
func (c *Captured) CrashFacts(notes bool) (*CrashFacts, error) {
	return readCrashFactsIn(c.tree(), iomemFile(c.MemMap), notes)
}

// Kernel is the acts on the running kernel. Tests never call its methods
// outside a QEMU guest.
type Kernel struct{}

func archFlag(arch string) uint64 {
	switch arch {
	case "amd64":
		return ArchX86_64
	case "arm64":
		return ArchAArch64
	}
	return ArchDefault
}

// KexecLoad calls kexec_load.
func (Kernel) KexecLoad(r LoadRequest) error {
	flags := archFlag(r.Arch)
	if r.Crash {
		flags |= OnCrash
	}
	return Load(r.Entry, r.Segments, flags)
}

// KexecFileLoad opens what the kernel reads (OpenFileInput) and calls
// kexec_file_load.
func (Kernel) KexecFileLoad(r FileLoadRequest) error {
	k, err := OpenFileInput(r.Kernel)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer k.Close()
	var rd *os.File
	if r.Initrd != nil {
		if rd, err = OpenFileInput(*r.Initrd); err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		defer rd.Close()
	}
	flags := 0
	if r.Crash {
		flags |= FileOnCrash
	}
	return FileLoad(k, rd, r.Cmdline, flags)
}

// OpenFileInput opens what kexec_file_load reads for in: the file at
// in.Path (not following a link in its last component) when it is not
// Sealed and still holds exactly in.Data, else a sealed memfd holding
// in.Data — so the kernel reads the bytes that were hashed either way.
func OpenFileInput(in FileInput) (*os.File, error) {
	if !in.Sealed && in.Path != "" {
		if f, err := OpenResolved(in.Path); err == nil {
			want := sha256.Sum256(in.Data)
			h := sha256.New()
			if _, err := io.Copy(h, io.LimitReader(f, int64(len(in.Data))+1)); err == nil && bytes.Equal(h.Sum(nil), want[:]) {
				if _, err := f.Seek(0, io.SeekStart); err == nil {
					return f, nil
				}
			}
			f.Close()
		}
	}
	return SealedMemfd(filepath.Base(in.Name), in.Data)
}

// Unload unloads with both syscalls; it fails only when both fail.
func (Kernel) Unload(crash bool) error {
	flags := archFlag(runtime.GOARCH)
	if crash {
		flags |= OnCrash
	}
	errLoad := UnloadLoad(flags)
	unloadFile := UnloadFile
	if crash {
		unloadFile = UnloadFileCrash // the normal image stays loaded
	}
	errFile := unloadFile()
	if errLoad != nil && errFile != nil {
		return errLoad
	}
	return nil
}

// Reboot calls reboot(LINUX_REBOOT_CMD_KEXEC).
func (Kernel) Reboot() error { return Exec() }

// MountSecurityfs mounts securityfs at /sys/kernel/security, as an init
// does.
func (Kernel) MountSecurityfs() error {
	if err := unix.Mount("securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mounting securityfs at /sys/kernel/security: %w (%w)", err, ErrPrivilege)
		}
		return fmt.Errorf("mounting securityfs at /sys/kernel/security: %w", err)
	}
	return nil
}
