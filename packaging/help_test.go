package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// helpBins builds gokexec, imalog and genman for this host once per test
// binary run.
func helpBins(t *testing.T) (gokexec, imalog, genman string) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"gokexec", "imalog"} {
		if b, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "../cmd/"+p).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", p, err, b)
		}
	}
	if b, err := exec.Command("go", "build", "-o", filepath.Join(dir, "genman"), "./genman").CombinedOutput(); err != nil {
		t.Fatalf("go build genman: %v\n%s", err, b)
	}
	return filepath.Join(dir, "gokexec"), filepath.Join(dir, "imalog"), filepath.Join(dir, "genman")
}

// helpOption is an option --help prints: "-x", "--long" or both.
type helpOption struct{ short, long string }

func (o helpOption) String() string { return strings.TrimSpace(o.short + " " + o.long) }

// optionLine matches the option lines of both commands' help: one or more
// spaces, then "-x, --long", "--long" or "-x" and at least two spaces (or
// the end of the line).
var optionLine = regexp.MustCompile(`^\s+(?:(-[A-Za-z0-9?]),\s*)?(--[A-Za-z0-9][A-Za-z0-9-]*)?`)

// helpOptions runs BIN ARGS... --help and returns the options it prints.
// It reads the help independently of genman, so a renderer that drops
// options fails the tests below.
func helpOptions(t *testing.T, bin string, args ...string) ([]helpOption, bool) {
	t.Helper()
	out, err := exec.Command(bin, append(args, "--help")...).Output()
	if err != nil {
		return nil, false
	}
	var opts []helpOption
	for _, l := range strings.Split(string(out), "\n") {
		tl := strings.TrimSpace(l)
		if !strings.HasPrefix(tl, "-") || l == tl {
			continue
		}
		// "-x, --long ARG  desc", "--long=ARG  desc", "-x  desc"
		f := strings.Fields(strings.NewReplacer(",", " ", "=", " ", "[", " ").Replace(tl))
		var o helpOption
		for _, w := range f {
			switch {
			case strings.HasPrefix(w, "--") && o.long == "":
				o.long = w
			case len(w) == 2 && w[0] == '-' && o.short == "" && o.long == "":
				o.short = w
			}
			if o.long != "" {
				break
			}
		}
		if o.short != "" || o.long != "" {
			opts = append(opts, o)
		}
	}
	return opts, true
}

// imalogSubcommands are the subcommands imalog's usage names.
func imalogSubcommands(t *testing.T, imalog string) []string {
	out, err := exec.Command(imalog, "--help").Output()
	if err != nil {
		t.Fatalf("imalog --help: %v", err)
	}
	seen := map[string]bool{}
	var subs []string
	for _, m := range regexp.MustCompile(`(?m)^\s*imalog ([a-z][a-z-]*)`).FindAllStringSubmatch(string(out), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			subs = append(subs, m[1])
		}
	}
	if len(subs) < 4 {
		t.Fatalf("imalog --help names subcommands %q; want show, replay, verify, restore at least", subs)
	}
	return subs
}

// allOptions is every option each command's --help prints: gokexec's, and
// imalog's per subcommand (each subcommand must have its own --help).
func allOptions(t *testing.T, gokexec, imalog string) (g, i []helpOption, subs []string) {
	g, ok := helpOptions(t, gokexec)
	if !ok || len(g) < 30 {
		t.Fatalf("gokexec --help: %d options (ok %v)", len(g), ok)
	}
	for _, s := range imalogSubcommands(t, imalog) {
		o, ok := helpOptions(t, imalog, s)
		if !ok || len(o) == 0 {
			t.Errorf("imalog %s --help does not print the command's options", s)
		}
		subs = append(subs, s)
		i = append(i, o...)
	}
	return g, i, subs
}

