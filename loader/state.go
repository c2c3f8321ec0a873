package loader

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// State is a Loaded as the two-process command line keeps it between the
// load and the exec: the options, the plan, the binding, and the bytes the
// load read (kernel, initrd, DTB), so the exec never opens the kernel's
// files again (a separate /boot may be unmounted by then). A bootloader
// that loads and boots in one process never needs it.
type State struct {
	Options    Options     `json:"options"`
	Plan       *plan.Plan  `json:"plan"`
	Appraisals []Appraisal `json:"appraisals,omitempty"`
	// Sealed: the inputs were appraised, so a kexec_file_load hands the
	// kernel sealed memfds of the bytes, never the files.
	Sealed bool `json:"sealed,omitempty"`
	// Paths are the resolved files kernel and initrd were read from ("":
	// none); a kexec_file_load hands the kernel the file while it still
	// holds the bytes.
	Paths [2]string `json:"paths"`
	// DTBName is where the device tree came from ("": none).
	DTBName string `json:"dtb_name,omitempty"`
	// Binding ties the state to the image the load put into the kernel.
	Binding *Binding `json:"binding,omitempty"`
	// Finalized, once Finalize has run, is how many of the running
	// kernel's entries the loaded hand-over list (Handover) accounts for.
	// A later finalize continues from that list, since the TPM already
	// holds the loader's entries.
	Finalized *Finalized `json:"finalized,omitempty"`

	// Kept beside state.json (StateDir), checked against the plan's
	// digests when read back (see Read).
	Handover, Kernel, Initrd, DTB []byte `json:"-"`

	// KeptFiles identifies the kept kernel, initrd and DTB files as Save
	// left them, by file name. Read hashes a kept input again only when
	// its file is no longer that one: every write to a file moves its
	// change time, which user space cannot set, and a replaced file has
	// another inode.
	KeptFiles map[string]KeptFile `json:"kept_files,omitempty"`

	// kept, set by Read, says where Kernel, Initrd and DTB were read from
	// and checked: Resume does not hash them again and Save does not write
	// them there again, as long as they are still the bytes Read checked.
	kept *keptInputs
	// copied: Kernel, Initrd and DTB as KeepImage copied them into a
	// StateDir, which Save moves into place instead of writing them.
	copied [3]*keptFile
}

// keptInputs are the kept inputs of a StateDir as Read checked them: the
// directory, the plan's digests they matched, and the byte slices that
// matched them (the same memory, not copies).
type keptInputs struct {
	dir     StateDir
	digests [3]string // kernel, initrd, DTB ("": none)
	bytes   [3][]byte
}

// inputDigests are the plan's digests of kernel, initrd and DTB ("": none).
func inputDigests(p *plan.Plan) [3]string {
	d := [3]string{p.Kernel.SHA256}
	if p.Initrd != nil {
		d[1] = p.Initrd.SHA256
	}
	if p.DTBInput != nil {
		d[2] = p.DTBInput.SHA256
	}
	return d
}

// keptChecked reports whether s's kernel, initrd and DTB are the very
// bytes Read checked against the digests s's plan still records: a State
// whose plan or bytes were replaced since is checked again.
func (s *State) keptChecked() bool {
	k := s.kept
	if k == nil || s.Plan == nil || k.digests != inputDigests(s.Plan) {
		return false
	}
	for i, b := range [3][]byte{s.Kernel, s.Initrd, s.DTB} {
		if !sameBytes(b, k.bytes[i]) {
			return false
		}
	}
	return true
}

// sameBytes reports whether a and b are the same memory, not merely equal.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// KeptFile identifies a kept file: its device and inode, size, and
// modification and change times (nanoseconds since the epoch).
type KeptFile struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

