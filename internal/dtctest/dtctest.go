// Package dtctest runs dtc, the device tree compiler, as the external
// oracle that tests hold this project's device trees against.
//
// Invariants: for tests only; every function takes a testing.TB and fails
// it (naming the dtc arguments, dtc's own message and how to install dtc)
// when dtc cannot run or refuses its input, so a missing tool is a failure,
// never a skip.
package dtctest

import (
	"bytes"
	"os/exec"
	"testing"
)

// Run runs dtc -q with args, stdin on its standard input, and returns its
// standard output.
func Run(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("dtc", append([]string{"-q"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dtc %q: %v: %s (install device-tree-compiler: scripts/setup.sh)", args, err, stderr.String())
	}
	return string(out)
}

// Source is dtc's source form of a flattened tree (dtc -I dtb -O dts).
func Source(t testing.TB, dtb []byte) string {
	t.Helper()
	return Run(t, dtb, "-I", "dtb", "-O", "dts", "-")
}

// Compile is the flattened tree dtc makes of the source file at path.
func Compile(t testing.TB, path string) []byte {
	t.Helper()
	return []byte(Run(t, nil, "-I", "dts", "-O", "dtb", path))
}
