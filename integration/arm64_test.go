package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/fdt"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestARM64Handover boots Debian's arm64 kernel on QEMU virt (with a swtpm
// tpm-tis-device, which Debian's kernel cannot use at IMA start-up: tpm_tis
// is a module there), loads the same kernel with gokexec and kexecs. Debian's
// arm64 kernels have no KEXEC_FILE and so no restore side: the test checks
// what the second kernel received instead — its /sys/firmware/fdt carries
// our bootargs, linux,ima-kexec-buffer and a /memreserve/ for the same
// range, consumed kaslr-seed and rng-seed; it ran from our initrd; and the
// reserved range, read back through /proc/kcore, holds the hand-over buffer
// gokexec wrote: a valid ima_kexec_hdr whose entries start with the first
// kernel's list and end with gokexec's kexec_execute marker.
func TestARM64Handover(t *testing.T) {
	skipShort(t)
	parallelGuest(t)
	ctx := context.Background()
	art := qemu.ArtifactsDir(t)
	k, err := qemu.Kernel(qemu.Deb61ARM64)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := qemu.BuildGuest(ctx, "arm64", filepath.Join(art, "..", "bin-arm64"), qemu.AgentPackage, "./cmd/gokexec", "./integration/testdata/physread")
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Stop() })
	next := qemu.DefaultAppend("arm64") + " gkt.step=2"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 10},
			{Report: []string{"list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-d", "-l", "/boot/Image-2", "--initrd", "/run/next.cpio", "--append", next, "--dtb-out", "/run/loaded.dtb"}, ExpectExit: intp(0)},
			{File: "/run/loaded.dtb"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 600, Actions: []proto.Action{
			{Report: []string{"boot", "list"}},
			{File: "/sys/firmware/fdt"},
			{File: "/proc/iomem"},
			{Run: []string{"/bin/physread", "ima", "/run/ima-buffer.bin"}, ExpectExit: intp(0)},
			{File: "/run/ima-buffer.bin"},
		}},
	}}
	ir := qemu.NewInitramfs()
	for gp, hp := range map[string]string{"/init": bins[qemu.AgentPackage], "/bin/gokexec": bins["./cmd/gokexec"],
		"/bin/physread": bins["./integration/testdata/physread"], "/boot/Image-2": k} {
		if err := ir.AddFile(gp, hp); err != nil {
			t.Fatal(err)
		}
	}
	if err := ir.AddScenario(sc); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := qemu.Run(ctx, qemu.VM{Arch: "arm64", Kernel: k, Initrd: initrd, Step: "1", TPM: tpm, ArtifactsDir: art, Timeout: 15 * time.Minute})
	t.Logf("scenario wall time %v", time.Since(start).Round(100*time.Millisecond))
	logAccel(t, res)
	if err != nil {
		if res != nil {
			for _, c := range res.Find(1, proto.TypeCmd, "") {
				t.Logf("cmd %v exit %d:\n%s", c.Argv, c.Exit, c.Output)
			}
		}
		t.Fatal(err)
	}
	if res.Boots() != 2 {
		t.Fatalf("%d boots", res.Boots())
	}
	if !strings.Contains(res.BootInfo(2).Cmdline, "gkt.step=2") {
		t.Fatalf("second kernel's command line %q", res.BootInfo(2).Cmdline)
	}
	loaded := parseDTB(t, res.Find(1, proto.TypeFile, "/run/loaded.dtb"))
	seen := parseDTB(t, res.Find(2, proto.TypeFile, "/sys/firmware/fdt"))
	lc, _ := loaded.Lookup("/chosen")
	sc2, ok := seen.Lookup("/chosen")
	if !ok {
		t.Fatal("second kernel's DTB has no /chosen")
	}
	if b, _ := sc2.String("bootargs"); b != next {
		t.Fatalf("bootargs %q, want %q", b, next)
	}
	lb, _ := lc.Property("linux,ima-kexec-buffer")
	sb, ok := sc2.Property("linux,ima-kexec-buffer")
	if !ok || !bytes.Equal(lb, sb) {
		t.Fatalf("linux,ima-kexec-buffer: loaded %x, seen %x", lb, sb)
	}
	rs, err := fdt.DecodeRanges(2, 2, sb)
	if err != nil || len(rs) != 1 {
		t.Fatal(err)
	}
	buf := rs[0]
	reserved := false
	for _, r := range seen.Reservations {
		if r == buf {
			reserved = true
		}
	}
	if !reserved {
		t.Fatalf("no /memreserve/ for %v in %v", buf, seen.Reservations)
	}
	// The seeds were consumed: the kernel zeroes kaslr-seed and removes rng-seed after use.
	if v, _ := lc.U64("kaslr-seed"); v == 0 {
		t.Fatal("gokexec loaded no kaslr-seed")
	}
	if v, err := sc2.U64("kaslr-seed"); err == nil && v != 0 {
		t.Fatalf("kaslr-seed %#x not consumed", v)
	}
	if _, ok := lc.Property("rng-seed"); !ok {
		t.Fatal("gokexec loaded no rng-seed")
	}
	if _, ok := sc2.Property("rng-seed"); ok {
		t.Fatal("rng-seed still present: the kernel did not take it")
	}
	// The hand-over buffer, as the second kernel's memory holds it.
	mem := res.Find(2, proto.TypeFile, "/run/ima-buffer.bin")
	if len(mem) != 1 || uint64(len(mem[0].Data)) != buf.Size {
		t.Fatalf("buffer read back: %d records", len(mem))
	}
	entries, err := ima.ParseKexecBuffer(mem[0].Data, binary.LittleEndian)
	if err != nil {
		t.Fatalf("the reserved range does not hold a valid hand-over buffer: %v", err)
	}
	if rep := ima.SimulateRestore(mem[0].Data, binary.LittleEndian); !rep.OK() {
		t.Fatalf("a restoring kernel would object: %+v", rep.Problems)
	}
	first := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	if len(entries) < len(first)+2 {
		t.Fatalf("buffer holds %d entries, boot 1 reported %d", len(entries), len(first))
	}
	for i := range first {
		if !bytes.Equal(first[i].TemplateData, entries[i].TemplateData) {
			t.Fatalf("buffer entry %d differs from boot 1's list", i)
		}
	}
	if name := entries[len(entries)-1].EventName(binary.LittleEndian); name != "kexec_execute" {
		t.Fatalf("buffer ends with %q, want gokexec's kexec_execute", name)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	writeFile(t, filepath.Join(art, "ima-buffer-from-boot-2.bin"), mem[0].Data)
	t.Logf("buffer %v: %d entries (boot 1 reported %d) read back in boot 2 via /proc/kcore; boot 2's own list: %s (no restore side on Debian arm64)",
		buf, len(entries), len(first), describe(list2))
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