func keptFileOf(st *unix.Stat_t) KeptFile {
	return KeptFile{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// Finalized records a completed finalize.
type Finalized struct {
	KernelEntries int    `json:"kernel_entries"`
	ListSHA256    string `json:"list_sha256"`
}

// State returns the load as a State, for a later process to Resume.
func (l *Loaded) State() *State {
	if l.finalized != nil && l.finalized.ListSHA256 == "" {
		l.finalized.ListSHA256 = plan.Digest(l.handover)
	}
	return &State{Options: l.opts, Plan: l.plan, Appraisals: l.appraisals, Sealed: l.sealed, Paths: l.paths,
		DTBName: l.dtbName, Binding: l.binding, Finalized: l.finalized, Handover: l.handover,
		Kernel: l.in.Kernel, Initrd: l.in.Initrd, DTB: l.in.DTB, kept: l.kept, copied: l.copied}
}

// Resume makes a Loaded of a State another process recorded. It reads the
// host's facts again (memory map, firmware) but takes kernel, initrd and
// DTB from the state: nothing re-reads the kernel's files. Finalize then
// checks, as always, that the load is still what the kernel has loaded.
func Resume(h Host, s *State) (*Loaded, error) {
	if s == nil || s.Plan == nil {
		return nil, ErrNoState
	}
	// A State from Read had its kept bytes checked there (by their
	// files' identity or by hashing); hashing 40 MB again cost the exec
	// as much as the first time.
	rehash := !s.keptChecked()
	if err := s.check([3]bool{rehash, rehash, rehash}); err != nil {
		return nil, err
	}
	o := s.Options
	in := &plan.Inputs{Arch: s.Plan.Arch, PageSize: s.Plan.PageSize, Cmdline: s.Plan.Cmdline,
		KernelPath: s.Plan.Kernel.Path, Kernel: s.Kernel, DTB: s.DTB,
		IMAExtra: o.IMAExtra, MemMin: o.MemMin, MemMax: o.MemMax, IMAOrder: binary.LittleEndian, NoEFI: o.NoEFI}
	if s.Plan.Initrd != nil {
		in.InitrdPath, in.Initrd = s.Plan.Initrd.Path, s.Initrd
	}
	if err := readFacts(h, in, false); err != nil {
		return nil, err
	}
	return &Loaded{host: h, opts: o, in: in, dtbName: s.DTBName, paths: s.Paths, sealed: s.Sealed,
		plan: s.Plan, appraisals: s.Appraisals, binding: s.Binding, finalized: s.Finalized, handover: s.Handover,
		kept: s.kept}, nil
}

// stateDigest is how check hashes (a test counts the calls).
var stateDigest = plan.Digest

// check compares the kept hand-over list and those of the kept kernel,
// initrd and DTB that hash says with the recorded digests.
func (s *State) check(hash [3]bool) error {
	if s.Finalized != nil && stateDigest(s.Handover) != s.Finalized.ListSHA256 {
		return fmt.Errorf("%w: %s does not match the recorded hand-over", ErrStateDir, handoverFile)
	}
	if hash[0] && stateDigest(s.Kernel) != s.Plan.Kernel.SHA256 {
		return fmt.Errorf("%w: the kept kernel does not match the recorded digest", ErrStateDir)
	}
	if p := s.Plan.Initrd; hash[1] && p != nil && stateDigest(s.Initrd) != p.SHA256 {
		return fmt.Errorf("%w: the kept initrd does not match the recorded digest", ErrStateDir)
	}
	if p := s.Plan.DTBInput; hash[2] && p != nil && stateDigest(s.DTB) != p.SHA256 {
		return fmt.Errorf("%w: the kept device tree does not match the recorded digest", ErrStateDir)
	}
	return nil
}

// StateDir is the directory where the command line keeps a State between
// the load and the exec. It holds the options, the plan (with every
// input's digest), the bytes the load read and, after a finalize, the
// hand-over list it loaded. Everything in it steers what the machine boots, so:
//   - the directory is created 0700 and must be owned by this process's
//     effective user (root, for a real load) and have no group or other
//     permissions, checked whenever it is used — an existing directory
//     that fails the check is refused, never reused or repaired;
//   - files are opened relative to the checked directory (openat) with
//     O_NOFOLLOW, written to a fresh O_EXCL temporary and renamed into
//     place, so a link planted in the directory is never followed;
//   - files read back must be regular, owned like the directory, not
//     writable by group or others, and within a size bound;
//   - a load made from KeepImage uses its inputs from files it created
//     in the directory (fresh random names, mode 0600) and mapped, which
//     Save then renames into place: writing them while the load runs
//     would change what is loaded, which only the directory's owner can;
//   - a kept input is trusted without hashing only while its file is the
//     one Save wrote (same device, inode, size, modification and change
//     time): that guards against accidents, as the digests beside it do,
//     since whoever can write the directory can rewrite state.json too.

// DefaultStateDir is where the command line records a load for the exec:
// /run survives until systemd-shutdown's final reboot.
const DefaultStateDir StateDir = "/run/gokexec"

type StateDir string

const (
	handoverFile     = "handover.bin"
	kernelFile       = "kernel.bin"
	initrdFile       = "initrd.bin"
	dtbFile          = "dtb.bin"
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
// following links, and returns the file's identity once in place.
func writeStateFile(dir, name string, b []byte) (KeptFile, error) {
	fd, err := stateDirFD(dir, true)
	if err != nil {
		return KeptFile{}, err
	}
	defer unix.Close(fd)
	tmp, f, err := createStateTemp(dir, fd, name, unix.O_WRONLY)
	if err != nil {
		return KeptFile{}, err
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	renamed := false
	if werr == nil {
		werr = unix.Renameat(fd, tmp, fd, name)
		renamed = werr == nil
	}
	// The identity after the rename, which sets the change time.
	var st unix.Stat_t
	if werr == nil {
		werr = unix.Fstat(int(f.Fd()), &st)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		if !renamed {
			_ = unix.Unlinkat(fd, tmp, 0)
		}
		return KeptFile{}, fmt.Errorf("state: %s/%s: %w", dir, name, werr)
	}
	return keptFileOf(&st), nil
}

// createStateTemp creates a new file for name in the checked directory fd
// (dir), under a fresh temporary name, opened with access (unix.O_WRONLY
// or unix.O_RDWR) and never through a link.
func createStateTemp(dir string, fd int, name string, access int) (string, *os.File, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", nil, fmt.Errorf("state: %w", err)
	}
	tmp := "." + name + "." + hex.EncodeToString(rnd[:])
	tfd, err := unix.Openat(fd, tmp, access|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("state: %s/%s: %w", dir, tmp, err)
	}
	return tmp, os.NewFile(uintptr(tfd), filepath.Join(dir, tmp)), nil
}

// moveStateFile renames tmp in dir to name, without following links, and
// returns the file's identity once in place.
func moveStateFile(dir, tmp, name string) (KeptFile, error) {
	fd, err := stateDirFD(dir, false)
	if err != nil {
		return KeptFile{}, err
	}
	defer unix.Close(fd)
	if err := unix.Renameat(fd, tmp, fd, name); err != nil {
		return KeptFile{}, fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return KeptFile{}, fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return KeptFile{}, fmt.Errorf("%w: %s/%s is not a regular file", ErrStateDir, dir, name)
	}
	return keptFileOf(&st), nil
}

// readStateFile reads name from the checked dir and returns the file's
// identity as it was once read. A missing file is ErrNoState.
func readStateFile(dir, name string, max int64) ([]byte, KeptFile, error) {
	fd, err := stateDirFD(dir, false)
	if err != nil {
		return nil, KeptFile{}, err
	}
	defer unix.Close(fd)
	ffd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == unix.ENOENT:
		return nil, KeptFile{}, ErrNoState
	case err == unix.ELOOP:
		return nil, KeptFile{}, fmt.Errorf("%w: %s/%s is a symbolic link", ErrStateDir, dir, name)
	case err != nil:
		return nil, KeptFile{}, fmt.Errorf("state: %s/%s: %w", dir, name, err)
	}
	f := os.NewFile(uintptr(ffd), filepath.Join(dir, name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(ffd, &st); err != nil {
		return nil, KeptFile{}, fmt.Errorf("state: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, KeptFile{}, fmt.Errorf("%w: %s/%s is not a regular file", ErrStateDir, dir, name)
	}
	if err := checkOwner(filepath.Join(dir, name), &st, 0o022); err != nil {
		return nil, KeptFile{}, err
	}
	// Sized from stat (bounded, never trusted): io.ReadAll's growing
	// buffer held twice the kept initrd, and copied it over and over, at -e.
	b := make([]byte, 0, min(st.Size, max)+1)
	r := io.LimitReader(f, max+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, KeptFile{}, fmt.Errorf("state: %s/%s: %w", dir, name, err)
		}
	}
	if int64(len(b)) > max {
		return nil, KeptFile{}, fmt.Errorf("%w: %s/%s is larger than %d bytes", ErrStateDir, dir, name, max)
	}
	// Stat again once read: a write while it was read moved the change
	// time, so the identity returned vouches for the bytes returned.
	if err := unix.Fstat(ffd, &st); err != nil {
		return nil, KeptFile{}, fmt.Errorf("state: %w", err)
	}
	return b, keptFileOf(&st), nil
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

// Save records s: the kept bytes first, state.json last, so a state.json
// always finds the files it names. s.KeptFiles is set to the kept input
// files as Save leaves them.
func (d StateDir) Save(s *State) error {
	// A finalize never changes the inputs: when they were read from this
	// directory and checked against the same digests, they are there
	// already (a later Read checks that they are still those files).
	kept := s.keptChecked() && s.kept.dir == d
	ids := map[string]KeptFile{}
	for i, f := range []struct {
		name  string
		data  []byte
		input bool
	}{{kernelFile, s.Kernel, true}, {initrdFile, s.Initrd, true}, {dtbFile, s.DTB, true}, {handoverFile, s.Handover, false}} {
		if f.input && kept {
			if id, ok := s.KeptFiles[f.name]; ok && f.data != nil {
				ids[f.name] = id
			}
			continue
		}
		// An input KeepImage copied into d: moved into place once, then
		// left there.
		if c := s.copiedTo(d, i, f.data); c != nil {
			if !c.moved {
				id, err := moveStateFile(d.dir(), c.tmp, f.name)
				if err != nil {
					return err
				}
				c.moved, c.id = true, id
			}
			ids[f.name] = c.id
			continue
		}
		if f.data == nil {
			if err := removeStateFile(d.dir(), f.name); err != nil {
				return err
			}
			continue
		}
		id, err := writeStateFile(d.dir(), f.name, f.data)
		if err != nil {
			return err
		}
		if f.input {
			ids[f.name] = id
		}
	}
	s.KeptFiles = ids
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, err = writeStateFile(d.dir(), stateFile, b)
	return err
}

// copiedTo returns input i's keptFile when data are its bytes, copied into
// d by KeepImage.
func (s *State) copiedTo(d StateDir, i int, data []byte) *keptFile {
	if i >= len(s.copied) {
		return nil
	}
	c := s.copied[i]
	if c == nil || c.dir.dir() != d.dir() || !sameBytes(c.b, data) {
		return nil
	}
	return c
}

// Read reads the recorded State, after checking the directory and the
// files as StateDir's doc says, and the kept bytes against the plan's
// digests: by hashing them, or, for a kept input file that is still the
// one Save wrote (KeptFiles), by that identity. No record is ErrNoState.
func (d StateDir) Read() (*State, error) {
	b, _, err := readStateFile(d.dir(), stateFile, maxStateBytes)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: %w", d.dir(), err)
	}
	if s.Plan == nil {
		return nil, fmt.Errorf("%w: %s records no plan", ErrStateDir, stateFile)
	}
	kept := []struct {
		name string
		dst  *[]byte
		max  int64
		want bool
		id   KeptFile // as read
		err  error
	}{{name: kernelFile, dst: &s.Kernel, max: kexec.MaxKernelBytes, want: true},
		{name: initrdFile, dst: &s.Initrd, max: kexec.MaxInitrdBytes, want: s.Plan.Initrd != nil},
		{name: dtbFile, dst: &s.DTB, max: kexec.MaxDTBBytes, want: s.Plan.DTBInput != nil},
		{name: handoverFile, dst: &s.Handover, max: maxHandoverBytes, want: s.Finalized != nil}}
	// An input whose file is still the one Save wrote is not hashed
	// again (hashing the kept 40 MB was most of -e's own time under
	// emulation); any other is.
	//
	// The files are read side by side: where IMA measures what root reads
	// (tmpfs too), the kernel hashes each of them at its open, and on more
	// than one core those hashes overlap.
	var wg sync.WaitGroup
	for i := range kept {
		if k := &kept[i]; k.want {
			wg.Add(1)
			go func() {
				defer wg.Done()
				*k.dst, k.id, k.err = readStateFile(d.dir(), k.name, k.max)
			}()
		}
	}
	wg.Wait()
	var hash [3]bool
	ids := map[string]KeptFile{}
	for i, k := range kept {
		if !k.want {
			continue
		}
		if k.err != nil {
			return nil, fmt.Errorf("state: %s: %w", k.name, k.err)
		}
		if i < len(hash) {
			rec, ok := s.KeptFiles[k.name]
			hash[i] = !ok || rec != k.id
			ids[k.name] = k.id
		}
	}
	if err := s.check(hash); err != nil {
		return nil, err
	}
	s.KeptFiles = ids // checked now, by identity or by digest
	s.kept = &keptInputs{dir: d, digests: inputDigests(s.Plan), bytes: [3][]byte{s.Kernel, s.Initrd, s.DTB}}
	return &s, nil
}

// Clear removes the recorded state (after an unload, or an exec).
func (d StateDir) Clear() error {
	for _, f := range []string{stateFile, handoverFile, kernelFile, initrdFile, dtbFile} {
		if err := removeStateFile(d.dir(), f); err != nil {
			return err
		}
	}
	return nil
}
