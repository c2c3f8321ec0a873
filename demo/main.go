// Command demo shows gokexec's purpose in one run: a QEMU guest with a
// software TPM boots Debian's 6.1 kernel, measures files into IMA, loads
// Debian's 6.12 kernel with gokexec and kexecs into it; the second kernel's
// measurement list is then checked against the TPM's PCRs with imalog.
//
// Run it with scripts/demo.sh. Artifacts land in $GOKEXEC_ARTIFACTS/demo
// (default build/artifacts/demo). The exit status is imalog verify's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func say(format string, a ...any) { fmt.Printf(format+"\n", a...) }

func run() (int, error) {
	ctx := context.Background()
	root, err := qemu.RepoRoot()
	if err != nil {
		return 0, err
	}
	art := os.Getenv("GOKEXEC_ARTIFACTS")
	if art == "" {
		art = filepath.Join(root, "build", "artifacts")
	}
	art = filepath.Join(art, "demo")
	if err := os.RemoveAll(art); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		return 0, err
	}
	k1, k2, err := qemu.TestKernels()
	if err != nil {
		return 0, err
	}
	pkg1, _ := os.ReadFile(filepath.Join(filepath.Dir(k1), "package"))
	pkg2, _ := os.ReadFile(filepath.Join(filepath.Dir(k2), "package"))
	say("== gokexec demo: a kexec soft reboot that keeps remote attestation working ==")
	say("first kernel:  %s (%s)", strings.TrimSpace(string(pkg1)), k1)
	say("second kernel: %s (%s)", strings.TrimSpace(string(pkg2)), k2)
	accel, err := qemu.ChooseAccel(ctx, "amd64", k1)
	if err != nil {
		return 0, err
	}
	say("TPM: swtpm, banks sha1 sha256 sha384; QEMU q35, 1 GiB, accelerator %s", accel)

	bins, err := qemu.BuildGuestBinaries(ctx, filepath.Join(art, "bin"), qemu.AgentPackage, "./cmd/gokexec")
	if err != nil {
		return 0, err
	}
	imalog := filepath.Join(art, "bin", "imalog")
	if out, err := exec.Command("go", "build", "-C", root, "-o", imalog, "./cmd/imalog").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("building imalog: %v\n%s", err, out)
	}
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		return 0, err
	}
	defer tpm.Stop()

	next := qemu.DefaultAppend("amd64") + " gkt.step=2"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: qemu.BasePolicy},
			{MeasureFiles: 25},
			{Report: []string{"pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-d", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", next, "--ima-extra", "64K"}},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list", "ascii"}}}},
	}}
	ir := qemu.NewInitramfs()
	for gp, hp := range map[string]string{"/init": bins[qemu.AgentPackage], "/bin/gokexec": bins["./cmd/gokexec"], "/boot/vmlinuz-2": k2} {
		if err := ir.AddFile(gp, hp); err != nil {
			return 0, err
		}
	}
	if err := ir.AddScenario(sc); err != nil {
		return 0, err
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		return 0, err
	}
	say("\n-- booting the first kernel; it measures 25 files, then runs gokexec -l and gokexec -e")
	start := time.Now()
	res, err := qemu.Run(ctx, qemu.VM{Kernel: k1, Initrd: initrd, Step: "1", TPM: tpm, ArtifactsDir: art, Timeout: 6 * time.Minute})
	if res != nil && res.AccelNote != "" {
		say("   note: %s", res.AccelNote)
	}
	if err != nil {
		return 0, err
	}
	say("   QEMU finished in %v on %s (serial console: %s)", time.Since(start).Round(time.Second), res.Accel.Name, filepath.Join(art, "serial.log"))
	if res.Boots() != 2 {
		return 0, errors.New("the second kernel did not report")
	}
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		say("\n[boot 1] $ %s   (exit %d)", strings.Join(c.Argv, " "), c.Exit)
		for _, l := range strings.Split(strings.TrimRight(string(c.Output), "\n"), "\n") {
			say("   %s", l)
		}
	}
	b2 := res.BootInfo(2)
	say("\n[boot 2] running %s", b2.Release)
	dir := filepath.Join(art, "boot-2")
	say("\n-- the attestation side: imalog verify on the second kernel's list against its TPM PCRs")
	args := []string{"verify", filepath.Join(dir, "binary_runtime_measurements")}
	for _, b := range []string{"sha1", "sha256", "sha384"} {
		args = append(args, "--pcrs", b+","+filepath.Join(dir, "pcr-"+b+".txt"))
	}
	say("$ imalog %s", strings.Join(args, " "))
	cmd := exec.Command(imalog, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return 0, err
	}
	say("\nimalog verify exit status: %d (0 consistent, 1 inconsistent, 2 bad input)", code)
	say("artifacts: %s", art)
	return code, nil
}
