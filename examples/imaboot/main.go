// Command imaboot is a small bootloader in the style of u-root's boot and
// localboot, written against package loader: it finds a kernel and its
// initramfs in a directory, loads them with the running kernel's IMA
// measurement list handed over, finalizes the hand-over and boots.
//
//	imaboot [-dir /boot] [-append STRING] [-ima-extra 65536] [-policy FILE] [-dry-run]
//
// A kernel is a file named vmlinuz-VERSION (or bzImage-VERSION); its
// initramfs is initrd.img-VERSION, initramfs-VERSION.img or
// initrd-VERSION. With several kernels it boots the one whose VERSION
// sorts last. The command line is -append, or the running kernel's
// without the parameters of u-root's init (uroot.*).
//
// It is an example: everything that touches the machine goes through
// kexec.System, and what it prints is for the person at the console.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/tpm"
)

// image is one bootable kernel found in a directory.
type image struct {
	version        string
	kernel, initrd string
}

var (
	kernelPrefixes = []string{"vmlinuz-", "bzImage-"}
	initrdNames    = []string{"initrd.img-%s", "initramfs-%s.img", "initrd-%s"}
)

// find lists the kernels in dir with their initramfs, in boot order
// (the last VERSION first).
func find(dir string) ([]image, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []image
	for _, e := range ents {
		for _, p := range kernelPrefixes {
			v, ok := strings.CutPrefix(e.Name(), p)
			if !ok || v == "" || !e.Type().IsRegular() {
				continue
			}
			im := image{version: v, kernel: filepath.Join(dir, e.Name())}
			for _, f := range initrdNames {
				cand := filepath.Join(dir, fmt.Sprintf(f, v))
				if st, err := os.Stat(cand); err == nil && st.Mode().IsRegular() {
					im.initrd = cand
					break
				}
			}
			out = append(out, im)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version > out[j].version })
	return out, nil
}

// open makes the loader's Image of im: the files stay open, as
// io.ReaderAts, until the reboot (finalize reads them again).
func open(im image, cmdline string) (loader.Image, error) {
	img := loader.Image{Cmdline: cmdline}
	k, err := os.Open(im.kernel)
	if err != nil {
		return img, err
	}
	img.Kernel = loader.Input{Name: im.kernel, R: k}
	if im.initrd != "" {
		rd, err := os.Open(im.initrd)
		if err != nil {
			return img, err
		}
		img.Initrd = loader.Input{Name: im.initrd, R: rd}
	}
	return img, nil
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
	dir := flag.String("dir", "/boot", "directory to look for kernels in")
	appendStr := flag.String("append", "", "kernel command line (default: the running kernel's)")
	extra := flag.Uint64("ima-extra", 64<<10, "headroom in bytes after the IMA list for entries measured before the reboot")
	policy := flag.String("policy", "", "IMA policy file to write to securityfs before loading")
	dry := flag.Bool("dry-run", false, "print the plan, load nothing")
	flag.Parse()
	if err := boot(*dir, *appendStr, *extra, *policy, *dry); err != nil {
		fmt.Fprintf(os.Stderr, "imaboot: %v\n", err)
		os.Exit(1)
	}
}

func boot(dir, cmdline string, extra uint64, policy string, dry bool) error {
	ctx := context.Background()
	if policy != "" {
		p, err := os.ReadFile(policy)
		if err != nil {
			return err
		}
		if err := os.WriteFile("/sys/kernel/security/ima/policy", p, 0); err != nil {
			return fmt.Errorf("IMA policy: %w", err)
		}
	}
	ims, err := find(dir)
	if err != nil {
		return err
	}
	if len(ims) == 0 {
		return fmt.Errorf("no kernel (vmlinuz-VERSION) in %s", dir)
	}
	if cmdline == "" {
		cmdline = runningCmdline()
	}
	im := ims[0]
	fmt.Printf("imaboot: booting %s (initramfs %q) with %q\n", im.kernel, im.initrd, cmdline)
	img, err := open(im, cmdline)
	if err != nil {
		return err
	}
	host := loader.Machine{Facts: &kexec.System{}, Kernel: kexec.Kernel{}, TPMs: &tpm.Source{}}
	opts := loader.Options{IMAExtra: extra, Warn: func(w string) { fmt.Printf("imaboot: warning: %s\n", w) }}
	if dry {
		p, err := loader.Plan(ctx, host, img, opts)
		if err != nil {
			return err
		}
		fmt.Printf("imaboot: plan: %s, entry %#x, %d segments\n", p.Syscall, p.Entry, len(p.Segments))
		return nil
	}
	l, err := loader.Load(ctx, host, img, opts)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	fmt.Printf("imaboot: loaded with %s\n", l.Plan().Syscall)
	rep, err := l.Finalize(ctx)
	if err != nil {
		_ = l.Unload()
		return fmt.Errorf("finalize (not booting): %w", err)
	}
	switch {
	case rep.NoTPM:
		fmt.Printf("imaboot: no TPM: %d entries handed over, none extended\n", rep.Count)
	default:
		fmt.Printf("imaboot: %d entries handed over, %d of the loader's extended into %s (%s)\n", rep.Count, len(rep.Entries), rep.TPM, strings.Join(rep.Banks, " "))
	}
	unix.Sync()
	return l.Exec()
}
