package main

import (
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
	head, opts := ParseHelp(sampleHelp)
	if len(opts) != 3 {
		t.Fatalf("got %d options: %+v", len(opts), opts)
	}
	want := []Option{
		{Short: "-l", Long: "--load", Desc: "load KERNEL for a later -e"},
		{Long: "--append", Arg: "string", Desc: "append STRING to the command line"},
		{Long: "--state-dir", Arg: "string", Desc: `where a load records state (default "/run/gokexec")`},
	}
	for i := range want {
		if opts[i] != want[i] {
			t.Errorf("option %d = %+v, want %+v", i, opts[i], want[i])
		}
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "Usage: gokexec") {
		t.Fatalf("head %q", head)
	}
}

func TestRender(t *testing.T) {
	page := Render(Page{Name: "gokexec", Section: "8", Title: "load a kernel", Version: "1.0", Date: "2026-01-02", Help: sampleHelp, Extra: ".SH FILES\n/run/gokexec\n"})
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
