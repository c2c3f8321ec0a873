package loader

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Finding "library errors speak the command line": no string in the
// library's code (loader, plan, kexec) names a command-line flag; the
// commands add the flag advice by matching the sentinels.
func TestLibraryStringsNameNoFlags(t *testing.T) {
	flagRE := regexp.MustCompile(`(^|[\s(])(-[a-zA-Z]\b[^-]|--[a-z][a-z-]+)`)
	// kexec-tools' own option names, quoted as facts about it.
	allowed := map[string]bool{"--pass-memmap": true}
	for _, dir := range []string{".", "../plan", "../kexec"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			fs := token.NewFileSet()
			af, err := parser.ParseFile(fs, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					return true
				}
				for _, m := range flagRE.FindAllStringSubmatch(s, -1) {
					if !allowed[strings.TrimSpace(m[2])] {
						t.Errorf("%s: %q names the flag %q", fs.Position(lit.Pos()), s, m[2])
					}
				}
				return true
			})
		}
	}
}
