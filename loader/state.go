package loader

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The state directory holds what -e needs from -l: the options, the plan
// (with every input's digest) and, after a finalize, the hand-over list it
// loaded. Everything in it steers what the machine boots, so:
//   - the directory is created 0700 and must be owned by this process's
//     effective user (root, for a real load) and have no group or other
//     permissions, checked whenever it is used — an existing directory
//     that fails the check is refused, never reused or repaired;
//   - files are opened relative to the checked directory (openat) with
//     O_NOFOLLOW, written to a fresh O_EXCL temporary and renamed into
//     place, so a link planted in the directory is never followed;
//   - files read back must be regular, owned like the directory, not
//     writable by group or others, and within a size bound.

// ErrStateDir says the state directory or a file in it is not safe to use.
var ErrStateDir = errors.New("unsafe state directory")

const (
	stateFile        = "state.json"
	maxStateBytes    = 64 << 20
	maxHandoverBytes = 1 << 30
)

// stateDirFD opens dir (creating it 0700 when create is set) and checks its
// owner and mode. The caller closes the descriptor.
func stateDirFD(dir string, create bool) (int, error) {
	if create {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return -1, fmt.Errorf("state: %w", err)
		}
		if err := unix.Mkdir(dir, 0o700); err != nil && err != unix.EEXIST {
			return -1, fmt.Errorf("state: mkdir %s: %w", dir, err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return -1, ErrNoState
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return -1, fmt.Errorf("%w: %s is not a directory (a symbolic link?)", ErrStateDir, dir)
		}
		return -1, fmt.Errorf("state: %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("state: %s: %w", dir, err)
	}
	if err := checkOwner(dir, &st, 0o077); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkOwner refuses st unless it is owned by the effective user and has
// none of the bad permission bits.
func checkOwner(name string, st *unix.Stat_t, bad uint32) error {
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return fmt.Errorf("%w: %s is owned by uid %d, not %d", ErrStateDir, name, st.Uid, uid)
	}
	if perm := st.Mode & 0o7777; perm&bad != 0 {
		return fmt.Errorf("%w: %s has mode %#o (want no %#o bits)", ErrStateDir, name, perm, bad)
	}
	return nil
}

// writeStateFile replaces name in dir with b, atomically and without
// following links.
func writeStateFile(dir, name string, b []byte) error {
	fd, err := stateDirFD(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := "." + name + "." + hex.EncodeToString(rnd[:])
	tfd, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("state: %s/%s: %w", dir, tmp, err)
	}
	f := os.NewFile(uintptr(tfd), filepath.Join(dir, tmp))
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = unix.Renameat(fd, tmp, fd, name)
	}
	if werr != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return fmt.Errorf("state: %s/%s: %w", dir, name, werr)
	}
	return nil
}

// readStateFile reads name from the checked dir. A missing file is
// ErrNoState.
func readStateFile(dir, name string, max int64) ([]byte, error) {
	fd, err := stateDirFD(dir, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == unix.ENOENT:
		return nil, ErrNoState
	case err == unix.ELOOP:
		return nil, fmt.Errorf("%w: %s/%s is a symbolic link", ErrStateDir, dir, name)
	case err != nil:
		return nil, fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	f := os.NewFile(uintptr(ffd), filepath.Join(dir, name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(ffd, &st); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: %s/%s is not a regular file", ErrStateDir, dir, name)
	}
	if err := checkOwner(filepath.Join(dir, name), &st, 0o022); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s/%s is larger than %d bytes", ErrStateDir, dir, name, max)
	}
	return b, nil
}

func removeStateFile(dir, name string) error {
	fd, err := stateDirFD(dir, false)
	if errors.Is(err, ErrNoState) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Unlinkat(fd, name, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	return nil
}

func saveState(dir string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return writeStateFile(dir, stateFile, b)
}

// ErrNoState says -e found no record of a gokexec load.
var ErrNoState = errors.New("no gokexec load recorded")

// LoadState reads the state a load left, after checking the directory and
// the file as the package doc says.
func LoadState(dir string) (*State, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	b, err := readStateFile(dir, stateFile, maxStateBytes)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", dir, err)
	}
	return &s, nil
}

// ClearState removes the recorded state (after an unload).
func ClearState(dir string) error {
	if dir == "" {
		dir = DefaultStateDir
	}
	if err := removeStateFile(dir, handoverFile); err != nil {
		return err
	}
	return removeStateFile(dir, stateFile)
}
