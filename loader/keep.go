package loader

import (
	"bytes"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

// keptFile is an input KeepImage copied into a StateDir: its bytes, mapped
// from the file, and the file's name there until Save moves it into place.
type keptFile struct {
	dir   StateDir
	tmp   string   // the temporary name in dir
	b     []byte   // the file, mapped read-only
	moved bool     // Save renamed it into place
	id    KeptFile // its identity once moved
}

// keptReader is a kept input's reader: the loader takes its bytes as they
// are, like Bytes'.
type keptReader struct {
	held
	k *keptFile
}

// KeepImage is FileImage for a load that is to be recorded in d (Save,
// the command line's -l): each input file is copied by the kernel into a
// new file in d (sendfile), and the Image's bytes are that file, mapped
// read-only. The bytes thus never pass through the process's own memory,
// and the copy the state keeps is made once instead of read and then
// written. Save moves the files into place (kernel.bin, initrd.bin,
// dtb.bin); release removes those it did not (a load that failed or was
// not saved). The mappings last as long as the process; nothing may
// truncate the files meanwhile (the state directory is the caller's
// own, see StateDir).
func (d StateDir) KeepImage(kernel, initrd, dtb, cmdline string) (img Image, release func(), err error) {
	var files []*keptFile
	release = func() {
		for _, k := range files {
			if !k.moved {
				_ = removeStateFile(d.dir(), k.tmp)
			}
		}
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	keep := func(what, path, name string, max int64) (Input, error) {
		r, err := resolve(what, path)
		if err != nil {
			return Input{}, err
		}
		k, err := d.copyIn(what, r, name, max)
		if err != nil {
			return Input{}, err
		}
		files = append(files, k)
		return Input{Name: r, Path: r, R: keptReader{held{bytes.NewReader(k.b), k.b}, k}}, nil
	}
	img, err = imageOf(kernel, initrd, dtb, cmdline, keep)
	return img, release, err
}

// copyIn copies the resolved file path into a new file of d for name and
// maps it.
func (d StateDir) copyIn(what, path, name string, max int64) (*keptFile, error) {
	fd, err := stateDirFD(d.dir(), true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	tmp, f, err := createStateTemp(d.dir(), fd, name, unix.O_RDWR)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the mapping outlives the descriptor
	n, err := kexec.CopyResolved(what, path, max, f)
	if err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return nil, fmt.Errorf("%w: %w", plan.ErrInput, err)
	}
	b := []byte{}
	if n > 0 {
		if err = f.Sync(); err == nil {
			// Populated: the load hashes every page and the kernel copies
			// every page; one call maps them all instead of a fault each.
			b, err = unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		}
		if err != nil {
			_ = unix.Unlinkat(fd, tmp, 0)
			return nil, fmt.Errorf("state: %s/%s: %w", d.dir(), tmp, err)
		}
	}
	return &keptFile{dir: d, tmp: tmp, b: b}, nil
}
