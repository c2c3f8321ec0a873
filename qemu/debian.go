package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DebianSuite and DebianPackages define the Debian guest image's base: what
// mmdebstrap --variant=apt installs, without recommends, besides the
// packages given to BuildDebianImage.
const DebianSuite = "bookworm"

var DebianPackages = []string{"systemd-sysv", "udev", "linux-image-cloud-amd64", "kmod", "initramfs-tools", "zstd"}

// DebianMirror is the archive mmdebstrap uses; GOKEXEC_DEBIAN_MIRROR
// overrides it.
const DebianMirror = "http://deb.debian.org/debian"

// debianBuilderVersion is part of every cache key: bump it when the way the
// base or the image is made changes.
const debianBuilderVersion = "gkt-debian-3"

// DebianAppend is the kernel command line (after DefaultAppend) that boots
// the image: the root file system on the virtio disk, IMA's built-in tcb
// policy (everything root executes, maps executable or reads), and systemd
// kept quiet on the console so the serial log stays readable.
const DebianAppend = "root=/dev/vda rw ima_policy=tcb systemd.show_status=auto"

// AgentUnit runs the guest agent in service mode once multi-user.target is
// reached; ConditionKernelCommandLine keeps it off a boot the harness did
// not start.
const AgentUnit = `[Unit]
Description=gokexec QEMU harness agent (records on the harness's serial line)
After=multi-user.target
ConditionKernelCommandLine=gkt.out

[Service]
Type=simple
ExecStart=/usr/local/sbin/gkt-agent --service
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
`

// DebianOptions is what goes into an image besides the base.
type DebianOptions struct {
	// Debs are local packages installed with dpkg -i inside the image's
	// root (a chroot on the build host: nothing of them runs on the host).
	Debs []string
	// Agent is the guest agent binary (BuildGuestBinaries' AgentPackage);
	// it is installed as /usr/local/sbin/gkt-agent with AgentUnit.
	Agent string
	// Files are host files copied into the image: guest path -> host
	// path, mode 0755 (for tools a scenario installs itself).
	Files map[string]string
	// SizeMiB of the ext4 file system (default 1536; the image is sparse).
	SizeMiB int
	// SeparateBoot puts /boot on a file system of its own (BootLabel, the
	// image's BootDisk), mounted from /etc/fstab as a separate /boot
	// partition is (usual with LVM or LUKS); / keeps an empty /boot.
	SeparateBoot bool
}

// BootLabel is the label of a SeparateBoot image's /boot file system; its
// /etc/fstab mounts LABEL=gkt-boot on /boot.
const BootLabel = "gkt-boot"

// DebianImage is a built (or cached) guest image.
type DebianImage struct {
	Dir     string // cache directory of this image
	Disk    string // raw ext4 image holding the root file system (read-only: run on an Overlay)
	Kernel  string // the image's /boot/vmlinuz-*, copied out
	Initrd  string // the image's /boot/initrd.img-* (initramfs-tools), copied out
	Release string // kernel release (uname -r)
	// BootDisk is the raw ext4 image holding /boot for a SeparateBoot
	// image (attach it as a second virtio disk, on an Overlay), else "".
	BootDisk string
	Key      string // sha256 of everything the image was built from
	// BaseBuild and ImageBuild are how long the base (mmdebstrap) and the
	// image took to build in this call: zero when they came from the cache.
	BaseBuild, ImageBuild time.Duration
}

var debianMu sync.Mutex

