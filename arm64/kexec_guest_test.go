package arm64

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/fdt"
)

// TestKexecLoadInGuest boots Debian's 6.1 arm64 kernel on QEMU virt with
// testdata/kexecguest as /init. Inside the guest (never on this machine)
// that program plans a load with this package, calls kexec_load with the
// trampoline as entry and reboots into it. The second kernel must come up
// with the prepared /chosen: our command line, the IMA buffer property and
// its /memreserve/, and that range reserved in its /proc/iomem. Skipped
// with -short.
func TestKexecLoadInGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("boots two kernels under QEMU")
	}
	for _, tool := range []string{"qemu-system-aarch64", "cpio", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (run scripts/setup.sh): %v", tool, err)
		}
	}
	dir := t.TempDir()
	kernelPath := filepath.Join(dir, "Image")
	if err := os.WriteFile(kernelPath, cacheKernel(t, "deb61-arm64"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, s1 := filepath.Join(dir, "s2"), filepath.Join(dir, "s1")
	for _, d := range []string{s1, s2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(s2, "init"), ".")
	build.Dir = filepath.Join("testdata", "kexecguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v: %s", err, out)
	}
	newc := func(root string, names ...string) []byte {
		cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
		cmd.Dir = root
		cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio: %v", err)
		}
		return out
	}
	stage2 := newc(s2, "init")
	for name, b := range map[string][]byte{"init": readFile(t, filepath.Join(s2, "init")), "stage2.cpio": stage2, "Image": readFile(t, kernelPath)} {
		if err := os.WriteFile(filepath.Join(s1, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stage1 := filepath.Join(dir, "stage1.cpio")
	if err := os.WriteFile(stage1, newc(s1, "init", "stage2.cpio", "Image"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-aarch64",
		"-machine", "virt", "-cpu", "cortex-a57", "-m", "1024", "-nographic", "-no-reboot",
		"-kernel", kernelPath, "-initrd", stage1, "-append", "console=ttyAMA0 panic=-1")
	serial, err := cmd.CombinedOutput()
	logPath := filepath.Join(dir, "serial.log")
	os.WriteFile(logPath, serial, 0o644)
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, tail(serial))
	}
	log := strings.ReplaceAll(string(serial), "\r", "")
	if strings.Contains(log, "GUEST-ERROR") || !strings.Contains(log, "KEXEC-LOADED\n") {
		t.Fatalf("stage 1 did not load:\n%s", tail(serial))
	}
	m := regexp.MustCompile(`PLAN kernel=(0x[0-9a-f]+)\+(0x[0-9a-f]+) initrd=(0x[0-9a-f]+)\+(0x[0-9a-f]+) ima=(0x[0-9a-f]+)\+(0x[0-9a-f]+) dtb=`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no plan line:\n%s", tail(serial))
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	initrdR := fdt.Range{Start: num(m[3]), Size: num(m[4])}
	imaR := fdt.Range{Start: num(m[5]), Size: num(m[6])}

	if !strings.Contains(log, "CMDLINE: console=ttyAMA0 panic=-1 gokexec.stage=2\n") {
		t.Fatalf("the kexec'd kernel did not come up with the prepared bootargs:\n%s", tail(serial))
	}
	section := func(tag string) []byte {
		i, j := strings.Index(log, tag+"-BEGIN\n"), strings.Index(log, tag+"-END\n")
		if i < 0 || j < i {
			t.Fatalf("no %s dump:\n%s", tag, tail(serial))
		}
		gz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(log[i+len(tag)+7:j], "\n", ""))
		if err != nil {
			t.Fatal(err)
		}
		return gunzip(t, gz)
	}
	tr, err := fdt.Parse(section("FDT"))
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := tr.Lookup("/chosen")
	buf, ok := ch.Property("linux,ima-kexec-buffer")
	if !ok {
		t.Fatal("second kernel's /chosen has no linux,ima-kexec-buffer")
	}
	if rs, err := fdt.DecodeRanges(2, 2, buf); err != nil || len(rs) != 1 || rs[0] != imaR {
		t.Errorf("linux,ima-kexec-buffer = %v, %v; want %v", rs, err, imaR)
	}
	if s, _ := ch.Number("linux,initrd-start"); s != initrdR.Start {
		t.Errorf("initrd-start = %#x, want %#x", s, initrdR.Start)
	}
	has := func(r fdt.Range) bool {
		for _, x := range tr.Reservations {
			if x == r {
				return true
			}
		}
		return false
	}
	if !has(imaR) || !has(initrdR) {
		t.Errorf("reservations %v lack IMA %v or initrd %v", tr.Reservations, imaR, initrdR)
	}
	if ch.HasProperty("rng-seed") {
		t.Error("rng-seed visible: the second kernel did not consume our seed")
	}
	// The second kernel honoured the /memreserve/: the IMA range lies in
	// a "reserved" resource of its /proc/iomem.
	iomem := string(section("IOMEM"))
	if !reservedCovers(iomem, imaR) {
		t.Errorf("IMA buffer %v not inside a reserved region of the second kernel's /proc/iomem:\n%s", imaR, iomem)
	}
	t.Logf("plan: %s", m[0])
}

// reservedCovers reports whether an iomem line "  a-b : reserved" covers r.
func reservedCovers(iomem string, r fdt.Range) bool {
	for _, line := range strings.Split(iomem, "\n") {
		rng, name, ok := strings.Cut(strings.TrimSpace(line), " : ")
		if !ok || name != "reserved" {
			continue
		}
		a, b, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(a, 16, 64)
		e, err2 := strconv.ParseUint(b, 16, 64)
		if err1 == nil && err2 == nil && s <= r.Start && r.Start+r.Size-1 <= e {
			return true
		}
	}
	return false
}
