package qemu

import (
	"bytes"
	"crypto"
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// listEntry is the little the harness tests need from an IMA binary list
// (native little-endian); the real codec is package ima.
type listEntry struct {
	pcr      uint32
	digest   []byte // SHA-1 template digest as stored
	template string
	data     []byte // template data; for "ima": digest ‖ u32 len ‖ name
	violated bool   // all-zero stored digest
}

func parseList(t *testing.T, b []byte) []listEntry {
	t.Helper()
	var out []listEntry
	le := binary.LittleEndian
	for len(b) > 0 {
		if len(b) < 28 {
			t.Fatalf("list: truncated header (%d bytes left)", len(b))
		}
		e := listEntry{pcr: le.Uint32(b), digest: b[4:24], violated: bytes.Equal(b[4:24], make([]byte, 20))}
		n := le.Uint32(b[24:])
		b = b[28:]
		if uint64(n) > uint64(len(b)) || n > 255 {
			t.Fatalf("list: bad template name length %d", n)
		}
		e.template = string(b[:n])
		b = b[n:]
		var d uint64
		if e.template == "ima" {
			if len(b) < 24 {
				t.Fatal("list: truncated ima entry")
			}
			d = 24 + uint64(le.Uint32(b[20:]))
		} else {
			if len(b) < 4 {
				t.Fatal("list: truncated data length")
			}
			d = uint64(le.Uint32(b))
			b = b[4:]
		}
		if d > uint64(len(b)) {
			t.Fatalf("list: bad template data length %d", d)
		}
		e.data = b[:d]
		b = b[d:]
		out = append(out, e)
	}
	return out
}

// hashInput is what the kernel hashes for the template digest: the template
// data, or for the legacy "ima" template the file digest and the name
// zero-padded to 256 bytes.
func (e listEntry) hashInput() []byte {
	if e.template != "ima" {
		return e.data
	}
	name := make([]byte, 256)
	copy(name, e.data[24:])
	return append(append([]byte(nil), e.data[:20]...), name...)
}

// Ways a kernel extends one bank.
type extendMode int

const (
	perBank      extendMode = iota // H_bank(template data); violations all 0xff
	sha1Padded                     // SHA-1 template digest zero-padded; violations 20 0xff bytes, then zeros
	sha1PaddedFF                   // SHA-1 template digest zero-padded; violations all 0xff
)

var modeNames = map[extendMode]string{
	perBank:      "per-bank hash",
	sha1Padded:   "sha1 zero-padded (violations: 20 0xff bytes, zero-padded)",
	sha1PaddedFF: "sha1 zero-padded (violations: all 0xff)",
}

// replay extends PCR pcr of the bank with hash h from start, the way mode
// says. Debian's 6.1 kernel has sha384 only as a module, so IMA finds no
// sha384 hash at init and pads the SHA-1 digest (ima_calc_field_array_hash),
// while violations use its preset all-0xff digest of the TPM bank's full
// size (ima_init_digests): sha1PaddedFF. A bank the TPM driver cannot map
// at all gets 20 0xff bytes (sha1Padded).
func replay(entries []listEntry, h crypto.Hash, mode extendMode, pcr uint32, start []byte) []byte {
	v := append([]byte(nil), start...)
	for _, e := range entries {
		if e.pcr != pcr {
			continue
		}
		d := make([]byte, h.Size())
		switch {
		case e.violated && mode == sha1Padded:
			copy(d, bytes.Repeat([]byte{0xff}, 20))
		case e.violated:
			copy(d, bytes.Repeat([]byte{0xff}, h.Size()))
		case mode != perBank:
			s := crypto.SHA1.New()
			s.Write(e.hashInput())
			copy(d, s.Sum(nil))
		default:
			s := h.New()
			s.Write(e.hashInput())
			d = s.Sum(nil)
		}
		x := h.New()
		x.Write(v)
		x.Write(d)
		v = x.Sum(nil)
	}
	return v
}

func countName(entries []listEntry, name string) int {
	n := 0
	for _, e := range entries {
		if bytes.Contains(e.data, []byte(name+"\x00")) {
			n++
		}
	}
	return n
}

// The helpers above agree with the kernel: every stored SHA-1 template
// digest of the committed captures is SHA-1 of hashInput.
func TestListHelpersOnCaptures(t *testing.T) {
	for _, f := range captureFiles(t, "binary_runtime_measurements") {
		es := parseList(t, readFile(t, f))
		if len(es) < 5 {
			t.Fatalf("%s: %d entries", f, len(es))
		}
		for i, e := range es {
			if e.violated {
				continue
			}
			s := crypto.SHA1.New()
			s.Write(e.hashInput())
			if !bytes.Equal(s.Sum(nil), e.digest) {
				t.Errorf("%s entry %d (%s): template digest mismatch", f, i, e.template)
			}
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// captureFiles lists the committed capture files with the given base name.
func captureFiles(t *testing.T, base string) []string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	filepath.WalkDir(filepath.Join(root, "ima", "testdata", "captures"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == base {
			out = append(out, p)
		}
		return nil
	})
	if len(out) == 0 {
		t.Fatal("no committed captures (GOKEXEC_CAPTURE=1 go test ./qemu -run TestCaptureGolden)")
	}
	return out
}

// parsePCRFile reads evmctl's --pcrs format.
func parsePCRFile(t *testing.T, b []byte) map[uint32][]byte {
	t.Helper()
	out := map[uint32][]byte{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var idx uint32
		head, rest, ok := strings.Cut(l, ":")
		if _, err := fmt.Sscanf(head, "PCR-%d", &idx); !ok || err != nil {
			t.Fatalf("bad PCR line %q", l)
		}
		v, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(rest), " ", ""))
		if err != nil {
			t.Fatalf("bad PCR line %q: %v", l, err)
		}
		out[idx] = v
	}
	return out
}

var bankHash = map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384}

