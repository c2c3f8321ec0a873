package testkernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Deb61BzImage is the Debian 6.1 amd64 kernel the harness caches (scripts/setup.sh).
var Deb61BzImage = filepath.Join(dir(), "..", "..", "build", "cache", "kernels", "deb61-amd64", "vmlinuz")

// Vmlinux extracts the ELF vmlinux a bzImage carries — its payload
// (payload_offset/payload_length at 0x248/0x24c of the setup header) is the
// stripped vmlinux, compressed as its magic says — into a temporary file and
// returns the path. gzip, xz and zstd are decompressed in Go; LZ4's legacy
// frame (Debian's choice) with the lz4 tool, as no Go LZ4 package is a
// dependency. A missing kernel or tool skips the test, naming it.
func Vmlinux(t testing.TB, bzImage string) string {
	t.Helper()
	b, err := os.ReadFile(bzImage)
	if os.IsNotExist(err) {
		missing(t, "no kernel at %s (scripts/setup.sh caches it)", bzImage)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := ExtractVmlinux(b)
	if err != nil {
		if _, lerr := exec.LookPath("lz4"); lerr != nil {
			missing(t, "%s: %v (install lz4; scripts/setup.sh test does)", bzImage, err)
		}
		t.Fatalf("%s: %v", bzImage, err)
	}
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ExtractVmlinux returns the decompressed payload of bzImage b.
func ExtractVmlinux(b []byte) ([]byte, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("not a bzImage")
	}
	le := binary.LittleEndian
	sects := int(b[0x1f1])
	if sects == 0 {
		sects = 4
	}
	off := uint64(sects+1)*512 + uint64(le.Uint32(b[0x248:]))
	n := uint64(le.Uint32(b[0x24c:]))
	if off+n > uint64(len(b)) {
		return nil, fmt.Errorf("payload [%#x, +%#x) beyond the file's %d bytes", off, n, len(b))
	}
	p := b[off : off+n]
	var r io.Reader
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		r = zr
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		r = xr
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}):
		// The kernel appends the decompressed size after the last
		// block, which lz4 reports as trailing garbage (exit 1): judge
		// by the output, an ELF, not by the exit status.
		cmd := exec.Command("lz4", "-dc")
		cmd.Stdin = bytes.NewReader(p)
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		if out.Len() < 4 || string(out.Bytes()[:4]) != "\x7fELF" {
			return nil, fmt.Errorf("lz4 payload did not decompress to an ELF: %v", err)
		}
		return out.Bytes(), nil
	default:
		return nil, fmt.Errorf("payload magic % x: unknown compression", p[:min(len(p), 6)])
	}
	return io.ReadAll(io.LimitReader(r, 512<<20))
}

// missing ends a test whose input is absent: a skip for a developer's
// partial set-up, a failure under CI, where scripts/setup.sh installed
// everything and a missing piece is a defect of the set-up.
func missing(t testing.TB, format string, a ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, a...)
	}
	t.Skipf(format, a...)
}
