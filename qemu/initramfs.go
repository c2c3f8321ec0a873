package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/gokexec/gokexec/qemu/proto"
	"github.com/u-root/u-root/pkg/cpio"
)

// Initramfs collects files for a newc cpio archive. Parent directories are
// created implicitly; the base layout (/dev/console, /proc, /sys, /run, /tmp)
// is always present. Later additions of the same guest path replace earlier
// ones.
type Initramfs struct {
	files map[string]ifile
}

type ifile struct {
	host string // read at WriteTo time, when set
	data []byte
	mode uint64 // cpio mode bits including type
	link string
}

// NewInitramfs returns an Initramfs with the base layout.
func NewInitramfs() *Initramfs {
	return &Initramfs{files: map[string]ifile{}}
}

func clean(guestPath string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+guestPath), "/")
	if p == "" || p == "." {
		return "", fmt.Errorf("qemu: initramfs: bad guest path %q", guestPath)
	}
	return p, nil
}

// AddFile adds the host file hostPath at guestPath, keeping its permission bits.
func (f *Initramfs) AddFile(guestPath, hostPath string) error {
	p, err := clean(guestPath)
	if err != nil {
		return err
	}
	st, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("qemu: initramfs: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("qemu: initramfs: %s is not a regular file", hostPath)
	}
	f.files[p] = ifile{host: hostPath, mode: cpio.S_IFREG | uint64(st.Mode().Perm())}
	return nil
}

// AddBytes adds data at guestPath with permission bits mode.
func (f *Initramfs) AddBytes(guestPath string, data []byte, mode os.FileMode) error {
	p, err := clean(guestPath)
	if err != nil {
		return err
	}
	f.files[p] = ifile{data: append([]byte(nil), data...), mode: cpio.S_IFREG | uint64(mode.Perm())}
	return nil
}

// AddSymlink adds a symbolic link at guestPath pointing to target.
func (f *Initramfs) AddSymlink(guestPath, target string) error {
	p, err := clean(guestPath)
	if err != nil {
		return err
	}
	f.files[p] = ifile{link: target, mode: cpio.S_IFLNK | 0o777}
	return nil
}

// AddScenario adds the scenario as /scenario.json after validating it.
func (f *Initramfs) AddScenario(s *proto.Scenario) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("qemu: scenario: %w", err)
	}
	return f.AddBytes(proto.ScenarioPath, b, 0o644)
}

// ErrNotELF is wrapped when AddHostBinary is given something ldd rejects.
var ErrNotELF = errors.New("qemu: not a dynamic or static ELF executable")

// AddHostBinary adds the host executable hostPath at guestPath, plus the
// shared libraries and dynamic loader ldd reports for it, at the same paths
// as on the host, so that e.g. Debian's dynamically linked /sbin/kexec runs
// in the guest.
func (f *Initramfs) AddHostBinary(hostPath, guestPath string) error {
	if err := f.AddFile(guestPath, hostPath); err != nil {
		return err
	}
	libs, err := sharedLibs(hostPath)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := f.AddFile(l, l); err != nil {
			return err
		}
	}
	return nil
}

// sharedLibs lists the absolute library and loader paths ldd prints.
func sharedLibs(bin string) ([]string, error) {
	ldd, err := lookTool("ldd")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(ldd, bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil // static
		}
		return nil, fmt.Errorf("%w: ldd %s: %v: %s", ErrNotELF, bin, err, out)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, "statically linked") {
			return nil, nil
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("qemu: ldd %s: %s", bin, line)
		}
		var p string
		if _, after, ok := strings.Cut(line, "=> "); ok {
			p, _, _ = strings.Cut(after, " ")
		} else if strings.HasPrefix(line, "/") {
			p, _, _ = strings.Cut(line, " ")
		}
		if p != "" && strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, nil
}

// WriteTo writes the archive (uncompressed newc) to the host file p.
func (f *Initramfs) WriteTo(p string) error {
	recs, err := f.records()
	if err != nil {
		return err
	}
	out, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("qemu: initramfs: %w", err)
	}
	w := bufio.NewWriter(out)
	rw := cpio.Newc.Writer(w)
	for _, r := range recs {
		if err := rw.WriteRecord(r); err != nil {
			out.Close()
			return fmt.Errorf("qemu: initramfs: %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		out.Close()
		return fmt.Errorf("qemu: initramfs: %w", err)
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return fmt.Errorf("qemu: initramfs: %w", err)
	}
	return out.Close()
}

func (f *Initramfs) records() ([]cpio.Record, error) {
	dirs := map[string]bool{"dev": true, "proc": true, "sys": true, "run": true, "tmp": true}
	for p := range f.files {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		if fi, ok := f.files[d]; ok && fi.mode&cpio.S_IFMT != cpio.S_IFDIR {
			return nil, fmt.Errorf("qemu: initramfs: %s is both a file and a directory", d)
		}
		names = append(names, d)
	}
	for p := range f.files {
		names = append(names, p)
	}
	sort.Strings(names) // parents sort before their children
	recs := []cpio.Record{}
	for _, n := range names {
		fi, ok := f.files[n]
		switch {
		case !ok:
			recs = append(recs, cpio.Directory(n, 0o755))
		case fi.link != "":
			recs = append(recs, cpio.Symlink(n, fi.link))
		case fi.host != "":
			b, err := os.ReadFile(fi.host)
			if err != nil {
				return nil, fmt.Errorf("qemu: initramfs: %w", err)
			}
			recs = append(recs, cpio.StaticRecord(b, cpio.Info{Name: n, Mode: fi.mode}))
		default:
			recs = append(recs, cpio.StaticRecord(fi.data, cpio.Info{Name: n, Mode: fi.mode}))
		}
		if n == "dev" {
			recs = append(recs, cpio.CharDev("dev/console", 0o600, 5, 1))
		}
	}
	return recs, nil
}

// AgentInitramfs returns an Initramfs holding the guest agent (built for
// arch into workDir) as /init and the scenario as /scenario.json. Add the
// scenario's other files (kernels, tools) before WriteTo.
func AgentInitramfs(ctx context.Context, arch, workDir string, sc *proto.Scenario) (*Initramfs, error) {
	bins, err := BuildGuest(ctx, arch, workDir, AgentPackage)
	if err != nil {
		return nil, err
	}
	ir := NewInitramfs()
	if err := ir.AddFile("/init", bins[AgentPackage]); err != nil {
		return nil, err
	}
	if err := ir.AddScenario(sc); err != nil {
		return nil, err
	}
	return ir, nil
}
