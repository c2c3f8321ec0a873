package kexec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Finding 7 of issue 11: /dev/zero as an input ended in the runtime's
// out-of-memory crash. ReadInput refuses anything but a regular file and
// anything over its bound, naming the file.
func TestReadInputRefusesDevicesAndLargeFiles(t *testing.T) {
	_, err := ReadInput("--initrd", "/dev/zero", MaxInitrdBytes)
	var ie *InputError
	if !errors.Is(err, ErrNotRegular) || !errors.As(err, &ie) || ie.Path != "/dev/zero" || ie.What != "--initrd" {
		t.Fatalf("/dev/zero: %v", err)
	}
	if !strings.Contains(err.Error(), "/dev/zero") || !strings.Contains(err.Error(), "character device") {
		t.Errorf("message %q does not name the file and its kind", err)
	}
	dir := t.TempDir()
	if _, err := ReadInput("kernel", dir, 1<<20); !errors.Is(err, ErrNotRegular) {
		t.Errorf("directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInput("--dtb", fifo, 1<<20); !errors.Is(err, ErrNotRegular) {
		t.Errorf("fifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 4097), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadInput("--key", big, 4096); !errors.Is(err, ErrTooLarge) {
		t.Errorf("4097 bytes with a 4096 bound: %v", err)
	}
	b, err := ReadInput("--key", big, 4097)
	if err != nil || len(b) != 4097 {
		t.Errorf("at the bound: %d bytes, %v", len(b), err)
	}
	if _, err := ReadInput("kernel", filepath.Join(dir, "missing"), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// procfs files report size 0; the bound must hold on what is read.
func TestReadInputProcfsBoundOnBytesRead(t *testing.T) {
	b, err := ReadInput("system file", "/proc/self/status", 1<<20)
	if err != nil || !bytes.Contains(b, []byte("CapEff:")) {
		t.Fatalf("%v", err)
	}
	if _, err := ReadInput("system file", "/proc/self/status", 16); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16-byte bound over /proc/self/status: %v", err)
	}
}

func TestReadResolvedRefusesFinalSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.WriteFile(real, []byte("x"), 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadResolved("kernel", link, 10); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("symlink: %v", err)
	}
	if b, err := ReadResolved("kernel", real, 10); err != nil || string(b) != "x" {
		t.Fatalf("%q %v", b, err)
	}
}

// Finding 6 of issue 11: kernels are told apart by the symbols they hold.
func TestParseKallsymsFixtures(t *testing.T) {
	for name, want := range map[string]KallsymsFacts{
		"debian-6.1-no-ima-kexec.txt": {},
		"ima-kexec-5.x.txt":           {HandsOver: true},
		"ima-kexec-6.15-inlined.txt":  {HandsOver: true, MeasuresAtExec: true},
		"ima-kexec-6.16.txt":          {HandsOver: true, MeasuresAtExec: true},
		"module-shadow.txt":           {},
	} {
		f, err := os.Open(filepath.Join("testdata/kallsyms", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseKallsyms(f)
		f.Close()
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", name, got, err, want)
		}
	}
	long := strings.Repeat("x", 5000) + "\n"
	if _, err := ParseKallsyms(strings.NewReader(long)); err == nil {
		t.Error("a 5000-byte line was accepted")
	}
}

// Finding 3 of issue 11: what kexec_file_load reads is a sealed copy of
// the bytes that were hashed.
func TestSealedMemfdSeals(t *testing.T) {
	data := []byte("kernel bytes that were hashed")
	f, err := SealedMemfd("vmlinuz", data)
	if err != nil {
		t.Fatalf("memfd: %v", err)
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if seals&want != want {
		t.Fatalf("seals %#x, want %#x", seals, want)
	}
	if _, err := f.WriteAt([]byte("X"), 0); err == nil {
		t.Fatal("a sealed memfd took a write")
	}
	if err := f.Truncate(0); err == nil {
		t.Fatal("a sealed memfd was truncated")
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, 0); err == nil {
		// F_SEAL_SEAL: even adding no seal is refused.
		t.Fatal("seals could still be changed")
	}
	got := make([]byte, len(data)+1)
	n, _ := f.ReadAt(got, 0)
	if !bytes.Equal(got[:n], data) {
		t.Fatalf("memfd holds %q", got[:n])
	}
}

// countingReader serves r, counting Read calls.
type countingReader struct {
	r     *bytes.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// Issue 24: in the guest the IMA list (a pseudo-file, size 0 to stat)
// was read in 158 calls that began at one byte, and securityfs walks the
// list again from its start for every call. Now the first read takes
// 64 KiB and each further one doubles.
func TestPseudoFileReadInFewCalls(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 600<<10/16)
	c := &countingReader{r: bytes.NewReader(data)}
	b, err := readAllInto(make([]byte, 0, pseudoReadSize+1), c)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if c.calls > 6 {
		t.Fatalf("%d read calls for 600 KiB", c.calls)
	}
}

// Issue 24: kallsyms (100,000+ lines) was read in calls of at most 4 KiB
// and every line split into fields. Now each call asks 256 KiB (Linux
// still hands out about a page; a captured copy is read in few calls) and
// only lines naming an ima_ symbol are split; the facts stay the same.
func TestKallsymsReadInLargeReads(t *testing.T) {
	var b bytes.Buffer
	for i := 0; i < 100_000; i++ {
		fmt.Fprintf(&b, "ffffffff8%07x t some_function_%d\n", i, i)
		if i == 50_000 {
			b.WriteString("ffffffff81000000 T xima_add_kexec_buffer\n")       // not the symbol
			b.WriteString("ffffffff81000000 T ima_update_kexec_buffer [m]\n") // a module's
			b.WriteString("ffffffff81000000 T ima_add_kexec_buffer\n")
		}
	}
	size := b.Len()
	c := &countingReader{r: bytes.NewReader(b.Bytes())}
	f, err := ParseKallsyms(c)
	if err != nil || f != (KallsymsFacts{HandsOver: true}) {
		t.Fatalf("%+v %v", f, err)
	}
	if max := size/kallsymsReadSize + 2; c.calls > max {
		t.Fatalf("%d read calls for %d bytes, want at most %d", c.calls, size, max)
	}
}

// Issue 24: the facts are functions of built-in text, which ends at
// _etext; the data, init and module symbols after it (half the table
// under emulation) are not read. Without _etext the table is read to its
// end.
func TestKallsymsScanEndsAtText(t *testing.T) {
	table := func(etext bool, symbol string) []byte {
		var b bytes.Buffer
		b.WriteString("ffffffff81000000 T _stext\n")
		for i := 0; i < 20_000; i++ {
			fmt.Fprintf(&b, "ffffffff8%07x t text_%d\n", i, i)
		}
		if etext {
			b.WriteString("ffffffff82259b00 T _etext\n")
		}
		for i := 0; i < 20_000; i++ {
			fmt.Fprintf(&b, "ffffffff8%07x d data_%d\n", i, i)
		}
		b.WriteString("ffffffff83000000 T " + symbol + "\n")
		return b.Bytes()
	}
	with := table(true, SymAddKexecBuffer)
	c := &countingReader{r: bytes.NewReader(with)}
	if f, err := ParseKallsyms(c); err != nil || f.HandsOver {
		t.Fatalf("a symbol after _etext counted: %+v %v", f, err)
	}
	if read := len(with) - c.r.Len(); read > len(with)/2+kallsymsReadSize {
		t.Fatalf("read %d of %d bytes past _etext", read, len(with))
	}
	if f, err := ParseKallsyms(bytes.NewReader(table(false, SymAddKexecBuffer))); err != nil || !f.HandsOver {
		t.Fatalf("no _etext: %+v %v", f, err)
	}
}

// CopyResolved (what -l copies its inputs into the state directory with)
// refuses like ReadResolved: a device, a FIFO (without waiting for a
// writer), a final symbolic link and a file over the bound; a file at
// the bound is copied whole.
func TestCopyResolvedRefusesLikeRead(t *testing.T) {
	dir := t.TempDir()
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", fifo, dir} {
		if _, err := CopyResolved("initrd", p, MaxInitrdBytes, dst); !errors.Is(err, ErrNotRegular) {
			t.Errorf("%s: %v; want ErrNotRegular", p, err)
		}
	}
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	if _, err := CopyResolved("kernel", link, MaxKernelBytes, dst); !errors.Is(err, unix.ELOOP) {
		t.Errorf("final symlink: %v; want ELOOP", err)
	}
	if _, err := CopyResolved("kernel", src, int64(len(data))-1, dst); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over the bound: %v; want ErrTooLarge", err)
	}
	if n, err := CopyResolved("kernel", src, int64(len(data)), dst); err != nil || n != int64(len(data)) {
		t.Fatalf("at the bound: %d bytes, %v", n, err)
	}
	got, err := os.ReadFile(dst.Name())
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied %d bytes, equal %v (%v)", len(got), bytes.Equal(got, data), err)
	}
}