// BuildDebianImage returns a bookworm guest image with systemd, udev, the
// cloud kernel and its initramfs-tools initrd, the given packages and the
// harness agent, building what is not in the cache. Two layers are cached
// under CacheDir()/debian, each keyed by a hash of its inputs: the base root
// file system from mmdebstrap (suite, package list, mirror, builder version)
// and the image (base key, the bytes of every .deb and of the agent, the
// builder version). A lock file serialises builds across processes. It
// needs root (mmdebstrap --mode=root, chroot, mke2fs -d keeps owners).
func BuildDebianImage(ctx context.Context, o DebianOptions) (*DebianImage, error) {
	debianMu.Lock()
	defer debianMu.Unlock()
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "debian")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: debian image: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	img := &DebianImage{}
	base, baseKey, took, err := debianBase(ctx, dir)
	if err != nil {
		return nil, err
	}
	img.BaseBuild = took
	h := sha256.New()
	fmt.Fprintf(h, "%s\nbase %s\nsize %d\n%s", debianBuilderVersion, baseKey, o.SizeMiB, AgentUnit)
	if o.SeparateBoot {
		fmt.Fprintf(h, "separate /boot %s\n", BootLabel)
	}
	for _, p := range append(append([]string(nil), o.Debs...), o.Agent) {
		if p == "" {
			continue
		}
		d, err := fileDigest(p)
		if err != nil {
			return nil, fmt.Errorf("qemu: debian image: %w", err)
		}
		fmt.Fprintf(h, "file %s %s\n", filepath.Base(p), d)
	}
	guestPaths := make([]string, 0, len(o.Files))
	for g := range o.Files {
		guestPaths = append(guestPaths, g)
	}
	sort.Strings(guestPaths)
	for _, g := range guestPaths {
		d, err := fileDigest(o.Files[g])
		if err != nil {
			return nil, fmt.Errorf("qemu: debian image: %w", err)
		}
		fmt.Fprintf(h, "guest file %s %s\n", g, d)
	}
	img.Key = hex.EncodeToString(h.Sum(nil))
	img.Dir = filepath.Join(dir, "image-"+img.Key[:16])
	img.Disk = filepath.Join(img.Dir, "root.img")
	img.Kernel = filepath.Join(img.Dir, "vmlinuz")
	img.Initrd = filepath.Join(img.Dir, "initrd.img")
	if o.SeparateBoot {
		img.BootDisk = filepath.Join(img.Dir, "boot.img")
	}
	if rel, err := os.ReadFile(filepath.Join(img.Dir, "done")); err == nil {
		img.Release = strings.TrimSpace(string(rel))
		return img, nil
	}
	start := time.Now()
	if err := buildImage(ctx, base, img, o); err != nil {
		return nil, err
	}
	img.ImageBuild = time.Since(start)
	pruneImages(dir, img.Dir, 3)
	return img, nil
}

