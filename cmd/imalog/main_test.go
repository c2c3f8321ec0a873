package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"golang.org/x/sys/unix"
)

func imalog(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// captures lists the kernel captures shared with package ima.
func captures(t *testing.T) []string {
	t.Helper()
	var dirs []string
	filepath.WalkDir("../../ima/testdata/captures", func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "binary_runtime_measurements" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return nil
	})
	if len(dirs) == 0 {
		t.Fatal("no captures under ima/testdata/captures (GOKEXEC_CAPTURE=1 go test ./qemu -run TestCaptureGolden)")
	}
	return dirs
}

func pcrArgs(dir, suffix string) []string {
	var a []string
	for _, b := range []string{"sha1", "sha256", "sha384"} {
		a = append(a, "--pcrs", b+","+filepath.Join(dir, "pcr-"+b+suffix+".txt"))
	}
	return a
}

func TestShowAndVerifyCaptures(t *testing.T) {
	for _, dir := range captures(t) {
		list := filepath.Join(dir, "binary_runtime_measurements")
		code, out, errs := imalog(t, "show", list)
		want, _ := os.ReadFile(filepath.Join(dir, "ascii_runtime_measurements"))
		if code != 0 || out != string(want) {
			t.Errorf("%s: show exit %d (%s), equal=%v", dir, code, errs, out == string(want))
		}
		code, out, errs = imalog(t, append([]string{"verify", list}, pcrArgs(dir, "")...)...)
		if code != 0 || !strings.Contains(out, "verdict: consistent") || !strings.Contains(out, "bank sha384: PCRs 10") {
			t.Errorf("%s: verify exit %d\n%s%s", dir, code, out, errs)
		}
		if strings.Contains(dir, "6.1.0") && !strings.Contains(out, " of "+fmt.Sprint(strings.Count(string(want), "\n"))+" (sha1-padded)\n") {
			t.Errorf("%s: 6.1 sha384 method not reported as sha1-padded:\n%s", dir, out)
		}
		code, out, _ = imalog(t, append([]string{"verify", "--json", list}, pcrArgs(dir, "-prefix")...)...)
		var js struct {
			Verify struct {
				Consistent bool
				Prefix     int
				Entries    int
			}
		}
		if err := json.Unmarshal([]byte(out), &js); err != nil || code != 0 || !js.Verify.Consistent || js.Verify.Prefix >= js.Verify.Entries {
			t.Errorf("%s: verify --json on earlier PCRs: exit %d %+v %v", dir, code, js, err)
		}
		// evmctl-style invocation without bank names: banks from the sizes
		code, _, errs = imalog(t, "verify", "--ignore-violations", "--pcrs", filepath.Join(dir, "pcr-sha256.txt"), list)
		if code != 0 {
			t.Errorf("%s: --pcrs FILE without bank: exit %d %s", dir, code, errs)
		}
	}
}

func TestVerifyInconsistent(t *testing.T) {
	dir := captures(t)[0]
	b, _ := os.ReadFile(filepath.Join(dir, "pcr-sha256.txt"))
	i := bytes.Index(b, []byte("PCR-10: ")) + 8
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	bad := filepath.Join(t.TempDir(), "pcr")
	os.WriteFile(bad, b, 0o644)
	code, out, _ := imalog(t, "verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha256,"+bad)
	if code != 1 || !strings.Contains(out, "verdict: inconsistent") || !strings.Contains(out, "PCR-10 quoted") {
		t.Errorf("corrupted PCR file: exit %d\n%s", code, out)
	}
}

