package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupNamesAnUnusableGo: scripts/setup.sh (which the README's demo and
// test commands run first) stops with one line naming the problem when the
// go in PATH cannot build the module, instead of a go.mod parse error from an
// old Go or a failure in the middle of the demo's parallel build (a fresh
// Debian 12 has no Go at all, or its own golang-go 1.19). The go in PATH here
// builds it, and must pass the same check.
func TestSetupNamesAnUnusableGo(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	setup := func(path string) (string, error) {
		c := exec.Command(bash, "../scripts/setup.sh", "demo", "go")
		c.Env = append(os.Environ(), "PATH="+path)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	if out, err := setup(os.Getenv("PATH")); err != nil {
		t.Fatalf("the go in PATH fails setup.sh's check: %v\n%s", err, out)
	}
	for _, c := range []struct{ name, fake, want string }{
		{"none", "", "go not found in PATH"},
		{"debian12", `[ "$2" = GOVERSION ] && echo go1.19.8 || echo`, "go in PATH is go1.19.8, go.mod asks for Go 1."},
		// go env does not switch tool chains under GOTOOLCHAIN=local: it
		// reports the old version (seen with go1.21.0).
		{"local121", `[ "$2" = GOVERSION ] && echo go1.21.0 || echo local`, "go in PATH is go1.21.0 (GOTOOLCHAIN=local), go.mod asks for Go 1."},
		{"local", `echo "go: go.mod requires go >= 1.99.0 (running go 1.22.0; GOTOOLCHAIN=local)" >&2; exit 1`, "go cannot build this module (go.mod asks for Go 1."},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A PATH of the tools setup.sh uses before and in the check,
			// and the fake go (if any): nothing else of the machine's,
			// so a go elsewhere in its PATH cannot answer.
			dir := t.TempDir()
			for _, tool := range []string{"dirname", "mkdir", "sed", "sort", "head"} {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
					t.Fatal(err)
				}
			}
			if c.fake != "" {
				if err := os.WriteFile(filepath.Join(dir, "go"), []byte("#!"+bash+"\n"+c.fake+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			path := dir
			out, err := setup(path)
			if err == nil {
				t.Fatalf("setup.sh accepted an unusable go:\n%s", out)
			}
			if !strings.Contains(out, "setup: "+c.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("setup.sh said %q, want one line with %q", out, c.want)
			}
		})
	}
}
