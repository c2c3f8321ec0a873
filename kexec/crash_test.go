package kexec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gokexec/gokexec/elfcore"
	"github.com/gokexec/gokexec/segment"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, s := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadCrashFacts(t *testing.T) {
	root := t.TempDir()
	kcore, err := elfcore.Build(&elfcore.Header{Machine: elfcore.MachineX86,
		CPUNotes: []elfcore.Note{{Addr: 1 << 20, Size: 4}}, VMCoreInfo: elfcore.Note{Addr: 2 << 20, Size: 4},
		KernelText: &elfcore.Load{Phys: 0x1ec00000, Virt: 0xffffffffa0000000, Size: 0x2000000},
		PageOffset: 0xffff9e0000000000, RAM: []segment.Range{{Start: 0x100000, End: 0x3ffcf000}}})
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, map[string]string{
		"proc/iomem": "00001000-0009fbff : System RAM\n00100000-3ffcefff : System RAM\n  2b000000-3affffff : Crash kernel\n3ffcf000-3fffffff : Reserved\n",
		"sys/devices/system/cpu/cpu0/crash_notes":      "3fc1d000\n",
		"sys/devices/system/cpu/cpu0/crash_notes_size": "368\n",
		"sys/devices/system/cpu/cpu10/crash_notes":     "3fc3d000\n",
		"sys/devices/system/cpu/cpu2/crash_notes":      "3fc2d000\n",
		"sys/devices/system/cpu/cpufreq/x":             "",
		"sys/kernel/vmcoreinfo":                        "0x0000000002c2a000 1024\n",
		"proc/kcore":                                   string(kcore),
	})
	f, err := ReadCrashFacts(root, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Regions) != 1 || f.Regions[0] != (segment.Range{Start: 0x2b000000, End: 0x3b000000}) {
		t.Fatalf("regions %v", f.Regions)
	}
	want := []elfcore.Note{{Addr: 0x3fc1d000, Size: 368}, {Addr: 0x3fc2d000, Size: elfcore.DefaultCrashNotesSize}, {Addr: 0x3fc3d000, Size: elfcore.DefaultCrashNotesSize}}
	if len(f.CPUNotes) != 3 || f.CPUNotes[0] != want[0] || f.CPUNotes[1] != want[1] || f.CPUNotes[2] != want[2] {
		t.Fatalf("notes %v, want %v (CPU order)", f.CPUNotes, want)
	}
	if f.VMCoreInfo != (elfcore.Note{Addr: 0x2c2a000, Size: 0x1024}) {
		t.Fatalf("vmcoreinfo %v", f.VMCoreInfo)
	}
	if f.PageOffset != 0xffff9e0000000000 || f.KernelText == nil || f.KernelText.Phys != 0x1ec00000 || f.KcoreErr != "" {
		t.Fatalf("kcore facts: %#x %+v %q", f.PageOffset, f.KernelText, f.KcoreErr)
	}

	// Without kcore the rest still reads; the plan then warns.
	os.Remove(filepath.Join(root, "proc/kcore"))
	if f, err = ReadCrashFacts(root, "", true); err != nil || f.PageOffset != 0 || f.KcoreErr == "" {
		t.Fatalf("without kcore: %+v %v", f, err)
	}
	// No reservation: a typed error.
	writeTree(t, root, map[string]string{"proc/iomem": "00100000-3ffcefff : System RAM\n"})
	if _, err := ReadCrashFacts(root, "", false); !errors.Is(err, segment.ErrNoCrashRegion) {
		t.Fatalf("no crash region: %v", err)
	}
}

// TestReadKcoreHost reads this machine's /proc/kcore headers when it may
// (root, no confidentiality lockdown): a read, never a kexec.
func TestReadKcoreHost(t *testing.T) {
	po, text, err := readKcore(ProcKcore)
	if err != nil {
		t.Skipf("/proc/kcore: %v", err)
	}
	if po < 0xff00000000000000 || text == nil || text.Virt < kernelTextFloor {
		t.Fatalf("page offset %#x, text %+v", po, text)
	}
	t.Logf("page offset %#x, kernel text %#x at %#x (%#x bytes)", po, text.Virt, text.Phys, text.Size)
}
