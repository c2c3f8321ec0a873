package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// basePolicy measures what root reads, in PCR 10, and keeps the pseudo file
// systems out so that reading PCRs and lists does not itself add entries.
const basePolicy = qemu.BasePolicy

// guest is one prepared scenario: binaries, kernels, TPM and artifacts.
type guest struct {
	t       *testing.T
	art     string
	bins    map[string]string
	k1, k2  string
	tpm     *qemu.TPM
	files   map[string]string // guest path -> host path
	hostBin map[string]string // guest path -> host executable (with its libraries)
	ctx     context.Context
	timeout time.Duration
	// appendExtra is added to the first kernel's command line only.
	appendExtra string
}

// parallel holds the tests that parallelGuest has made parallel.
var parallel sync.Map

// parallelGuest runs t in parallel with the other guest scenarios: each has
// its own TPM, artifacts and QEMU, and a guest uses one core, so on two
// cores two scenarios at a time take about half the wall time (go test's
// -parallel, GOMAXPROCS by default, bounds how many). A test that boots
// more than one guest calls it once per guest; only the first counts.
func parallelGuest(t *testing.T) {
	t.Helper()
	if _, dup := parallel.LoadOrStore(t, true); !dup {
		t.Parallel()
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU scenario; skipped with -short")
	}
}

func newGuest(t *testing.T, extraPkgs ...string) *guest {
	t.Helper()
	return newGuestNamed(t, "", extraPkgs...)
}

// newGuestNamed is newGuest with a separate artifacts subdirectory, for a
// test that boots more than one guest.
func newGuestNamed(t *testing.T, name string, extraPkgs ...string) *guest {
	t.Helper()
	skipShort(t)
	parallelGuest(t)
	ctx := context.Background()
	art := qemu.ArtifactsDir(t)
	if name != "" {
		art = filepath.Join(art, name)
		if err := os.MkdirAll(art, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pkgs := append([]string{qemu.AgentPackage, "./cmd/gokexec"}, extraPkgs...)
	bins, err := qemu.BuildGuestBinaries(ctx, filepath.Join(art, "..", "bin"), pkgs...)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2, err := qemu.TestKernels()
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := qemu.StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Stop() })
	g := &guest{t: t, art: art, bins: bins, k1: k1, k2: k2, tpm: tpm, ctx: ctx, timeout: 5 * time.Minute,
		files: map[string]string{"/bin/gokexec": bins["./cmd/gokexec"]}, hostBin: map[string]string{}}
	return g
}

// run builds the initramfs with the scenario and boots kernel k.
func (g *guest) run(k string, sc *proto.Scenario) *qemu.Result {
	g.t.Helper()
	return g.boot(k, sc, nil, qemu.VM{}, "")
}

// boot builds the initramfs (the agent, g.files, g.hostBin, busybox links
// named in links, the scenario) and boots kernel k with vm's firmware and
// machine size; the guest's kernel, initrd, step, command line, TPM,
// artifacts and timeout come from g. what goes before the serial log's path
// in the test log.
func (g *guest) boot(k string, sc *proto.Scenario, links []string, vm qemu.VM, what string) *qemu.Result {
	g.t.Helper()
	ir := qemu.NewInitramfs()
	if err := ir.AddFile("/init", g.bins[qemu.AgentPackage]); err != nil {
		g.t.Fatal(err)
	}
	for gp, hp := range g.files {
		if err := ir.AddFile(gp, hp); err != nil {
			g.t.Fatal(err)
		}
	}
	for gp, hp := range g.hostBin {
		if err := ir.AddHostBinary(hp, gp); err != nil {
			g.t.Fatal(err)
		}
	}
	for _, l := range links {
		if err := ir.AddSymlink("/bin/"+l, "busybox"); err != nil {
			g.t.Fatal(err)
		}
	}
	if err := ir.AddScenario(sc); err != nil {
		g.t.Fatal(err)
	}
	initrd := filepath.Join(g.art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		g.t.Fatal(err)
	}
	vm.Kernel, vm.Initrd, vm.Step, vm.Append, vm.TPM, vm.ArtifactsDir, vm.Timeout = k, initrd, "1", g.appendExtra, g.tpm, g.art, g.timeout
	start := time.Now()
	res, err := qemu.Run(g.ctx, vm)
	g.t.Logf("scenario wall time %v (%sserial log %s)", time.Since(start).Round(100*time.Millisecond), what, filepath.Join(g.art, "serial.log"))
	logAccel(g.t, res)
	if err != nil {
		if res != nil {
			for _, rec := range res.Records {
				if rec.Type == proto.TypeCmd {
					g.t.Logf("boot %d cmd %v exit %d:\n%s", rec.Boot, rec.Argv, rec.Exit, rec.Output)
				}
			}
		}
		g.t.Fatal(err)
	}
	return res
}

