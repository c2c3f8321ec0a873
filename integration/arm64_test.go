package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// arm64Guest is a scenario on qemu-system-aarch64 -M virt with a swtpm
// tpm-tis-device, first booting the test kernel first (a cache name).
type arm64Guest struct {
	t     *testing.T
	art   string
	bins  map[string]string
	tpm   *qemu.TPM
	files map[string]string // guest path -> host path
}

func newARM64Guest(t *testing.T) *arm64Guest {
	t.Helper()
	skipShort(t)
	parallelGuest(t)
	ctx := context.Background()
	art := qemu.ArtifactsDir(t)
	bins, err := qemu.BuildGuest(ctx, "arm64", filepath.Join(art, "..", "bin-arm64"), qemu.AgentPackage, "./cmd/gokexec")
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Stop() })
	return &arm64Guest{t: t, art: art, bins: bins, tpm: tpm, files: map[string]string{"/bin/gokexec": bins["./cmd/gokexec"]}}
}

// kernelFile returns a file of a cached kernel (see qemu.KernelFile).
func arm64KernelFile(t *testing.T, name, file string) string {
	t.Helper()
	var p string
	var err error
	if file == "vmlinuz" {
		p, err = qemu.Kernel(name)
	} else {
		p, err = qemu.KernelFile(name, file)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (g *arm64Guest) run(sc *proto.Scenario, vm qemu.VM) *qemu.Result {
	t := g.t
	t.Helper()
	ir := qemu.NewInitramfs()
	if err := ir.AddFile("/init", g.bins[qemu.AgentPackage]); err != nil {
		t.Fatal(err)
	}
	for gp, hp := range g.files {
		if err := ir.AddFile(gp, hp); err != nil {
			t.Fatal(err)
		}
	}
	if err := ir.AddScenario(sc); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(g.art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	vm.Arch, vm.Initrd, vm.Step, vm.TPM, vm.ArtifactsDir = "arm64", initrd, "1", g.tpm, g.art
	if vm.Timeout == 0 {
		vm.Timeout = 20 * time.Minute
	}
	start := time.Now()
	res, err := qemu.Run(context.Background(), vm)
	t.Logf("scenario wall time %v (serial log %s)", time.Since(start).Round(100*time.Millisecond), filepath.Join(g.art, "serial.log"))
	logAccel(t, res)
	if err != nil {
		if res != nil {
			for _, rec := range res.Records {
				if rec.Type == proto.TypeCmd {
					t.Logf("boot %d cmd %v exit %d:\n%s", rec.Boot, rec.Argv, rec.Exit, rec.Output)
				}
			}
		}
		t.Fatal(err)
	}
	return res
}

// arm64Hop is one boot's step of a gokexec chain on arm64: measure, report,
// load target with -l (kexec_load unless extra says otherwise), its command
// line the harness's with more (if not empty) and the next step, exec.
func arm64Hop(step int, target, more string, extra ...string) proto.Step {
	next := qemu.DefaultAppend("arm64") + more + " gkt.step=" + strconv.Itoa(step+1)
	load := append([]string{"/bin/gokexec", "-d", "-l", target, "--initrd", "/run/next.cpio", "--append", next, "--ima-extra", "64K"}, extra...)
	return proto.Step{DeadlineSec: 600, Actions: []proto.Action{
		{Policy: basePolicy},
		{MeasureFiles: 5, Dir: fmt.Sprintf("/tmp/m%d", step)},
		{Report: []string{"boot", "pcrs", "list"}},
		{File: "/sys/firmware/fdt"},
		{RepackInitrd: "/run/next.cpio"},
		{Run: load, ExpectExit: intp(0)},
		{Exec: []string{"/bin/gokexec", "-d", "-e"}},
	}}
}

// lastStep reports what the final kernel of a chain has.
func lastStep() proto.Step {
	return proto.Step{DeadlineSec: 600, Actions: []proto.Action{
		{Report: []string{"boot", "pcrs", "list"}},
		{File: "/sys/firmware/fdt"},
	}}
}

// checkARM64Chain checks boots 2..n of a gokexec chain: each list begins
// with the whole list the boot before reported, then holds that hop's
// kexec_load and kexec_execute markers and a new boot_aggregate; it has
// one boot_aggregate per boot and replays to the TPM's PCRs in every bank
// (and evmctl agrees for the last boot); the kernel never said it failed
// to restore; each boot's device tree came from the hop before (bootargs,
// linux,ima-kexec-buffer with its /memreserve/, a consumed kaslr-seed).
func checkARM64Chain(t *testing.T, g *arm64Guest, res *qemu.Result, from, to int) []ima.Entry {
	t.Helper()
	serial, err := os.ReadFile(res.Serial)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"Failed to restore the measurement list", "lies outside available memory", "Kernel panic"} {
		if bytes.Contains(serial, []byte(bad)) {
			t.Fatalf("serial log says %q", bad)
		}
	}
	prev := parseList(t, res.List(from, "binary_runtime_measurements"), fmt.Sprintf("boot %d", from))
	var last []ima.Entry
	for b := from + 1; b <= to; b++ {
		es := parseList(t, res.List(b, "binary_runtime_measurements"), fmt.Sprintf("boot %d", b))
		if len(es) < len(prev)+3 {
			t.Fatalf("boot %d: %s, boot %d reported %d: not restored", b, describe(es), b-1, len(prev))
		}
		for i := range prev {
			if prev[i].TemplateDigest != es[i].TemplateDigest || !bytes.Equal(prev[i].TemplateData, es[i].TemplateData) {
				t.Fatalf("boot %d: entry %d differs from boot %d's list", b, i, b-1)
			}
		}
		if n := countBootAggregates(es); n != countBootAggregates(prev)+1 {
			t.Fatalf("boot %d: %s after boot %d's %d", b, describe(es), b-1, countBootAggregates(prev))
		}
		ld, ex := markers(t, es[len(prev):])
		if len(ld) != 1 || len(ex) != 1 || ld[0] > ex[0] {
			t.Fatalf("boot %d: hop markers kexec_load at %v, kexec_execute at %v after the restored part", b, ld, ex)
		}
		if !isBootAggregate(es[len(es)-1]) && !isBootAggregate(es[len(prev)+ex[0]+1]) {
			t.Fatalf("boot %d: no boot_aggregate after the kexec_execute marker", b)
		}
		requireReplays(t, es, pcrValues(t, res.PCRs(b), "sha1", "sha256", "sha384"), fmt.Sprintf("boot %d", b))
		seen := parseDTB(t, res.Find(b, proto.TypeFile, "/sys/firmware/fdt"))
		ch, ok := seen.Lookup("/chosen")
		if !ok {
			t.Fatalf("boot %d: no /chosen", b)
		}
		if args, _ := ch.String("bootargs"); !strings.Contains(args, "gkt.step="+strconv.Itoa(b)) {
			t.Fatalf("boot %d: bootargs %q", b, args)
		}
		prop, ok := ch.Property("linux,ima-kexec-buffer")
		rs, err := fdt.DecodeRanges(2, 2, prop)
		if !ok || err != nil || len(rs) != 1 {
			t.Fatalf("boot %d: the device tree it booted with has no linux,ima-kexec-buffer (%v)", b, err)
		}
		reserved := false
		for _, r := range seen.Reservations {
			reserved = reserved || r == rs[0]
		}
		if !reserved {
			t.Fatalf("boot %d: no /memreserve/ for %v", b, rs[0])
		}
		if v, err := ch.U64("kaslr-seed"); err == nil && v != 0 {
			t.Fatalf("boot %d: kaslr-seed %#x not consumed", b, v)
		}
		prev, last = es, es
	}
	// The project's independent check of every hop (hopcheck_test.go).
	if _, err := hopCheck(bootReports(res, from, to), 64<<10); err != nil {
		t.Fatalf("hand-over check over boots %d-%d:\n%v", from, to, err)
	}
	evmctlAgrees(t, res, to, "sha1", "sha256")
	return last
}

// TestARM64Handover boots the restore-arm64 test kernel (IMA_KEXEC off,
// KEXEC_FILE on: it restores a list from /chosen) on QEMU virt with a
// device tree and hands over ten times with gokexec's kexec_load, each hop
// with a fresh kaslr-seed and the kernel in another of the forms
// distributions ship: the EFI zboot image (gzip payload), Image.gz, the
// ELF vmlinux, then the Image. Every boot's list begins with the whole
// list of the boot before, holds that hop's markers, and replays to the
// TPM's PCRs (sha1, sha256, sha384; evmctl agrees): the buffer was never
// overwritten. The second kernel removes linux,ima-kexec-buffer from its
// live tree after restoring, so the test reads the restored list, and the
// flat tree the kernel booted with (/sys/firmware/fdt) for the property.
func TestARM64Handover(t *testing.T) {
	g := newARM64Guest(t)
	forms := []string{"vmlinuz.efi", "Image.gz", "vmlinux", "vmlinuz"}
	for _, f := range forms {
		g.files["/boot/"+f] = arm64KernelFile(t, qemu.RestoreARM64, f)
	}
	const hops = 10
	sc := &proto.Scenario{Steps: map[string]proto.Step{}}
	for i := 1; i <= hops; i++ {
		f := forms[len(forms)-1]
		if i <= len(forms) {
			f = forms[i-1]
		}
		sc.Steps[strconv.Itoa(i)] = arm64Hop(i, "/boot/"+f, "")
	}
	sc.Steps[strconv.Itoa(hops+1)] = lastStep()
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.RestoreARM64, "vmlinuz"), Timeout: 40 * time.Minute})
	if res.Boots() != hops+1 {
		t.Fatalf("%d boots, want %d", res.Boots(), hops+1)
	}
	last := checkARM64Chain(t, g, res, 1, hops+1)
	for i, f := range forms {
		c, ok := cmdOutput(res, i+1, "/bin/gokexec")
		if !ok || !strings.Contains(strings.Join(c.Argv, " "), "-l /boot/"+f+" ") || c.Exit != 0 {
			t.Fatalf("boot %d: no gokexec -l of /boot/%s", i+1, f)
		}
	}
	t.Logf("%d hand-overs (%s, then Image): last list %s", hops, strings.Join(forms[:3], ", "), describe(last))
}

func parseDTB(t *testing.T, recs []proto.Record) *fdt.Tree {
	t.Helper()
	if len(recs) == 0 {
		t.Fatal("device tree not reported")
	}
	tr, err := fdt.Parse(recs[len(recs)-1].Data)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
