package arm64

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/internal/dtctest"
)

// TestBootThroughTrampoline puts memory into the state kexec_load leaves
// it in — kernel Image, initrd, prepared DTB, IMA buffer and trampoline at
// planned addresses, every register zero — using QEMU's generic loader on
// the virt machine, and starts the CPU at the trampoline. Debian's 6.1
// arm64 kernel must boot from it with our /chosen: the guest prints its
// /proc/cmdline and /sys/firmware/fdt, which must be the tree we built
// (minus the seeds the kernel consumes). Skipped with -short.
func TestBootThroughTrampoline(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a kernel under QEMU")
	}
	for _, tool := range []string{"qemu-system-aarch64", "cpio", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (run scripts/setup.sh): %v", tool, err)
		}
	}
	dir := t.TempDir()
	im, err := ParseImage(cacheKernel(t, "deb61-arm64"))
	if err != nil {
		t.Fatal(err)
	}

	// Guest /init, packed as a one-file newc initramfs.
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(root, "init"), ".")
	build.Dir = filepath.Join("..", "fdt", "testdata", "sysfsdump")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v: %s", err, out)
	}
	pack := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	pack.Dir = root
	pack.Stdin = strings.NewReader("init\n")
	initrd, err := pack.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}

	// The plan. QEMU keeps its own 1 MiB DTB at the start of RAM
	// (0x40000000), so the kernel goes at the next 2 MiB boundary.
	const (
		base       = 0x40200000
		initrdAddr = 0x48000000
		imaAddr    = 0x49000000
		dtbAddr    = 0x4a000000
		trampAddr  = 0x4a200000
	)
	entry, err := im.LoadAddress(base)
	if err != nil {
		t.Fatal(err)
	}
	kernel := fdt.Range{Start: entry, Size: im.ImageSize}
	initrdR := fdt.Range{Start: initrdAddr, Size: uint64(len(initrd))}
	if err := CheckInitrd(kernel, initrdR); err != nil {
		t.Fatal(err)
	}
	ima := bytes.Repeat([]byte("gokexec IMA buffer placeholder\n"), 128)
	imaR := fdt.Range{Start: imaAddr, Size: uint64(len(ima))}

	tr := parseGz(t, "../fdt/testdata/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz")
	bootargs := "console=ttyAMA0 panic=-1 gokexec.test=trampoline"
	err = PrepareDTB(tr, ChosenOptions{
		Bootargs:  bootargs,
		Initrd:    &initrdR,
		KASLRSeed: 0x0123456789abcdef,
		RNGSeed:   bytes.Repeat([]byte{0x42}, RNGSeedSize),
		IMABuffer: &imaR,
	})
	if err != nil {
		t.Fatal(err)
	}
	dtb, err := BuildDTB(tr)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckDTB(dtbAddr, uint64(len(dtb))); err != nil {
		t.Fatal(err)
	}
	tramp := Trampoline(dtbAddr, entry)

	files := map[string][]byte{"Image": im.Kernel, "initrd": initrd, "ima": ima, "dtb": dtb, "tramp": tramp}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	loader := func(name string, addr uint64, extra string) string {
		return fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on%s", filepath.Join(dir, name), addr, extra)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64",
		"-machine", "virt", "-cpu", "cortex-a57", "-m", "1024", "-nographic", "-no-reboot",
		"-device", loader("Image", entry, ""),
		"-device", loader("initrd", initrdAddr, ""),
		"-device", loader("ima", imaAddr, ""),
		"-device", loader("dtb", dtbAddr, ""),
		"-device", loader("tramp", trampAddr, ",cpu-num=0"),
	)
	serial, err := cmd.CombinedOutput()
	if err := os.WriteFile(filepath.Join(dir, "serial.log"), serial, 0o644); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, tail(serial))
	}
	log := strings.ReplaceAll(string(serial), "\r", "")

	if !strings.Contains(log, "CMDLINE: "+bootargs+"\n") {
		t.Fatalf("guest did not report our command line; serial:\n%s", tail(serial))
	}
	i, j := strings.Index(log, "FDT-BEGIN\n"), strings.Index(log, "FDT-END\n")
	if i < 0 || j < i {
		t.Fatalf("no FDT dump; serial:\n%s", tail(serial))
	}
	gz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(log[i+len("FDT-BEGIN\n"):j], "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	seen := gunzip(t, gz)

	// The kernel NOPs rng-seed and zeroes kaslr-seed after using them;
	// otherwise it must have booted with exactly our tree.
	want, err := fdt.Parse(dtb)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := want.Lookup("/chosen")
	ch.DeleteProperty("rng-seed")
	if err := ch.SetU64("kaslr-seed", 0); err != nil {
		t.Fatal(err)
	}
	wantBlob, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, w := dtctest.Run(t, seen, "-I", "dtb", "-O", "dts"), dtctest.Run(t, wantBlob, "-I", "dtb", "-O", "dts"); got != w {
		t.Errorf("the kernel saw a different tree.\n--- guest /sys/firmware/fdt\n%s\n--- built\n%s", got, w)
	}
}

func parseGz(t *testing.T, path string) *fdt.Tree {
	t.Helper()
	tr, err := fdt.Parse(gunzip(t, readFile(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func tail(b []byte) string {
	const n = 3000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
