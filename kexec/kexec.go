// Package kexec is gokexec's only door to the kernel: kexec_load,
// kexec_file_load, reboot(LINUX_REBOOT_CMD_KEXEC), mounting securityfs,
// and the files that describe the running system (/sys/firmware/memmap,
// /proc/iomem, securityfs, /sys/kernel/kexec_loaded, the lockdown state).
// It holds the real implementations of package loader's seams (host.go):
// System and Captured (the facts of this machine, or of a tree written by
// capture-host) and Kernel (the acts, with the memfds and opens behind
// kexec_file_load).
//
// Invariants:
//   - Every file is opened non-blocking and read only when it is a
//     regular file, within a size bound; a captured tree is read through
//     os.Root, so nothing outside it is opened (ErrEscapes).
//   - Nothing else in the project makes these syscalls; everything here
//     executes a plan that was made, and validated, elsewhere.
//   - Errors are *Error values that wrap the errno, so errors.Is(err,
//     unix.EPERM) works, and carry a sentence naming the likely cause.
//   - Tests never call Load, FileLoad, Unload* or Exec on the host; those
//     only run inside QEMU guests.
package kexec

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/segment"
)

// Architecture flags for kexec_load (include/uapi/linux/kexec.h).
const (
	ArchDefault = 0
	ArchX86_64  = 62 << 16
	ArchAArch64 = 183 << 16
)

// kexec_file_load flags.
const (
	FileUnload      = 0x1
	FileOnCrash     = 0x2
	FileNoInitramfs = 0x4
)

// Error is a failed kexec operation.
type Error struct {
	Op     string     // "kexec_load", "kexec_file_load", "reboot", ...
	Errno  unix.Errno // the kernel's answer
	Reason string     // what it most likely means here
	Detail string     // offending values, if known
	// Lockdown is set when kernel lockdown caused the refusal; such an
	// error matches ErrLockdown.
	Lockdown bool
}

// Is lets errors.Is(err, ErrLockdown) match a refusal caused by lockdown.
func (e *Error) Is(target error) bool { return target == ErrLockdown && e.Lockdown }

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %v: %s", e.Op, e.Errno, e.Reason)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Errno }

// ErrLockdown is wrapped (besides EPERM) when kernel lockdown refused.
var ErrLockdown = errors.New("kernel lockdown forbids kexec_load")

// Lockdown returns the active lockdown mode ("none", "integrity",
// "confidentiality") or "" when the kernel has no lockdown LSM.
func Lockdown() string { return LockdownAt("") }

// LockdownAt is Lockdown of the tree at root ("": this system).
func LockdownAt(root string) string { return lockdownIn(sysFiles{root}) }

func lockdownIn(fl files) string {
	b, err := fl.readFile("system file", "sys/kernel/security/lockdown", MaxSmallBytes)
	if err != nil {
		return ""
	}
	return parseLockdown(string(b))
}

// parseLockdown picks the bracketed mode out of "none [integrity] confidentiality".
func parseLockdown(s string) string {
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return ""
}

// Explain maps an errno from op to a typed error with its likely cause.
// lockdown is the value of Lockdown() at the time of the call.
func Explain(op string, errno unix.Errno, lockdown string, detail string) error {
	e := &Error{Op: op, Errno: errno, Detail: detail}
	switch errno {
	case unix.EPERM:
		switch {
		case lockdown != "" && lockdown != "none" && op == "kexec_load":
			e.Reason = fmt.Sprintf("kernel lockdown (%s) forbids kexec_load; kexec_file_load with a signed kernel remains", lockdown)
			e.Lockdown = true
		case lockdown != "" && lockdown != "none":
			e.Reason = fmt.Sprintf("refused under kernel lockdown (%s): the kernel must be signed by a trusted key", lockdown)
		case !HasCapSysBoot():
			e.Reason = "this process lacks CAP_SYS_BOOT (run as root)"
		case KexecLoadDisabled():
			e.Reason = "kexec is disabled until the next boot (sysctl kernel.kexec_load_disabled=1)"
		default:
			e.Reason = "refused by the kernel (lockdown, a security module, or kexec disabled)"
		}
	case unix.ENOSYS:
		e.Reason = "the running kernel has no support for this syscall (CONFIG_KEXEC / CONFIG_KEXEC_FILE off)"
	case unix.EKEYREJECTED:
		e.Reason = "the kernel's signature was rejected"
	case unix.ENOKEY:
		e.Reason = "the kernel is signed with a key the running kernel does not trust, or is unsigned"
	case unix.EBADMSG:
		e.Reason = "the kernel's signature is malformed"
	case unix.ENOEXEC:
		e.Reason = "the running kernel does not recognise the image format"
	case unix.EBUSY:
		e.Reason = "a kexec image is being loaded or executed concurrently"
	case unix.ENOMEM:
		e.Reason = "not enough memory for the segments (or a segment lies outside memory the kernel allows)"
	case unix.EINVAL:
		e.Reason = "the kernel rejected the arguments"
	case unix.E2BIG:
		e.Reason = "too many segments or a command line too long"
	case unix.EADDRNOTAVAIL:
		e.Reason = "a segment's destination is not usable memory"
	default:
		e.Reason = "unexpected error from the kernel"
	}
	return e
}

