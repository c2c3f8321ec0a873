package loader

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/efi"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/plan"
	"github.com/gokexec/gokexec/segment"
)

const (
	testMemmap = "../plan/testdata/iomem-qemu-q35-1g-deb61.txt"
	testList   = "../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements"
)

// fakeHost is a machine in memory: no test makes a kexec or reboot system
// call or opens a TPM device.
type fakeHost struct {
	list     []byte // the running kernel's list; nil: no securityfs
	loaded   bool
	boot     string
	kallsyms kexec.KallsymsFacts
	memmap   string // file or directory; "" testMemmap
	noMemmap bool   // describe no memory map (arm64 off-target: the DTB's)
	// tpm is the machine's TPM (nil: none); tpmName its device name.
	tpm     TPM
	tpmName string
	// tpmErr, when set, is what OpenTPM and TPMDevice answer.
	tpmErr error
	// loadErr, fileErr fail the next kexec_load / kexec_file_load.
	loadErr, fileErr error
	// beforeLoad, if set, runs at each kexec_load (entries arriving).
	beforeLoad func()
	// listReads counts IMAList calls.
	listReads int

	executed  []LoadRequest
	fileLoads [][2][]byte
	fileFDs   []*os.File
	reboots   int
	unloads   int
}

var _ Host = (*fakeHost)(nil)

func (h *fakeHost) MemoryMap(string) (segment.Map, error) {
	if h.noMemmap {
		return nil, ErrNotDescribed
	}
	p := h.memmap
	if p == "" {
		p = testMemmap
	}
	m, _, err := kexec.ReadMemoryMap(p)
	return m, err
}
func (h *fakeHost) Firmware(string) (*efi.Host, error) { return nil, nil }
func (h *fakeHost) ACPIRSDP() uint64                   { return 0 }
func (h *fakeHost) DeviceTree() ([]byte, error)        { return nil, os.ErrNotExist }
func (h *fakeHost) IMAList() ([]byte, error) {
	h.listReads++
	if h.list == nil {
		return nil, kexec.ErrNoIMA
	}
	return append([]byte(nil), h.list...), nil
}
func (h *fakeHost) Lockdown() string                       { return "none" }
func (h *fakeHost) KexecLoadDisabled() bool                { return false }
func (h *fakeHost) Kallsyms() (kexec.KallsymsFacts, error) { return h.kallsyms, nil }
func (h *fakeHost) TPMDevice() (string, error) {
	if h.tpmErr != nil {
		return "", h.tpmErr
	}
	if h.tpm == nil {
		return NoTPM, nil
	}
	return h.tpmName, nil
}
func (h *fakeHost) OpenTPM() (TPM, string, error) {
	if h.tpmErr != nil {
		return nil, "", h.tpmErr
	}
	if h.tpm == nil {
		return nil, NoTPM, nil
	}
	return nopClose{h.tpm}, h.tpmName, nil
}
func (h *fakeHost) BootID() (string, error)        { return h.boot, nil }
func (h *fakeHost) KexecLoaded(bool) (bool, error) { return h.loaded, nil }
func (h *fakeHost) KexecLoad(r LoadRequest) error {
	if h.beforeLoad != nil {
		h.beforeLoad()
	}
	if err := h.loadErr; err != nil {
		h.loadErr = nil
		return err
	}
	h.executed = append(h.executed, r)
	h.loaded = true
	return nil
}
func (h *fakeHost) KexecFileLoad(r FileLoadRequest) error {
	if err := h.fileErr; err != nil {
		h.fileErr = nil
		return err
	}
	var got [2][]byte
	for i, f := range []*os.File{r.Kernel, r.Initrd} {
		if f == nil {
			continue
		}
		b := make([]byte, 64<<20)
		n, _ := f.ReadAt(b, 0)
		got[i] = b[:n]
	}
	h.fileLoads = append(h.fileLoads, got)
	h.fileFDs = append(h.fileFDs, r.Kernel)
	h.loaded = true
	return nil
}
func (h *fakeHost) Unload(bool) error { h.unloads++; h.loaded = false; return nil }
func (h *fakeHost) Reboot() error {
	if !h.loaded {
		return errors.New("fake reboot: nothing loaded")
	}
	h.reboots++
	return nil
}

// nopClose keeps a test's TPM open across finalizes.
type nopClose struct{ TPM }

func (nopClose) Close() error { return nil }

func readTestList(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(testList)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage writes a stand-in kernel and initrd and returns them read as
// files, with the directory.
func testImage(t *testing.T) (Image, string) {
	t.Helper()
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0xcc), 0o644); err != nil {
		t.Fatal(err)
	}
	rd := filepath.Join(dir, "initrd.img")
	if err := os.WriteFile(rd, bytes.Repeat([]byte("initrd"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := FileImage(k, rd, "", "console=ttyS0", false)
	if err != nil {
		t.Fatal(err)
	}
	return img, dir
}

// testLoad loads the stand-in image on h, recording its state in a
// directory of its own (StateDir.LoadImage, as gokexec -l does).
func testLoad(t *testing.T, h *fakeHost, mode plan.Mode, edit func(*Image, *Options)) (StateDir, *Loaded, error) {
	t.Helper()
	img, dir := testImage(t)
	o := Options{Arch: "amd64", IMAExtra: 64 << 10, Mode: mode}
	if edit != nil {
		edit(&img, &o)
	}
	sd := StateDir(filepath.Join(dir, "run", "gokexec"))
	l, err := sd.LoadImage(context.Background(), h, img, o)
	return sd, l, err
}