// pruneImages removes all but the keep most recent image directories (every
// change to the package makes a new one); keep is never removed.
func pruneImages(dir, keep string, n int) {
	dirs, _ := filepath.Glob(filepath.Join(dir, "image-*"))
	type aged struct {
		path string
		mod  time.Time
	}
	var all []aged
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && d != keep && !strings.HasSuffix(d, ".tmp") {
			all = append(all, aged{d, fi.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	for i, a := range all {
		if i >= n-1 {
			_ = os.RemoveAll(a.path)
		}
	}
}

// DebianBase returns the cached mmdebstrap root directory (building it when
// missing) and how long the build took (zero from the cache). Callers must
// not modify it: copy it first (cp -a), as BuildDebianImage does.
func DebianBase(ctx context.Context) (string, time.Duration, error) {
	debianMu.Lock()
	defer debianMu.Unlock()
	cache, err := CacheDir()
	if err != nil {
		return "", 0, err
	}
	dir := filepath.Join(cache, "debian")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, fmt.Errorf("qemu: debian base: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return "", 0, err
	}
	defer unlock()
	root, _, took, err := debianBase(ctx, dir)
	return root, took, err
}

// debianBase returns the cached mmdebstrap root directory, building it
// when missing.
func debianBase(ctx context.Context, dir string) (root, key string, took time.Duration, err error) {
	mirror := os.Getenv("GOKEXEC_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = DebianMirror
	}
	pkgs := append([]string(nil), DebianPackages...)
	sort.Strings(pkgs)
	sum := sha256.Sum256([]byte(debianBuilderVersion + "\n" + DebianSuite + "\n" + mirror + "\n" + strings.Join(pkgs, ",")))
	key = hex.EncodeToString(sum[:])
	bdir := filepath.Join(dir, "base-"+key[:16])
	root = filepath.Join(bdir, "root")
	if _, err := os.Stat(filepath.Join(bdir, "done")); err == nil {
		return root, key, 0, nil
	}
	mm, err := debianTool("mmdebstrap")
	if err != nil {
		return "", "", 0, err
	}
	if err := os.RemoveAll(bdir); err != nil {
		return "", "", 0, fmt.Errorf("qemu: debian base: %w", err)
	}
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return "", "", 0, fmt.Errorf("qemu: debian base: %w", err)
	}
	start := time.Now()
	args := []string{"--mode=root", "--variant=apt", "--include=" + strings.Join(pkgs, ","),
		`--aptopt=APT::Install-Recommends "false"`,
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		// Lean systemd: no VT gettys (the console is the serial line), a
		// volatile journal, short stop timeouts.
		`--customize-hook=ln -sf /dev/null "$1/etc/systemd/system/getty-static.service"`,
		`--customize-hook=ln -sf /dev/null "$1/etc/systemd/system/getty@tty1.service"`,
		`--customize-hook=mkdir -p "$1/etc/systemd/journald.conf.d" "$1/etc/systemd/system.conf.d"`,
		`--customize-hook=printf '[Journal]\nStorage=volatile\n' >"$1/etc/systemd/journald.conf.d/gkt.conf"`,
		`--customize-hook=printf '[Manager]\nDefaultTimeoutStopSec=10s\nDefaultTimeoutStartSec=60s\n' >"$1/etc/systemd/system.conf.d/gkt.conf"`,
		`--customize-hook=ln -sf /lib/systemd/system/multi-user.target "$1/etc/systemd/system/default.target"`,
		`--customize-hook=echo /dev/vda / ext4 rw,noatime 0 0 >"$1/etc/fstab"`,
		`--customize-hook=echo gkt-guest >"$1/etc/hostname"`,
		`--customize-hook=echo qemu_fw_cfg >"$1/etc/modules-load.d/gkt.conf"`,
		DebianSuite, root, mirror}
	c := exec.CommandContext(ctx, mm, args...)
	logf, err := os.Create(filepath.Join(bdir, "mmdebstrap.log"))
	if err != nil {
		return "", "", 0, fmt.Errorf("qemu: debian base: %w", err)
	}
	defer logf.Close()
	c.Stdout, c.Stderr = logf, logf
	if err := c.Run(); err != nil {
		return "", "", 0, fmt.Errorf("qemu: mmdebstrap: %w (log %s)", err, logf.Name())
	}
	if err := os.WriteFile(filepath.Join(bdir, "done"), []byte(time.Since(start).String()+"\n"), 0o644); err != nil {
		return "", "", 0, fmt.Errorf("qemu: debian base: %w", err)
	}
	return root, key, time.Since(start), nil
}

// buildImage copies the base, installs the packages and the agent in a
// chroot, and writes the ext4 image.
func buildImage(ctx context.Context, base string, img *DebianImage, o DebianOptions) error {
	for _, tool := range []string{"mke2fs", "chroot", "cp"} {
		if _, err := debianTool(tool); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(img.Dir); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	work := img.Dir + ".tmp"
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	logPath := filepath.Join(work, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	defer logf.Close()
	run := func(name string, args ...string) error {
		fmt.Fprintf(logf, "+ %s %s\n", name, strings.Join(args, " "))
		c := exec.CommandContext(ctx, name, args...)
		c.Stdout, c.Stderr = logf, logf
		c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
		if err := c.Run(); err != nil {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("qemu: debian image: %s: %w\n%s", name, err, lastN(string(b), 20))
		}
		return nil
	}
	if err := run("cp", "-a", base, root); err != nil {
		return err
	}
	if len(o.Debs) > 0 {
		args := []string{root, "dpkg", "-i"}
		for i, d := range o.Debs {
			in := fmt.Sprintf("/tmp/gkt-%d.deb", i)
			if err := copyGuestFile(d, filepath.Join(root, in), 0o644); err != nil {
				return err
			}
			args = append(args, in)
		}
		if err := run("chroot", args...); err != nil {
			return err
		}
		for i := range o.Debs {
			_ = os.Remove(filepath.Join(root, fmt.Sprintf("/tmp/gkt-%d.deb", i)))
		}
	}
	if o.Agent != "" {
		if err := copyGuestFile(o.Agent, filepath.Join(root, "usr/local/sbin/gkt-agent"), 0o755); err != nil {
			return err
		}
		if err := writeGuestFile(root, "etc/systemd/system/gkt-agent.service", AgentUnit, 0o644); err != nil {
			return err
		}
		if err := writeGuestFile(root, "etc/gkt-agent/harness-guest", "this image belongs to the gokexec QEMU harness\n", 0o644); err != nil {
			return err
		}
		link := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/gkt-agent.service")
		_ = os.MkdirAll(filepath.Dir(link), 0o755)
		_ = os.Remove(link)
		if err := os.Symlink("/etc/systemd/system/gkt-agent.service", link); err != nil {
			return fmt.Errorf("qemu: debian image: %w", err)
		}
	}
	for g, hp := range o.Files {
		if err := copyGuestFile(hp, filepath.Join(root, filepath.Clean("/"+g)), 0o755); err != nil {
			return err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("qemu: debian image: want one /boot/vmlinuz-*, found %v", kernels)
	}
	rel := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	size := o.SizeMiB
	if size == 0 {
		size = 1536
	}
	if err := copyGuestFile(kernels[0], filepath.Join(work, "vmlinuz"), 0o644); err != nil {
		return err
	}
	if err := copyGuestFile(filepath.Join(root, "boot/initrd.img-"+rel), filepath.Join(work, "initrd.img"), 0o644); err != nil {
		return err
	}
	if o.SeparateBoot {
		// /boot's contents go to their own file system; the root keeps the
		// empty mount point and an fstab line (no fsck: the base has no
		// fsck.ext4 it must rely on).
		boot := filepath.Join(work, "bootfs")
		if err := os.Rename(filepath.Join(root, "boot"), boot); err != nil {
			return fmt.Errorf("qemu: debian image: %w", err)
		}
		if err := os.Mkdir(filepath.Join(root, "boot"), 0o755); err != nil {
			return fmt.Errorf("qemu: debian image: %w", err)
		}
		fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
		fstab = append(fstab, []byte("LABEL="+BootLabel+" /boot ext4 defaults 0 0\n")...)
		if err := writeGuestFile(root, "etc/fstab", string(fstab), 0o644); err != nil {
			return err
		}
		if err := run("mke2fs", "-q", "-F", "-t", "ext4", "-L", BootLabel, "-d", boot, filepath.Join(work, "boot.img"), "256M"); err != nil {
			return err
		}
		if err := os.RemoveAll(boot); err != nil {
			return fmt.Errorf("qemu: debian image: %w", err)
		}
	}
	if err := run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "gkt-root", "-d", root, filepath.Join(work, "root.img"), fmt.Sprintf("%dM", size)); err != nil {
		return err
	}
	logf.Close()
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "done"), []byte(rel+"\n"), 0o644); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	if err := os.Rename(work, img.Dir); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	img.Release = rel
	return nil
}

// Overlay creates a qcow2 file at path backed by the raw image base, so a
// run writes to its own copy while the cached image stays untouched.
func Overlay(ctx context.Context, base, path string) error {
	qi, err := debianTool("qemu-img")
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("qemu: overlay: %w", err)
	}
	_ = os.Remove(path)
	if b, err := exec.CommandContext(ctx, qi, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", abs, path).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu: overlay: qemu-img: %w: %s", err, b)
	}
	return nil
}

// FwCfgArgs passes a host file to the guest as QEMU fw_cfg item
// opt/gkt/NAME (the service-mode agent reads opt/gkt/scenario).
func FwCfgArgs(name, hostPath string) []string {
	return []string{"-fw_cfg", "name=opt/gkt/" + name + ",file=" + hostPath}
}

// debianTools names the Debian package of each host program the image
// builder runs (scripts/setup.sh installs them).
var debianTools = map[string]string{"mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs", "chroot": "coreutils", "cp": "coreutils", "qemu-img": "qemu-utils"}

func debianTool(name string) (string, error) {
	p, err := lookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not in PATH; install Debian package %s (bash scripts/setup.sh does)", ErrMissingTool, name, debianTools[name])
	}
	return p, nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("qemu: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("qemu: lock %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyGuestFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("qemu: copy: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("qemu: copy: %w", err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return fmt.Errorf("qemu: copy: %w", err)
	}
	return os.Chmod(dst, mode)
}

func writeGuestFile(root, rel, content string, mode os.FileMode) error {
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		return fmt.Errorf("qemu: debian image: %w", err)
	}
	return nil
}

func lastN(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
