package buildinfo

import (
	"strings"
	"testing"
)

func TestLineNamesVersionAndCommit(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "1.2.3", "0123456789abcdef"
	got := Line("gokexec")
	if !strings.HasPrefix(got, "gokexec 1.2.3 (commit ") {
		t.Fatalf("Line = %q", got)
	}
	// A test binary carries no VCS stamp, so the linked-in commit shows.
	if !strings.Contains(got, "0123456789abcdef") {
		t.Errorf("Line = %q: the commit set at link time is missing", got)
	}
	Version, Commit = "", ""
	if got := Line("imalog"); !strings.HasPrefix(got, "imalog "+DevVersion+" (commit unknown") {
		t.Errorf("unstamped Line = %q", got)
	}
}