func TestBadInput(t *testing.T) {
	dir := captures(t)[0]
	good, _ := os.ReadFile(filepath.Join(dir, "binary_runtime_measurements"))
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	// Nobody writes to the FIFO: opening it for reading would block.
	fifo := filepath.Join(tmp, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	lying := bytes.Clone(good)
	binary.LittleEndian.PutUint32(lying[24:], 0xffffffff)
	unknown := bytes.Clone(good)
	copy(unknown[28:], "xxx")
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"truncated", []string{"show", write("trunc", good[:len(good)-7])}, "offset"},
		{"lying length", []string{"show", write("lying", lying)}, "offset 24 (0x18): entry larger than MaxEntrySize: template name length 4294967295"},
		{"unknown template", []string{"verify", write("unknown", unknown), "--pcrs", filepath.Join(dir, "pcr-sha1.txt")}, "unknown template"},
		{"garbage", []string{"replay", write("garbage", []byte("PCR-10: not a list, just text\n"))}, "offset"},
		{"missing file", []string{"show", filepath.Join(tmp, "nope")}, "no such file"},
		{"bad PCR file", []string{"verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha256," + write("badpcr", []byte("PCR-10: zz\n"))}, "bad PCR file"},
		{"wrong bank size", []string{"verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha1," + filepath.Join(dir, "pcr-sha256.txt")}, "want 20"},
		{"no pcrs", []string{"verify", filepath.Join(dir, "binary_runtime_measurements")}, "need --pcrs or --tpm"},
		{"no args", nil, "usage"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bad flag", []string{"show", "--frob", "x"}, "unknown flag"},
		{"bad bank", []string{"replay", "--bank", "md9", filepath.Join(dir, "binary_runtime_measurements")}, "unsupported hash"},
		{"bad byte order", []string{"show", "--byte-order", "middle", filepath.Join(dir, "binary_runtime_measurements")}, "--byte-order"},
		{"big-endian reading of a little-endian list", []string{"show", "--byte-order", "big", filepath.Join(dir, "binary_runtime_measurements")}, "offset"},
		{"directory as list", []string{"verify", tmp, "--pcrs", filepath.Join(dir, "pcr-sha1.txt")}, tmp + ": is a directory"},
		{"/dev/zero as list", []string{"verify", "/dev/zero", "--pcrs", filepath.Join(dir, "pcr-sha1.txt")}, "/dev/zero: is a device"},
		{"/dev/zero as show list", []string{"show", "/dev/zero"}, "/dev/zero: is a device"},
		{"/dev/zero as PCR file", []string{"verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha1,/dev/zero"}, "/dev/zero: is a device"},
		{"directory as PCR file", []string{"verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha1," + tmp}, tmp + ": is a directory"},
		{"/dev/zero as --kexec buffer", []string{"verify", "--kexec", "/dev/zero", "--pcrs", filepath.Join(dir, "pcr-sha1.txt")}, "/dev/zero: is a device"},
		{"/dev/zero to restore", []string{"restore", "/dev/zero"}, "/dev/zero: is a device"},
		{"FIFO as list", []string{"verify", fifo, "--pcrs", filepath.Join(dir, "pcr-sha1.txt")}, fifo + ": is a FIFO"},
		{"FIFO as PCR file", []string{"verify", filepath.Join(dir, "binary_runtime_measurements"), "--pcrs", "sha1," + fifo}, fifo + ": is a FIFO"},
		{"FIFO as --kexec buffer", []string{"show", "--kexec", fifo}, fifo + ": is a FIFO"},
		{"absent TPM", []string{"verify", "--tpm=/nonexistent/tpm", filepath.Join(dir, "binary_runtime_measurements")}, "--tpm"},
	}
	for _, c := range cases {
		code, _, errs := imalog(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.msg) {
			t.Errorf("%s: exit %d, stderr %q lacks %q", c.name, code, errs, c.msg)
		}
	}
}

func TestReplayAndRestore(t *testing.T) {
	for _, dir := range captures(t) {
		list := filepath.Join(dir, "binary_runtime_measurements")
		code, out, _ := imalog(t, "replay", "--json", "--bank", "sha256", "--method", "both", list)
		var js struct {
			Replay []struct {
				Bank, Method string
				PCRs         map[string]string
			}
		}
		if err := json.Unmarshal([]byte(out), &js); err != nil || code != 0 || len(js.Replay) != 2 {
			t.Fatalf("%s: replay: %d %v %s", dir, code, err, out)
		}
		// the whole-list sha256 PCR file holds the per-bank replay
		pf, _ := os.ReadFile(filepath.Join(dir, "pcr-sha256.txt"))
		line := ""
		for _, l := range strings.Split(string(pf), "\n") {
			if strings.HasPrefix(l, "PCR-10:") {
				line = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(l, "PCR-10:"), " ", ""))
			}
		}
		if js.Replay[0].PCRs["10"] != line {
			t.Errorf("%s: replayed PCR 10 %s, file %s", dir, js.Replay[0].PCRs["10"], line)
		}
		code, out, _ = imalog(t, "restore", "--list", list)
		legacy := strings.Contains(dir, "templates")
		if (code == 1) != legacy || (legacy && !strings.Contains(out, "legacy")) {
			t.Errorf("%s: restore --list exit %d\n%s", dir, code, out)
		}
	}
}

func TestRestoreBuffer(t *testing.T) {
	dir := captures(t)[0]
	list, _ := os.ReadFile(filepath.Join(dir, "binary_runtime_measurements"))
	es, err := ima.ParseList(list, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var ok []ima.Entry
	for _, e := range es {
		if e.TemplateName != "ima" {
			ok = append(ok, e)
		}
	}
	buf, err := ima.MarshalKexecBuffer(ok, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good")
	os.WriteFile(good, buf, 0o644)
	code, out, _ := imalog(t, "restore", good)
	if code != 0 || !strings.Contains(out, "would restore") {
		t.Errorf("good buffer: exit %d %s", code, out)
	}
	// header count one higher than the entries: the kernel stops silently
	bad := bytes.Clone(buf)
	binary.LittleEndian.PutUint64(bad[16:], uint64(len(ok)+1))
	badf := filepath.Join(tmp, "bad")
	os.WriteFile(badf, bad, 0o644)
	code, out, _ = imalog(t, "restore", badf)
	if code != 1 || !strings.Contains(out, "dropped") {
		t.Errorf("count+1: exit %d %s", code, out)
	}
	// show/verify read the buffer too
	code, _, errs := imalog(t, "show", "--kexec", good)
	if code != 0 {
		t.Errorf("show --kexec: %d %s", code, errs)
	}
	if len(ok) == len(es) {
		code, out, errs = imalog(t, append([]string{"verify", "--kexec", good}, pcrArgs(dir, "")...)...)
		if code != 0 || !strings.Contains(out, "verdict: consistent") {
			t.Errorf("verify --kexec: %d %s%s", code, out, errs)
		}
	}
	code, _, errs = imalog(t, "show", "--kexec", badf)
	if code != 2 || !strings.Contains(errs, "count") {
		t.Errorf("show --kexec on a lying count: %d %s", code, errs)
	}
}
