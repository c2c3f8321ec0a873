package main

import (
	"errors"
	"strings"
	"testing"
)

const sampleHelp = `Usage: gokexec [OPTION]... [KERNEL]
Load a new kernel.

  gokexec -l KERNEL [--initrd FILE]
  gokexec -e            boot the loaded kernel

Options:
  -l, --load[=true|false]                 load KERNEL for a later -e
      --append string                     append STRING to the command line
      --state-dir string                  where a load records state (default "/run/gokexec")
`

func TestParseHelp(t *testing.T) {
	h, err := ParseHelp(sampleHelp)
	if err != nil {
		t.Fatal(err)
	}
	opts := h.Options()
	want := []Option{
		{Short: "-l", Long: "--load", Desc: "load KERNEL for a later -e"},
		{Long: "--append", Arg: "string", Desc: "append STRING to the command line"},
		{Long: "--state-dir", Arg: "string", Desc: `where a load records state (default "/run/gokexec")`},
	}
	if len(opts) != len(want) {
		t.Fatalf("got %d options: %+v", len(opts), opts)
	}
	for i := range want {
		if opts[i] != want[i] {
			t.Errorf("option %d = %+v, want %+v", i, opts[i], want[i])
		}
	}
	if len(h.Head) == 0 || !strings.HasPrefix(h.Head[0], "Usage: gokexec") {
		t.Fatalf("head %q", h.Head)
	}
}

// TestParseHelpOneSpaceIndent is the finding of issue 22: the help printer
// indented option lines by one space and the renderer wanted two, so
// -h -v -f -x -y -l -p ran together into the description and -u -e -S -t
// -s -c -a -d -i were gone from gokexec(8). Both indentations (and pflag's
// own "--long string" form beside the "--long=ARG" one) parse to the same
// options, continuation lines included.
func TestParseHelpOneSpaceIndent(t *testing.T) {
	for _, ind := range []string{" ", "  ", "   "} {
		help := "Usage: gokexec [OPTION]... [kernel]\n\nOptions:\n" +
			ind + "-h, --help                 Print this help.\n" +
			ind + "-v, --version              Print the version of gokexec.\n" +
			ind + "    --args-linux           Accepted for kexec-tools compatibility.\n" +
			ind + "-u, --unload               Unload the current kexec target kernel.\n" +
			ind + "-e, --exec                 Execute a currently loaded kernel\n" +
			ind + "                           (after finalizing the IMA hand-over).\n" +
			ind + "-t, --type=TYPE            Specify the TYPE.\n" +
			ind + "    --append=STRING        Append STRING.\n" +
			ind + "    --mem-max ADDRESS      Highest ADDRESS.\n" +
			"\ngokexec's own options:\n" +
			ind + "    --ima-extra=SIZE       Headroom (default 64K)\n"
		h, err := ParseHelp(help)
		if err != nil {
			t.Fatalf("indent %q: %v", ind, err)
		}
		var got []string
		for _, o := range h.Options() {
			got = append(got, strings.TrimSpace(o.Short+" "+o.Long+" "+o.Arg))
		}
		want := []string{"-h --help", "-v --version", "--args-linux", "-u --unload", "-e --exec", "-t --type TYPE", "--append STRING", "--mem-max ADDRESS", "--ima-extra SIZE"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("indent %q: options %q, want %q", ind, got, want)
		}
		for _, o := range h.Options() {
			if o.Desc == "" || strings.Contains(o.Desc, "  ") {
				t.Errorf("indent %q: %s description %q", ind, o.Long, o.Desc)
			}
		}
		if e := h.Options()[4]; e.Desc != "Execute a currently loaded kernel (after finalizing the IMA hand-over)." {
			t.Errorf("indent %q: continuation not joined: %q", ind, e.Desc)
		}
		page, err := Render(Page{Name: "gokexec", Section: "8", Help: help})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{`\fB\-u\fR, \fB\-\-unload\fR`, `\fB\-t\fR, \fB\-\-type\fR \fITYPE\fR`, `\fB\-\-ima\-extra\fR \fISIZE\fR`, ".PP\ngokexec's own options:"} {
			if !strings.Contains(page, s) {
				t.Errorf("indent %q: page lacks %q:\n%s", ind, s, page)
			}
		}
	}
}

// TestParseHelpFailsLoudly: a help genman cannot read is an error naming
// the line, not a page with options missing.
func TestParseHelpFailsLoudly(t *testing.T) {
	for name, help := range map[string]string{
		"garbled option":      "Usage: x\n\nOptions:\n  -h, --help   help\n  -q,, --quiet   quiet\n",
		"heading, no options": "Usage: x\n\nOptions:\n",
		"bad long name":       "Usage: x\n\nOptions:\n  --a_b  nope\n",
	} {
		if _, err := ParseHelp(help); !errors.Is(err, ErrParse) {
			t.Errorf("%s: err %v, want ErrParse", name, err)
		}
		if _, err := Render(Page{Name: "x", Help: help}); !errors.Is(err, ErrParse) {
			t.Errorf("%s: Render err %v, want ErrParse", name, err)
		}
	}
}

func TestRender(t *testing.T) {
	page, err := Render(Page{Name: "gokexec", Section: "8", Title: "load a kernel", Version: "1.0", Date: "2026-01-02", Help: sampleHelp, Extra: ".SH FILES\n/run/gokexec\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		".TH GOKEXEC 8 \"2026-01-02\" \"gokexec 1.0\"",
		".SH NAME\ngokexec \\- load a kernel\n",
		"gokexec \\-e            boot the loaded kernel\n",
		".SH DESCRIPTION\nLoad a new kernel.\n",
		".TP\n\\fB\\-l\\fR, \\fB\\-\\-load\\fR\nload KERNEL for a later \\-e\n",
		"\\fB\\-\\-append\\fR \\fIstring\\fR\n",
		".SH FILES\n/run/gokexec\n",
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q:\n%s", s, page)
		}
	}
	if strings.Contains(page, "[=true|false]") {
		t.Error("boolean suffix kept")
	}
}

// TestRenderSubcommands: each subcommand's own help becomes a subsection of
// COMMANDS with its usage, prose and options.
func TestRenderSubcommands(t *testing.T) {
	top := "usage:\n  imalog show FILE\n  imalog verify FILE --pcrs F\nExit: 0 consistent, 1 inconsistent, 2 bad input.\n"
	verify := "usage: imalog verify FILE (--pcrs [BANK,]F ... | --tpm[=DEV])\nExit 1: the list does not replay.\n\nOptions:\n      --pcrs stringArray   [BANK,]FILE with PCR values (repeatable)\n      --strict             every PCR with entries must be quoted\n"
	page, err := Render(Page{Name: "imalog", Section: "1", Title: "t", Date: "d", Help: top, Subs: []Sub{{Name: "verify", Help: verify}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{".SH COMMANDS\n.SS imalog verify\n.nf\nimalog verify FILE", "Exit 1: the list does not replay.", `\fB\-\-pcrs\fR \fIstringArray\fR`, `\fB\-\-strict\fR`, "Exit: 0 consistent"} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q:\n%s", s, page)
		}
	}
}
