package kexec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Size bounds of every file gokexec reads. They are far above what real
// inputs need (a Debian kernel is 8–30 MiB, its initrd 30–100 MiB, a DTB
// well under 1 MiB, a 1,000,000-entry IMA list about 250 MiB) and far below
// what would exhaust a machine's memory; an input over its bound is refused
// before it is read whole.
const (
	MaxKernelBytes    = 512 << 20
	MaxInitrdBytes    = 2 << 30
	MaxDTBBytes       = 8 << 20 // arm64's own limit on a DTB is 2 MiB
	MaxIMAListBytes   = 1 << 30
	MaxKeyBytes       = 1 << 20
	MaxAllowlistBytes = 256 << 20
	MaxSignatureBytes = 64<<10 + 16 // a be16 sig_size plus the header
	MaxMemmapBytes    = 16 << 20
	MaxSmallBytes     = 1 << 20 // sysfs/procfs values: cmdline, lockdown, ...
)

// ErrNotRegular says an input is not a regular file (a device such as
// /dev/zero, a FIFO, a directory).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge says an input is larger than its bound.
var ErrTooLarge = errors.New("larger than gokexec accepts")

// InputError names the input and the file at fault.
type InputError struct {
	What string // "kernel", "--initrd", ...
	Path string
	Err  error
}

func (e *InputError) Error() string { return fmt.Sprintf("%s %s: %v", e.What, e.Path, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// ReadInput reads the regular file at path, at most max bytes. Anything but
// a regular file, and a file with more than max bytes (whatever its stat
// size says: procfs and securityfs files report 0), is refused with an
// *InputError naming what and path that wraps ErrNotRegular or
// ErrTooLarge. The file is opened once and read through that descriptor.
func ReadInput(what, path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &InputError{what, path, err}
	}
	defer f.Close()
	return readOpen(what, path, f, max)
}

func readOpen(what, path string, f *os.File, max int64) ([]byte, error) {
	st, err := checkOpen(what, path, f, max)
	if err != nil {
		return nil, err
	}
	// Size the buffer from stat but never trust it: read at most max+1. A
	// pseudo-file (securityfs, procfs) says 0: start at pseudoReadSize,
	// since each read of a list the kernel generates costs a walk of it.
	size := st.Size()
	if size == 0 {
		size = pseudoReadSize
	}
	buf := make([]byte, 0, min(size, max)+1)
	b, err := readAllInto(buf, io.LimitReader(f, max+1))
	if err != nil {
		return nil, &InputError{what, path, err}
	}
	if int64(len(b)) > max {
		return nil, &InputError{what, path, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)}
	}
	return b, nil
}

// checkOpen refuses f, opened from path, unless it is a regular file of
// at most max bytes by stat (what is read must still be bounded: stat's
// size is not trusted), and returns its stat.
func checkOpen(what, path string, f *os.File, max int64) (fs.FileInfo, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, &InputError{what, path, err}
	}
	if !st.Mode().IsRegular() {
		return nil, &InputError{what, path, fmt.Errorf("%w (%s)", ErrNotRegular, fileKind(st.Mode()))}
	}
	if st.Size() > max {
		return nil, &InputError{what, path, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, st.Size(), max)}
	}
	return st, nil
}

// pseudoReadSize is the first read of a file whose size stat does not
// tell.
const pseudoReadSize = 64 << 10

// readAllInto reads r to its end into b, doubling b when it fills (one
// read call per doubling for a pseudo-file whose size stat did not tell:
// the IMA list is generated again from its start by every read).
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), 2*cap(b)+1)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "mode " + m.String()
}

// OpenResolved opens path for reading without following a symbolic link in
// its last component; callers pass a path they resolved
// (filepath.EvalSymlinks) so that what is measured under that name is what
// was read.
func OpenResolved(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
}

// ReadResolved is ReadInput for a path already resolved: the last component
// must not be a symbolic link (it may have become one since it was
// resolved).
func ReadResolved(what, path string, max int64) ([]byte, error) {
	f, err := OpenResolved(path)
	if err != nil {
		return nil, &InputError{what, path, err}
	}
	defer f.Close()
	return readOpen(what, path, f, max)
}

// CopyResolved copies the regular file at path (resolved, as ReadResolved
// takes it) to the end of dst, within max bytes, and returns how many
// bytes it copied. The kernel copies (sendfile), so the bytes do not pass
// through this process's memory, except on file systems that refuse
// sendfile, where a 1 MiB buffer carries them. A file over max is
// ErrTooLarge (dst then holds a part of it: the caller discards dst).
func CopyResolved(what, path string, max int64, dst *os.File) (int64, error) {
	f, err := OpenResolved(path)
	if err != nil {
		return 0, &InputError{what, path, err}
	}
	defer f.Close()
	if _, err := checkOpen(what, path, f, max); err != nil {
		return 0, err
	}
	n, err := sendAll(dst, f, max+1)
	if err != nil {
		return n, &InputError{what, path, err}
	}
	if n > max {
		return n, &InputError{what, path, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)}
	}
	return n, nil
}

// sendAll copies src to dst until src ends or limit bytes were copied,
// with sendfile, or through a buffer where the file systems do not take
// sendfile.
func sendAll(dst, src *os.File, limit int64) (int64, error) {
	var n int64
	for n < limit {
		m, err := unix.Sendfile(int(dst.Fd()), int(src.Fd()), nil, int(min(limit-n, 1<<30)))
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.EINVAL || err == unix.ENOSYS {
			if n != 0 {
				return n, err
			}
			return io.CopyBuffer(dst, io.LimitReader(src, limit), make([]byte, 1<<20))
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += int64(m)
	}
	return n, nil
}

// readSmall reads a sysfs or procfs value (bounded by MaxSmallBytes).
func readSmall(path string) ([]byte, error) {
	return ReadInput("system file", path, MaxSmallBytes)
}

// BootID returns the running boot's random id
// (/proc/sys/kernel/random/boot_id), which binds recorded state to the boot
// it was made in.
func BootID() (string, error) {
	b, err := readSmall("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}