// replayMethod says how the list reproduces the PCRs of one bank (a
// modeNames value), or "" if no mode does, considering every PCR the list
// extends.
func replayMethod(es []listEntry, bank string, pcrs map[uint32][]byte) string {
	h := bankHash[bank]
	used := map[uint32]bool{}
	for _, e := range es {
		used[e.pcr] = true
	}
	for _, mode := range []extendMode{perBank, sha1Padded, sha1PaddedFF} {
		ok := true
		for p := range used {
			if !bytes.Equal(replay(es, h, mode, p, make([]byte, h.Size())), pcrs[p]) {
				ok = false
			}
		}
		if ok {
			return modeNames[mode]
		}
	}
	return ""
}

// Every committed capture replays to its PCR files in every bank (the full
// list to pcr-<bank>.txt, a strict prefix to pcr-<bank>-prefix.txt).
func TestCapturesReplay(t *testing.T) {
	for _, f := range captureFiles(t, "binary_runtime_measurements") {
		dir := filepath.Dir(f)
		es := parseList(t, readFile(t, f))
		for bank := range bankHash {
			full := parsePCRFile(t, readFile(t, filepath.Join(dir, "pcr-"+bank+".txt")))
			m := replayMethod(es, bank, full)
			if m == "" {
				t.Errorf("%s: %s bank does not replay", dir, bank)
				continue
			}
			pre := parsePCRFile(t, readFile(t, filepath.Join(dir, "pcr-"+bank+"-prefix.txt")))
			n := -1
			for k := len(es) - 1; k > 0; k-- {
				if replayMethod(es[:k], bank, pre) == m {
					n = k
					break
				}
			}
			if n < 0 {
				t.Errorf("%s: %s prefix PCRs match no strict prefix", dir, bank)
			}
			t.Logf("%s %s: %s; prefix PCRs = first %d of %d entries", filepath.Base(dir), bank, m, n, len(es))
		}
	}
}
