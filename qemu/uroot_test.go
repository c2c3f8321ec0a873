package qemu

import (
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
		Files:    map[string]string{"/boot/hello": "uroot.go"},
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
