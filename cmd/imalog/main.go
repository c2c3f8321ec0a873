// Command imalog shows, replays and verifies Linux IMA measurement lists on
// the attestation side. It is a thin layer over package ima.
//
//	imalog show   [--format ascii|json] [--byte-order B] [--kexec] FILE
//	imalog replay [--bank B]... [--method per-bank|sha1-padded] [--json] FILE
//	imalog verify FILE (--pcrs [BANK,]PCRFILE ... | --tpm[=DEV]) [--reads R] [--strict] [--json]
//	imalog restore [--byte-order B] [--list] FILE
//
// Exit status: 0 consistent (or success), 1 inconsistent (verify) or not
// restorable (restore), 2 bad input or usage. Every string taken from a
// list is printed escaped (ima.AppendEscaped); JSON output holds it exactly.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gokexec/gokexec/verdict"
)

// The JSON envelopes: every --json output is one object whose "schema"
// names it and its version (docs/verdict-schema.md); verify's is the
// verdict (package verdict), the others these.
const (
	SchemaShow    = "gokexec/imalog-show/1"
	SchemaReplay  = "gokexec/imalog-replay/1"
	SchemaRestore = "gokexec/imalog-restore/1"
)

// wantsJSON reports whether the command line asks for JSON output.
func wantsJSON(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--json", a == "--json=true", a == "--format=json", strings.HasPrefix(a, "--machines"):
			return true
		case a == "--format" && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

// writeErrorJSON prints the envelope of a run that ended in err.
func writeErrorJSON(w io.Writer, cmd string, code int, err error) {
	schema := map[string]string{"show": SchemaShow, "replay": SchemaReplay, "restore": SchemaRestore}[cmd]
	if cmd == "verify" {
		v := verdict.BadInput(err)
		v.Exit = code
		json.NewEncoder(w).Encode(v)
		return
	}
	if schema == "" {
		schema = "gokexec/imalog/1"
	}
	json.NewEncoder(w).Encode(map[string]any{"schema": schema, "exit": code, "reason": "bad_input", "error": err.Error()})
}

const (
	exitOK       = 0
	exitMismatch = 1
	exitBad      = 2
)

// usageError marks errors that are the caller's fault (exit 2 with usage).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// usage is the general help (help.go).
var usage = func() string {
	var b strings.Builder
	writeHelp(&b, "")
	return b.String()
}()

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBad
	}
	var code int
	var err error
	if args[0] != "help" && wantsHelp(args[1:]) && writeHelp(stdout, args[0]) {
		return exitOK
	}
	switch args[0] {
	case "show":
		code, err = cmdShow(args[1:], stdin, stdout)
	case "replay":
		code, err = cmdReplay(args[1:], stdin, stdout)
	case "verify":
		code, err = cmdVerify(args[1:], stdin, stdout)
	case "restore":
		code, err = cmdRestore(args[1:], stdin, stdout)
	case "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "help":
		if len(args) > 1 && writeHelp(stdout, args[1]) {
			return exitOK
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	case "--version", "version", "-V":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	default:
		err = usagef("unknown command %q", args[0])
	}
	if err != nil {
		if code == exitOK {
			code = exitBad
		}
		if wantsJSON(args) {
			// One envelope for every command, bad input included.
			writeErrorJSON(stdout, args[0], code, err)
		}
		fmt.Fprintf(stderr, "imalog: %s\n", escapeText(err.Error()))
		var ue usageError
		if errors.As(err, &ue) {
			hint := "imalog --help"
			if writeHelp(io.Discard, args[0]) {
				hint = "imalog " + args[0] + " --help"
			}
			fmt.Fprintf(stderr, "imalog: see %s\n", hint)
		}
	}
	return code
}

func parseOrder(s string) (binary.ByteOrder, error) {
	switch s {
	case "native", "":
		return binary.NativeEndian, nil
	case "little", "canonical":
		return binary.LittleEndian, nil
	case "big":
		return binary.BigEndian, nil
	}
	return nil, usagef("--byte-order %q: want native, little (canonical) or big", s)
}

// Input limits: a whole hand-over buffer (restore) and a PCR file.
const (
	maxInput   = 4 << 30
	maxPCRFile = 1 << 20
	// maxEventLog bounds a firmware event log (binary_bios_measurements
	// is tens of KiB; a TPM's event log area is at most a few MiB).
	maxEventLog = 16 << 20
)

// input is an opened FILE argument: a regular file (with its size; 0 for
// securityfs files, whose size is unknown) or standard input.
type input struct {
	name string
	f    *os.File // nil for standard input
	r    io.Reader
	size int64 // > 0: a regular file of this size, readable at offsets
	// The list's entries at offsets (set by listInput for regular files).
	ra     io.ReaderAt
	raSize int64
}

func (in *input) Close() {
	if in.f != nil {
		in.f.Close()
	}
}

// openInput opens FILE ("-": standard input). The file is opened without
// blocking (O_NONBLOCK: a FIFO, even one swapped in for the name after a
// check, cannot hang the open) and judged by what was opened (fstat):
// anything but a regular file (a directory, a FIFO, a device such as
// /dev/zero, a socket) is refused, so reading never runs away; the error
// names the file. For a fleet machine stdin is a *confined: its files are
// opened beneath the machine's directory only, without following a
// symbolic link out of it (os.Root) nor a last-component link at all.
func openInput(name string, stdin io.Reader) (*input, error) {
	c, fleet := stdin.(*confined)
	if name == "-" && !fleet {
		if stdin == nil {
			return nil, errors.New(`"-": standard input is not an input here`)
		}
		return &input{name: name, r: stdin}, nil
	}
	var f *os.File
	var err error
	const flags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	switch {
	case fleet:
		f, err = c.open(name, flags|syscall.O_NOFOLLOW)
	default:
		f, err = os.OpenFile(name, flags, 0)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil {
		err = regular(name, st)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &input{name: name, f: f, r: f, size: st.Size()}, nil
}

// confined opens a fleet machine's files: a path beneath dir is opened
// through root (no component may leave dir, symbolic links included);
// another path (an absolute one in a manifest, written by whoever runs
// the fleet) directly, and never through a last-component link.
type confined struct {
	root *os.Root
	dir  string
}

// Read makes confined stand where standard input would: a machine has
// none.
func (c *confined) Read([]byte) (int, error) {
	return 0, errors.New(`"-" (standard input) names no machine's file`)
}

func (c *confined) open(name string, flags int) (*os.File, error) {
	rel, err := filepath.Rel(c.dir, name)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		if !filepath.IsAbs(name) {
			return nil, fmt.Errorf("%s: outside the machine's directory %s", name, c.dir)
		}
		return os.OpenFile(name, flags, 0)
	}
	f, err := c.root.OpenFile(rel, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, errors.Unwrap(err))
	}
	return f, nil
}

func regular(name string, st os.FileInfo) error {
	m := st.Mode()
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return fmt.Errorf("%s: is a directory, not a file", name)
	case m&os.ModeNamedPipe != 0:
		return fmt.Errorf("%s: is a FIFO; give a regular file, or - to read standard input", name)
	case m&os.ModeDevice != 0:
		return fmt.Errorf("%s: is a device, not a regular file", name)
	}
	return fmt.Errorf("%s: not a regular file (mode %v)", name, m.Type())
}

// readSmall reads a whole input of at most limit bytes.
func readSmall(name string, stdin io.Reader, limit int64) ([]byte, error) {
	in, err := openInput(name, stdin)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	b, err := io.ReadAll(io.LimitReader(in.r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return b, nil
}
