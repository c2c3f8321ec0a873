package ima

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

const benchEntries = 200_000

var (
	benchOnce sync.Once
	benchList []Entry
	benchRaw  []byte
)

// benchmarkList is a 200,000-entry list shaped like a real one: the
// default ima-sig template with empty signatures, sha256 file digests,
// paths of typical length, a violation every 5,000 entries, PCR 10 and 11.
func benchmarkList(tb testing.TB) ([]Entry, []byte) {
	benchOnce.Do(func() {
		order := binary.LittleEndian
		es := make([]Entry, 0, benchEntries)
		for i := 0; i < benchEntries; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(i)))
			path := fmt.Sprintf("/usr/lib/x86_64-linux-gnu/libexample-%06d.so.1", i)
			pcr := uint32(10)
			if i%50 == 49 {
				pcr = 11
			}
			e, err := NewFileEntry(pcr, "ima-sig", path, d[:], crypto.SHA256, []byte{})
			if err != nil {
				panic(err)
			}
			if i%5000 == 4999 {
				e, _ = NewViolation(pcr, "ima-sig", path, crypto.SHA256)
			}
			es = append(es, e)
		}
		benchRaw = AppendList(nil, es, order)
		var err error
		benchList, err = ParseList(benchRaw, order)
		if err != nil {
			panic(err)
		}
	})
	return benchList, benchRaw
}

func benchQuote(es []Entry) PCRValues {
	return PCRValues{
		crypto.SHA1:   Replay(es, crypto.SHA1, MethodPerBank),
		crypto.SHA256: Replay(es, crypto.SHA256, MethodPerBank),
		crypto.SHA384: Replay(es, crypto.SHA384, MethodSHA1Padded),
	}
}

func BenchmarkParseList200k(b *testing.B) {
	_, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParseList(raw, binary.LittleEndian); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify200k: Verify on parsed entries against sha1 and sha256
// quotes (the banks evmctl can read).
func BenchmarkVerify200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	delete(q, crypto.SHA384)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if r := Verify(es, binary.LittleEndian, q, VerifyOptions{}); !r.Consistent {
			b.Fatal("not consistent")
		}
	}
}

// BenchmarkVerifyReaderAt200k: parse, verify against sha1 and sha256
// quotes and timeline in one pass over the bytes, what `imalog verify`
// runs on a file.
func BenchmarkVerifyReaderAt200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	delete(q, crypto.SHA384)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), binary.LittleEndian, q, VerifyOptions{})
		if err != nil || !r.Consistent {
			b.Fatal("not consistent", err)
		}
	}
}

// BenchmarkVerify3Banks200k adds a sha384 quote replayed SHA-1-padded
// (the second pass of the padded method).
func BenchmarkVerify3Banks200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r, err := VerifyReaderAt(bytes.NewReader(raw), int64(len(raw)), binary.LittleEndian, q, VerifyOptions{})
		if err != nil || !r.Consistent {
			b.Fatal("not consistent", err)
		}
	}
}

// BenchmarkHashFloor200k is the hashing a sha1+sha256 verification of a
// matching list needs, with the standard library's one-shot functions, on
// pre-parsed entries, one goroutine: the SHA-256 template digest of every
// entry and one extend per bank per entry (the SHA-1 bank extends the
// stored digests, which the sha256 bank's binding of the data makes
// sufficient). evmctl ima_measurement hashes the same.
func BenchmarkHashFloor200k(b *testing.B) {
	es, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	var p1 [20]byte
	var p256 [32]byte
	var buf [64]byte
	for b.Loop() {
		for i := range es {
			d256 := sha256.Sum256(es[i].TemplateData)
			copy(buf[:20], p1[:])
			copy(buf[20:40], es[i].TemplateDigest[:])
			p1 = sha1.Sum(buf[:40])
			copy(buf[:32], p256[:])
			copy(buf[32:], d256[:])
			p256 = sha256.Sum256(buf[:64])
		}
	}
}

