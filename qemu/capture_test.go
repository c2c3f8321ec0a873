package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// pseudoFS excludes proc, sysfs, securityfs and devpts so that reading PCRs
// and lists measures nothing. It is the policy the committed captures were
// made with (their info.txt quotes it), which is why it is not
// PseudoFSPolicy (that also excludes debugfs).
const pseudoFS = `dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x73636673
dont_measure fsmagic=0x1cd1
`

// captureVariant is one golden capture per kernel.
type captureVariant struct {
	subdir  string // "" or a subdirectory of the kernel package's directory
	policy  string
	actions []proto.Action
	want    []string // ASCII list substrings that must appear
	strict  bool     // evmctl 1.4 must verify sha1 and sha256
	about   string
}

var captureVariants = []captureVariant{{
	subdir: "",
	// Rules match in order: the first matching measure rule sets the
	// template and the PCR.
	policy: pseudoFS + `measure func=KEY_CHECK template=ima-buf
measure func=FILE_CHECK mask=MAY_READ fowner=1001 pcr=11 template=ima-ng
measure func=FILE_CHECK mask=MAY_READ fowner=1002 template=ima-sig
measure func=FILE_CHECK mask=MAY_READ fowner=1003 template=ima-ngv2
measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng
`,
	actions: []proto.Action{
		{AddKey: true},
		{MeasureFiles: 4, Dir: "/tmp/ng"},
		{MeasureFiles: 3, Dir: "/tmp/pcr11", Owner: 1001},
		{MeasureFiles: 3, Dir: "/tmp/sig", Owner: 1002},
		{MeasureFiles: 3, Dir: "/tmp/ngv2", Owner: 1003},
		{Violation: true},
		{Report: []string{"pcrs"}}, // matches a strict prefix of the list
		{MeasureFiles: 2, Dir: "/tmp/late"},
		{Violation: true, Owner: 1001},
		{Report: []string{"pcrs", "list", "ascii"}},
	},
	want:   []string{" ima-buf ", " ima-ng ", " ima-sig ", " ima-ngv2 ", "\n11 ", " 0000000000000000000000000000000000000000 "},
	strict: true,
	about: `add_key (self-signed RSA X.509 into keyring gkt-keys: ima-buf); 4 files uid 0 (ima-ng);
  3 files fowner 1001 (ima-ng, pcr 11); 3 files fowner 1002 (ima-sig); 3 files fowner 1003 (ima-ngv2);
  1 open-writers violation; PCRs (-prefix files); 2 more files; 1 violation on a fowner 1001 file; PCRs; lists`,
}, {
	subdir: "templates",
	policy: pseudoFS + `measure func=FILE_CHECK mask=MAY_READ fowner=1004 template=ima-sigv2
measure func=FILE_CHECK mask=MAY_READ fowner=1005 template=ima-modsig
measure func=FILE_CHECK mask=MAY_READ fowner=1006 template=evm-sig
measure func=FILE_CHECK mask=MAY_READ fowner=1007 template=ima
measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng
`,
	actions: []proto.Action{
		{MeasureFiles: 2, Dir: "/tmp/ng"},
		{MeasureFiles: 2, Dir: "/tmp/sigv2", Owner: 1004},
		{MeasureFiles: 2, Dir: "/tmp/modsig", Owner: 1005},
		{MeasureFiles: 2, Dir: "/tmp/evmsig", Owner: 1006},
		{MeasureFiles: 2, Dir: "/tmp/legacy", Owner: 1007},
		{Violation: true, Owner: 1007},
		{Report: []string{"pcrs"}},
		{MeasureFiles: 1, Dir: "/tmp/late"},
		{Report: []string{"pcrs", "list", "ascii"}},
	},
	want: []string{" ima-sigv2 ", " ima-modsig ", " evm-sig ", " ima ", " ima-ng "},
	about: `2 files uid 0 (ima-ng); 2 files each fowner 1004 (ima-sigv2), 1005 (ima-modsig), 1006 (evm-sig),
  1007 (legacy ima); 1 violation on a fowner 1007 file; PCRs (-prefix files); 1 more file; PCRs; lists.
  evmctl 1.4 cannot verify this list (mixed "ima" and other templates; it does not know the newer fields)`,
}, {
	subdir: "large",
	policy: pseudoFS + `measure func=FILE_CHECK mask=MAY_READ fowner=1002 template=ima-sig
measure func=FILE_CHECK mask=MAY_READ uid=0 template=ima-ng
`,
	actions: []proto.Action{
		{MeasureFiles: 3000, Dir: "/tmp/large"},
		{MeasureFiles: 500, Dir: "/tmp/large-sig", Owner: 1002},
		{Violation: true},
		{Report: []string{"pcrs"}},
		{MeasureFiles: 10, Dir: "/tmp/late"},
		{Report: []string{"pcrs", "list", "ascii"}},
	},
	want:   []string{" ima-ng ", " ima-sig ", "/tmp/large/f002999"},
	strict: true,
	about: `3000 files uid 0 (ima-ng); 500 files fowner 1002 (ima-sig); 1 violation; PCRs (-prefix files);
  10 more files; PCRs; lists. A large real list for benchmarks`,
}}