type kexecSegment struct {
	buf   uintptr
	bufsz uintptr
	mem   uintptr
	memsz uintptr
}

// Load calls kexec_load with the given segments. flags carries the
// architecture (ArchX86_64, ...). The kernel copies the buffers during the
// call; they can be released afterwards.
func Load(entry uint64, segs []segment.Segment, flags uint64) error {
	if len(segs) > segment.MaxSegments {
		return &Error{Op: "kexec_load", Errno: unix.E2BIG, Reason: "too many segments", Detail: fmt.Sprintf("%d > %d", len(segs), segment.MaxSegments)}
	}
	ks := make([]kexecSegment, len(segs))
	for i, s := range segs {
		if len(s.Buf) > 0 {
			ks[i].buf = uintptr(unsafe.Pointer(&s.Buf[0]))
		}
		ks[i].bufsz = uintptr(len(s.Buf))
		ks[i].mem = uintptr(s.Mem)
		ks[i].memsz = uintptr(s.Memsz)
	}
	var p uintptr
	if len(ks) > 0 {
		p = uintptr(unsafe.Pointer(&ks[0]))
	}
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, uintptr(entry), uintptr(len(ks)), p, uintptr(flags), 0, 0)
	runtime.KeepAlive(segs)
	runtime.KeepAlive(ks)
	if errno != 0 {
		var detail string
		if errno == unix.EINVAL || errno == unix.EADDRNOTAVAIL || errno == unix.ENOMEM {
			var b strings.Builder
			fmt.Fprintf(&b, "entry %#x;", entry)
			for _, s := range segs {
				fmt.Fprintf(&b, " %s mem %#x memsz %#x bufsz %#x;", s.Name, s.Mem, s.Memsz, len(s.Buf))
			}
			detail = strings.TrimSuffix(b.String(), ";")
		}
		return Explain("kexec_load", errno, Lockdown(), detail)
	}
	return nil
}

// UnloadLoad unloads an image loaded with kexec_load (zero segments).
func UnloadLoad(flags uint64) error {
	_, _, errno := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, uintptr(flags), 0, 0)
	if errno != 0 {
		return Explain("kexec_load (unload)", errno, Lockdown(), "")
	}
	return nil
}

// FileLoad calls kexec_file_load. initrd may be nil (FileNoInitramfs is then
// added). The cmdline is passed with its terminating NUL, as the kernel wants.
func FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	ifd := -1
	if initrd == nil {
		flags |= FileNoInitramfs
	} else {
		ifd = int(initrd.Fd())
	}
	err := unix.KexecFileLoad(int(kernel.Fd()), ifd, cmdline, flags)
	runtime.KeepAlive(kernel)
	runtime.KeepAlive(initrd)
	if err != nil {
		if errno, ok := err.(unix.Errno); ok {
			return Explain("kexec_file_load", errno, Lockdown(), "")
		}
		return fmt.Errorf("kexec_file_load: %w", err)
	}
	return nil
}

// UnloadFile unloads an image loaded with kexec_file_load.
func UnloadFile() error {
	err := unix.KexecFileLoad(-1, -1, "", FileUnload)
	if errno, ok := err.(unix.Errno); ok {
		return Explain("kexec_file_load (unload)", errno, Lockdown(), "")
	}
	return err
}

// Exec reboots into the loaded image. It returns only on failure.
func Exec() error {
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC); err != nil {
		if errno, ok := err.(unix.Errno); ok {
			if errno == unix.EINVAL {
				return &Error{Op: "reboot", Errno: errno, Reason: "no kexec image is loaded"}
			}
			return Explain("reboot", errno, Lockdown(), "")
		}
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

// Loaded reports /sys/kernel/kexec_loaded.
func Loaded() (bool, error) {
	b, err := readSmall("/sys/kernel/kexec_loaded")
	if err != nil {
		return false, fmt.Errorf("kexec: %w", err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// SealedMemfd returns a memory file holding data, sealed against any
// further change, for kexec_file_load of bytes that exist only in memory
// (a decompressed kernel): what was hashed is what the kernel reads.
func SealedMemfd(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd %s: %w", name, err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd %s: sealing: %w", name, err)
	}
	return f, nil
}
