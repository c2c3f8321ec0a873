package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden from the current implementation")

// goldenCase is one imalog invocation on a capture. Its output is kept in
// testdata/golden/<capture path below ima/testdata/captures>/<name>, so
// every golden file says where it came from: the kernel package of the
// capture, and the command that produced it.
type goldenCase struct {
	name string
	args func(dir, list string) []string
}

var goldenCases = []goldenCase{
	{"show.ascii", func(dir, list string) []string { return []string{"show", list} }},
	{"show.json", func(dir, list string) []string { return []string{"show", "--format", "json", list} }},
	{"replay.txt", func(dir, list string) []string { return []string{"replay", "--method", "both", list} }},
	{"replay.json", func(dir, list string) []string { return []string{"replay", "--method", "both", "--json", list} }},
	{"verify.txt", func(dir, list string) []string { return append([]string{"verify", list}, pcrArgs(dir, "")...) }},
	{"verify.json", func(dir, list string) []string {
		return append([]string{"verify", "--json", list}, pcrArgs(dir, "")...)
	}},
	{"verify-prefix.txt", func(dir, list string) []string {
		return append([]string{"verify", list}, pcrArgs(dir, "-prefix")...)
	}},
	{"verify-prefix.json", func(dir, list string) []string {
		return append([]string{"verify", "--json", list}, pcrArgs(dir, "-prefix")...)
	}},
}

// TestGoldenCaptures runs imalog on every kernel capture and compares its
// output (exit status first, then stdout) with the recorded one. The file
// names are printed relative to the capture directory, so the goldens do
// not depend on where the tree is checked out. go test ./cmd/imalog -run
// TestGoldenCaptures -update rewrites them.
func TestGoldenCaptures(t *testing.T) {
	for _, dir := range captures(t) {
		rel, err := filepath.Rel("../../ima/testdata/captures", dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range goldenCases {
			t.Run(rel+"/"+c.name, func(t *testing.T) {
				code, out, errs := imalogIn(t, dir, c.args(".", "binary_runtime_measurements")...)
				got := fmt.Sprintf("exit %d\n%s%s", code, out, errs)
				path := filepath.Join("testdata", "golden", rel, c.name)
				if c.name == "show.ascii" {
					// The kernel's own rendering is the golden file.
					want, err := os.ReadFile(filepath.Join(dir, "ascii_runtime_measurements"))
					if err != nil {
						t.Fatal(err)
					}
					if got != "exit 0\n"+string(want) {
						t.Errorf("show differs from the kernel's ascii_runtime_measurements:\n%s", lineDiff("exit 0\n"+string(want), got))
					}
					return
				}
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
					t.Errorf("%s differs from %s:\n%s", c.name, path, lineDiff(string(want), got))
				}
			})
		}
	}
}

// imalogIn runs imalog with dir as the working directory.
func imalogIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	return imalog(t, args...)
}

// lineDiff shows the first differing lines of want and got.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 12; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
