// Command genman renders a man page (roff, man(7) macros) from a command's
// own --help output, so the help text is the one source of the option text:
// the usage lines become the SYNOPSIS, the prose the DESCRIPTION, the option
// lines ("  -l, --load   description", "      --append=STRING   description",
// any indentation of at least one space) the OPTIONS section, and, for a
// command with subcommands, each subcommand's own --help a subsection of
// COMMANDS. An optional extra file (already in roff) is appended after.
//
//	genman -name gokexec -section 8 -title "..." -bin ./gokexec [-extra FILE]
//	genman -name imalog -section 1 -title "..." -bin ./imalog -sub show,replay,verify,restore
//	genman -name X -title "..." < help.txt      (the help on standard input)
//
// Invariants: the output depends only on its inputs (no clock unless -date
// is left empty and SOURCE_DATE_EPOCH unset); every help line appears in
// the page; roff control characters in the help are escaped. A help text
// genman cannot parse (a line that looks like an option but is not one, an
// "Options:" heading with no option under it) is an error naming the line,
// never a page with options silently missing.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

func main() {
	name := flag.String("name", "", "command name")
	section := flag.String("section", "1", "man section")
	title := flag.String("title", "", "one-line description for NAME")
	extra := flag.String("extra", "", "roff file appended after OPTIONS")
	version := flag.String("version", "", "version for the page footer")
	date := flag.String("date", "", "date for the page footer (default: SOURCE_DATE_EPOCH, else today)")
	bin := flag.String("bin", "", "run BIN --help (and BIN SUB --help) instead of reading the help from standard input")
	subs := flag.String("sub", "", "comma-separated subcommands whose own --help is rendered under COMMANDS (needs -bin)")
	flag.Parse()
	if *name == "" {
		fail(errors.New("-name is required"))
	}
	p := Page{Name: *name, Section: *section, Title: *title, Version: *version, Date: *date}
	if p.Date == "" {
		p.Date = pageDate()
	}
	var err error
	if *bin != "" {
		if p.Help, err = helpOf(*bin); err != nil {
			fail(err)
		}
		for _, s := range strings.Split(*subs, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			h, err := helpOf(*bin, s)
			if err != nil {
				fail(err)
			}
			p.Subs = append(p.Subs, Sub{Name: s, Help: h})
		}
	} else {
		if *subs != "" {
			fail(errors.New("-sub needs -bin"))
		}
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail(err)
		}
		p.Help = string(b)
	}
	if *extra != "" {
		b, err := os.ReadFile(*extra)
		if err != nil {
			fail(err)
		}
		p.Extra = string(b)
	}
	page, err := Render(p)
	if err != nil {
		fail(err)
	}
	if _, err := os.Stdout.WriteString(page); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "genman:", err)
	os.Exit(1)
}

// helpOf runs "bin args... --help" and returns what it printed on standard
// output. A help that exits non-zero or prints nothing is an error: the page
// would lack that command's options.
func helpOf(bin string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	c := exec.Command(bin, append(args, "--help")...)
	c.Stdout, c.Stderr = &out, &errb
	what := strings.Join(append([]string{bin}, append(args, "--help")...), " ")
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("%s: %v: %s", what, err, strings.TrimSpace(firstLine(errb.String())))
	}
	if strings.TrimSpace(out.String()) == "" {
		return "", fmt.Errorf("%s printed nothing on standard output", what)
	}
	return out.String(), nil
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func pageDate() string {
	t := time.Now()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			t = time.Unix(n, 0)
		}
	}
	return t.UTC().Format("2006-01-02")
}

// Page is what Render needs.
type Page struct {
	Name, Section, Title, Version, Date string
	Help                                string // the command's --help output
	Subs                                []Sub  // subcommands' own --help, in order
	Extra                               string // roff appended verbatim
}

// Sub is one subcommand's help.
type Sub struct{ Name, Help string }

// Option is one parsed option line.
type Option struct {
	Short, Long, Arg, Desc string
}

// Help is a parsed help text: the lines before the first option (usage and
// prose), then the option section as blocks in order.
type Help struct {
	Head   []string
	Blocks []Block
}

// Block is an option, or a line of text (a heading such as "gokexec's own
// options:" or a note) between options.
type Block struct {
	Opt  *Option
	Text string
}

// Options returns the help's options in order.
func (h Help) Options() []Option {
	var o []Option
	for _, b := range h.Blocks {
		if b.Opt != nil {
			o = append(o, *b.Opt)
		}
	}
	return o
}

