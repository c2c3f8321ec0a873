package qemu

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// skipShort skips QEMU boots under go test -short (the README's fast unit
// test run); the full suite (scripts/test.sh) always runs them.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
}

// bootOnce builds an agent initramfs for sc (plus busybox as /bin/busybox)
// and runs it on the first test kernel.
func bootOnce(t *testing.T, sc *proto.Scenario, vm VM) (*Result, error) {
	t.Helper()
	skipShort(t)
	ctx := context.Background()
	art := ArtifactsDir(t)
	k, _, err := TestKernels()
	if err != nil {
		t.Fatal(err)
	}
	ir, err := AgentInitramfs(ctx, "amd64", filepath.Join(art, "bin"), sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := ir.AddHostBinary("/bin/busybox", "/bin/busybox"); err != nil {
		t.Fatalf("%v (Debian package busybox-static)", err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	if vm.TPM == nil {
		tpm, err := StartTPM(ctx, filepath.Join(art, "tpm"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tpm.Stop() })
		vm.TPM = tpm
	}
	vm.Kernel, vm.Initrd, vm.ArtifactsDir = k, initrd, art
	if vm.Timeout == 0 {
		vm.Timeout = 3 * time.Minute
	}
	return Run(ctx, vm)
}

func TestBootReport(t *testing.T) {
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Policy: pseudoFS + "measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng\n"},
		{MeasureFiles: 5},
		{Run: []string{"/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3"}, ExpectExit: func() *int { i := 3; return &i }()},
		{WriteFile: "/tmp/x/hello", Data: []byte("hello\x00world")},
		{File: "/tmp/x/hello"},
		{Report: []string{"pcrs", "list", "ascii"}},
	}}}}
	res, err := bootOnce(t, sc, VM{Step: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range res.Records {
		types = append(types, r.Type)
	}
	if got, want := strings.Join(types, ","), "boot,cmd,file,pcrs,list,list,done"; got != want {
		t.Fatalf("records %s, want %s", got, want)
	}
	cmd := res.Find(1, proto.TypeCmd, "")[0]
	if cmd.Exit != 3 || !bytes.Contains(cmd.Output, []byte("out\n")) || !bytes.Contains(cmd.Output, []byte("err\n")) {
		t.Errorf("cmd record: exit %d output %q", cmd.Exit, cmd.Output)
	}
	if f := res.Find(1, proto.TypeFile, "/tmp/x/hello"); len(f) != 1 || string(f[0].Data) != "hello\x00world" {
		t.Errorf("file record: %+v", f)
	}
	ascii := string(res.List(1, "ascii_runtime_measurements"))
	if n := strings.Count(ascii, "\n"); n != 1+5+1 { // boot_aggregate, files, the file record's read
		t.Errorf("ASCII list has %d entries, want 7:\n%s", n, ascii)
	}
	for _, bank := range []string{"sha1", "sha256", "sha384"} {
		if v := res.PCRs(1)[bank]; len(v) != 24 || len(v[10]) != 2*map[string]int{"sha1": 20, "sha256": 32, "sha384": 48}[bank] {
			t.Errorf("bank %s: %d PCRs, PCR 10 %q", bank, len(v), v)
		}
	}
	// The artifacts are what evmctl, the reference verifier, accepts.
	dir := filepath.Dir(res.Serial)
	out, err := exec.Command("evmctl", "ima_measurement", "--pcrs", "sha256,"+filepath.Join(dir, "boot-1", "pcr-sha256.txt"),
		filepath.Join(dir, "boot-1", "binary_runtime_measurements")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Matched")) {
		t.Errorf("evmctl rejects the artifacts: %v\n%s", err, out)
	}
	for _, f := range []string{"serial.log", "protocol.log", "records.jsonl", "boot-1/info.txt", "boot-1/ascii_runtime_measurements", "boot-1/file-tmp_x_hello", "boot-1/cmd-busybox.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("artifact missing: %v", err)
		}
	}
	serial, _ := os.ReadFile(res.Serial)
	if !bytes.Contains(serial, []byte("Linux version")) || bytes.Contains(serial, []byte(proto.Prefix+"{")) {
		t.Error("serial log should hold the kernel console and no protocol records")
	}
}

