package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// The systemd scenarios boot a Debian bookworm image (qemu.BuildDebianImage:
// systemd, udev, the cloud kernel and its initramfs-tools initrd, the
// gokexec package built by scripts/package.sh, the harness agent as a
// service) on a virtio disk, with ima_policy=tcb and a swtpm TPM, and reboot
// it with `systemctl kexec`.

var debOnce struct {
	sync.Once
	deb string
	err error
}

// projectDeb builds the package once per test process.
func projectDeb(t *testing.T) string {
	t.Helper()
	debOnce.Do(func() {
		root, err := qemu.RepoRoot()
		if err != nil {
			debOnce.err = err
			return
		}
		c := exec.Command("bash", filepath.Join(root, "scripts/package.sh"))
		c.Env = append(os.Environ(), "OUT_DIR="+filepath.Join(root, "build", "package"))
		var stderr bytes.Buffer
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			debOnce.err = err
			debOnce.deb = stderr.String()
			return
		}
		debOnce.deb = strings.TrimSpace(string(out))
	})
	if debOnce.err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", debOnce.err, debOnce.deb)
	}
	return debOnce.deb
}

type imageBuild struct {
	sync.Once
	img *qemu.DebianImage
	err error
}

var imageOnce, sepBootImageOnce imageBuild

// debianImage builds (or takes from the cache) the guest image once per
// test process.
func debianImage(t *testing.T) *qemu.DebianImage {
	t.Helper()
	return debianImageOf(t, &imageOnce, false)
}

// debianImageSeparateBoot is debianImage with /boot on a disk of its own.
func debianImageSeparateBoot(t *testing.T) *qemu.DebianImage {
	t.Helper()
	return debianImageOf(t, &sepBootImageOnce, true)
}

func debianImageOf(t *testing.T, imageOnce *imageBuild, separateBoot bool) *qemu.DebianImage {
	t.Helper()
	deb := projectDeb(t)
	imageOnce.Do(func() {
		ctx := context.Background()
		root, err := qemu.RepoRoot()
		if err != nil {
			imageOnce.err = err
			return
		}
		bins, err := qemu.BuildGuestBinaries(ctx, filepath.Join(root, "build", "artifacts", "bin"), qemu.AgentPackage)
		if err != nil {
			imageOnce.err = err
			return
		}
		start := time.Now()
		files, err := kexecToolsFiles()
		if err != nil {
			imageOnce.err = err
			return
		}
		imageOnce.img, imageOnce.err = qemu.BuildDebianImage(ctx, qemu.DebianOptions{Debs: []string{deb}, Agent: bins[qemu.AgentPackage], Files: files, SeparateBoot: separateBoot})
		if imageOnce.err == nil {
			i := imageOnce.img
			t.Logf("debian image %s (kernel %s) ready in %v: base build %v, image build %v (zero: cached)",
				i.Dir, i.Release, time.Since(start).Round(100*time.Millisecond), i.BaseBuild.Round(100*time.Millisecond), i.ImageBuild.Round(100*time.Millisecond))
		}
	})
	if imageOnce.err != nil {
		t.Fatal(imageOnce.err)
	}
	return imageOnce.img
}

// kexecToolsDir is where the image keeps this machine's kexec-tools binary
// and the libraries it links, for TestSystemdKexecWithKexecTools to install.
const kexecToolsDir = "/usr/lib/gkt-kexec-tools"

// kexecToolsFiles lists /usr/sbin/kexec and its libraries (ldd) as image
// files under kexecToolsDir.
func kexecToolsFiles() (map[string]string, error) {
	files := map[string]string{kexecToolsDir + "/usr/sbin/kexec": "/usr/sbin/kexec"}
	out, err := exec.Command("ldd", "/usr/sbin/kexec").Output()
	if err != nil {
		return nil, fmt.Errorf("ldd /usr/sbin/kexec (kexec-tools, installed by scripts/setup.sh): %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/") {
			files[kexecToolsDir+f[2]] = f[2]
		}
	}
	return files, nil
}

// systemdRun boots the image on a fresh overlay with its own TPM and the
// scenario, and returns the result and the serial log's text.
func systemdRun(t *testing.T, sc *proto.Scenario, reset bool) (*qemu.Result, string) {
	t.Helper()
	return systemdRunVM(t, sc, qemu.VM{Reset: reset})
}

