package loader

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader/loadertest"
	"github.com/gokexec/gokexec/plan"
)

const (
	testMemmap = "../plan/testdata/iomem-qemu-q35-1g-deb61.txt"
	testList   = "../ima/testdata/captures/linux-image-6.1.0-56-cloud-amd64/binary_runtime_measurements"
)

// fakeHost is the one fake machine, loadertest.Host: no test makes a
// kexec or reboot system call or opens a TPM device.
type fakeHost = loadertest.Host

// newFake is a fake with the test memory map, list (nil: no IMA) and boot
// id b1.
func newFake(t testing.TB, list []byte) *fakeHost {
	t.Helper()
	m, _, err := kexec.ReadMemoryMap(testMemmap)
	if err != nil {
		t.Fatal(err)
	}
	h := loadertest.NewHost()
	h.Memory, h.List, h.Boot = m, list, "b1"
	return h
}

// testSD is a StateDir driven as the command line drives it: a load
// recorded (Save), and a later process's finalize (Read, Resume,
// Finalize, Save).
type testSD struct{ StateDir }

func (sd testSD) LoadImage(ctx context.Context, h Host, img Image, o Options) (*Loaded, error) {
	l, err := Load(ctx, h, img, o)
	if err != nil {
		return nil, err
	}
	if err := sd.Save(l.State()); err != nil {
		_ = l.Unload()
		return nil, err
	}
	return l, nil
}

// Finalize is what -e and --finalize do before the reboot.
func (sd testSD) Finalize(ctx context.Context, h Host, noIMA bool) (*Report, error) {
	l, rep, err := sd.finalize(ctx, h, noIMA)
	_ = l
	return rep, err
}

func (sd testSD) finalize(ctx context.Context, h Host, noIMA bool) (*Loaded, *Report, error) {
	loaded, err := h.KexecLoaded(false)
	if err != nil {
		return nil, nil, err
	}
	if !loaded {
		return nil, nil, ErrNothingLoaded
	}
	s, err := sd.Read()
	if err != nil {
		return nil, nil, err
	}
	if noIMA {
		s.Options.NoIMA = true
	}
	l, err := Resume(h, s)
	if err != nil {
		return nil, nil, err
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !rep.Skipped {
		if err := sd.Save(l.State()); err != nil {
			return nil, nil, err
		}
	}
	return l, rep, nil
}

// Exec is -e: finalize, then reboot.
func (sd testSD) Exec(ctx context.Context, h Host) error {
	l, _, err := sd.finalize(ctx, h, false)
	if err != nil {
		return err
	}
	return l.Exec()
}

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
	img, err := FileImage(k, rd, "", "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	return img, dir
}

// testLoad loads the stand-in image on h, recording its state in a
// directory of its own, as gokexec -l does.
func testLoad(t *testing.T, h *fakeHost, mode plan.Mode, edit func(*Image, *Options)) (testSD, *Loaded, error) {
	t.Helper()
	img, dir := testImage(t)
	o := Options{Arch: "amd64", IMAExtra: 64 << 10, Mode: mode}
	if edit != nil {
		edit(&img, &o)
	}
	sd := testSD{StateDir(filepath.Join(dir, "run", "gokexec"))}
	l, err := sd.LoadImage(context.Background(), h, img, o)
	return sd, l, err
}
