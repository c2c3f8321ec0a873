package qemu

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// TestKexecChainKexecTools is the harness self-test: boot the first test
// kernel with swtpm, measure, load the second kernel with Debian's
// kexec-tools (kexec_load) and kexec into it; the second boot reports again.
// It shows the failure gokexec exists to fix: the TPM keeps PCR 10, the new
// kernel's list starts over.
func TestKexecChainKexecTools(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	t0 := time.Now()
	art := ArtifactsDir(t)
	k1, k2, err := TestKernels()
	if err != nil {
		t.Fatal(err)
	}
	rel1, err := KernelRelease(k1)
	if err != nil {
		t.Fatal(err)
	}
	rel2, err := KernelRelease(k2)
	if err != nil {
		t.Fatal(err)
	}
	policy := pseudoFS + "measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng\n"
	next := DefaultAppend("amd64") + " gkt.step=2"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 240, Actions: []proto.Action{
			{Policy: policy},
			{MeasureFiles: 5, Dir: "/tmp/boot1"},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/sbin/kexec", "-c", "-l", "/boot/vmlinuz-2", "--initrd=/run/next.cpio", "--append=" + next}, ExpectExit: new(int)},
			{Report: []string{"pcrs", "list"}}, // nothing is measured after this
			{Exec: []string{"/sbin/kexec", "-e"}},
		}},
		"2": {DeadlineSec: 120, Actions: []proto.Action{
			{Report: []string{"pcrs", "list"}},
		}},
	}}
	ir, err := AgentInitramfs(ctx, "amd64", filepath.Join(art, "bin"), sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := ir.AddHostBinary("/sbin/kexec", "/sbin/kexec"); err != nil {
		t.Fatalf("%v (Debian package kexec-tools)", err)
	}
	if err := ir.AddFile("/boot/vmlinuz-2", k2); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	tpm, err := StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	prep := time.Since(t0)
	res, err := Run(ctx, VM{Kernel: k1, Initrd: initrd, Step: "1", TPM: tpm, ArtifactsDir: art, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Boots(); n != 2 {
		t.Fatalf("got %d boots, want 2", n)
	}
	for i, want := range []string{rel1, rel2} {
		b := res.BootInfo(i + 1)
		if b.Release != want {
			t.Errorf("boot %d: release %q, want %q", i+1, b.Release, want)
		}
		if !strings.Contains(b.Cmdline, fmt.Sprintf("gkt.step=%d", i+1)) {
			t.Errorf("boot %d: cmdline %q lacks gkt.step=%d", i+1, b.Cmdline, i+1)
		}
	}
	l1 := parseList(t, res.List(1, "binary_runtime_measurements"))
	l2 := parseList(t, res.List(2, "binary_runtime_measurements"))
	if countName(l1, "boot_aggregate") != 1 || countName(l1, "/tmp/boot1/f000004") != 1 || countName(l1, "/boot/vmlinuz-2") != 1 {
		t.Errorf("boot 1 list lacks its boot_aggregate, measured files or the kexec kernel read (%d entries)", len(l1))
	}
	// kexec-tools hands nothing over: one boot_aggregate, nothing of boot 1.
	if n := countName(l2, "boot_aggregate"); n != 1 {
		t.Errorf("boot 2 list has %d boot_aggregate entries, want 1", n)
	}
	if countName(l2, "/tmp/boot1/f000000") != 0 {
		t.Error("boot 2 list contains boot 1's measurements: kexec-tools is not expected to carry them")
	}
	p1, p2 := res.PCRs(1), res.PCRs(2)
	if p1 == nil || p2 == nil {
		t.Fatal("PCR reports missing")
	}
	zero := make([]byte, 32)
	b1, _ := hex.DecodeString(p1["sha256"][10])
	b2, _ := hex.DecodeString(p2["sha256"][10])
	if got := replay(l1, crypto.SHA256, perBank, 10, zero); !bytes.Equal(got, b1) {
		t.Errorf("boot 1: list replays to %x, PCR 10 is %x", got, b1)
	}
	// The TPM was not reset: boot 2's PCR 10 continues from boot 1's.
	if got := replay(l2, crypto.SHA256, perBank, 10, b1); !bytes.Equal(got, b2) {
		t.Errorf("boot 2: PCR 10 %x is not boot 1's %x extended by boot 2's list (%x)", b2, b1, got)
	}
	if fresh := replay(l2, crypto.SHA256, perBank, 10, zero); bytes.Equal(fresh, b2) {
		t.Error("boot 2: PCR 10 equals a fresh boot's value: the TPM was reset")
	}
	for i := 0; i < 8; i++ { // firmware PCRs are untouched by a kexec
		if p1["sha256"][i] != p2["sha256"][i] {
			t.Errorf("PCR %d changed across kexec: %s -> %s", i, p1["sha256"][i], p2["sha256"][i])
		}
	}
	// Phase times, from the host's arrival times of the records.
	var boot1, load, boot2, done time.Duration
	for i, r := range res.Records {
		switch {
		case r.Type == proto.TypeBoot && r.Boot == 1:
			boot1 = res.Arrived[i]
		case r.Type == proto.TypeCmd && r.Boot == 1 && load == 0:
			load = res.Arrived[i]
		case r.Type == proto.TypeBoot && r.Boot == 2:
			boot2 = res.Arrived[i]
		case r.Type == proto.TypeDone:
			done = res.Arrived[i]
		}
	}
	t.Logf("phases: prepare (build, initramfs, swtpm) %v; boot 1 to agent %v; repack+kexec -l %v; report+kexec -e+boot 2 to agent %v; boot 2 report %v; QEMU total %v",
		prep.Round(time.Millisecond), boot1.Round(time.Millisecond), (load - boot1).Round(time.Millisecond),
		(boot2 - load).Round(time.Millisecond), (done - boot2).Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	t.Logf("boot 1: %d entries, boot 2: %d entries; artifacts in %s", len(l1), len(l2), art)
}
