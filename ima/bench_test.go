package ima

import (
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

	"github.com/gokexec/gokexec/internal/sha256ni"
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

// BenchmarkVerify200k: parse + Verify against sha1 and sha256 quotes (the
// banks evmctl can read), the comparison with evmctl below.
func BenchmarkVerify200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	delete(q, crypto.SHA384)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		list, _ := ParseList(raw, binary.LittleEndian)
		if r := Verify(list, q); !r.Consistent {
			b.Fatal("not consistent")
		}
	}
}

// BenchmarkVerify3Banks200k: parse + Verify against sha1, sha256 and
// sha384 quotes, both methods tried for sha256 and sha384.
func BenchmarkVerify3Banks200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		list, _ := ParseList(raw, binary.LittleEndian)
		if r := Verify(list, q); !r.Consistent {
			b.Fatal("not consistent")
		}
	}
}

// BenchmarkHashFloor200k is the floor for BenchmarkVerify200k: only the
// hashing a sha1+sha256 verification needs (SHA-1 template digests, the
// sha256 template digests, one sha1 extend and two sha256 extends per
// entry), on pre-sliced data, one goroutine, no parsing or matching.
func BenchmarkHashFloor200k(b *testing.B) {
	es, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	h1, h256 := sha1.New(), sha256.New()
	var p1, d1 [20]byte
	var p256, p256b, d256 [32]byte
	var pad [32]byte
	for b.Loop() {
		for i := range es {
			h1.Reset()
			h1.Write(es[i].TemplateData)
			h1.Sum(d1[:0])
			h256.Reset()
			h256.Write(es[i].TemplateData)
			h256.Sum(d256[:0])
			h1.Reset()
			h1.Write(p1[:])
			h1.Write(d1[:])
			h1.Sum(p1[:0])
			h256.Reset()
			h256.Write(p256[:])
			h256.Write(d256[:])
			h256.Sum(p256[:0])
			copy(pad[:], d1[:])
			h256.Reset()
			h256.Write(p256b[:])
			h256.Write(pad[:])
			h256.Sum(p256b[:0])
		}
	}
}

// BenchmarkHashFloorSums200k is the hashing a sha1+sha256 verification
// that recomputes every SHA-1 template digest needs: the SHA-1 and SHA-256
// template digests and one extend per bank per entry, with crypto's
// one-shot sums, one goroutine (the floor before verifyPipelined skipped
// the SHA-1 digests that the banks bind).
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

// BenchmarkHashFloorBound200k is the hashing Verify does for a list that
// matches sha1 and sha256 quotes, now that the SHA-1 bank and the sha256
// bank bind every entry (see verifyPipelined): the SHA-256 template digest
// and one extend per bank per entry, one goroutine; with the Sum256 Verify
// uses (sha256ni) and with crypto/sha256's. evmctl ima_measurement hashes
// the same (it does not recompute SHA-1 digests unless asked to).
func BenchmarkHashFloorBound200k(b *testing.B) {
	es, raw := benchmarkList(b)
	for _, v := range []struct {
		name string
		sum  func([]byte) [32]byte
	}{{"sha256ni", sha256ni.Sum256}, {"crypto", sha256.Sum256}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			var p1 [20]byte
			var p256 [32]byte
			var buf [64]byte
			for b.Loop() {
				for i := range es {
					d256 := v.sum(es[i].TemplateData)
					copy(buf[:20], p1[:])
					copy(buf[20:40], es[i].TemplateDigest[:])
					p1 = sha1.Sum(buf[:40])
					copy(buf[:32], p256[:])
					copy(buf[32:], d256[:])
					p256 = v.sum(buf[:64])
				}
			}
		})
	}
	// As Verify does it: template digests two at a time.
	b.Run("sha256ni-x2", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		var p1 [20]byte
		var p256 [32]byte
		var buf [64]byte
		d := make([][32]byte, len(es))
		for b.Loop() {
			for i := 0; i+1 < len(es); i += 2 {
				d[i], d[i+1] = sha256ni.Sum256x2(es[i].TemplateData, es[i+1].TemplateData)
			}
			for i := range es {
				copy(buf[:20], p1[:])
				copy(buf[20:40], es[i].TemplateDigest[:])
				p1 = sha1.Sum(buf[:40])
				copy(buf[:32], p256[:])
				copy(buf[32:], d[i][:])
				p256 = sha256ni.Sum256(buf[:64])
			}
		}
	})
}

// BenchmarkHashFloor3Banks200k adds sha384 (template digest, two extends).
func BenchmarkHashFloor3Banks200k(b *testing.B) {
	es, raw := benchmarkList(b)
	b.SetBytes(int64(len(raw)))
	h1, h256, h384 := sha1.New(), sha256.New(), sha512.New384()
	var p1, d1 [20]byte
	var p256, p256b, d256, pad256 [32]byte
	var p384, p384b, d384, pad384 [48]byte
	for b.Loop() {
		for i := range es {
			td := es[i].TemplateData
			h1.Reset()
			h1.Write(td)
			h1.Sum(d1[:0])
			h256.Reset()
			h256.Write(td)
			h256.Sum(d256[:0])
			h384.Reset()
			h384.Write(td)
			h384.Sum(d384[:0])
			copy(pad256[:], d1[:])
			copy(pad384[:], d1[:])
			for _, s := range []struct {
				h interface {
					Reset()
					Write([]byte) (int, error)
					Sum([]byte) []byte
				}
				pv, dv []byte
			}{{h1, p1[:], d1[:]}, {h256, p256[:], d256[:]}, {h256, p256b[:], pad256[:]}, {h384, p384[:], d384[:]}, {h384, p384b[:], pad384[:]}} {
				s.h.Reset()
				s.h.Write(s.pv)
				s.h.Write(s.dv)
				s.h.Sum(s.pv[:0])
			}
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
		BuildTimelineOrder(es, binary.LittleEndian)
	}
}

// BenchmarkVerifyList200k: VerifyList (parse, verify against sha1 and
// sha256 quotes, timeline in one pass), what `imalog verify` runs.
func BenchmarkVerifyList200k(b *testing.B) {
	es, raw := benchmarkList(b)
	q := benchQuote(es)
	delete(q, crypto.SHA384)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if r, _, err := VerifyList(raw, binary.LittleEndian, q); err != nil || !r.Consistent {
			b.Fatal("not consistent", err)
		}
	}
}