// BenchmarkHashFloorSums200k also recomputes every SHA-1 template digest
// (what a verification with only the SHA-1 bank, or on a stream, hashes).
func BenchmarkHashFloorSums200k(b *testing.B) {
	es, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	var p1 [20]byte
	var p256 [32]byte
	var buf [64]byte
	for b.Loop() {
		for i := range es {
			d1 := sha1.Sum(es[i].TemplateData)
			d256 := sha256.Sum256(es[i].TemplateData)
			copy(buf[:20], p1[:])
			copy(buf[20:40], d1[:])
			p1 = sha1.Sum(buf[:40])
			copy(buf[:32], p256[:])
			copy(buf[32:], d256[:])
			p256 = sha256.Sum256(buf[:64])
		}
	}
}

// BenchmarkHashFloor3Banks200k adds a sha384 bank extended SHA-1-padded
// (one extend per entry).
func BenchmarkHashFloor3Banks200k(b *testing.B) {
	es, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	var p1 [20]byte
	var p256 [32]byte
	var p384 [48]byte
	var buf [96]byte
	for b.Loop() {
		for i := range es {
			d256 := sha256.Sum256(es[i].TemplateData)
			copy(buf[:20], p1[:])
			copy(buf[20:40], es[i].TemplateDigest[:])
			p1 = sha1.Sum(buf[:40])
			copy(buf[:32], p256[:])
			copy(buf[32:], d256[:])
			p256 = sha256.Sum256(buf[:64])
			clear(buf[48:])
			copy(buf[:48], p384[:])
			copy(buf[48:], es[i].TemplateDigest[:])
			p384 = sha512.Sum384(buf[:96])
		}
	}
}

// benchFiles writes the list and evmctl-format PCR files to a fixed
// directory (reused across runs: the list is deterministic).
func benchFiles(b *testing.B) (dir string) {
	es, raw := benchmarkList(b)
	dir = filepath.Join(os.TempDir(), "gokexec-ima-bench")
	if st, err := os.Stat(filepath.Join(dir, "list")); err == nil && st.Size() == int64(len(raw)) {
		return dir
	}
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "list"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	for bank, v := range benchQuote(es) {
		writeEvmctlPCRs(b, filepath.Join(dir, "pcr-"+HashName(bank)+".txt"), bank, v)
	}
	return dir
}

var buildOnce sync.Once

func runOrFail(b *testing.B, name string, args ...string) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("%s %v: %v\n%.500s", name, args, err, out)
	}
}

// BenchmarkEvmctl200k runs `evmctl ima_measurement` on the 200,000-entry
// list with sha1 and sha256 PCR files (one process per iteration).
func BenchmarkEvmctl200k(b *testing.B) {
	ev := evmctlPath(b)
	dir := benchFiles(b)
	for b.Loop() {
		runOrFail(b, ev, "ima_measurement", "--ignore-violations",
			"--pcrs", "sha1,"+filepath.Join(dir, "pcr-sha1.txt"),
			"--pcrs", "sha256,"+filepath.Join(dir, "pcr-sha256.txt"),
			filepath.Join(dir, "list"))
	}
}

// BenchmarkImalogVerify200k runs the imalog binary (built once) on the same
// files (one process per iteration, reading the list from disk).
func BenchmarkImalogVerify200k(b *testing.B) {
	dir := benchFiles(b)
	bin := filepath.Join(dir, "imalog")
	buildOnce.Do(func() {
		_, self, _, _ := runtime.Caller(0)
		// Built like the project's shipped binaries (scripts/bench-loader.sh):
		// static, so start-up does not load libc (pflag pulls in net, which
		// links libc dynamically under cgo).
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, filepath.Join(filepath.Dir(self), "..", "cmd", "imalog"))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
	})
	for b.Loop() {
		runOrFail(b, bin, "verify", filepath.Join(dir, "list"),
			"--pcrs", "sha1,"+filepath.Join(dir, "pcr-sha1.txt"),
			"--pcrs", "sha256,"+filepath.Join(dir, "pcr-sha256.txt"))
	}
}

func BenchmarkTimeline200k(b *testing.B) {
	es, _ := benchmarkList(b)
	for b.Loop() {
		BuildTimeline(es, binary.LittleEndian)
	}
}