// logAccel puts the run's accelerator, and a retry with software emulation,
// in the test log.
func logAccel(t *testing.T, res *qemu.Result) {
	t.Helper()
	if res == nil {
		return
	}
	t.Logf("accelerator %s", res.Accel)
	if res.AccelNote != "" {
		t.Logf("note: %s", res.AccelNote)
	}
}

// nextAppend is the command line for a kexec target running step.
func nextAppend(step string) string {
	return qemu.DefaultAppend("amd64") + " gkt.step=" + step
}

func intp(i int) *int { return &i }

// parseList decodes a reported binary list.
func parseList(t *testing.T, b []byte, what string) []ima.Entry {
	t.Helper()
	if b == nil {
		t.Fatalf("%s: no list reported", what)
	}
	es, err := ima.ParseList(b, binary.LittleEndian)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return es
}

func countBootAggregates(es []ima.Entry) int {
	n := 0
	for _, e := range es {
		if isBootAggregate(e) {
			n++
		}
	}
	return n
}

func isBootAggregate(e ima.Entry) bool {
	return bytes.Contains(e.TemplateData, []byte("boot_aggregate\x00"))
}

// pcrValues converts a harness PCR report to ima.PCRValues for the banks given.
func pcrValues(t *testing.T, rep map[string][]string, banks ...string) ima.PCRValues {
	t.Helper()
	out := ima.PCRValues{}
	for _, b := range banks {
		h, err := ima.ParseHashName(b)
		if err != nil {
			t.Fatal(err)
		}
		vals, ok := rep[b]
		if !ok {
			t.Fatalf("no %s bank in the PCR report (banks: %v)", b, keys(rep))
		}
		m := map[uint32][]byte{}
		for i, v := range vals {
			d, err := hex.DecodeString(v)
			if err != nil {
				t.Fatalf("PCR %s-%d: %v", b, i, err)
			}
			m[uint32(i)] = d
		}
		out[h] = m
	}
	return out
}

func keys(m map[string][]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}

// requireReplays checks that the whole list reproduces the quoted PCRs.
func requireReplays(t *testing.T, es []ima.Entry, pcrs ima.PCRValues, what string) ima.VerifyResult {
	t.Helper()
	r := ima.Verify(es, binary.LittleEndian, pcrs, ima.VerifyOptions{})
	if !r.Consistent || r.Prefix != len(es) {
		t.Fatalf("%s: list of %d entries does not replay to the PCRs: consistent=%v prefix=%d problems=%v", what, len(es), r.Consistent, r.Prefix, r.Problems)
	}
	return r
}

