package ima

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// captureDirs finds every directory under testdata/captures holding a list
// captured from a real kernel (see each info.txt for how).
func captureDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	filepath.WalkDir(filepath.Join("testdata", "captures"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "binary_runtime_measurements" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return nil
	})
	if len(dirs) == 0 {
		t.Fatal("no kernel captures under ima/testdata/captures/<source>/ (binary_runtime_measurements, ascii_runtime_measurements, pcr-<bank>.txt, info.txt); the QEMU harness writes them: GOKEXEC_CAPTURE=1 go test ./qemu -run TestCaptureGolden")
	}
	return dirs
}

func readCapture(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kernelRelease reads "kernel release: X" from info.txt.
func kernelRelease(t *testing.T, dir string) string {
	for _, l := range strings.Split(string(readCapture(t, dir, "info.txt")), "\n") {
		if r, ok := strings.CutPrefix(l, "kernel release: "); ok {
			return strings.TrimSpace(r)
		}
	}
	t.Fatalf("%s/info.txt names no kernel release", dir)
	return ""
}

// loadQuote reads pcr-<bank><suffix>.txt for every bank present.
func loadQuote(t *testing.T, dir, suffix string) PCRValues {
	q := PCRValues{}
	for _, bank := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		b, err := os.ReadFile(filepath.Join(dir, "pcr-"+HashName(bank)+suffix+".txt"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		v, err := ParsePCRFile(b, bank)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		q.Merge(v)
	}
	if len(q) == 0 {
		t.Fatalf("%s: no pcr-<bank>%s.txt files", dir, suffix)
	}
	return q
}

func TestGoldenCaptures(t *testing.T) {
	for _, dir := range captureDirs(t) {
		t.Run(strings.TrimPrefix(dir, filepath.Join("testdata", "captures")+"/"), func(t *testing.T) {
			order := binary.LittleEndian // x86_64 captures, ima_canonical_fmt unset (info.txt)
			bin := readCapture(t, dir, "binary_runtime_measurements")
			es, err := ParseList(bin, order)
			if err != nil {
				t.Fatal(err)
			}
			if got := AppendList(nil, es, order); !bytes.Equal(got, bin) {
				t.Error("binary round trip differs")
			}
			ascii, err := AppendASCII(nil, es, order)
			if err != nil {
				t.Fatal(err)
			}
			if want := readCapture(t, dir, "ascii_runtime_measurements"); !bytes.Equal(ascii, want) {
				t.Errorf("ASCII differs from the kernel's:\n%s", firstDiff(ascii, want))
			}
			for i := range es {
				if _, err := es[i].Decode(order); err != nil {
					t.Errorf("entry %d: %v", i, err)
				}
			}

			release := kernelRelease(t, dir)
			full := Verify(es, order, loadQuote(t, dir, ""), VerifyOptions{})
			if !full.Consistent || full.Prefix != len(es) {
				t.Fatalf("whole-list PCRs: consistent %v prefix %d of %d, problems %v", full.Consistent, full.Prefix, len(es), full.Problems)
			}
			for _, b := range full.Banks {
				// DESIGN §3.1: Debian's 6.1 kernel extends sha384 with the
				// padded SHA-1, 6.12 uses the bank's own hash.
				want := MethodPerBank
				if b.Hash == crypto.SHA384 && strings.HasPrefix(release, "6.1.") {
					want = MethodSHA1Padded
				}
				if b.Method == nil || *b.Method != want {
					t.Errorf("kernel %s bank %s: method %s, want %s", release, b.Bank, methodStr(b.Method), want)
				}
			}
			pre := Verify(es, order, loadQuote(t, dir, "-prefix"), VerifyOptions{})
			if !pre.Consistent || pre.Prefix <= 0 || pre.Prefix >= len(es) {
				t.Errorf("earlier PCRs: consistent %v prefix %d of %d", pre.Consistent, pre.Prefix, len(es))
			}

			tl := BuildTimeline(es, binary.LittleEndian)
			if len(tl.Boots) != 1 || !tl.Boots[0].BootAggregate || tl.Verdict != VerdictColdBoot {
				t.Errorf("timeline %+v", tl)
			}
			violations := 0
			legacy := -1
			for i := range es {
				if es[i].Violation() {
					violations++
				}
				if es[i].TemplateName == "ima" && legacy < 0 {
					legacy = i
				}
			}
			if tl.Boots[0].Violations != violations || violations == 0 {
				t.Errorf("violations: timeline %d, list %d (captures hold at least one)", tl.Boots[0].Violations, violations)
			}
			// The list restores in full unless it holds legacy entries.
			err = CheckRestorable(es, binary.LittleEndian)
			var re *RestoreError
			if legacy < 0 && err != nil {
				t.Errorf("not restorable: %v", err)
			}
			if legacy >= 0 && (!errors.As(err, &re) || re.Restored != legacy) {
				t.Errorf("legacy entry %d: %v", legacy, err)
			}
			if legacy < 0 {
				kb, err := MarshalKexecBuffer(es, order)
				if err != nil {
					t.Fatal(err)
				}
				if r := SimulateRestore(kb, order); !r.OK() || r.Restored != len(es) {
					t.Errorf("simulated restore %+v", r)
				}
			}
		})
	}
}

// TestGoldenEvmctl runs evmctl ima_measurement on the captures it can read
// (ima-ng, ima-sig, ima-buf, ima-ngv2 only) with the captured and with a
// corrupted PCR file, and compares its verdict with ours.
func TestGoldenEvmctl(t *testing.T) {
	checked := 0
	for _, dir := range captureDirs(t) {
		es, err := ParseList(readCapture(t, dir, "binary_runtime_measurements"), binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		supported := true
		for i := range es {
			switch es[i].TemplateName {
			case "ima-ng", "ima-sig", "ima-buf", "ima-ngv2":
			default:
				supported = false
			}
		}
		if !supported {
			continue
		}
		for _, bank := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			for _, suffix := range []string{"", "-prefix", "-corrupt"} {
				file := filepath.Join(dir, "pcr-"+HashName(bank)+suffix+".txt")
				if suffix == "-corrupt" {
					b := readCapture(t, dir, "pcr-"+HashName(bank)+".txt")
					i := bytes.Index(b, []byte("PCR-10: "))
					b = bytes.Clone(b)
					// replace the first hex digit of PCR 10 by another digit
					if b[i+8] == '0' {
						b[i+8] = '1'
					} else {
						b[i+8] = '0'
					}
					file = filepath.Join(t.TempDir(), "pcr-corrupt.txt")
					os.WriteFile(file, b, 0o644)
				}
				code, out := runEvmctl(t, "--ignore-violations", "--pcrs", HashName(bank)+","+file, filepath.Join(dir, "binary_runtime_measurements"))
				pb, _ := os.ReadFile(file)
				q, err := ParsePCRFile(pb, bank)
				if err != nil {
					t.Fatal(err)
				}
				r := Verify(es, binary.LittleEndian, q, VerifyOptions{})
				if (code == 0) != r.Consistent || r.Consistent == (suffix == "-corrupt") {
					t.Errorf("%s %s%s: evmctl exit %d, ours consistent %v (prefix %d)\n%s", dir, HashName(bank), suffix, code, r.Consistent, r.Prefix, out)
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no capture evmctl can read")
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return "line " + strconv.Itoa(i+1) + ":\n ours:   " + al[i] + "\n kernel: " + bl[i]
		}
	}
	return fmt.Sprintf("lengths differ: %d vs %d", len(a), len(b))
}

// NewViolation must produce the kernel's violation entries byte for byte.
func TestGoldenViolationShape(t *testing.T) {
	found := 0
	for _, dir := range captureDirs(t) {
		es, err := ParseList(readCapture(t, dir, "binary_runtime_measurements"), binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		for i := range es {
			e := &es[i]
			if !e.Violation() || (e.TemplateName != "ima-sig" && e.TemplateName != "ima-ng") {
				continue
			}
			d, err := e.Decode(binary.LittleEndian)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseHashName(d.DigestAlgo)
			if err != nil {
				t.Fatal(err)
			}
			v, err := NewViolation(e.PCR, e.TemplateName, d.Name, h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v.TemplateData, e.TemplateData) || v.TemplateDigest != e.TemplateDigest {
				t.Errorf("%s entry %d: NewViolation differs from the kernel's", dir, i)
			}
			found++
		}
	}
	if found == 0 {
		t.Fatal("captures hold no ima-ng/ima-sig violation")
	}
}
