package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu"
)

// TestPackageLintian: lintian finds no error and no warning in the package
// (issue 22's acceptance). scripts/setup.sh test installs lintian.
func TestPackageLintian(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package; skipped with -short")
	}
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Fatal("lintian not in PATH: bash scripts/setup.sh test installs it")
	}
	deb := buildPackage(t, "VERSION=1.2.3", "SOURCE_DATE_EPOCH=1764547200")
	out, err := exec.Command("lintian", "--fail-on", "error,warning", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
}

// TestPackageCopyrightMachineReadable: the copyright file is DEP-5 (issue
// 22: it said "License: see-source"): a Format header, every License named
// in a Files paragraph has a stand-alone paragraph with its text, and the
// statically linked modules the binaries hold are each named.
func TestPackageCopyrightMachineReadable(t *testing.T) {
	b, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	paras := strings.Split(strings.TrimSpace(string(b)), "\n\n")
	if !strings.HasPrefix(paras[0], "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/") {
		t.Fatalf("header paragraph %q", paras[0])
	}
	used, texts := map[string]bool{}, map[string]bool{}
	for _, p := range paras[1:] {
		lines := strings.Split(p, "\n")
		if n := strings.Count(p, "\nFiles: ") + strings.Count(lines[0], "Files: "); n > 1 || strings.HasPrefix(lines[0], "Files: ") && (!strings.Contains(p, "\nCopyright: ") || !strings.Contains(p, "\nLicense: ")) {
			t.Errorf("malformed Files paragraph (one Files, a Copyright and a License each): %q", p)
		}
		var lic string
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "License: "); ok {
				lic = v
			}
		}
		if lic == "" || lic == "see-source" {
			t.Errorf("paragraph without a real License: %q", lines[0])
			continue
		}
		if strings.HasPrefix(lines[0], "Files: ") {
			used[lic] = true
			if strings.HasPrefix(lines[len(lines)-1], "License: ") {
				continue // text in its own paragraph
			}
		}
		if strings.HasPrefix(lines[0], "License: ") || strings.HasPrefix(lines[0], "Files: ") {
			if len(lines) < 2 {
				t.Errorf("license %s has no text", lic)
			}
			texts[lic] = true
		}
	}
	for l := range used {
		if !texts[l] {
			t.Errorf("License %s used in a Files paragraph has no text", l)
		}
	}
	mods, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "../cmd/gokexec", "../cmd/imalog").Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range strings.Fields(string(mods)) {
		if seen[m] {
			continue
		}
		seen[m] = true
		if m != "github.com/gokexec/gokexec" && !strings.Contains(string(b), "Files: "+m+"/*") && !strings.Contains(string(b), " "+m+"/*") {
			t.Errorf("debian/copyright does not name the statically linked module %s", m)
		}
	}
}

// TestLicenseStated: the repository states its license in LICENSE and the
// package's copyright file grants the same one for the project's own files
// (issue 22: it said "License: gokexec-unlicensed", no license was stated).
// The texts are compared word for word, so the two cannot drift apart.
func TestLicenseStated(t *testing.T) {
	lic, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatalf("the repository states no license: %v", err)
	}
	cr, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	first, body, ok := strings.Cut(string(lic), "\n\n")
	if !ok || first != "Copyright (c) 2026 The gokexec Authors" {
		t.Fatalf("LICENSE starts %q, want the project's copyright line", first)
	}
	var own, text string
	for _, p := range strings.Split(string(cr), "\n\n") {
		if strings.HasPrefix(p, "Files: *\n") {
			own = p
		}
		if strings.HasPrefix(p, "License: BSD-3-Clause\n") {
			text = p
		}
	}
	if !strings.Contains(own, "\nCopyright: 2026 The gokexec Authors\n") || !strings.HasSuffix(own, "\nLicense: BSD-3-Clause") {
		t.Errorf("the Files: * paragraph does not grant BSD-3-Clause to The gokexec Authors: %q", own)
	}
	words := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n .\n", "\n")), " ") }
	if text == "" || words(strings.TrimPrefix(text, "License: BSD-3-Clause")) != words(body) {
		t.Errorf("debian/copyright's BSD-3-Clause text differs from LICENSE:\n%s\n---\n%s", text, body)
	}
}