// evmctlAgrees runs evmctl ima_measurement, the external oracle, on the
// same snapshot the Go checks judge: boot's LAST reported list and LAST
// reported PCR values (qemu.Result.List and PCRs), written to a scratch
// directory here rather than taken from the artifacts (whose unsuffixed
// files hold a boot's first report).
func evmctlAgrees(t *testing.T, res *qemu.Result, boot int, banks ...string) {
	t.Helper()
	list := res.List(boot, "binary_runtime_measurements")
	pcrs := res.PCRs(boot)
	if list == nil || pcrs == nil {
		t.Fatalf("evmctl: boot %d reported no list or no PCRs", boot)
	}
	dir := t.TempDir()
	listPath := filepath.Join(dir, "binary_runtime_measurements")
	writeFile(t, listPath, list)
	files := map[string]string{}
	for _, b := range banks {
		vals, ok := pcrs[b]
		if !ok {
			t.Fatalf("evmctl: boot %d reported no %s bank", boot, b)
		}
		files[b] = filepath.Join(dir, "pcr-"+b+".txt")
		writeFile(t, files[b], []byte(qemu.FormatPCRs(vals)))
	}
	es, err := splitRaw(list)
	if err != nil {
		t.Fatalf("evmctl: boot %d list: %v", boot, err)
	}
	if err := evmctlOracle(listPath, files, len(es)); err != nil {
		t.Fatalf("boot %d: %v", boot, err)
	}
}

// evmctlOracle runs `evmctl -v ima_measurement --ignore-violations` on a
// list of n entries and one PCR file per bank and returns nil only when
// evmctl demonstrably matched the whole list: every PCR file exists and is
// not empty (evmctl 1.4 exits 0 with "Failed to read any TPM PCRs" when one
// is missing or empty), evmctl exits 0, prints "Matched", prints no
// "Failed", and for every bank given says "succeed at entry n" — the whole
// list, as the Go checks require, not just some prefix of it.
func evmctlOracle(list string, pcrFiles map[string]string, n int) error {
	if len(pcrFiles) == 0 {
		return errors.New("evmctl: no PCR files to compare with")
	}
	args := []string{"-v", "ima_measurement", "--ignore-violations"}
	banks := make([]string, 0, len(pcrFiles))
	for b := range pcrFiles {
		banks = append(banks, b)
	}
	sort.Strings(banks)
	for _, b := range banks {
		st, err := os.Stat(pcrFiles[b])
		if err != nil {
			return fmt.Errorf("evmctl: %s PCR file: %w", b, err)
		}
		if st.Size() == 0 || !st.Mode().IsRegular() {
			return fmt.Errorf("evmctl: %s PCR file %s is empty or not a regular file", b, pcrFiles[b])
		}
		args = append(args, "--pcrs", b+","+pcrFiles[b])
	}
	args = append(args, list)
	out, err := exec.Command("evmctl", args...).CombinedOutput()
	cmd := "evmctl " + strings.Join(args, " ")
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd, err, lastLines(string(out), 15))
	}
	// "Failed to open keyfile" (no EVM key: nothing to appraise) is not a
	// verdict; a failure to read the PCRs or to match them is.
	if evmctlFailed.Match(out) || !bytes.Contains(out, []byte("Matched")) {
		return fmt.Errorf("%s exited 0 without saying it matched:\n%s", cmd, lastLines(string(out), 15))
	}
	for _, b := range banks {
		// "sha256 PCR-10: succeed at entry 22": the last one per bank is
		// where evmctl's replay matched the file.
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(b) + ` PCR-[0-9]+: succeed at entry ([0-9]+)$`)
		all := re.FindAllSubmatch(out, -1)
		if len(all) == 0 {
			return fmt.Errorf("%s: no %s PCR matched:\n%s", cmd, b, lastLines(string(out), 15))
		}
		at, _ := strconv.Atoi(string(all[len(all)-1][1]))
		if at != n {
			return fmt.Errorf("%s: the %s bank matched at entry %d, the list has %d entries", cmd, b, at, n)
		}
	}
	return nil
}

var evmctlFailed = regexp.MustCompile(`(?m)^(Failed to (read|match)|Could not|errno:)`)

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// writeFile is a small helper for artifacts the test itself produces.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func describe(es []ima.Entry) string {
	return fmt.Sprintf("%d entries, %d boot_aggregate", len(es), countBootAggregates(es))
}
