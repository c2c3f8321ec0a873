package plan

import (
	"strings"
	"testing"
)

// An arm64 target that never reads /chosen/linux,ima-kexec-buffer (the
// header-and-filler stand-in of Debian's Image, which has no KEXEC_FILE)
// gets a plan warning that it cannot restore; one that names the property
// gets none.
func TestARM64TargetCannotRestore(t *testing.T) {
	in := arm64Inputs(t)
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "cannot restore the IMA list") {
		t.Fatalf("warnings %q", p.Warnings)
	}
	in = arm64Inputs(t)
	copy(in.Kernel[1<<20:], "linux,ima-kexec-buffer")
	p, err = Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings %q for a kernel that reads the buffer", p.Warnings)
	}
	if p, err = Build(arm64InputsNoIMA(t)); err != nil || len(p.Warnings) != 0 {
		t.Fatalf("no hand-over, warnings %q (%v)", p.Warnings, err)
	}
}

func arm64InputsNoIMA(t *testing.T) *Inputs {
	in := arm64Inputs(t)
	in.IMAList = nil
	return in
}