// ErrParse is wrapped by every ParseHelp error.
var ErrParse = errors.New("cannot parse the help")

// optStart is a line that begins an option entry: some indentation, then a
// dash followed by a letter, a digit or a second dash.
var optStart = regexp.MustCompile(`^(\s+)-[-A-Za-z0-9?]`)

// ParseHelp splits help text into the lines before the first option line
// (usage and prose) and the option blocks. A line indented deeper than the
// option lines and not starting with a dash continues the option before it.
// A line that starts like an option but does not parse as one is an error.
func ParseHelp(help string) (Help, error) {
	var h Help
	sc := bufio.NewScanner(strings.NewReader(help))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	inOpts, heading := false, false
	optIndent := 0
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t")
		t := strings.TrimLeft(line, " \t")
		ind := len(line) - len(t)
		// An option line: at the option column (or, before the first one,
		// under an "Options:" heading or shaped like one), or a long option
		// indented deeper as pflag aligns "      --long" under "  -x, --long".
		atColumn := optStart.MatchString(line) && (!inOpts || ind <= optIndent+2) && (inOpts || heading || looksLikeOption(t))
		deepLong := inOpts && ind > optIndent+2 && strings.HasPrefix(t, "--") && looksLikeOption(t)
		if atColumn || deepLong {
			o, ok := parseOption(t)
			if !ok {
				return Help{}, fmt.Errorf("%w: line %d %q looks like an option line but is not \"-x, --long ARG   description\"", ErrParse, n, line)
			}
			if !inOpts {
				optIndent = ind
				if o.Short == "" {
					// pflag puts long-only options 4 columns right of "-x, ".
					optIndent = max(ind-4, 1)
				}
			}
			inOpts, heading = true, false
			h.Blocks = append(h.Blocks, Block{Opt: &o})
			continue
		}
		if !inOpts {
			h.Head = append(h.Head, line)
			heading = strings.EqualFold(t, "options:") || strings.HasSuffix(strings.ToLower(t), "options:")
			continue
		}
		last := &h.Blocks[len(h.Blocks)-1]
		switch {
		case t == "":
			h.Blocks = append(h.Blocks, Block{Text: ""})
		case ind > optIndent+2 && last.Opt != nil:
			if last.Opt.Desc == "" {
				last.Opt.Desc = t
			} else {
				last.Opt.Desc += " " + t
			}
		default:
			h.Blocks = append(h.Blocks, Block{Text: t})
		}
	}
	if err := sc.Err(); err != nil {
		return Help{}, fmt.Errorf("%w: %v", ErrParse, err)
	}
	if heading || (len(h.Blocks) == 0 && hasOptionsHeading(h.Head)) {
		return Help{}, fmt.Errorf("%w: an \"Options:\" heading with no option line under it", ErrParse)
	}
	// Drop trailing blank blocks.
	for len(h.Blocks) > 0 && h.Blocks[len(h.Blocks)-1].Opt == nil && h.Blocks[len(h.Blocks)-1].Text == "" {
		h.Blocks = h.Blocks[:len(h.Blocks)-1]
	}
	return h, nil
}

func hasOptionsHeading(head []string) bool {
	for _, l := range head {
		if strings.EqualFold(strings.TrimSpace(l), "options:") {
			return true
		}
	}
	return false
}

// looksLikeOption tells an option line from a usage line that happens to
// start with a dash before any "Options:" heading: an option line has its
// description after a run of at least two spaces, or is "-x, --long".
func looksLikeOption(t string) bool {
	if strings.HasPrefix(t, "--") || (len(t) > 3 && t[2] == ',') {
		return strings.Contains(t, "  ") || !strings.Contains(t, " ")
	}
	return false
}

