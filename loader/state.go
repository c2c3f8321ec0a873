package loader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// State is a Loaded as the two-process command line keeps it between
// gokexec -l and gokexec -e: everything but the inputs' bytes, which are
// re-read from their paths (Resume). A bootloader that loads and boots in
// one process never needs it.
type State struct {
	Options    Options     `json:"options"`
	Plan       *plan.Plan  `json:"plan"`
	Appraisals []Appraisal `json:"appraisals,omitempty"`
	// Binding ties the state to the image the load put into the kernel.
	Binding *Binding `json:"binding,omitempty"`
	// Finalized, once Finalize has run, is how many of the running
	// kernel's entries the loaded hand-over list (Handover, kept beside the
	// state in handover.bin) accounts for. A later finalize continues from
	// that list, since the TPM already holds the loader's entries.
	Finalized *Finalized `json:"finalized,omitempty"`
	Handover  []byte     `json:"-"`
}

// Finalized records a completed finalize.
type Finalized struct {
	KernelEntries int    `json:"kernel_entries"`
	ListSHA256    string `json:"list_sha256"`
}

// State returns the load as a State, for a later process to Resume.
func (l *Loaded) State() *State {
	return &State{Options: l.opts, Plan: l.plan, Appraisals: l.appraisals, Binding: l.binding,
		Finalized: l.finalized, Handover: l.handover}
}

// Resume makes a Loaded of a State another process recorded, with the
// inputs given again in img (normally ReopenImage(s)). Finalize then
// checks, as always, that the inputs still hold the loaded bytes and that
// the load is still what the kernel has loaded.
func Resume(h Host, s *State, img Image) (*Loaded, error) {
	if s == nil || s.Plan == nil {
		return nil, ErrNoState
	}
	o := s.Options
	return &Loaded{host: h, img: img, opts: o, plan: s.Plan, appraisals: s.Appraisals,
		binding: s.Binding, finalized: s.Finalized, handover: s.Handover}, nil
}

// ReopenImage reads the inputs a State recorded from their paths
// (FileImage): the kernel, the initrd, and the DTB unless it was the
// running machine's (which finalize reads from the Host again).
func ReopenImage(s *State) (Image, error) {
	if s == nil || s.Plan == nil {
		return Image{}, ErrNoState
	}
	var initrd, dtb string
	if s.Plan.Initrd != nil {
		initrd = s.Plan.Initrd.Path
	}
	if s.Plan.DTBInput != nil && s.Plan.DTBInput.Path != kexec.SysfsFDT {
		dtb = s.Plan.DTBInput.Path
	}
	return FileImage(s.Plan.Kernel.Path, initrd, dtb, s.Plan.Cmdline, false)
}

// StateDir is the directory where the command line keeps a State between
// -l and -e (DefaultStateDir unless --state-dir). It holds the options, the
// plan (with every input's digest) and, after a finalize, the hand-over
// list it loaded. Everything in it steers what the machine boots, so:
//   - the directory is created 0700 and must be owned by this process's
//     effective user (root, for a real load) and have no group or other
//     permissions, checked whenever it is used — an existing directory
//     that fails the check is refused, never reused or repaired;
//   - files are opened relative to the checked directory (openat) with
//     O_NOFOLLOW, written to a fresh O_EXCL temporary and renamed into
//     place, so a link planted in the directory is never followed;
//   - files read back must be regular, owned like the directory, not
//     writable by group or others, and within a size bound.

// DefaultStateDir is where a load records what -e needs.
const DefaultStateDir StateDir = "/run/gokexec"

type StateDir string

const (
	handoverFile     = "handover.bin"
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

func (d StateDir) dir() string {
	if d == "" {
		return string(DefaultStateDir)
	}
	return string(d)
}

// Save records s (state.json, and handover.bin when s has a hand-over list).
func (d StateDir) Save(s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if s.Handover != nil {
		if err := writeStateFile(d.dir(), handoverFile, s.Handover); err != nil {
			return err
		}
	}
	return writeStateFile(d.dir(), stateFile, b)
}

// Load reads the recorded State, after checking the directory and the
// files as StateDir's doc says. No record is ErrNoState.
func (d StateDir) Load() (*State, error) {
	b, err := readStateFile(d.dir(), stateFile, maxStateBytes)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", d.dir(), err)
	}
	if s.Finalized != nil {
		if s.Handover, err = readStateFile(d.dir(), handoverFile, maxHandoverBytes); err != nil {
			return nil, fmt.Errorf("state: %s: %w", handoverFile, err)
		}
		if plan.Digest(s.Handover) != s.Finalized.ListSHA256 {
			return nil, fmt.Errorf("%w: %s does not match the recorded hand-over", ErrStateDir, handoverFile)
		}
	}
	return &s, nil
}

// Clear removes the recorded state (after an unload).
func (d StateDir) Clear() error {
	if err := removeStateFile(d.dir(), handoverFile); err != nil {
		return err
	}
	return removeStateFile(d.dir(), stateFile)
}

// LoadImage is gokexec -l: Load, then record the State in d. When the
// state cannot be recorded the image is unloaded again (a later -e could
// not finalize it).
func (d StateDir) LoadImage(ctx context.Context, h Host, img Image, o Options) (*Loaded, error) {
	l, err := Load(ctx, h, img, o)
	if err != nil {
		return nil, err
	}
	if err := d.Save(l.State()); err != nil {
		_ = l.Unload()
		return nil, err
	}
	return l, nil
}

// Unload is gokexec -u: unload whatever is loaded and forget the record.
func (d StateDir) Unload(ctx context.Context, h Host) error {
	if err := Unload(ctx, h); err != nil {
		return err
	}
	return d.Clear()
}

// Finalize finalizes the load recorded in d on h, as gokexec -e and
// --finalize do, and records the result. noIMA (--no-ima at -e) leaves
// the IMA hand-over as it was loaded. Nothing loaded is ErrNothingLoaded;
// an image loaded by another tool (no record) is not gokexec's to
// finalize: Report.Foreign, no error.
func (d StateDir) Finalize(ctx context.Context, h Host, noIMA bool) (*Report, error) {
	loaded, err := h.KexecLoaded(false)
	if err != nil {
		return nil, err
	}
	if !loaded {
		return nil, ErrNothingLoaded
	}
	s, err := d.Load()
	if errors.Is(err, ErrNoState) {
		return &Report{Foreign: true}, nil
	}
	if err != nil {
		return nil, err
	}
	if noIMA {
		s.Options.NoIMA = true
	}
	img, err := ReopenImage(s)
	if err != nil {
		return nil, err
	}
	l, err := Resume(h, s, img)
	if err != nil {
		return nil, err
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		return nil, err
	}
	if rep.Skipped {
		return rep, nil
	}
	if err := d.Save(l.State()); err != nil {
		if rep.Extended {
			return nil, fmt.Errorf("%w (%w)", err, ErrExtended)
		}
		return nil, err
	}
	return rep, nil
}

// Exec is gokexec -e: Finalize, then sync (when sync is not nil), then
// reboot into the loaded image. It returns only on failure; a failed
// finalize never reboots, and its error wraps ErrNotRebooted.
func (d StateDir) Exec(ctx context.Context, h Host, noIMA bool, sync func(), report func(*Report)) error {
	rep, err := d.Finalize(ctx, h, noIMA)
	if err != nil {
		return fmt.Errorf("%w; %w", err, ErrNotRebooted)
	}
	if report != nil {
		report(rep)
	}
	if sync != nil {
		sync()
	}
	return h.Reboot()
}
