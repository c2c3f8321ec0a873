package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildPackage runs scripts/package.sh into a temporary folder and returns
// the .deb's path.
func buildPackage(t *testing.T, env ...string) string {
	t.Helper()
	out := t.TempDir()
	c := exec.Command("bash", "../scripts/package.sh")
	c.Env = append(append(os.Environ(), "OUT_DIR="+out), env...)
	var stderr strings.Builder
	c.Stderr = &stderr
	b, err := c.Output()
	if err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, stderr.String())
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Dir(deb) != out || !strings.HasSuffix(deb, "_amd64.deb") {
		t.Fatalf("package.sh printed %q, want a .deb in %s", deb, out)
	}
	return deb
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	b, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, b)
	}
	return string(b)
}

// TestPackageContents builds the package and checks, with dpkg-deb, that it
// holds the binaries, the systemd-shutdown hook, the unit, the conffile and
// the man pages, owned by root with the right modes, and that two builds of
// the same tree are byte-identical (the guest image cache relies on it).
func TestPackageContents(t *testing.T) {
	deb := buildPackage(t, "VERSION=1.2.3", "SOURCE_DATE_EPOCH=1764547200")
	list := dpkgDeb(t, "-c", deb)
	want := map[string]string{ // path -> mode
		"./usr/sbin/gokexec":                              "-rwxr-xr-x",
		"./usr/bin/imalog":                                "-rwxr-xr-x",
		"./usr/lib/systemd/system-shutdown/gokexec":       "-rwxr-xr-x",
		"./usr/lib/systemd/system/gokexec-load.service":   "-rw-r--r--",
		"./usr/libexec/gokexec/load":                      "-rwxr-xr-x",
		"./etc/default/gokexec":                           "-rw-r--r--",
		"./usr/share/man/man8/gokexec.8.gz":               "-rw-r--r--",
		"./usr/share/man/man1/imalog.1.gz":                "-rw-r--r--",
		"./usr/share/doc/gokexec/copyright":               "-rw-r--r--",
		"./usr/share/doc/gokexec/README.md.gz":            "-rw-r--r--",
		"./usr/share/doc/gokexec/design.md.gz":            "-rw-r--r--",
		"./usr/share/doc/gokexec/testing.md.gz":           "-rw-r--r--",
		"./usr/sbin/gokexec-as-kexec":                     "-rwxr-xr-x",
		"./usr/share/man/man8/gokexec-as-kexec.8.gz":      "-rw-r--r--",
		"./usr/share/bash-completion/completions/gokexec": "-rw-r--r--",
		"./usr/share/bash-completion/completions/imalog":  "-rw-r--r--",
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		path := f[len(f)-1]
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", path, f[1])
		}
		if mode, ok := want[path]; ok {
			seen[path] = true
			if f[0] != mode {
				t.Errorf("%s has mode %s, want %s", path, f[0], mode)
			}
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("package lacks %s; dpkg-deb -c:\n%s", p, list)
		}
	}
	if !regexp.MustCompile(`(?m) \./usr/lib/systemd/system-shutdown/gokexec$`).MatchString(list) {
		t.Fatal("the hook is not under usr/lib/systemd/system-shutdown/")
	}
	if v := strings.TrimSpace(dpkgDeb(t, "-f", deb, "Version")); v != "1.2.3" {
		t.Fatalf("Version %q", v)
	}
	if c := dpkgDeb(t, "--ctrl-tarfile", deb); c == "" {
		t.Fatal("no control archive")
	}
	x := t.TempDir()
	dpkgDeb(t, "-e", deb, filepath.Join(x, "DEBIAN"))
	conf, err := os.ReadFile(filepath.Join(x, "DEBIAN", "conffiles"))
	if err != nil || strings.TrimSpace(string(conf)) != "/etc/default/gokexec" {
		t.Fatalf("conffiles %q, %v", conf, err)
	}
	dpkgDeb(t, "-x", deb, x)
	out, err := exec.Command(filepath.Join(x, "usr/sbin/gokexec"), "--version").CombinedOutput()
	// The version the package names and the commit it was built from
	// (stamped with -X: these builds use -buildvcs=false).
	if err != nil || !regexp.MustCompile(`^gokexec 1\.2\.3 \(commit ([0-9a-f]{40}|unknown)\)$`).MatchString(strings.TrimSpace(string(out))) {
		t.Fatalf("packaged gokexec --version: %q, %v", out, err)
	}
	man, err := exec.Command("sh", "-c", "zcat "+filepath.Join(x, "usr/share/man/man8/gokexec.8.gz")).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{".TH GOKEXEC 8", `\fB\-\-finalize\fR`, `\fB\-\-reuse\-cmdline\fR`, "ON_FINALIZE_FAILURE"} {
		if !strings.Contains(string(man), s) {
			t.Errorf("gokexec.8 lacks %q", s)
		}
	}
	// The hook parses, and does nothing for any verb but kexec (it is run
	// here only with verbs that make it exit at once).
	hook := filepath.Join(x, "usr/lib/systemd/system-shutdown/gokexec")
	if b, err := exec.Command("sh", "-n", hook).CombinedOutput(); err != nil {
		t.Fatalf("sh -n hook: %v\n%s", err, b)
	}
	for _, verb := range []string{"reboot", "poweroff", "halt"} {
		b, err := exec.Command("sh", hook, verb).CombinedOutput()
		if err != nil || len(b) != 0 {
			t.Fatalf("hook %s: %v, said %q; want silence and exit 0", verb, err, b)
		}
	}
	again := buildPackage(t, "VERSION=1.2.3", "SOURCE_DATE_EPOCH=1764547200")
	b1, _ := os.ReadFile(deb)
	b2, _ := os.ReadFile(again)
	if string(b1) != string(b2) {
		t.Fatal("two builds of the same tree differ: the package is not reproducible")
	}
}
