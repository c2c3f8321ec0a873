package qemu

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// TestBuildURoot builds a u-root image with gokexec and the example
// bootloader in its busybox, and checks the archive's layout.
func TestBuildURoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds u-root's core commands; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "uroot.cpio")
	err := BuildURoot(context.Background(), URoot{
		Commands: []string{"./cmd/gokexec", "./examples/imaboot"},
		Uinit:    "imaboot", UinitArgs: []string{"-dir", "/boot"},
		Files: map[string]string{"/boot/hello": "uroot.go"},
	}, out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]cpio.Record{}
	for _, r := range recs {
		have[r.Name] = r
	}
	for _, want := range []string{"init", "bbin/bb", "bbin/init", "bbin/ls", "bbin/gokexec", "bbin/imaboot", "bin/uinit", "boot/hello"} {
		if _, ok := have[want]; !ok {
			t.Errorf("%s missing from the u-root image", want)
		}
	}
	t.Logf("%d records, bbin/bb %d bytes", len(recs), have["bbin/bb"].FileSize)
}

// gzipSize is the size of the file at p compressed with gzip -9.
func gzipSize(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return buf.Len()
}

// TestURootSize reports what gokexec adds to a u-root image of the core
// commands, uncompressed and with gzip -9 (DESIGN §7: reported, not
// chased).
func TestURootSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two u-root images; skipped with -short")
	}
	dir := t.TempDir()
	sizes := map[string][2]int{}
	for name, cmds := range map[string][]string{"core": nil, "core+gokexec": {"./cmd/gokexec"}} {
		out := filepath.Join(dir, name+".cpio")
		if err := BuildURoot(context.Background(), URoot{Commands: cmds}, out); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		sizes[name] = [2]int{int(st.Size()), gzipSize(t, out)}
	}
	c, g := sizes["core"], sizes["core+gokexec"]
	if g[1] <= c[1] {
		t.Fatalf("the image with gokexec is not larger: %v vs %v", g, c)
	}
	t.Logf("u-root core: %d bytes (gzip -9 %d); with gokexec: %d (gzip -9 %d); gokexec adds %d bytes, %d compressed",
		c[0], c[1], g[0], g[1], g[0]-c[0], g[1]-c[1])
}