// TestCaptureGolden boots the Debian amd64 kernels with swtpm and stores
// their measurement lists and PCR values under ima/testdata/captures as
// golden data for the ima package. It rewrites committed files, so it runs
// only with GOKEXEC_CAPTURE=1; GOKEXEC_CAPTURE_DIR=DIR writes DIR/<package>
// instead, GOKEXEC_CAPTURE_VARIANT=NAME makes only that subdirectory
// ("" main, "templates", "large").
func TestCaptureGolden(t *testing.T) {
	if os.Getenv("GOKEXEC_CAPTURE") != "1" {
		t.Skip("rewrites ima/testdata/captures; set GOKEXEC_CAPTURE=1")
	}
	for _, name := range []string{Deb61AMD64, Deb612AMD64} {
		for _, v := range captureVariants {
			if only := os.Getenv("GOKEXEC_CAPTURE_VARIANT"); only != "" && only != v.subdir {
				continue
			}
			t.Run(name+"/"+v.subdir, func(t *testing.T) { capture(t, name, v) })
		}
	}
}

func capture(t *testing.T, kname string, v captureVariant) {
	ctx := context.Background()
	art := ArtifactsDir(t)
	k, err := Kernel(kname)
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := KernelPackage(kname)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := BuildGuestBinaries(ctx, filepath.Join(art, "bin"), AgentPackage)
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := StartTPM(ctx, filepath.Join(art, "tpm"), []string{"sha1", "sha256", "sha384"})
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	acts := append([]proto.Action{{Policy: v.policy}}, v.actions...)
	sc := &proto.Scenario{Steps: map[string]proto.Step{"capture": {Actions: acts}}}
	ir := NewInitramfs()
	if err := ir.AddFile("/init", bins[AgentPackage]); err != nil {
		t.Fatal(err)
	}
	if err := ir.AddScenario(sc); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, VM{Kernel: k, Initrd: initrd, Step: "capture", TPM: tpm, ArtifactsDir: art, Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pcrs := res.Find(1, proto.TypePCRs, "")
	if len(pcrs) != 2 {
		t.Fatalf("got %d pcr reports, want 2", len(pcrs))
	}
	bin := res.List(1, "binary_runtime_measurements")
	ascii := res.List(1, "ascii_runtime_measurements")
	if len(bin) == 0 || len(ascii) == 0 {
		t.Fatal("lists missing")
	}
	for _, want := range v.want {
		if !strings.Contains("\n"+string(ascii), want) {
			t.Errorf("ASCII list has no %q entry", want)
		}
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, "ima", "testdata", "captures")
	if d := os.Getenv("GOKEXEC_CAPTURE_DIR"); d != "" { // a trial run elsewhere
		base = d
	}
	out := filepath.Join(base, pkg, v.subdir)
	for _, n := range []string{"binary_runtime_measurements", "ascii_runtime_measurements", "info.txt"} {
		_ = os.Remove(filepath.Join(out, n))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"binary_runtime_measurements": bin,
		"ascii_runtime_measurements":  ascii,
	}
	for _, bank := range tpm.Banks {
		files["pcr-"+bank+".txt"] = []byte(FormatPCRs(pcrs[1].PCRs[bank]))
		files["pcr-"+bank+"-prefix.txt"] = []byte(FormatPCRs(pcrs[0].PCRs[bank]))
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(out, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Cross-check with evmctl, the reference verifier.
	var checks strings.Builder
	for _, bank := range tpm.Banks {
		for _, f := range []string{"pcr-" + bank + ".txt", "pcr-" + bank + "-prefix.txt"} {
			o, err := exec.Command("evmctl", "ima_measurement", "--ignore-violations", "--pcrs", bank+","+filepath.Join(out, f),
				filepath.Join(out, "binary_runtime_measurements")).CombinedOutput()
			ok := err == nil && bytes.Contains(o, []byte("Matched"))
			verdict := "verified"
			switch {
			case bytes.Contains(o, []byte("Failed to read any TPM PCRs")):
				verdict = "not checked: evmctl cannot read this bank"
			case !ok:
				verdict = fmt.Sprintf("not verified (%v)", err)
			}
			last := strings.TrimSpace(string(o))
			if i := strings.LastIndexByte(last, '\n'); i >= 0 {
				last = last[i+1:]
			}
			fmt.Fprintf(&checks, "  evmctl ima_measurement --ignore-violations --pcrs %s,%s: %s: %q\n", bank, f, verdict, last)
			if v.strict && bank != "sha384" && !ok {
				t.Errorf("evmctl does not verify %s: %s", f, o)
			}
		}
	}
	// Our own replay covers sha384, which evmctl 1.4 cannot read.
	es := parseList(t, bin)
	for _, bank := range tpm.Banks {
		m := replayMethod(es, bank, parsePCRFile(t, files["pcr-"+bank+".txt"]))
		if m == "" {
			t.Errorf("%s bank: the list does not replay to the PCRs", bank)
			m = "does not replay"
		}
		fmt.Fprintf(&checks, "  harness replay, %s bank, all PCRs the list extends: %s\n", bank, m)
	}
	boot := res.BootInfo(1)
	info := fmt.Sprintf(`source: gokexec qemu.TestCaptureGolden (GOKEXEC_CAPTURE=1 go test ./qemu -run TestCaptureGolden)
date: %s
kernel package: %s
kernel release: %s
kernel cmdline: %s
qemu: %s (-machine q35 -cpu max, TCG, 1 vCPU, 1 GiB)
swtpm: %s
tpm banks: %s
byte order: little endian (x86_64, native; ima_canonical_fmt not set)
entries: %d (ASCII lines)
files:
  binary_runtime_measurements, ascii_runtime_measurements: read right after the second PCR read;
    nothing is measured in between (the policy excludes proc/sysfs/securityfs)
  pcr-<bank>.txt: PCRs 0-23 read just before the lists (evmctl format); the whole list replays to them
  pcr-<bank>-prefix.txt: PCRs read earlier; they match a strict prefix of the list
scenario: %s
checks (evmctl %s):
%spolicy (written once, then the agent's actions):
%s`, time.Now().UTC().Format(time.RFC3339), pkg, boot.Release, boot.Cmdline, version("qemu-system-x86_64", "--version"),
		version("swtpm", "--version"), strings.Join(tpm.Banks, ","), bytes.Count(ascii, []byte("\n")),
		v.about, version("evmctl", "--version"), checks.String(), v.policy)
	if err := os.WriteFile(filepath.Join(out, "info.txt"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes binary list, boot took %v\n%s", out, len(bin), res.Elapsed, checks.String())
}

func version(tool, flag string) string {
	o, err := exec.Command(tool, flag).CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(o)), "\n")
	return l
}