// TestBashCompletion: the completions offer the options the commands' own
// --help prints (bash-completion's helpers stubbed: only the functions
// shipped here are under test).
func TestBashCompletion(t *testing.T) {
	gokexec, imalog, _ := helpBins(t)
	stub := `_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; split=false; }
_filedir() { COMPREPLY+=(FILES); }
compopt() { :; }
`
	for _, c := range []struct{ file, line, want, notWant string }{
		{"completion-gokexec", gokexec + " --ap", "--append --appraise", ""},
		{"completion-gokexec", gokexec + " --no", "--no-ifdown --no-sync --no-checks --noefi --no-ima", ""},
		{"completion-gokexec", gokexec + " --arch ", "amd64 arm64", ""},
		{"completion-imalog", imalog + " ", "replay restore show verify --help", ""},
		{"completion-imalog", imalog + " verify --st", "--strict", ""},
		{"completion-imalog", imalog + " show --for", "--format", "--strict"},
	} {
		words := strings.Fields(c.line)
		if strings.HasSuffix(c.line, " ") {
			words = append(words, "")
		}
		script := stub + ". files/" + c.file + "\nCOMP_WORDS=("
		for _, w := range words {
			script += "'" + w + "' "
		}
		fn := "_gokexec"
		if c.file == "completion-imalog" {
			fn = "_imalog"
		}
		script += ")\nCOMP_CWORD=" + itoa(len(words)-1) + "\n" + fn + "\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s", c.file, c.line, err, out)
		}
		got := " " + strings.Join(strings.Fields(string(out)), " ") + " "
		for _, w := range strings.Fields(c.want) {
			if !strings.Contains(got, " "+w+" ") {
				t.Errorf("%s %q: completions %q lack %s", c.file, c.line, got, w)
			}
		}
		if c.notWant != "" && strings.Contains(got, " "+c.notWant+" ") {
			t.Errorf("%s %q: completions %q offer %s", c.file, c.line, got, c.notWant)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// chrootBase copies the QEMU image's Debian base root file system (built by
// mmdebstrap, cached) into a temporary directory: a chroot in which the
// package's maintainer scripts and helpers run without touching this
// machine (nothing in it boots a kernel or calls kexec).
func chrootBase(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Debian base root file system; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Fatal("chroot tests need root (scripts/test.sh runs as root)")
	}
	base, took, err := qemu.DebianBase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("base root file system %s (built in %v; zero: cached)", base, took)
	ch := filepath.Join(t.TempDir(), "root")
	if b, err := exec.Command("cp", "-a", base, ch).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	return ch
}

// inChroot runs a command in the chroot and returns its output and error.
func inChroot(ch string, args ...string) (string, error) {
	c := exec.Command("chroot", append([]string{ch}, args...)...)
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	b, err := c.CombinedOutput()
	return string(b), err
}

