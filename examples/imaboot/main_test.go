package main

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
)

// Finding "examples/imaboot sorts versions as strings": 6.1.0-9 boots
// before 6.1.0-10 no more.
func TestVersionOrder(t *testing.T) {
	vs := []string{"6.1.0-10-amd64", "6.1.0-9-amd64", "6.12.57+deb13-amd64", "6.1.0-9-cloud-amd64", "6.12~rc1", "6.12", "5.10.0-28-amd64"}
	sort.Slice(vs, func(i, j int) bool { return versionLess(vs[i], vs[j]) })
	want := []string{"5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-9-cloud-amd64", "6.1.0-10-amd64", "6.12~rc1", "6.12", "6.12.57+deb13-amd64"}
	for i := range want {
		if vs[i] != want[i] {
			t.Fatalf("order %q, want %q", vs, want)
		}
	}
	dir := t.TempDir()
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64"} {
		os.WriteFile(filepath.Join(dir, "vmlinuz-"+v), testkernel.Bytes(t, testkernel.Deb61, 0), 0o644)
		os.WriteFile(filepath.Join(dir, "initrd.img-"+v), []byte("initrd"), 0o644)
	}
	ks, err := findKernels(dir)
	if err != nil || len(ks) != 2 || ks[0].version != "6.1.0-10-amd64" || ks[0].initrd == "" {
		t.Fatalf("%+v %v", ks, err)
	}
	imgs, err := images(dir, "console=ttyS0")
	if err != nil || len(imgs) != 2 || imgs[0].Label() != "Linux 6.1.0-10-amd64" {
		t.Fatalf("images %v %v", imgs, err)
	}
}
