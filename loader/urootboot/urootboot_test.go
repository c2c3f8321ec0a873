package urootboot_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/boot"
	"github.com/u-root/u-root/pkg/boot/bls"
	"github.com/u-root/u-root/pkg/ulog"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/loadertest"
	"github.com/gokexec/gokexec/loader/urootboot"
)

func measuredHost() *loadertest.Host {
	h := loadertest.NewHost()
	for _, name := range []string{"boot_aggregate", "/init"} {
		d := sha256.Sum256([]byte(name))
		e, _ := ima.NewFileEntry(10, "ima-ng", name, d[:], crypto.SHA256, nil)
		h.List = ima.AppendList(h.List, []ima.Entry{e}, binary.LittleEndian)
	}
	return h
}

// A u-root LinuxImage booted through the adapter is loaded with the IMA
// hand-over and finalized at Load (so u-root's boot.Execute boots a
// complete hand-over); Execute finalizes again and reboots.
func TestLinuxImageThroughGokexec(t *testing.T) {
	h := measuredHost()
	li := &boot.LinuxImage{Name: "test", Kernel: bytes.NewReader(testkernel.Bytes(t, testkernel.Deb61, 0xcc)),
		Initrd: bytes.NewReader([]byte("initramfs")), Cmdline: "console=ttyS0"}
	img := urootboot.New(li, h, loader.Options{Arch: "amd64", IMAExtra: 4096})
	var _ boot.OSImage = img
	img.Edit(func(cl string) string { return cl + " quiet" })
	if err := img.Load(); err != nil {
		t.Fatal(err)
	}
	if len(h.Loads) != 2 || h.Reboots != 0 {
		t.Fatalf("%d kexec_loads (want load and finalize), %d reboots", len(h.Loads), h.Reboots)
	}
	rep := img.Report()
	if rep.Count != 2+5 || rep.Plan.Cmdline != "console=ttyS0 quiet" || rep.Plan.IMA == nil {
		t.Fatalf("report %+v", rep)
	}
	if err := img.Execute(); err != nil || h.Reboots != 1 {
		t.Fatalf("execute: %v (%d reboots)", err, h.Reboots)
	}
}

// Boot Loader Specification entries read by u-root's own parser boot
// through the adapter; a dry run acts on nothing.
func TestBLSEntriesThroughGokexec(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "loader", "entries"), 0o755)
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64"} {
		os.WriteFile(filepath.Join(root, "vmlinuz-"+v), testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644)
		os.WriteFile(filepath.Join(root, "initrd.img-"+v), []byte("initramfs "+v), 0o644)
		os.WriteFile(filepath.Join(root, "loader", "entries", "debian-"+v+".conf"),
			[]byte("title Debian\nversion "+v+"\nlinux /vmlinuz-"+v+"\ninitrd /initrd.img-"+v+"\noptions root=/dev/vda1 console=ttyS0\n"), 0o644)
	}
	imgs, err := bls.ScanBLSEntries(ulog.Null, root, nil, "")
	if err != nil || len(imgs) != 2 {
		t.Fatalf("u-root's BLS parser: %d images, %v", len(imgs), err)
	}
	h := measuredHost()
	wrapped := urootboot.Wrap(imgs, h, loader.Options{Arch: "amd64", IMAExtra: 4096})
	for _, w := range wrapped {
		img, ok := w.(*urootboot.Image)
		if !ok {
			t.Fatalf("%T not wrapped", w)
		}
		img.DryRun = true
		if err := img.Load(); err != nil {
			t.Fatal(err)
		}
		if len(img.Acts) != 2 || img.Acts[0].Op != "kexec_load" || img.Report().Plan.Cmdline != "root=/dev/vda1 console=ttyS0" {
			t.Fatalf("%s: acts %v", img.Label(), img.Acts)
		}
		if k := img.Report().Plan.Kernel.Path; !strings.HasPrefix(filepath.Base(k), "vmlinuz-6.1.0-") {
			t.Fatalf("kernel measured as %q", k)
		}
	}
	if len(h.Loads)+h.Reboots != 0 {
		t.Fatal("the dry run acted")
	}
}