// systemdRunVM is systemdRun with VM fields (Reset, Firmware) taken from vm.
func systemdRunVM(t *testing.T, sc *proto.Scenario, vm qemu.VM) (*qemu.Result, string) {
	t.Helper()
	skipShort(t)
	return systemdRunImage(t, debianImage(t), sc, vm)
}

// systemdRunImage is systemdRunVM on a given image; a SeparateBoot image's
// /boot disk is attached (on its own overlay) as the second virtio disk.
func systemdRunImage(t *testing.T, img *qemu.DebianImage, sc *proto.Scenario, vm qemu.VM) (*qemu.Result, string) {
	t.Helper()
	ctx := context.Background()
	art := qemu.ArtifactsDir(t)
	disk := filepath.Join(art, "disk.qcow2")
	if err := qemu.Overlay(ctx, img.Disk, disk); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(disk) })
	if img.BootDisk != "" {
		boot := filepath.Join(art, "boot.qcow2")
		if err := qemu.Overlay(ctx, img.BootDisk, boot); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(boot) })
		vm.ExtraArgs = append(vm.ExtraArgs, "-drive", "file="+boot+",format=qcow2,if=virtio,cache=unsafe")
	}
	b, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	scPath := filepath.Join(art, "scenario.json")
	writeFile(t, scPath, b)
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Stop() })
	start := time.Now()
	vm.Kernel, vm.Initrd, vm.Disk, vm.Append = img.Kernel, img.Initrd, disk, qemu.DebianAppend
	vm.TPM, vm.ArtifactsDir, vm.Timeout = tpm, art, 15*time.Minute
	vm.ExtraArgs = append(vm.ExtraArgs, qemu.FwCfgArgs("scenario", scPath)...)
	res, err := qemu.Run(ctx, vm)
	t.Logf("scenario wall time %v (serial log %s)", time.Since(start).Round(100*time.Millisecond), filepath.Join(art, "serial.log"))
	logAccel(t, res)
	if res != nil {
		for _, rec := range res.Records {
			if rec.Type == proto.TypeCmd {
				t.Logf("boot %d at %v: %v exit %d:\n%s", rec.Boot, time.Duration(rec.MonoNS).Round(100*time.Millisecond), rec.Argv, rec.Exit, strings.TrimSpace(string(rec.Output)))
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	serial, err := os.ReadFile(filepath.Join(art, "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	return res, string(serial)
}

// kexecStep is the first boot of the kexec scenarios: load the image's own
// kernel and initrd with the running command line, then systemctl kexec.
func kexecStep(img *qemu.DebianImage, before ...proto.Action) proto.Step {
	acts := []proto.Action{{Run: []string{"systemctl", "is-active", "multi-user.target"}, ExpectExit: intp(0)}}
	acts = append(acts, before...)
	acts = append(acts,
		proto.Action{Run: []string{"/usr/sbin/gokexec", "-l", "/boot/vmlinuz-" + img.Release, "--initrd", "/boot/initrd.img-" + img.Release, "--reuse-cmdline"}, ExpectExit: intp(0)},
		proto.Action{Report: []string{"pcrs", "list"}},
		proto.Action{Exec: []string{"systemctl", "kexec"}},
	)
	return proto.Step{DeadlineSec: 600, Actions: acts}
}

const guestList = "/sys/kernel/security/ima/binary_runtime_measurements"

// The harness reads PCRs bank by bank from sysfs while systemd keeps
// measuring, so host-side checks use ima.ReadsPerBank; the guest's own
// imalog verify --tpm reads all banks at one instant.

// secondStep reports the system that came up and its own verdict.
func secondStep(wantVerify int, extra ...proto.Action) proto.Step {
	acts := []proto.Action{
		{Run: []string{"systemctl", "is-active", "multi-user.target"}, ExpectExit: intp(0)},
		{Report: []string{"boot", "pcrs", "list"}},
		// Exit 2 (bad input) is retried: on a loaded host the guest's TPM
		// driver can time out on swtpm ("write /dev/tpmrm0: timer expired").
		{Run: []string{"sh", "-c", "for i in 1 2 3; do /usr/bin/imalog verify " + guestList + " --tpm; rc=$?; [ $rc -ne 2 ] && exit $rc; sleep 5; done; exit $rc"}, ExpectExit: intp(wantVerify)},
	}
	return proto.Step{DeadlineSec: 300, Actions: append(acts, extra...)}
}

func guestCmdOutput(t *testing.T, res *qemu.Result, boot int, prog string) string {
	t.Helper()
	for _, c := range res.Find(boot, proto.TypeCmd, "") {
		if len(c.Argv) > 0 && filepath.Base(c.Argv[0]) == prog {
			return string(c.Output)
		}
		if len(c.Argv) == 3 && c.Argv[0] == "sh" && strings.Contains(c.Argv[2], "/"+prog+" ") {
			return string(c.Output)
		}
	}
	t.Fatalf("boot %d: no %s command reported", boot, prog)
	return ""
}

// bootSpans returns the indexes of the boot_aggregate entries.
func bootSpans(es []ima.Entry) []int {
	var idx []int
	for i := range es {
		if isBootAggregate(es[i]) {
			idx = append(idx, i)
		}
	}
	return idx
}

// TestSystemdKexecKeepsAttestation (issue 14, 4a): gokexec -l of the image's
// own kernel and initrd with --reuse-cmdline, then systemctl kexec; the
// package's system-shutdown hook finalizes; the second system reaches
// multi-user.target with a list of two boots joined by kexec_load and
// kexec_execute, and imalog verify --tpm in it says consistent.
func TestSystemdKexecKeepsAttestation(t *testing.T) {
	t.Parallel()
	systemdKexecKeepsAttestation(t, "")
}

// TestSystemdKexecKeepsAttestationUEFI (4d) is the same under OVMF: the
// hand-over keeps the EFI boot and the list.
func TestSystemdKexecKeepsAttestationUEFI(t *testing.T) {
	t.Parallel()
	systemdKexecKeepsAttestation(t, "uefi")
}

func systemdKexecKeepsAttestation(t *testing.T, firmware string) {
	img := debianImage(t)
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": kexecStep(img), "2": secondStep(0, proto.Action{Run: []string{"ls", "/sys/firmware/efi"}})}}
	res, serial := systemdRunVM(t, sc, qemu.VM{Firmware: firmware})
	if firmware == "uefi" {
		// ls /sys/firmware/efi in the second system: an EFI boot still.
		for _, c := range res.Find(2, proto.TypeCmd, "") {
			if len(c.Argv) == 2 && c.Argv[0] == "ls" && c.Exit != 0 {
				t.Fatalf("the second system is not an EFI boot: %s", c.Output)
			}
		}
	}
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2", n)
	}
	if !strings.Contains(serial, "kexec_core: Starting new kernel") {
		t.Fatal("serial log has no kexec into the new kernel")
	}
	if !strings.Contains(serial, "gokexec-shutdown: finalized the IMA hand-over") {
		t.Fatalf("the hook's console line is not in the serial log; its lines: %q", grepLines(serial, "gokexec-shutdown"))
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	ba := bootSpans(list2)
	if len(ba) != 2 {
		t.Fatalf("boot 2 list: %s; want two boot_aggregates", describe(list2))
	}
	load, execs := markers(t, list2)
	if len(load) != 1 || len(execs) != 1 || !(ba[0] < load[0] && load[0] < execs[0] && execs[0] < ba[1]) {
		t.Fatalf("markers kexec_load %v, kexec_execute %v, boot_aggregates %v: want one of each between the two boots", load, execs, ba)
	}
	r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{Reads: ima.ReadsPerBank})
	if !r.Consistent {
		t.Fatalf("boot 2: list does not replay to the PCRs read in the guest: %v", r.Problems)
	}
	// The host's own check (issue 23): the first system's list a byte prefix
	// of the second's, marker payloads equal to their positions, every bank
	// matching past the last boot_aggregate. The guest's imalog is a second
	// opinion, never the result.
	requireHandoverPerBank(t, res, 64<<10)
	out := guestCmdOutput(t, res, 2, "imalog")
	if !strings.Contains(out, "verdict: consistent") {
		t.Fatalf("imalog verify --tpm in the second system:\n%s", out)
	}
	t.Logf("second system: %s, kexec_load at %d, kexec_execute at %d; replay prefix %d; hook: %q",
		describe(list2), load[0], execs[0], r.Prefix, grepLines(serial, "gokexec-shutdown"))
}

// TestSystemdKexecWithoutHook (4b): the same without the system-shutdown
// hook: nothing finalizes, the hand-over is the snapshot taken at -l, and
// the second system's verdict is that a cold boot is needed.
func TestSystemdKexecWithoutHook(t *testing.T) {
	t.Parallel()
	img := debianImage(t)
	rm := proto.Action{Run: []string{"rm", "-f", "/usr/lib/systemd/system-shutdown/gokexec"}, ExpectExit: intp(0)}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": kexecStep(img, rm), "2": secondStep(1)}}
	res, serial := systemdRun(t, sc, false)
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2", n)
	}
	if strings.Contains(serial, "gokexec-shutdown:") {
		t.Fatalf("the removed hook ran: %q", grepLines(serial, "gokexec-shutdown"))
	}
	if !strings.Contains(serial, "kexec_core: Starting new kernel") {
		t.Fatal("serial log has no kexec into the new kernel")
	}
	out := guestCmdOutput(t, res, 2, "imalog")
	if !strings.Contains(out, "verdict: inconsistent") || !strings.Contains(out, "a cold boot is needed") {
		t.Fatalf("imalog verify --tpm in the second system, want inconsistent and a cold boot needed:\n%s", out)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	load, execs := markers(t, list2)
	if countBootAggregates(list2) != 2 || len(load) != 1 || len(execs) != 0 {
		t.Fatalf("boot 2: %s, kexec_load %v, kexec_execute %v; want two boots, a kexec_load and no kexec_execute", describe(list2), load, execs)
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{Reads: ima.ReadsPerBank}); r.Consistent && r.Prefix == len(list2) {
		t.Fatal("boot 2: the whole list replays although nothing finalized")
	}
	t.Logf("second system: %s; imalog: %s", describe(list2), lastLines(out, 1))
}

// TestSystemdKexecFinalizeFails (4c): the copy of the kernel that -l kept
// in its state under /run is altered after the load (the kernel's own file
// no longer matters: -e and the hook never read it again, issue 25), so
// finalize refuses, the hook unloads the image and systemd falls back to a
// normal reboot: the machine resets (firmware, TPM), never soft-reboots,
// and comes up with a fresh, consistent list of one boot.
func TestSystemdKexecFinalizeFails(t *testing.T) {
	t.Parallel()
	img := debianImage(t)
	st := kexecStep(img)
	// Alter the kept kernel after the load, just before systemctl kexec.
	tamper := proto.Action{Run: []string{"sh", "-c", "echo changed >>/run/gokexec/kernel.bin"}, ExpectExit: intp(0)}
	n := len(st.Actions)
	st.Actions = append(st.Actions[:n-1:n-1], tamper, st.Actions[n-1])
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": st, "2": secondStep(0)}}
	res, serial := systemdRun(t, sc, true)
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2", n)
	}
	hook := grepLines(serial, "gokexec-shutdown")
	if len(hook) != 1 || !strings.Contains(hook[0], "gokexec --finalize failed") || !strings.Contains(hook[0], "unloaded the kernel") {
		t.Fatalf("hook lines %q: want one saying finalize failed and the kernel was unloaded", hook)
	}
	if strings.Contains(serial, "kexec_core: Starting new kernel") {
		t.Fatal("the machine soft-rebooted although finalize failed")
	}
	if !strings.Contains(serial, "reboot: Restarting system") {
		t.Fatal("no normal reboot in the serial log")
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	load, execs := markers(t, list2)
	if countBootAggregates(list2) != 1 || len(load)+len(execs) != 0 {
		t.Fatalf("boot 2: %s, markers %v %v; want a cold boot: one boot_aggregate, no kexec markers", describe(list2), load, execs)
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{Reads: ima.ReadsPerBank}); !r.Consistent {
		t.Fatalf("boot 2: the fresh list does not replay: %v", r.Problems)
	}
	if out := guestCmdOutput(t, res, 2, "imalog"); !strings.Contains(out, "verdict: consistent") {
		t.Fatalf("imalog verify --tpm after the reboot:\n%s", out)
	}
	t.Logf("after the normal reboot: %s; hook: %q", describe(list2), hook)
}

// TestSystemdKexecLoadUnit: the package's optional gokexec-load.service,
// enabled and started, loads the kernel named in /etc/default/gokexec when
// the kexec.target transaction stops it (systemctl start kexec.target,
// since Debian 12's systemctl kexec refuses to start with nothing loaded);
// the hook finalizes and the second system's list is consistent.
func TestSystemdKexecLoadUnit(t *testing.T) {
	t.Parallel()
	img := debianImage(t)
	conf := "KERNEL_IMAGE=/boot/vmlinuz-" + img.Release + "\nINITRD=/boot/initrd.img-" + img.Release + "\n"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Run: []string{"systemctl", "is-active", "multi-user.target"}, ExpectExit: intp(0)},
			{Run: []string{"sh", "-c", "printf '" + conf + "' >>/etc/default/gokexec"}, ExpectExit: intp(0)},
			{Run: []string{"systemctl", "enable", "--now", "gokexec-load.service"}, ExpectExit: intp(0)},
			{Run: []string{"cat", "/sys/kernel/kexec_loaded"}, ExpectExit: intp(0)},
			{Exec: []string{"systemctl", "start", "kexec.target"}},
		}},
		"2": secondStep(0),
	}}
	res, serial := systemdRun(t, sc, false)
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2", n)
	}
	if got := strings.TrimSpace(guestCmdOutput(t, res, 1, "cat")); got != "0" {
		t.Fatalf("kexec_loaded before kexec.target: %q, want 0 (the unit must do the load)", got)
	}
	if !strings.Contains(serial, "gokexec-shutdown: finalized the IMA hand-over") {
		t.Fatalf("hook lines %q", grepLines(serial, "gokexec-shutdown"))
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	load, execs := markers(t, list2)
	if countBootAggregates(list2) != 2 || len(load) != 1 || len(execs) != 1 {
		t.Fatalf("boot 2: %s, kexec_load %v, kexec_execute %v", describe(list2), load, execs)
	}
	requireHandoverPerBank(t, res, 64<<10) // the host verifies what the guest reports
	if out := guestCmdOutput(t, res, 2, "imalog"); !strings.Contains(out, "verdict: consistent") {
		t.Fatalf("imalog verify --tpm:\n%s", out)
	}
	t.Logf("second system: %s", describe(list2))
}

