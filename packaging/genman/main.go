// Command genman renders a man page (roff, man(7) macros) from a command's
// --help output, so the pages stay in step with the flag definitions: the
// lines of the help that look like pflag option lines ("  -l, --load ...
// description") become the OPTIONS section, the usage lines before them the
// SYNOPSIS, and an optional extra file (already in roff) is appended after.
//
//	genman -name gokexec -section 8 -title "..." [-extra FILE] [-date YYYY-MM-DD] < help.txt > gokexec.8
//
// Invariants: the output depends only on its inputs (no clock unless -date
// is left empty and SOURCE_DATE_EPOCH unset); every help line appears in
// the page; roff control characters in the help are escaped.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
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
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "genman: -name is required")
		os.Exit(2)
	}
	help, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
	var extraText []byte
	if *extra != "" {
		if extraText, err = os.ReadFile(*extra); err != nil {
			fmt.Fprintln(os.Stderr, "genman:", err)
			os.Exit(1)
		}
	}
	d := *date
	if d == "" {
		d = pageDate()
	}
	page := Render(Page{Name: *name, Section: *section, Title: *title, Version: *version, Date: d, Help: string(help), Extra: string(extraText)})
	if _, err := os.Stdout.WriteString(page); err != nil {
		fmt.Fprintln(os.Stderr, "genman:", err)
		os.Exit(1)
	}
}

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
	Extra                               string // roff appended verbatim
}

// Option is one parsed option line of pflag's PrintDefaults output.
type Option struct {
	Short, Long, Arg, Desc string
}

// ParseHelp splits help text into the lines before the first option line
// (usage and prose) and the options. A description continued on a line
// indented like the description column joins the option before it.
func ParseHelp(help string) (head []string, opts []Option) {
	sc := bufio.NewScanner(strings.NewReader(help))
	inOpts := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t")
		if o, ok := parseOption(line); ok {
			inOpts = true
			opts = append(opts, o)
			continue
		}
		if inOpts && strings.TrimSpace(line) != "" && strings.HasPrefix(line, "      ") && len(opts) > 0 {
			opts[len(opts)-1].Desc += " " + strings.TrimSpace(line)
			continue
		}
		if !inOpts {
			head = append(head, line)
		}
	}
	return head, opts
}

// parseOption recognises "  -l, --load[=true|false]   desc" and
// "      --append string   desc".
func parseOption(line string) (Option, bool) {
	t := strings.TrimLeft(line, " ")
	if len(line)-len(t) < 2 || !strings.HasPrefix(t, "-") {
		return Option{}, false
	}
	var o Option
	if len(t) > 1 && t[1] != '-' {
		// -x, --long
		if len(t) < 4 || t[2] != ',' {
			return Option{}, false
		}
		o.Short = t[:2]
		t = strings.TrimLeft(t[3:], " ")
	}
	if !strings.HasPrefix(t, "--") {
		return Option{}, false
	}
	spec, desc, found := strings.Cut(t, "  ")
	if !found {
		spec, desc = t, ""
	}
	spec = strings.TrimSpace(spec)
	long, arg, _ := strings.Cut(spec, " ")
	long = strings.TrimSuffix(long, "[=true|false]")
	o.Long, o.Arg, o.Desc = long, strings.TrimSpace(arg), strings.TrimSpace(desc)
	return o, true
}

// Render builds the page.
func Render(p Page) string {
	head, opts := ParseHelp(p.Help)
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s %q %q %q\n", strings.ToUpper(p.Name), p.Section, p.Date, strings.TrimSpace(p.Name+" "+p.Version), "gokexec")
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", esc(p.Name), esc(p.Title))
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	var prose []string
	for _, l := range head {
		tl := strings.TrimSpace(l)
		switch {
		case tl == "" || tl == "Options:" || tl == "usage:":
		case strings.HasPrefix(strings.ToLower(tl), "usage: "):
			b.WriteString(esc(strings.TrimSpace(tl[len("usage: "):])) + "\n")
		case strings.HasPrefix(tl, p.Name+" ") || strings.HasPrefix(l, "   "):
			b.WriteString(esc(tl) + "\n")
		default:
			prose = append(prose, tl)
		}
	}
	b.WriteString(".fi\n")
	if len(prose) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		for _, l := range prose {
			b.WriteString(esc(l) + "\n")
		}
	}
	if len(opts) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, o := range opts {
			b.WriteString(".TP\n")
			var names []string
			if o.Short != "" {
				names = append(names, `\fB`+esc(o.Short)+`\fR`)
			}
			names = append(names, `\fB`+esc(o.Long)+`\fR`)
			s := strings.Join(names, ", ")
			if o.Arg != "" {
				s += ` \fI` + esc(o.Arg) + `\fR`
			}
			b.WriteString(s + "\n" + esc(o.Desc) + "\n")
		}
	}
	if p.Extra != "" {
		b.WriteString(strings.TrimRight(p.Extra, "\n") + "\n")
	}
	return b.String()
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
