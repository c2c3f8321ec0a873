package loader_test

import (
	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/loadertest"
	"github.com/gokexec/gokexec/tpm"
)

// The real seams and the fake satisfy the loader's interfaces.
var (
	_ loader.Facts  = (*kexec.System)(nil)
	_ loader.Facts  = (*kexec.Captured)(nil)
	_ loader.Kernel = kexec.Kernel{}
	_ loader.TPMs   = (*tpm.Source)(nil)
	_ loader.Host   = (*loadertest.Host)(nil)
	_ loader.Host   = loader.Machine{}
	_ loader.Host   = (*loader.DryRun)(nil)
)