// TestSystemdKexecSeparateBoot (issue 22 item 4, issue 25 item 1): the image
// has /boot on a disk of its own, mounted from /etc/fstab. gokexec-load.service
// (enabled and started) and gokexec-as-kexec (gokexec installed as kexec) are
// turned on, then systemctl start kexec.target: the unit loads while /boot
// is still mounted (RequiresMountsFor=/boot, the load at its stop), the
// shutdown unmounts /boot, the hook finalizes (and sees nothing mounted on
// /boot), and systemd-shutdown's `kexec -e` — gokexec's — soft-reboots
// without the kernel's files. The second system's list holds the first
// system's entries with one kexec_load and one kexec_execute between the two
// boot_aggregates, and replays to its PCRs.
func TestSystemdKexecSeparateBoot(t *testing.T) {
	t.Parallel()
	skipShort(t)
	img := debianImageSeparateBoot(t)
	conf := "KERNEL_IMAGE=/boot/vmlinuz-" + img.Release + "\nINITRD=/boot/initrd.img-" + img.Release + "\n"
	findBoot := proto.Action{Run: []string{"findmnt", "-n", "-o", "SOURCE,FSTYPE", "/boot"}, ExpectExit: intp(0)}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Run: []string{"systemctl", "is-active", "multi-user.target"}, ExpectExit: intp(0)},
			findBoot,
			{Run: []string{"sh", "-c", "printf '" + conf + "' >>/etc/default/gokexec"}, ExpectExit: intp(0)},
			{Run: []string{"systemctl", "enable", "--now", "gokexec-load.service"}, ExpectExit: intp(0)},
			{Run: []string{"gokexec-as-kexec", "enable"}, ExpectExit: intp(0)},
			{Run: []string{"readlink", "-f", "/sbin/kexec"}, ExpectExit: intp(0)},
			{Run: []string{"cat", "/sys/kernel/kexec_loaded"}, ExpectExit: intp(0)},
			{Report: []string{"pcrs", "list"}},
			{Exec: []string{"systemctl", "start", "kexec.target"}},
		}},
		"2": secondStep(0, findBoot),
	}}
	res, serial := systemdRunImage(t, img, sc, qemu.VM{})
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2 (hook lines %q)", n, grepLines(serial, "gokexec-shutdown"))
	}
	if got := guestCmdOutput(t, res, 1, "findmnt"); !strings.HasPrefix(strings.TrimSpace(got), "/dev/vd") || !strings.Contains(got, "ext4") {
		t.Fatalf("first system: findmnt /boot says %q, want the second virtio disk", got)
	}
	if got := strings.TrimSpace(guestCmdOutput(t, res, 1, "readlink")); got != "/usr/sbin/gokexec" {
		t.Fatalf("/sbin/kexec resolves to %q after gokexec-as-kexec enable", got)
	}
	if got := strings.TrimSpace(guestCmdOutput(t, res, 1, "cat")); got != "0" {
		t.Fatalf("kexec_loaded before kexec.target: %q, want 0 (the unit must do the load)", got)
	}
	if !strings.Contains(serial, "kexec_core: Starting new kernel") {
		t.Fatalf("no soft reboot (kexec -e failed and systemd rebooted normally?); hook lines %q", grepLines(serial, "gokexec-shutdown"))
	}
	hook := grepLines(serial, "gokexec-shutdown")
	if len(hook) != 1 || !strings.Contains(hook[0], "finalized the IMA hand-over") || !strings.Contains(hook[0], "(nothing mounted on /boot)") {
		t.Fatalf("hook lines %q: want one saying it finalized with nothing mounted on /boot", hook)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	ba := bootSpans(list2)
	load, execs := markers(t, list2)
	if len(ba) != 2 || len(load) != 1 || len(execs) != 1 || !(ba[0] < load[0] && load[0] < execs[0] && execs[0] < ba[1]) {
		t.Fatalf("boot 2: %s, kexec_load %v, kexec_execute %v, boot_aggregates %v: want one of each between the two boots", describe(list2), load, execs, ba)
	}
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	if len(list1) == 0 || len(list1) > ba[1] {
		t.Fatalf("boot 1 reported %d entries; the second list's first boot has %d", len(list1), ba[1])
	}
	for i := range list1 {
		a, b := list1[i], list2[i]
		if a.PCR != b.PCR || a.TemplateDigest != b.TemplateDigest || a.TemplateName != b.TemplateName || !bytes.Equal(a.TemplateData, b.TemplateData) {
			t.Fatalf("entry %d of the first system's list differs in the second system's", i)
		}
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{Reads: ima.ReadsPerBank}); !r.Consistent {
		t.Fatalf("boot 2: list does not replay to the PCRs read in the guest: %v", r.Problems)
	}
	if out := guestCmdOutput(t, res, 2, "imalog"); !strings.Contains(out, "verdict: consistent") {
		t.Fatalf("imalog verify --tpm in the second system:\n%s", out)
	}
	t.Logf("second system: %s, kexec_load at %d, kexec_execute at %d; hook: %q", describe(list2), load[0], execs[0], hook)
}

