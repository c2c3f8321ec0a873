package loader

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden")

// ovmfCapture is gokexec capture-host of a Debian 6.1 cloud guest booted
// by OVMF (QEMU q35, 1 GiB).
const ovmfCapture = "../plan/testdata/host-qemu-q35-ovmf-1g-linux-image-6.1.0-57-cloud-amd64"

type goldenCase struct {
	name string
	arch string
	mode plan.Mode
	edit func(*Options, *Image)
}

func arm64GoldenImage(t *testing.T) (Input, Input) {
	hdr, err := os.ReadFile("../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../fdt/testdata/linux-6.1-arm64-sysfs-fdt-qemu-virt.dtb.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dtb, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	k := append(append([]byte(nil), hdr...), make([]byte, 4<<20)...)
	return Bytes("/boot/Image", k), Bytes("/boot/virt.dtb", dtb)
}

// goldenDTB is dtc's board tree (fdt/testdata), as given with --dtb.
func goldenDTB(t *testing.T) Input {
	b, err := os.ReadFile("../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	return Bytes("/boot/board.dtb", b)
}

// TestPlanGoldens records the dry-run plans (--dry-run --json) of the
// captured OVMF host and the arm64 virt tree, so a reshaping of the loader
// is proved to keep them byte for byte (go test -run TestPlanGoldens
// -update rewrites them; a diff there must be an intended change).
func TestPlanGoldens(t *testing.T) {
	dtb := goldenDTB(t)
	cases := []goldenCase{
		{name: "ovmf-auto", arch: "amd64"},
		{name: "ovmf-load", arch: "amd64", mode: plan.ModeLoad},
		{name: "ovmf-file", arch: "amd64", mode: plan.ModeFile},
		{name: "ovmf-noima", arch: "amd64", edit: func(o *Options, _ *Image) { o.NoIMA = true }},
		{name: "ovmf-noefi-extra1m", arch: "amd64", edit: func(o *Options, _ *Image) { o.NoEFI = true; o.IMAExtra = 1 << 20 }},
		{name: "arm64-virt", arch: "arm64"},
		// x86 with a device tree: auto takes kexec_load, the tree in a
		// SETUP_DTB node and in dtb_input (what finalize measures).
		{name: "ovmf-auto-dtb", arch: "amd64", edit: func(_ *Options, img *Image) { img.DTB = dtb }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := Image{Kernel: Bytes("/boot/vmlinuz", testkernel.Bytes(t, testkernel.Deb61, 0x5a)),
				Initrd:  Bytes("/boot/initrd.img", bytes.Repeat([]byte("golden initrd "), 4096)),
				Cmdline: "console=ttyS0 root=/dev/vda1"}
			o := Options{Arch: c.arch, Mode: c.mode, IMAExtra: 64 << 10}
			var host Facts = &kexec.Captured{Root: ovmfCapture}
			if c.arch == "arm64" {
				// The virt tree's /memory nodes are the memory map.
				img.Kernel, img.DTB = arm64GoldenImage(t)
				list, err := os.ReadFile(filepath.Join(ovmfCapture, "sys/kernel/security/ima/binary_runtime_measurements"))
				if err != nil {
					t.Fatal(err)
				}
				f := newFake(t, list)
				f.NoMemory = true
				host = f
			}
			if c.edit != nil {
				c.edit(&o, &img)
			}
			p, err := Plan(context.Background(), host, img, o)
			if err != nil {
				t.Fatal(err)
			}
			p.FillDigests()
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata/golden", c.name+".json"), got)
		})
	}
}

// checkGolden compares got (JSON, a newline added) with the golden file
// at path, or rewrites the file under -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = append(got, '\n')
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if intended):\n%s", path, lineDiff(want, got))
	}
}

// lineDiff shows the first lines where a and b differ.
func lineDiff(a, b []byte) string {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	var out bytes.Buffer
	n := 0
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y []byte
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if !bytes.Equal(x, y) {
			out.WriteString("- " + string(x) + "\n+ " + string(y) + "\n")
			if n++; n > 20 {
				break
			}
		}
	}
	return out.String()
}

// TestFinalizeGolden records the plan a finalize loads (no TPM, the
// captured 6.1 list) with the boot_params digest masked: it holds a fresh
// RNG seed at every load.
func TestFinalizeGolden(t *testing.T) {
	list, err := os.ReadFile(filepath.Join(ovmfCapture, "sys/kernel/security/ima/binary_runtime_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	h := newFake(t, list)
	img := Image{Kernel: Bytes("/boot/vmlinuz", testkernel.Bytes(t, testkernel.Deb61, 0x5a)),
		Initrd:  Bytes("/boot/initrd.img", bytes.Repeat([]byte("golden initrd "), 4096)),
		Cmdline: "console=ttyS0 root=/dev/vda1"}
	ctx := context.Background()
	l, err := Load(ctx, h, img, Options{Arch: "amd64", IMAExtra: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Plan
	p.FillDigests()
	for i := range p.Segments {
		if p.Segments[i].Name == "boot_params" {
			p.Segments[i].SHA256 = "masked"
		}
	}
	got, err := json.MarshalIndent(struct {
		Plan      *plan.Plan
		ListBytes uint64
		Count     int
	}{p, rep.ListBytes, rep.Count}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "testdata/golden/finalize-fake.json", got)
}
