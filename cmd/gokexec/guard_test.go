package main

import (
	"errors"
	"os"
	"testing"

	"github.com/gokexec/gokexec/loader"
)

// errGuard is what a test's command line gets when it would act on the
// machine the tests run on.
var errGuard = errors.New("test guard: gokexec tried to act on the test machine")

// guardKernel and guardTPMs refuse every act: tests never load, unload,
// reboot, mount or extend the TPM of the machine they run on, whatever a
// command line asks (RULES: no kexec or reboot call on the host).
type guardKernel struct{}

func (guardKernel) KexecLoad(loader.LoadRequest) error         { return errGuard }
func (guardKernel) KexecFileLoad(loader.FileLoadRequest) error { return errGuard }
func (guardKernel) Unload(bool) error                          { return errGuard }
func (guardKernel) Reboot() error                              { return errGuard }
func (guardKernel) MountSecurityfs() error                     { return errGuard }

// guardTPMs names the machine's TPM as it is (a read) and refuses to open it.
type guardTPMs struct{ loader.TPMs }

func (guardTPMs) OpenTPM() (loader.TPM, string, error) { return nil, "", errGuard }

func TestMain(m *testing.M) {
	guardActs = func(h loader.Machine) loader.Host {
		h.Kernel, h.TPMs = guardKernel{}, guardTPMs{h.TPMs}
		return h
	}
	handOver = func([]string) error { return errGuard }
	syncAll = func() {}
	os.Exit(m.Run())
}