// parseOption recognises "-l, --load   desc", "--append=STRING   desc",
// "--append string   desc", "-l, --load[=true|false]   desc" and a short
// option alone ("-h   desc").
func parseOption(t string) (Option, bool) {
	var o Option
	if len(t) > 1 && t[1] != '-' {
		if len(t) == 2 || t[2] == ' ' {
			// "-h   description": a short option alone.
			o.Short = t[:2]
			o.Desc = strings.TrimSpace(t[2:])
			return o, true
		}
		if len(t) < 4 || t[2] != ',' {
			return Option{}, false
		}
		o.Short = t[:2]
		t = strings.TrimLeft(t[3:], " ")
	}
	if !strings.HasPrefix(t, "--") || len(t) < 3 {
		return Option{}, false
	}
	spec, desc, found := strings.Cut(t, "  ")
	if !found {
		spec, desc = t, ""
	}
	spec = strings.TrimSpace(spec)
	long := spec
	if i := strings.IndexAny(spec, "= ["); i >= 0 {
		long = spec[:i]
	}
	arg := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(spec[len(long):], "[=true|false]"), "="))
	if !validLong.MatchString(long) {
		return Option{}, false
	}
	o.Long, o.Arg, o.Desc = long, arg, strings.TrimSpace(desc)
	return o, true
}

var validLong = regexp.MustCompile(`^--[A-Za-z0-9][A-Za-z0-9-]*$`)

// Render builds the page.
func Render(p Page) (string, error) {
	top, err := ParseHelp(p.Help)
	if err != nil {
		return "", fmt.Errorf("%s --help: %w", p.Name, err)
	}
	subs := make([]Help, len(p.Subs))
	for i, s := range p.Subs {
		if subs[i], err = ParseHelp(s.Help); err != nil {
			return "", fmt.Errorf("%s %s --help: %w", p.Name, s.Name, err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s %q %q %q\n", strings.ToUpper(p.Name), p.Section, p.Date, strings.TrimSpace(p.Name+" "+p.Version), "gokexec")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", esc(p.Name), esc(p.Title))
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	prose := writeUsage(&b, p.Name, top.Head)
	b.WriteString(".fi\n")
	if len(prose) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		writeProse(&b, prose)
	}
	if len(top.Blocks) > 0 {
		b.WriteString(".SH OPTIONS\n")
		writeBlocks(&b, top.Blocks)
	}
	if len(p.Subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for i, s := range p.Subs {
			fmt.Fprintf(&b, ".SS %s %s\n", esc(p.Name), esc(s.Name))
			var usage strings.Builder
			prose := writeUsage(&usage, p.Name, subs[i].Head)
			if usage.Len() > 0 {
				b.WriteString(".nf\n" + usage.String() + ".fi\n")
			}
			if len(prose) > 0 {
				b.WriteString(".PP\n")
				writeProse(&b, prose)
			}
			writeBlocks(&b, subs[i].Blocks)
		}
	}
	if p.Extra != "" {
		b.WriteString(strings.TrimRight(p.Extra, "\n") + "\n")
	}
	return b.String(), nil
}

// writeUsage writes the usage lines of head and returns the prose lines.
func writeUsage(b *strings.Builder, name string, head []string) []string {
	var prose []string
	for _, l := range head {
		tl := strings.TrimSpace(l)
		low := strings.ToLower(tl)
		switch {
		case tl == "" || low == "options:" || low == "usage:":
		case strings.HasPrefix(low, "usage: "):
			b.WriteString(esc(strings.TrimSpace(tl[len("usage: "):])) + "\n")
		case strings.HasPrefix(tl, name+" ") || tl == name || strings.HasPrefix(l, "   "):
			b.WriteString(esc(tl) + "\n")
		default:
			prose = append(prose, tl)
		}
	}
	return prose
}

func writeProse(b *strings.Builder, lines []string) {
	for _, l := range lines {
		b.WriteString(esc(l) + "\n")
	}
}

func writeBlocks(b *strings.Builder, blocks []Block) {
	for _, bl := range blocks {
		if bl.Opt == nil {
			if bl.Text == "" {
				continue
			}
			b.WriteString(".PP\n" + esc(bl.Text) + "\n")
			continue
		}
		o := bl.Opt
		b.WriteString(".TP\n")
		var names []string
		if o.Short != "" {
			names = append(names, `\fB`+esc(o.Short)+`\fR`)
		}
		if o.Long != "" {
			names = append(names, `\fB`+esc(o.Long)+`\fR`)
		}
		s := strings.Join(names, ", ")
		if o.Arg != "" {
			sep := " "
			if strings.HasPrefix(o.Arg, "[") {
				sep = "" // "--tpm[=DEV]": the optional argument is part of the name
			}
			s += sep + `\fI` + esc(o.Arg) + `\fR`
		}
		b.WriteString(s + "\n" + esc(o.Desc) + "\n")
	}
}

// esc escapes backslashes, hyphens that man-db would otherwise render as
// typographic dashes, and a leading dot or quote that roff would take as a
// request.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
