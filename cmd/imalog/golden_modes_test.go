package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenModes are imalog's other input modes on the same captures: the
// list from standard input, a checkpoint written and then resumed, a
// fleet directory of the captures, restore, and the usage paths. They
// were recorded from the implementation before issue 21 changed it
// (testdata/golden/<capture>/modes/<name>, testdata/golden/usage/<name>),
// so every later change of output shows up as a diff here.
var goldenModes = []struct {
	name  string
	stdin bool
	cp    bool // run twice with one checkpoint; both outputs recorded
	args  func(list string) []string
}{
	{"stdin-verify.txt", true, false, func(string) []string { return append([]string{"verify", "-"}, pcrArgs(".", "")...) }},
	{"stdin-verify.json", true, false, func(string) []string { return append([]string{"verify", "--json", "-"}, pcrArgs(".", "")...) }},
	{"stdin-verify-prefix.txt", true, false, func(string) []string { return append([]string{"verify", "-"}, pcrArgs(".", "-prefix")...) }},
	{"checkpoint-verify.txt", false, true, func(l string) []string { return append([]string{"verify", l}, pcrArgs(".", "")...) }},
	{"checkpoint-verify.json", false, true, func(l string) []string { return append([]string{"verify", "--json", l}, pcrArgs(".", "")...) }},
	{"restore-list.txt", false, false, func(l string) []string { return []string{"restore", "--list", l} }},
	{"restore-list.json", false, false, func(l string) []string { return []string{"restore", "--list", "--json", l} }},
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("differs from %s:\n%s", path, lineDiff(string(want), got))
	}
}

func TestGoldenModes(t *testing.T) {
	for _, dir := range captures(t) {
		rel, err := filepath.Rel("../../ima/testdata/captures", dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range goldenModes {
			t.Run(rel+"/"+c.name, func(t *testing.T) {
				list := "binary_runtime_measurements"
				var got string
				runOnce := func(extra ...string) {
					var stdin []byte
					if c.stdin {
						stdin, _ = os.ReadFile(filepath.Join(dir, list))
					}
					wd, _ := os.Getwd()
					if err := os.Chdir(dir); err != nil {
						t.Fatal(err)
					}
					var out, errb bytes.Buffer
					code := run(append(c.args(list), extra...), bytes.NewReader(stdin), &out, &errb)
					os.Chdir(wd)
					got += fmt.Sprintf("exit %d\n%s%s", code, out.String(), errb.String())
				}
				if c.cp {
					cp := filepath.Join(t.TempDir(), "cp")
					runOnce("--checkpoint", cp)
					got = strings.ReplaceAll(got, cp, "CHECKPOINT")
					n := len(got)
					runOnce("--checkpoint", cp)
					got = got[:n] + strings.ReplaceAll(got[n:], cp, "CHECKPOINT")
				} else {
					runOnce()
				}
				checkGolden(t, filepath.Join("testdata", "golden", rel, "modes", c.name), got)
			})
		}
	}
}

// TestGoldenMachines verifies the captures as a fleet directory (one
// machine per capture, per-bank PCR files, and one with a broken list).
func TestGoldenMachines(t *testing.T) {
	fleet := t.TempDir()
	for _, dir := range captures(t) {
		rel, _ := filepath.Rel("../../ima/testdata/captures", dir)
		m := filepath.Join(fleet, strings.ReplaceAll(rel, "/", "_"))
		copyTo(t, filepath.Join(dir, "binary_runtime_measurements"), filepath.Join(m, "binary_runtime_measurements"), nil)
		for _, b := range []string{"sha1", "sha256", "sha384"} {
			copyTo(t, filepath.Join(dir, "pcr-"+b+".txt"), filepath.Join(m, "pcr-"+b+".txt"), nil)
		}
	}
	bad := filepath.Join(fleet, "zz-truncated")
	copyTo(t, filepath.Join(captures(t)[0], "binary_runtime_measurements"), filepath.Join(bad, "binary_runtime_measurements"), func(b []byte) {})
	os.WriteFile(filepath.Join(bad, "binary_runtime_measurements"), []byte{10, 0, 0}, 0o644)
	copyTo(t, filepath.Join(captures(t)[0], "pcr-sha256.txt"), filepath.Join(bad, "pcr-sha256.txt"), nil)
	code, out, errs := imalog(t, "verify", "--machines", fleet, "--jobs", "1")
	got := strings.ReplaceAll(fmt.Sprintf("exit %d\n%s%s", code, out, errs), fleet, "FLEET")
	checkGolden(t, filepath.Join("testdata", "golden", "fleet", "machines.jsonl"), got)
}

// TestGoldenUsage records the usage paths: no arguments, help, an
// unknown command, and per-command --help.
func TestGoldenUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"none":          nil,
		"help":          {"--help"},
		"version":       {"--version"},
		"verify-help":   {"verify", "--help"},
		"show-help":     {"show", "--help"},
		"replay-help":   {"replay", "--help"},
		"restore-help":  {"restore", "--help"},
		"verify-nofile": {"verify", "missing-list", "--pcrs", "missing-pcrs"},
		"verify-nopcrs": {"verify", "../../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements", "--pcrs", "missing-pcrs"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := imalog(t, args...)
			checkGolden(t, filepath.Join("testdata", "golden", "usage", name), fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", code, out, errs))
		})
	}
}