// fakeKexecTools builds a package named kexec-tools that ships /sbin/kexec
// as kexec-tools does (a script printing a marker), for the diversion tests.
func fakeKexecTools(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "kt")
	for p, c := range map[string]string{
		"DEBIAN/control": "Package: kexec-tools\nVersion: 1:2.0.25-99\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: stand-in for the diversion test\n",
		"sbin/kexec":     "#!/bin/sh\necho kexec-tools-stand-in \"$@\"\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "DEBIAN/control"), 0o644)
	deb := filepath.Join(dir, "kt.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return deb
}

// TestPackageAsKexecChroot (issue 22, Must have 4): gokexec-as-kexec makes
// gokexec the system's kexec and gives kexec back, with kexec-tools
// installed and without it, and removing the package undoes it. Run in a
// chroot of the guest image's Debian base (merged /usr, as Debian 12).
func TestPackageAsKexecChroot(t *testing.T) {
	ch := chrootBase(t)
	deb := buildPackage(t, "VERSION=1.2.3")
	for src, dst := range map[string]string{deb: "tmp/gokexec.deb", fakeKexecTools(t, t.TempDir()): "tmp/kt.deb"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ch, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := inChroot(ch, args...)
		if err != nil {
			t.Fatalf("%v in the chroot: %v\n%s", args, err, out)
		}
		return out
	}
	kexecIs := func(want string) {
		t.Helper()
		// readlink -f, not running it: no gokexec binary is run on this machine.
		got := strings.TrimSpace(must("sh", "-c", "readlink -f /usr/sbin/kexec || echo none"))
		if got != want {
			t.Fatalf("/usr/sbin/kexec resolves to %q, want %q", got, want)
		}
		if got2 := strings.TrimSpace(must("sh", "-c", "readlink -f /sbin/kexec || echo none")); got2 != want {
			t.Fatalf("/sbin/kexec resolves to %q, want %q", got2, want)
		}
	}
	diversions := func() string {
		return strings.TrimSpace(must("sh", "-c", "dpkg-divert --list '*kexec*' || true"))
	}
	must("dpkg", "-i", "/tmp/kt.deb")
	must("dpkg", "-i", "/tmp/gokexec.deb")
	kexecIs("/usr/sbin/kexec")
	if out, err := inChroot(ch, "gokexec-as-kexec", "status"); err == nil {
		t.Fatalf("status before enable exits 0: %s", out)
	}
	t.Logf("enable: %s", must("gokexec-as-kexec", "enable"))
	kexecIs("/usr/sbin/gokexec")
	must("gokexec-as-kexec", "status")
	if d := diversions(); !strings.Contains(d, "/sbin/kexec to /sbin/kexec.kexec-tools") || !strings.Contains(d, "/usr/sbin/kexec to /usr/sbin/kexec.kexec-tools") {
		t.Fatalf("diversions after enable:\n%s", d)
	}
	if out := must("/usr/sbin/kexec.kexec-tools", "-e"); !strings.Contains(out, "kexec-tools-stand-in -e") {
		t.Fatalf("kexec-tools' binary kept aside says %q", out)
	}
	must("gokexec-as-kexec", "enable") // idempotent
	// kexec-tools upgraded while gokexec is kexec: its binary goes aside.
	must("dpkg", "-i", "/tmp/kt.deb")
	kexecIs("/usr/sbin/gokexec")
	t.Logf("disable: %s", must("gokexec-as-kexec", "disable"))
	kexecIs("/usr/sbin/kexec")
	if out := must("kexec", "-e"); !strings.Contains(out, "kexec-tools-stand-in -e") {
		t.Fatalf("kexec after disable says %q, want kexec-tools back", out)
	}
	if d := diversions(); d != "" {
		t.Fatalf("diversions left after disable:\n%s", d)
	}
	// Enabled, then the package removed: kexec-tools is the kexec again.
	must("gokexec-as-kexec", "enable")
	t.Logf("remove: %s", must("dpkg", "--remove", "gokexec"))
	kexecIs("/usr/sbin/kexec")
	if d := diversions(); d != "" {
		t.Fatalf("diversions left after removing gokexec:\n%s", d)
	}
	// Without kexec-tools: enable makes gokexec the only kexec, disable
	// leaves none, and kexec-tools installed while enabled goes aside.
	must("dpkg", "--purge", "kexec-tools", "gokexec")
	must("dpkg", "-i", "/tmp/gokexec.deb")
	must("gokexec-as-kexec", "enable")
	kexecIs("/usr/sbin/gokexec")
	must("dpkg", "-i", "/tmp/kt.deb")
	kexecIs("/usr/sbin/gokexec")
	must("gokexec-as-kexec", "disable")
	kexecIs("/usr/sbin/kexec")
	must("dpkg", "--purge", "kexec-tools")
	must("gokexec-as-kexec", "enable")
	must("gokexec-as-kexec", "disable")
	if out := strings.TrimSpace(must("sh", "-c", "ls /usr/sbin/kexec* /sbin/kexec* 2>/dev/null || true")); out != "" {
		t.Fatalf("with no kexec-tools, disable left %q", out)
	}
	must("dpkg", "--purge", "gokexec")
}

// TestShutdownHookFinalizeTimeout (issue 22, Must have 4): a finalize that
// cannot finish within FINALIZE_TIMEOUT leaves a normal reboot — the hook
// gives up on it, unloads the image (so systemd-shutdown reboots normally)
// and says so in its one kernel-log line — and a FINALIZE_TIMEOUT above
// systemd-shutdown's hook limit is capped. The package's hook runs in a
// chroot where /usr/sbin/gokexec is a stand-in whose --finalize hangs and
// whose --unload records the call; /sys/kernel/kexec_loaded and /dev/kmsg
// are plain files there.
func TestShutdownHookFinalizeTimeout(t *testing.T) {
	ch := chrootBase(t)
	deb := buildPackage(t, "VERSION=1.2.3")
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ch, "tmp/gokexec.deb"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := inChroot(ch, "dpkg", "-i", "/tmp/gokexec.deb"); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	for p, c := range map[string]string{
		"usr/sbin/gokexec":         "#!/bin/sh\ncase \" $* \" in *' --finalize '*) exec sleep 600 ;; *' --unload '*) echo \"$*\" >/tmp/unloaded ;; esac\n",
		"sys/kernel/kexec_loaded":  "1\n",
		"run/gokexec/state.json":   "{}\n",
		"dev/kmsg":                 "",
		"etc/default/gokexec.test": "",
	} {
		p = filepath.Join(ch, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(ch, "etc/default/gokexec")
	orig, _ := os.ReadFile(conf)
	for _, tc := range []struct {
		timeout string
		want    string
	}{
		{"2", "timed out after 2s"},
		{"600", "timed out after 80s"},
	} {
		if tc.timeout == "600" && testing.Short() {
			continue
		}
		os.WriteFile(filepath.Join(ch, "dev/kmsg"), nil, 0o644)
		os.Remove(filepath.Join(ch, "tmp/unloaded"))
		if err := os.WriteFile(conf, append(append([]byte{}, orig...), []byte("FINALIZE_TIMEOUT="+tc.timeout+"\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := inChroot(ch, "/usr/lib/systemd/system-shutdown/gokexec", "kexec")
		took := time.Since(start)
		if err == nil {
			t.Fatalf("FINALIZE_TIMEOUT=%s: the hook exited 0 after a finalize that never finished: %s", tc.timeout, out)
		}
		kmsg, _ := os.ReadFile(filepath.Join(ch, "dev/kmsg"))
		line := strings.TrimSpace(string(kmsg))
		if strings.Count(line, "\n") != 0 || !strings.Contains(line, "gokexec-shutdown: gokexec --finalize "+tc.want) ||
			!strings.Contains(line, "unloaded the kernel: systemd falls back to a normal reboot") {
			t.Fatalf("FINALIZE_TIMEOUT=%s: kernel log %q; want one line: timed out, unloaded, normal reboot", tc.timeout, line)
		}
		if u, err := os.ReadFile(filepath.Join(ch, "tmp/unloaded")); err != nil || !strings.Contains(string(u), "--unload") {
			t.Fatalf("FINALIZE_TIMEOUT=%s: the hook did not unload (%v)", tc.timeout, err)
		}
		t.Logf("FINALIZE_TIMEOUT=%s: hook took %v: %s", tc.timeout, took.Round(100*time.Millisecond), line)
	}
}
