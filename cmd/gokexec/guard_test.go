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

// guardHost is the live system with every act refused: tests never load,
// unload, reboot or open the TPM of the machine they run on, whatever a
// command line asks (RULES: no kexec or reboot call on the host).
type guardHost struct{ *loader.System }

func (guardHost) KexecLoad(loader.LoadRequest) error         { return errGuard }
func (guardHost) KexecFileLoad(loader.FileLoadRequest) error { return errGuard }
func (guardHost) Unload(bool) error                          { return errGuard }
func (guardHost) Reboot() error                              { return errGuard }
func (guardHost) OpenTPM() (loader.TPM, string, error)       { return nil, "", errGuard }

func TestMain(m *testing.M) {
	guardActs = func(h *loader.System) loader.Host { return guardHost{h} }
	handOver = func([]string) error { return errGuard }
	syncAll = func() {}
	os.Exit(m.Run())
}