func TestRunGuestError(t *testing.T) {
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{{MeasureFiles: 1}}}}}
	res, err := bootOnce(t, sc, VM{Step: "nosuchstep"})
	if !errors.Is(err, ErrGuest) || !strings.Contains(err.Error(), `no step "nosuchstep"`) {
		t.Fatalf("got %v, want ErrGuest naming the step", err)
	}
	if res.Done() || len(res.Errors()) != 1 {
		t.Errorf("want exactly one error record and no done: %+v", res.Records)
	}
}

func TestRunWatchdog(t *testing.T) {
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {DeadlineSec: 3, Actions: []proto.Action{
		{Run: []string{"/bin/busybox", "sleep", "600"}},
	}}}}
	_, err := bootOnce(t, sc, VM{Step: "1"})
	if !errors.Is(err, ErrGuest) || !strings.Contains(err.Error(), "watchdog") {
		t.Fatalf("got %v, want a watchdog ErrGuest", err)
	}
}

func TestRunTimeout(t *testing.T) {
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Run: []string{"/bin/busybox", "sleep", "600"}},
	}}}}
	start := time.Now()
	res, err := bootOnce(t, sc, VM{Step: "1", Timeout: 2 * time.Second})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), res.Serial) {
		t.Fatalf("got %v, want ErrTimeout naming the serial log", err)
	}
	if time.Since(start) > time.Minute {
		t.Error("QEMU was not killed at the timeout")
	}
}

func TestMissingTool(t *testing.T) {
	_, err := lookTool("swtpm_definitely_not_installed")
	if !errors.Is(err, ErrMissingTool) {
		t.Fatalf("got %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	_, err = StartTPM(context.Background(), t.TempDir(), nil)
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "swtpm-tools") {
		t.Fatalf("got %v, want ErrMissingTool naming swtpm-tools", err)
	}
}

// The agent powers off the machine it runs on, so it must refuse to run
// anywhere but as a guest's PID 1.
func TestAgentRefusesOutsideGuest(t *testing.T) {
	bins, err := BuildGuestBinaries(context.Background(), t.TempDir(), AgentPackage)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bins[AgentPackage]).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !bytes.Contains(out, []byte("not PID 1")) {
		t.Fatalf("agent on the host: %v %s", err, out)
	}
}

// One TPM serves several QEMU runs; each run is a cold boot (QEMU
// re-initialises swtpm, so PCRs start over), unlike a kexec inside a run.
func TestTPMAcrossRuns(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	// Not under ArtifactsDir: bootOnce makes that afresh for every run.
	tpm, err := StartTPM(ctx, t.TempDir(), []string{"sha256"})
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Policy: pseudoFS + "measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng\n"},
		{MeasureFiles: 3},
		{Report: []string{"pcrs", "list"}},
	}}}}
	var pcr10 []string
	for i := 0; i < 2; i++ {
		res, err := bootOnce(t, sc, VM{Step: "1", TPM: tpm})
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		p := res.PCRs(1)
		if len(p) != 1 || len(p["sha256"]) != 24 {
			t.Fatalf("run %d: banks %v, want only sha256", i+1, p)
		}
		es := parseList(t, res.List(1, "binary_runtime_measurements"))
		b, _ := hex.DecodeString(p["sha256"][10])
		if got := replay(es, crypto.SHA256, perBank, 10, make([]byte, 32)); !bytes.Equal(got, b) {
			t.Errorf("run %d: PCR 10 %x does not start from zero (replay %x)", i+1, b, got)
		}
		pcr10 = append(pcr10, p["sha256"][10])
	}
	// Same measurements from reset PCRs: the same value (a kexec would
	// have continued from the first).
	if pcr10[0] != pcr10[1] {
		t.Errorf("PCR 10 differs between two cold boots: %v", pcr10)
	}
	t.Logf("PCR 10 per cold boot: %v", pcr10)
}
