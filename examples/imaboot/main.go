// Command imaboot is a small bootloader in the style of u-root's boot and
// localboot, written against gokexec's u-root adapter (loader/urootboot):
// it finds kernels, loads the chosen one with the running kernel's IMA
// measurement list handed over, finalizes the hand-over and boots.
//
//	imaboot [-root /boot] [-append STRING] [-ima-extra 65536] [-policy FILE] [-dry-run]
//
// Kernels come from Boot Loader Specification entries under
// ROOT/loader/entries (read by u-root's own parser, pkg/boot/bls) and
// from files named vmlinuz-VERSION (or bzImage-VERSION) in ROOT, with the
// initramfs initrd.img-VERSION, initramfs-VERSION.img or initrd-VERSION.
// BLS entries come first, in u-root's order; the plain kernels follow,
// newest VERSION first in version order (6.1.0-10 after 6.1.0-9, as dpkg
// compares them). -append replaces the command line; without it a BLS
// entry's options, or the running kernel's command line without u-root
// init's own parameters (uroot.*).
//
// It is an example: everything that touches the machine goes through
// kexec.System, kexec.Kernel and tpm.Source, and what it prints is for the
// person at the console.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/boot"
	"github.com/u-root/u-root/pkg/boot/bls"
	"github.com/u-root/u-root/pkg/ulog"
	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/urootboot"
	"github.com/gokexec/gokexec/tpm"
)

var (
	kernelPrefixes = []string{"vmlinuz-", "bzImage-"}
	initrdNames    = []string{"initrd.img-%s", "initramfs-%s.img", "initrd-%s"}
)

// kernelFile is a vmlinuz-VERSION found in a directory.
type kernelFile struct {
	version        string
	kernel, initrd string
}

// findKernels lists the kernels in dir with their initramfs, newest
// version first.
func findKernels(dir string) ([]kernelFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []kernelFile
	for _, e := range ents {
		for _, p := range kernelPrefixes {
			v, ok := strings.CutPrefix(e.Name(), p)
			if !ok || v == "" || !e.Type().IsRegular() {
				continue
			}
			k := kernelFile{version: v, kernel: filepath.Join(dir, e.Name())}
			for _, f := range initrdNames {
				cand := filepath.Join(dir, fmt.Sprintf(f, v))
				if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() {
					k.initrd = cand
					break
				}
			}
			out = append(out, k)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return versionLess(out[j].version, out[i].version) })
	return out, nil
}

// versionLess orders versions as dpkg compares upstream versions: runs of
// digits numerically, other runs by character, '~' before anything (so
// 6.1.0-9 < 6.1.0-10 and 6.12~rc1 < 6.12).
func versionLess(a, b string) bool { return versionCompare(a, b) < 0 }

func versionCompare(a, b string) int {
	order := func(c byte) int {
		switch {
		case c == '~':
			return -1
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			return int(c)
		}
		return int(c) + 256
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for a != "" || b != "" {
		// Non-digit run.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			ac, bc := 0, 0
			if a != "" && !isDigit(a[0]) {
				ac = order(a[0])
			}
			if b != "" && !isDigit(b[0]) {
				bc = order(b[0])
			}
			if ac != bc {
				if ac < bc {
					return -1
				}
				return 1
			}
			if a != "" && !isDigit(a[0]) {
				a = a[1:]
			}
			if b != "" && !isDigit(b[0]) {
				b = b[1:]
			}
		}
		// Digit run, compared as numbers (leading zeros ignored).
		i, j := 0, 0
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		an, bn := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
		if len(an) != len(bn) {
			if len(an) < len(bn) {
				return -1
			}
			return 1
		}
		if c := strings.Compare(an, bn); c != 0 {
			return c
		}
		a, b = a[i:], b[j:]
	}
	return 0
}

// images are the bootable images under root: BLS entries (u-root's
// parser and order), then the plain kernels, newest first.
func images(root, cmdline string) ([]boot.OSImage, error) {
	var out []boot.OSImage
	if entries, err := bls.ScanBLSEntries(ulog.Null, root, nil, ""); err == nil {
		out = append(out, entries...)
	}
	ks, err := findKernels(root)
	if err != nil && len(out) == 0 {
		return nil, err
	}
	for _, k := range ks {
		li := &boot.LinuxImage{Name: "Linux " + k.version, Cmdline: cmdline}
		f, err := os.Open(k.kernel)
		if err != nil {
			return nil, err
		}
		li.Kernel = f
		if k.initrd != "" {
			if li.Initrd, err = os.Open(k.initrd); err != nil {
				return nil, err
			}
		}
		out = append(out, li)
	}
	return out, nil
}

// runningCmdline is /proc/cmdline without u-root init's own parameters.
func runningCmdline() string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	var keep []string
	for _, f := range strings.Fields(string(b)) {
		if !strings.HasPrefix(f, "uroot.") && !strings.HasPrefix(f, "BOOT_IMAGE=") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

func main() {
	root := flag.String("root", "/boot", "where to look for BLS entries (ROOT/loader/entries) and vmlinuz-VERSION files")
	flag.StringVar(root, "dir", "/boot", "same as -root")
	appendStr := flag.String("append", "", "kernel command line (default: the entry's, else the running kernel's)")
	extra := flag.Uint64("ima-extra", 64<<10, "headroom in bytes after the IMA list for entries measured before the reboot")
	policy := flag.String("policy", "", "IMA policy file to write to securityfs before loading")
	dry := flag.Bool("dry-run", false, "load and finalize nothing; print what would be done")
	flag.Parse()
	if err := run(*root, *appendStr, *extra, *policy, *dry); err != nil {
		fmt.Fprintf(os.Stderr, "imaboot: %v\n", err)
		os.Exit(1)
	}
}

func run(root, cmdline string, extra uint64, policy string, dry bool) error {
	if policy != "" {
		p, err := os.ReadFile(policy)
		if err != nil {
			return err
		}
		if err := os.WriteFile("/sys/kernel/security/ima/policy", p, 0); err != nil {
			return fmt.Errorf("IMA policy: %w", err)
		}
	}
	imgs, err := images(root, runningCmdline())
	if err != nil {
		return err
	}
	if len(imgs) == 0 {
		return fmt.Errorf("no kernel (BLS entry or vmlinuz-VERSION) under %s", root)
	}
	host := loader.Machine{Facts: &kexec.System{}, Kernel: kexec.Kernel{}, TPMs: &tpm.Source{}}
	opts := loader.Options{IMAExtra: extra, Warn: func(w string) { fmt.Printf("imaboot: warning: %s\n", w) }}
	img := urootboot.Wrap(imgs[:1], host, opts)[0].(*urootboot.Image)
	img.DryRun = dry
	if cmdline != "" {
		img.Edit(func(string) string { return cmdline })
	}
	what := img.Label()
	if f, ok := img.Linux.Kernel.(*os.File); ok {
		what = f.Name() + " (" + what + ")"
	}
	fmt.Printf("imaboot: booting %s with %q\n", what, img.Linux.Cmdline)
	if err := img.Load(); err != nil {
		return err
	}
	fmt.Printf("imaboot: loaded with %s; %s\n", img.Report().Plan.Syscall, img.Describe())
	if dry {
		for _, a := range img.Acts {
			fmt.Printf("imaboot: dry run: would %s\n", a)
		}
		return nil
	}
	unix.Sync()
	return img.Execute()
}