// renderPage runs genman as scripts/package.sh does.
func renderPage(t *testing.T, genman string, args ...string) string {
	t.Helper()
	out, err := exec.Command(genman, append(args, "-date", "2026-01-01", "-title", "t")...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("genman %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

func roffName(s string) string { return `\fB` + strings.ReplaceAll(s, "-", `\-`) + `\fR` }

// TestManPagesHoldEveryHelpOption: every option gokexec --help and imalog's
// (per-subcommand) --help print is in the man page genman renders from
// them, as a bold option name (issue 22: gokexec(8) had lost -u -e -S -t -s
// -c -a -d -i, and imalog(1) held no option text).
func TestManPagesHoldEveryHelpOption(t *testing.T) {
	gokexec, imalog, genman := helpBins(t)
	g, i, subs := allOptions(t, gokexec, imalog)
	gpage := renderPage(t, genman, "-bin", gokexec, "-name", "gokexec", "-section", "8")
	ipage := renderPage(t, genman, "-bin", imalog, "-name", "imalog", "-section", "1", "-sub", strings.Join(subs, ","))
	for _, c := range []struct {
		page string
		opts []helpOption
		name string
	}{{gpage, g, "gokexec.8"}, {ipage, i, "imalog.1"}} {
		for _, o := range c.opts {
			for _, n := range []string{o.short, o.long} {
				if n != "" && !strings.Contains(c.page, roffName(n)) {
					t.Errorf("%s lacks %s (from --help)", c.name, n)
				}
			}
		}
	}
	for _, s := range []string{".SH OPTIONS", `\fB\-u\fR, \fB\-\-unload\fR`, `\fB\-e\fR, \fB\-\-exec\fR`} {
		if !strings.Contains(gpage, s) {
			t.Errorf("gokexec.8 lacks %q", s)
		}
	}
}

// TestREADMEOptionTablesHoldEveryHelpOption: every option the commands'
// --help prints appears, in backquotes, in a row of one of the README's
// tables (issue 22: the README's table lacked --appraise, --key,
// --allowlist, --noefi, --host, --dtb-out, --state-dir, and its imalog
// section --quote, --sig, --ak, --nonce, --checkpoint, --machines, --kexec).
func TestREADMEOptionTablesHoldEveryHelpOption(t *testing.T) {
	gokexec, imalog, _ := helpBins(t)
	g, i, _ := allOptions(t, gokexec, imalog)
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "|") {
			rows.WriteString(l + "\n")
		}
	}
	table := rows.String()
	inTable := func(n string) bool {
		return regexp.MustCompile("`" + regexp.QuoteMeta(n) + "[ =`\\[]").MatchString(table)
	}
	for _, o := range append(g, i...) {
		for _, n := range []string{o.short, o.long} {
			if n != "" && !inTable(n) {
				t.Errorf("README.md: no table row names `%s` (%s --help prints it)", n, map[bool]string{true: "gokexec", false: "imalog"}[contains(g, o)])
			}
		}
	}
	if !strings.Contains(table, "`capture-host") {
		t.Error("README.md: no table row names `capture-host`")
	}
}

func contains(opts []helpOption, o helpOption) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// TestREADMELayoutNamesEveryPackage: the README's layout table names every
// package of the module (issue 22: it lacked attest/, efi/, elfcore/,
// examples/, packaging/ and loader/loadertest).
func TestREADMELayoutNamesEveryPackage(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Layout")
	if i < 0 {
		t.Fatal("README.md has no Layout section")
	}
	layout := s[i:]
	if j := strings.Index(layout[3:], "\n## "); j >= 0 {
		layout = layout[:j+3]
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, "github.com/gokexec/gokexec"), "/")
		if rel == "" {
			continue
		}
		if !strings.Contains(layout, "`"+rel+"`") && !strings.Contains(layout, "`"+rel+"/`") {
			t.Errorf("README.md's layout table does not name %s", rel)
		}
	}
}

// TestREADMESelfContained: the README links nothing outside the repository
// (issue 22: it pointed at ../shared/DESIGN.md and "DESIGN §7", which a
// clone does not have), and every relative link it makes resolves.
func TestREADMESelfContained(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, bad := range []string{"../shared", "DESIGN §", "DESIGN.md"} {
		if strings.Contains(s, bad) {
			t.Errorf("README.md refers to %q, which a clone does not have", bad)
		}
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`).FindAllStringSubmatch(s, -1) {
		if strings.Contains(m[1], "://") {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("README.md links %s: %v", m[1], err)
		}
	}
}
