package plan

import (
	"os"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/segment"
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

// TestARM64TargetBootsWithACPI is TestARM64UEFI's finding: under UEFI with
// ACPI (the EFI stub's tree holds only /chosen; captured under AAVMF) a
// kernel that reads the buffer still will not restore, since arm64 Linux
// leaves the device tree unread when it boots with ACPI: the plan says so.
// With acpi=off on the command line it does not.
func TestARM64TargetBootsWithACPI(t *testing.T) {
	stub, err := os.ReadFile("../arm64/testdata/efi-stub-aavmf.dtb")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmdline string
		warn    bool
	}{{"console=ttyAMA0 gkt.step=2", true}, {"console=ttyAMA0 acpi=off", false}} {
		in := arm64Inputs(t)
		copy(in.Kernel[1<<20:], "linux,ima-kexec-buffer")
		in.DTB, in.Cmdline = stub, c.cmdline
		in.Memory = segment.Map{{Range: segment.Range{Start: 0x40000000, End: 0x80000000}, Type: segment.TypeRAM}}
		p, err := Build(in)
		if err != nil {
			t.Fatal(err)
		}
		warned := len(p.Warnings) == 1 && strings.Contains(p.Warnings[0], "boots with ACPI")
		if warned != c.warn || len(p.Warnings) > 1 {
			t.Fatalf("%q: warnings %q", c.cmdline, p.Warnings)
		}
	}
}
