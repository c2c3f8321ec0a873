// Package buildinfo names the version and the source commit a gokexec
// command was built from, for its --version line.
//
// The version comes from Version (set with -ldflags "-X
// github.com/gokexec/gokexec/internal/buildinfo.Version=..."; the package
// build does), else the module version, else DevVersion. The commit is the
// toolchain's VCS stamp when the build has one, else Commit (set the same
// way, for builds with -buildvcs=false or from a source tarball), else
// "unknown". Invariant: Line never fails and never reads anything but the
// binary's own build information.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// DevVersion is the version of a build that names none.
const DevVersion = "0.1.0-dev"

// Version and Commit are set at link time (-X); empty otherwise.
var (
	Version string
	Commit  string
)

// Line is "<command> <version> (commit <commit>[+modified])".
func Line(command string) string {
	v, rev, dirty := Version, Commit, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+modified"
				}
			}
		}
	}
	if v == "" {
		v = DevVersion
	}
	if rev == "" {
		rev = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s%s)", command, v, rev, dirty)
}
