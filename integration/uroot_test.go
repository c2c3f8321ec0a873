package integration

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestURootBootloader (issue 15): a u-root initramfs built by u-root's own
// builder holds u-root's init and core commands, gokexec, and the example
// bootloader examples/imaboot as busybox commands. u-root's init runs
// imaboot as its uinit; imaboot writes an IMA policy, finds
// /boot/vmlinuz-2 and its initrd, loads them through package loader with
// the IMA hand-over, finalizes (extending the swtpm) and boots. The
// second kernel (the same Debian kernel, with the agent's initramfs) reports its list and PCRs: the
// list replays, imalog verify --tpm says consistent, and the loader's
// entries sit between one kexec_load and one kexec_execute marker.
func TestURootBootloader(t *testing.T) {
	skipShort(t)
	parallelGuest(t)
	ctx := context.Background()
	art := qemu.ArtifactsDir(t)
	bins, err := qemu.BuildGuestBinaries(ctx, filepath.Join(art, "..", "bin"), qemu.AgentPackage, "./cmd/imalog")
	if err != nil {
		t.Fatal(err)
	}
	// The second kernel is the first one again: imalog verify --tpm reads
	// securityfs as a stream, where it cannot search for a per-boot
	// extend method (Debian 6.1 extends sha384 SHA-1-padded, 6.12 not).
	k1, _, err := qemu.TestKernels()
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Stop() })

	// The second kernel's initramfs: the agent reports and verifies.
	next := qemu.NewInitramfs()
	for gp, hp := range map[string]string{"/init": bins[qemu.AgentPackage], "/bin/imalog": bins["./cmd/imalog"]} {
		if err := next.AddFile(gp, hp); err != nil {
			t.Fatal(err)
		}
	}
	if err := next.AddScenario(&proto.Scenario{Steps: map[string]proto.Step{
		"2": {Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{Run: []string{"/bin/imalog", "verify", "/sys/kernel/security/ima/binary_runtime_measurements", "--tpm"}},
		}},
	}}); err != nil {
		t.Fatal(err)
	}
	nextCPIO := filepath.Join(art, "next.cpio")
	if err := next.WriteTo(nextCPIO); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(art, "ima-policy")
	writeFile(t, policy, []byte(basePolicy))

	uimg := filepath.Join(art, "uroot.cpio")
	start := time.Now()
	if err := qemu.BuildURoot(ctx, qemu.URoot{
		Commands:  []string{"./cmd/gokexec", "./examples/imaboot"},
		Uinit:     "imaboot",
		UinitArgs: []string{"-dir", "/boot", "-policy", "/etc/ima-policy", "-append", nextAppend("2")},
		Files:     map[string]string{"/boot/vmlinuz-2": k1, "/boot/initrd.img-2": nextCPIO, "/etc/ima-policy": policy},
	}, uimg); err != nil {
		t.Fatal(err)
	}
	t.Logf("u-root image built in %v", time.Since(start).Round(time.Second))

	start = time.Now()
	res, err := qemu.Run(ctx, qemu.VM{Kernel: k1, Initrd: uimg, Step: "1", TPM: tpm, ArtifactsDir: art, Timeout: 10 * time.Minute})
	t.Logf("scenario wall time %v (serial log %s)", time.Since(start).Round(100*time.Millisecond), filepath.Join(art, "serial.log"))
	logAccel(t, res)
	serial, _ := os.ReadFile(filepath.Join(art, "serial.log"))
	if err != nil {
		t.Fatalf("%v\n%s", err, lastLines(string(serial), 40))
	}
	for _, want := range []string{"imaboot: booting /boot/vmlinuz-2", "imaboot: loaded with kexec_load", "of the loader's extended into /dev/tpm"} {
		if !strings.Contains(string(serial), want) {
			t.Errorf("serial log lacks %q:\n%s", want, lastLines(string(serial), 40))
		}
	}
	// u-root's boot sent no records: the agent's boot is the first.
	list := parseList(t, res.List(1, "binary_runtime_measurements"), "second kernel")
	requireReplays(t, list, pcrValues(t, res.PCRs(1), "sha1", "sha256"), "second kernel")
	if n := countBootAggregates(list); n != 2 {
		t.Fatalf("%d boot_aggregate entries, want the u-root boot's and the second kernel's", n)
	}
	load, exec := markers(t, list)
	if len(load) != 1 || len(exec) != 1 || load[0] >= exec[0] {
		t.Fatalf("markers kexec_load at %v, kexec_execute at %v", load, exec)
	}
	kernelMeasured := false
	for i := load[0]; i < exec[0]; i++ {
		if list[i].EventName(binary.LittleEndian) == "/boot/vmlinuz-2" {
			kernelMeasured = true
		}
	}
	if !kernelMeasured {
		t.Fatalf("no measurement of /boot/vmlinuz-2 between the markers: %s", describe(list[load[0]:exec[0]+1]))
	}
	var verify *proto.Record
	for i := range res.Records {
		if r := &res.Records[i]; r.Type == proto.TypeCmd && len(r.Argv) > 1 && r.Argv[1] == "verify" {
			verify = r
		}
	}
	if verify == nil || verify.Exit != 0 {
		if verify != nil {
			t.Fatalf("imalog verify --tpm in the second kernel: exit %d\n%s", verify.Exit, verify.Output)
		}
		t.Fatal("no imalog verify record from the second kernel")
	}
	t.Logf("second kernel: %d entries; imalog:\n%s", len(list), verify.Output)
}
