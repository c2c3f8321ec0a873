package integration

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestARM64FileKexec boots the imakexec-arm64 test kernel (IMA_KEXEC on:
// it hands its own list over at kexec_file_load, through /chosen) with a
// device tree, and hands over twice, side by side:
//   - boot 1 -> 2: gokexec loads the same kernel's EFI zboot image (a zstd
//     payload): -a picks kexec_file_load, hands the kernel the unpacked
//     Image through a sealed memfd (the kernel's loader takes raw Images
//     only), and -e refreshes the load;
//   - boot 2 -> 3: Debian's arm64 kexec-tools, kexec -s -l of the Image,
//     then kexec -e.
//
// Each following list begins with the whole list before, holds the files
// read between the load and the exec, the kernel's own markers (two
// kexec_load with gokexec's refresh, one with kexec-tools; one
// kexec_execute, the last entry of the boot), one more boot_aggregate, and
// replays to the TPM's PCRs.
func TestARM64FileKexec(t *testing.T) {
	g := newARM64Guest(t)
	g.files["/boot/vmlinuz.efi"] = arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz.efi")
	g.files["/boot/Image"] = arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz")
	addARM64KexecTools(t, g)
	next := func(step string) string { return qemu.DefaultAppend("arm64") + " gkt.step=" + step }
	load := []string{"/bin/gokexec", "-l", "/boot/vmlinuz.efi", "--initrd", "/run/next.cpio", "--append", next("2")}
	kload := []string{"/sbin/kexec", "-s", "-l", "/boot/Image", "--initrd", "/run/next.cpio", "--append", next("3")}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{Report: []string{"boot", "pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: append(append([]string(nil), load...), "--dry-run", "--json"), ExpectExit: intp(0)},
			{Run: load, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{Report: []string{"boot", "pcrs", "list"}},
			{File: "/sys/firmware/fdt"},
			{RepackInitrd: "/run/next.cpio"},
			{Run: kload, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late2"},
			{Exec: []string{"/sbin/kexec", "-e"}},
		}},
		"3": {DeadlineSec: 600, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
		}},
	}}
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz"), Timeout: 25 * time.Minute})
	if res.Boots() != 3 {
		t.Fatalf("%d boots, want 3", res.Boots())
	}
	if pl := dryRunPlan(t, res, 1, load); pl.Syscall != "kexec_file_load" || !pl.Decision.Facts.HandsOver {
		t.Fatalf("auto on an IMA_KEXEC kernel chose %s (kernel_hands_over %v): %s", pl.Syscall, pl.Decision.Facts.HandsOver, pl.Decision.Reason)
	}
	lists := [4][]ima.Entry{}
	for b := 1; b <= 3; b++ {
		lists[b] = parseList(t, res.List(b, "binary_runtime_measurements"), fmt.Sprintf("boot %d", b))
	}
	for b := 2; b <= 3; b++ {
		prev, es := lists[b-1], lists[b]
		if len(es) <= len(prev) {
			t.Fatalf("boot %d: %s, boot %d reported %d: not restored", b, describe(es), b-1, len(prev))
		}
		for i := range prev {
			if prev[i].TemplateDigest != es[i].TemplateDigest {
				t.Fatalf("boot %d: entry %d differs from boot %d's list", b, i, b-1)
			}
		}
		if countBootAggregates(es) != b {
			t.Fatalf("boot %d: %s", b, describe(es))
		}
		requireReplays(t, es, pcrValues(t, res.PCRs(b), "sha1", "sha256", "sha384"), fmt.Sprintf("boot %d", b))
	}
	// gokexec: -l and the refresh at -e each made the kernel measure a
	// kexec_load; the kexec_execute is the last entry before boot 2.
	ms, loads, execs, b2 := checkKernelHandover(t, lists[2], 0, "/tmp/late/", 5)
	if len(loads) != 2 || len(execs) != 1 || execs[0].index != b2-1 || loads[1].index > execs[0].index {
		t.Fatalf("gokexec: kernel markers %s, second boot at %d", markerSummary(ms), b2)
	}
	// kexec-tools: one kexec_load (its -l), the kexec_execute last. Its
	// part of boot 3's list begins after the whole list boot 2 reported.
	kms, kloads, kexecs, b3 := checkKernelHandover(t, lists[3], len(lists[2]), "/tmp/late2/", 5)
	if len(kloads) != 1 || len(kexecs) != 1 || kexecs[0].index != b3-1 {
		t.Fatalf("kexec-tools: kernel markers %s, third boot at %d", markerSummary(kms), b3)
	}
	if c, ok := cmdOutput(res, 2, "/sbin/kexec -s -l"); !ok || c.Exit != 0 {
		t.Fatalf("kexec -s -l in boot 2: %+v", c)
	}
	evmctlAgrees(t, res, 3, "sha1", "sha256")
	t.Logf("side by side on arm64 kexec_file_load: gokexec (zstd zboot, refresh at -e) carried boot 1's %d entries and the late 5 into boot 2 (%s), markers %s; kexec-tools (kexec -s -l Image, kexec -e) carried boot 2's into boot 3 (%s), markers %s",
		len(lists[1]), describe(lists[2]), markerSummary(ms), describe(lists[3]), markerSummary(kms))
}

// kexecToolsARM64 is where scripts/setup.sh unpacks Debian's arm64
// kexec-tools and the libraries it depends on (under the cache directory).
const kexecToolsARM64 = "sysroots/kexec-tools-arm64"

// addARM64KexecTools puts Debian's arm64 /sbin/kexec into g's initramfs
// with its dynamic loader and every shared library it needs (the NEEDED
// closure, read with debug/elf), at the paths they have in the package.
func addARM64KexecTools(t *testing.T, g *arm64Guest) {
	t.Helper()
	cache, err := qemu.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(cache, kexecToolsARM64)
	if _, err := os.Stat(filepath.Join(root, "sbin", "kexec")); err != nil {
		t.Fatalf("arm64 kexec-tools: %v (bash scripts/setup.sh test fetches it)", err)
	}
	files, err := elfClosure(root, "/sbin/kexec", []string{"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"})
	if err != nil {
		t.Fatalf("arm64 kexec-tools: %v", err)
	}
	for guest, host := range files {
		g.files[guest] = host
	}
}

// elfClosure returns, for the executable bin inside the file tree root,
// the guest paths of bin, its PT_INTERP and every library its NEEDED
// entries name (recursively, found in dirs), each mapped to the host file
// that holds it (symbolic links followed inside root).
func elfClosure(root, bin string, dirs []string) (map[string]string, error) {
	out := map[string]string{}
	queue := []string{bin}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, ok := out[p]; ok {
			continue
		}
		host, err := resolveIn(root, p)
		if err != nil {
			return nil, err
		}
		out[p] = host
		f, err := elf.Open(host)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: PT_INTERP: %w", host, err)
			}
			queue = append(queue, strings.TrimRight(string(b), "\x00"))
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", host, err)
		}
	next:
		for _, l := range libs {
			for _, d := range dirs {
				if _, err := resolveIn(root, d+"/"+l); err == nil {
					queue = append(queue, d+"/"+l)
					continue next
				}
			}
			return nil, fmt.Errorf("%s needs %s: not in %s under %s", p, l, strings.Join(dirs, ", "), root)
		}
	}
	return out, nil
}

// resolveIn returns the host path of the absolute path p inside the tree
// root, following symbolic links (absolute ones relative to root).
func resolveIn(root, p string) (string, error) {
	for hops := 0; hops < 16; hops++ {
		host := filepath.Join(root, p)
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return "", errors.New(p + ": too many symbolic links")
}
