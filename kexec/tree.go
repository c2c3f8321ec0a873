package kexec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// files is where a host's description is read from: the running system
// (sysFiles) or a captured tree (tree). Paths are relative to its root,
// slash-separated. Every read opens the file non-blocking (a FIFO never
// hangs), takes only a regular file (or a directory for a listing), and
// reads within a bound.
type files interface {
	// readFile reads rel, a regular file of at most max bytes.
	readFile(what, rel string, max int64) ([]byte, error)
	// open opens rel (a regular file) for reading.
	open(what, rel string) (*os.File, error)
	// fsys is the tree as an fs.FS whose files are read within max bytes.
	fsys(max int64) fs.FS
	// name is rel as an error names it.
	name(rel string) string
}

// sysFiles is the running system's description, under root ("/").
type sysFiles struct{ root string }

func (s sysFiles) name(rel string) string { return filepath.Join(rootOr(s.root), rel) }

func (s sysFiles) readFile(what, rel string, max int64) ([]byte, error) {
	return ReadInput(what, s.name(rel), max)
}

func (s sysFiles) open(what, rel string) (*os.File, error) {
	f, err := os.OpenFile(s.name(rel), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &InputError{what, s.name(rel), err}
	}
	if err := regular(what, s.name(rel), f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (s sysFiles) fsys(max int64) fs.FS {
	return boundedFS{os.DirFS(rootOr(s.root)), rootOr(s.root), max}
}

// regular refuses an open file that is neither regular nor a directory.
func regular(what, name string, f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return &InputError{what, name, err}
	}
	if !st.Mode().IsRegular() && !st.IsDir() {
		return &InputError{what, name, fmt.Errorf("%w (%s)", ErrNotRegular, fileKind(st.Mode()))}
	}
	return nil
}

// boundedFS reads a directory of the running system through ReadInput.
type boundedFS struct {
	fs.FS
	root string
	max  int64
}

func (b boundedFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	f, err := os.OpenFile(filepath.Join(b.root, name), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := regular("file", filepath.Join(b.root, name), f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (b boundedFS) ReadFile(name string) ([]byte, error) {
	return ReadInput("file", filepath.Join(b.root, name), b.max)
}

// ErrEscapes says a captured tree's path leads out of the tree (a
// symbolic link to elsewhere); nothing outside is read.
var ErrEscapes = errors.New("leads out of the captured tree")

// tree is a captured host tree: every path is resolved inside it
// (os.Root), so a symbolic link that leads out is refused and nothing
// outside the tree is opened, let alone echoed in an error.
type tree struct {
	dir string
}

func (t tree) name(rel string) string { return filepath.Join(t.dir, rel) }

func (t tree) openRoot() (*os.Root, error) {
	r, err := os.OpenRoot(t.dir)
	if err != nil {
		return nil, fmt.Errorf("captured tree: %w", err)
	}
	return r, nil
}

// escapes reports whether rel, with its links followed, lies outside the
// tree (os.Root refuses such a path, but names it only in its error text).
func (t tree) escapes(rel string) bool {
	root, err := filepath.EvalSymlinks(t.dir)
	if err != nil {
		return false
	}
	p, err := filepath.EvalSymlinks(t.name(rel))
	if err != nil {
		return false
	}
	r, err := filepath.Rel(root, p)
	return err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// openIn opens rel inside r, non-blocking, regular files and directories
// only.
func (t tree) openIn(r *os.Root, what, rel string) (*os.File, error) {
	f, err := r.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if t.escapes(rel) {
			err = fmt.Errorf("%w: %w", ErrEscapes, err)
		}
		return nil, &InputError{what, t.name(rel), err}
	}
	if err := regular(what, t.name(rel), f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (t tree) open(what, rel string) (*os.File, error) {
	r, err := t.openRoot()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return t.openIn(r, what, rel)
}

func (t tree) readFile(what, rel string, max int64) ([]byte, error) {
	f, err := t.open(what, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOpen(what, t.name(rel), f, max)
}

func (t tree) fsys(max int64) fs.FS { return treeFS{t, max} }

// treeFS is a tree as an fs.FS.
type treeFS struct {
	t   tree
	max int64
}

func (f treeFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return f.t.open("file", name)
}

func (f treeFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return f.t.readFile("file", name, f.max)
}

// exists reports whether rel exists in fl (without following a last link).
func exists(fl files, rel string) bool {
	switch v := fl.(type) {
	case tree:
		r, err := v.openRoot()
		if err != nil {
			return false
		}
		defer r.Close()
		_, err = r.Lstat(rel)
		return err == nil
	default:
		_, err := os.Lstat(fl.name(rel))
		return err == nil
	}
}

// isDir reports whether rel is a directory of fl.
func isDir(fl files, rel string) bool {
	f, err := fl.open("file", rel)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	return err == nil && st.IsDir()
}

// subFS is fl's directory rel as an fs.FS.
func subFS(fl files, rel string, max int64) (fs.FS, error) {
	return fs.Sub(fl.fsys(max), path.Clean(rel))
}

// readMemoryMapIn reads a memory map from fl: rel is a sysfs memmap
// directory or an iomem file.
func readMemoryMapIn(fl files, rel string) ([]byte, fs.FS, error) {
	if isDir(fl, rel) {
		sub, err := subFS(fl, rel, 64<<10)
		return nil, sub, err
	}
	b, err := fl.readFile("memory map", rel, MaxMemmapBytes)
	return b, nil, err
}

// kallsymsIn reads fl's proc/kallsyms.
func kallsymsIn(fl files) (KallsymsFacts, error) {
	f, err := fl.open("kallsyms", "proc/kallsyms")
	if err != nil {
		return KallsymsFacts{}, fmt.Errorf("kallsyms: %w", err)
	}
	defer f.Close()
	return ParseKallsyms(f)
}

// CaptureKallsyms reads root's proc/kallsyms (non-blocking, bounded like
// ParseKallsyms) and returns what capture-host keeps of it: the IMA
// symbols with zero addresses.
func CaptureKallsyms(root string) ([]byte, error) {
	f, err := sysFiles{root}.open("kallsyms", "proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	err = scanKallsyms(f, imaPrefix, nil, func(typ, name []byte) {
		out.WriteString("0000000000000000 ")
		out.Write(typ)
		out.WriteByte(' ')
		out.Write(name)
		out.WriteByte('\n')
	})
	return out.Bytes(), err
}

var _ io.Reader = (*os.File)(nil)