// TestSystemdKexecWithKexecTools: with kexec-tools' /usr/sbin/kexec in the
// guest (this machine's Debian binary and the libraries it links, kept in
// the image under kexecToolsDir), systemd
// 252 reboots by executing kexec -e after the hooks. The hook runs kexec
// --version before finalize, so that executable and its libraries are
// measured before the hand-over: the second system still replays.
func TestSystemdKexecWithKexecTools(t *testing.T) {
	t.Parallel()
	img := debianImage(t)
	// Install the image's copy of kexec-tools (kexecToolsDir) where the
	// binary and the loader expect it, without replacing the image's own
	// libraries, and without running it.
	acts := []proto.Action{{Run: []string{"sh", "-c", "cd " + kexecToolsDir + " && for f in $(find . -type f); do [ -e /$f ] || install -D -m 0755 $f /$f; done && ldconfig"}, ExpectExit: intp(0)}}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": kexecStep(img, acts...), "2": secondStep(0)}}
	res, serial := systemdRun(t, sc, false)
	if n := res.Boots(); n != 2 {
		t.Fatalf("%d boots, want 2", n)
	}
	if !strings.Contains(serial, "gokexec-shutdown: finalized the IMA hand-over") {
		t.Fatalf("hook lines %q", grepLines(serial, "gokexec-shutdown"))
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	ba := bootSpans(list2)
	measured := false
	for i := 0; len(ba) == 2 && i < ba[1]; i++ {
		if list2[i].EventName(binary.LittleEndian) == "/usr/sbin/kexec" {
			measured = true
		}
	}
	if len(ba) != 2 || !measured {
		t.Fatalf("boot 2: %s; want two boots and /usr/sbin/kexec measured in the first", describe(list2))
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{Reads: ima.ReadsPerBank}); !r.Consistent {
		t.Fatalf("boot 2 does not replay: %v", r.Problems)
	}
	if out := guestCmdOutput(t, res, 2, "imalog"); !strings.Contains(out, "verdict: consistent") {
		t.Fatalf("imalog verify --tpm:\n%s", out)
	}
	t.Logf("second system: %s", describe(list2))
}

// TestPackageChrootInstallUpgradePurge installs the package in a copy of the
// image's base root file system (a chroot on this machine: nothing of the
// package runs here), upgrades it over itself with a newer version keeping
// a locally changed conffile, and purges it.
func TestPackageChrootInstallUpgradePurge(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	base, took, err := qemu.DebianBase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("base root file system %s (built in %v; zero: cached)", base, took)
	root, err := qemu.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	build := func(version string) string {
		c := exec.Command("bash", filepath.Join(root, "scripts/package.sh"))
		c.Env = append(os.Environ(), "OUT_DIR="+out, "VERSION="+version)
		b, err := c.Output()
		if err != nil {
			t.Fatalf("package.sh: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	v1, v2 := build("0.9.0"), build("0.9.1")
	ch := filepath.Join(t.TempDir(), "root")
	if b, err := exec.Command("cp", "-a", base, ch).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	t.Cleanup(func() { os.RemoveAll(ch) })
	for i, d := range []string{v1, v2} {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ch, "tmp", []string{"v1.deb", "v2.deb"}[i]), b)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		c := exec.Command("chroot", append([]string{ch, "dpkg"}, args...)...)
		c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive"}
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v in the chroot: %v\n%s", args, err, b)
		}
		return string(b)
	}
	t.Logf("install:\n%s", dpkg("-i", "/tmp/v1.deb"))
	// (The base excludes /usr/share/man from every package, so the man
	// pages are checked by TestPackageContents, not here.)
	for _, p := range []string{"usr/sbin/gokexec", "usr/bin/imalog", "usr/lib/systemd/system-shutdown/gokexec", "etc/default/gokexec", "usr/share/doc/gokexec/copyright"} {
		if _, err := os.Stat(filepath.Join(ch, p)); err != nil {
			t.Fatalf("after install: %v", err)
		}
	}
	conf := filepath.Join(ch, "etc/default/gokexec")
	b, _ := os.ReadFile(conf)
	writeFile(t, conf, append(b, []byte("ON_FINALIZE_FAILURE=kexec\n")...))
	t.Logf("upgrade:\n%s", dpkg("-i", "/tmp/v2.deb"))
	if s := dpkg("-s", "gokexec"); !strings.Contains(s, "Version: 0.9.1") || !strings.Contains(s, "Status: install ok installed") {
		t.Fatalf("after upgrade:\n%s", s)
	}
	if b, _ := os.ReadFile(conf); !bytes.HasSuffix(b, []byte("ON_FINALIZE_FAILURE=kexec\n")) {
		t.Fatal("the upgrade did not keep the changed conffile")
	}
	t.Logf("purge:\n%s", dpkg("--purge", "gokexec"))
	for _, p := range []string{"usr/sbin/gokexec", "usr/bin/imalog", "usr/lib/systemd/system-shutdown/gokexec", "etc/default/gokexec", "usr/libexec/gokexec", "usr/share/doc/gokexec"} {
		if _, err := os.Lstat(filepath.Join(ch, p)); err == nil {
			t.Errorf("after purge %s is still there", p)
		}
	}
	c := exec.Command("chroot", ch, "dpkg-query", "-W", "-f=${Status}", "gokexec")
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if b, err := c.CombinedOutput(); err == nil && strings.Contains(string(b), "installed") && !strings.Contains(string(b), "not-installed") {
		t.Fatalf("dpkg-query after purge: %s", b)
	}
}

// grepLines returns the lines of s that contain sub, trimmed of the kernel
// timestamp.
func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, sub); i >= 0 {
			out = append(out, strings.TrimSpace(l[i:]))
		}
	}
	return out
}
