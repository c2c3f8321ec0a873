// Command imalog shows, replays and verifies Linux IMA measurement lists on
// the attestation side. It is a thin layer over package ima.
//
//	imalog show   [--format ascii|json] [--byte-order B] [--kexec] FILE
//	imalog replay [--bank B]... [--method per-bank|sha1-padded] [--json] FILE
//	imalog verify FILE (--pcrs [BANK,]PCRFILE ... | --tpm[=DEV]) [--json]
//	imalog restore [--byte-order B] [--list] FILE
//
// Exit status: 0 consistent (or success), 1 inconsistent (verify) or not
// restorable (restore), 2 bad input or usage.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

const (
	exitOK       = 0
	exitMismatch = 1
	exitBad      = 2
)

// usageError marks errors that are the caller's fault (exit 2 with usage).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

const usage = `usage:
  imalog show   [--format ascii|json] [--byte-order native|little|big] [--kexec] FILE
  imalog replay [--bank sha1|sha256|sha384|sha512]... [--method per-bank|sha1-padded] [--json] FILE
  imalog verify FILE (--pcrs [BANK,]PCRFILE ... | --tpm[=DEV]) [--json] [--byte-order ...]
  imalog restore [--byte-order ...] [--list] FILE
FILE is binary_runtime_measurements (or a kexec hand-over buffer with --kexec;
restore reads a hand-over buffer unless --list). "-" reads standard input.
PCR files: evmctl's "PCR-NN: XX XX ..." lines, tpm2_pcrread YAML, or JSON
{"sha256":{"10":"hex"}}. Exit: 0 consistent, 1 inconsistent, 2 bad input.
`

func main() {
	// A short-lived process whose heap is proportional to its input: do not
	// collect unless the heap passes 1 GiB.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(1 << 30)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBad
	}
	var code int
	var err error
	switch args[0] {
	case "show":
		code, err = cmdShow(args[1:], stdin, stdout)
	case "replay":
		code, err = cmdReplay(args[1:], stdin, stdout)
	case "verify":
		code, err = cmdVerify(args[1:], stdin, stdout)
	case "restore":
		code, err = cmdRestore(args[1:], stdin, stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		err = usagef("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "imalog: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(stderr, usage)
		}
		if code == exitOK {
			code = exitBad
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

// maxInput bounds what imalog reads (a list of several million entries).
const maxInput = 4 << 30

func readInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > 0 && st.Size() <= maxInput {
			// Map regular files read-only and pre-faulted: no copy, one
			// syscall. The mapping lives until the process exits.
			// (securityfs files report size 0 and take the read path.)
			if b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_POPULATE); err == nil {
				return b, nil
			}
			b := make([]byte, st.Size())
			if _, err := io.ReadFull(f, b); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return b, nil
		}
		r = f
	}
	return readAll(name, r)
}

// readAll reads r whole, up to maxInput bytes.
func readAll(name string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxInput)
	}
	return b, nil
}
