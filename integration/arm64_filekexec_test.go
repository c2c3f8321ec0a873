package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// TestARM64FileKexec boots the imakexec-arm64 test kernel (IMA_KEXEC on:
// it hands its own list over at kexec_file_load, through /chosen) with a
// device tree and lets gokexec load the same kernel's EFI zboot image (a
// zstd payload): gokexec -a picks kexec_file_load, hands the kernel the
// unpacked Image through a sealed memfd (the kernel's loader takes raw
// Images only), and -e refreshes the load. The second kernel's list holds
// the first boot's entries, the kernel's own kexec_load and kexec_execute
// markers, two boot_aggregates, and replays to the TPM's PCRs.
func TestARM64FileKexec(t *testing.T) {
	g := newARM64Guest(t)
	g.files["/boot/vmlinuz.efi"] = arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz.efi")
	next := qemu.DefaultAppend("arm64") + " gkt.step=2"
	load := []string{"/bin/gokexec", "-l", "/boot/vmlinuz.efi", "--initrd", "/run/next.cpio", "--append", next}
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 600, Actions: []proto.Action{
			{Policy: fileKexecPolicy},
			{MeasureFiles: 10},
			{Report: []string{"boot", "pcrs", "list"}},
			{RepackInitrd: "/run/next.cpio"},
			{Run: append(append([]string(nil), load...), "--dry-run", "--json"), ExpectExit: intp(0)},
			{Run: load, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {DeadlineSec: 600, Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{File: "/sys/firmware/fdt"},
		}},
	}}
	res := g.run(sc, qemu.VM{Kernel: arm64KernelFile(t, qemu.IMAKexecARM64, "vmlinuz"), Timeout: 20 * time.Minute})
	if res.Boots() != 2 {
		t.Fatalf("%d boots", res.Boots())
	}
	dry, ok := cmdOutput(res, 1, strings.Join(load, " ")+" --dry-run")
	if !ok {
		t.Fatal("no dry-run record")
	}
	var pl struct {
		Syscall string `json:"syscall"`
	}
	start := bytes.IndexByte(dry.Output, '{')
	if start < 0 {
		t.Fatalf("dry run printed no plan:\n%s", dry.Output)
	}
	if err := json.NewDecoder(bytes.NewReader(dry.Output[start:])).Decode(&pl); err != nil || pl.Syscall != "kexec_file_load" {
		t.Fatalf("auto on an IMA_KEXEC kernel: syscall %q (%v)\n%s", pl.Syscall, err, dry.Output)
	}
	list1 := parseList(t, res.List(1, "binary_runtime_measurements"), "boot 1")
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	for i := range list1 {
		if list1[i].TemplateDigest != list2[i].TemplateDigest {
			t.Fatalf("entry %d differs after the hand-over", i)
		}
	}
	b2 := secondBoot(t, list2)
	if countBootAggregates(list2) != 2 {
		t.Fatalf("boot 2: %s", describe(list2))
	}
	late := 0
	for i := range list2[:b2] {
		if strings.HasPrefix(list2[i].EventName(binary.LittleEndian), "/tmp/late/") {
			late++
		}
	}
	if late != 5 {
		t.Fatalf("the restored list holds %d of the 5 files read after -l", late)
	}
	ms := decodedMarkers(t, list2)
	var loads, execs int
	for _, m := range ms {
		checkKernelMarker(t, list2, m)
		if m.name == ima.MarkerKexecLoad {
			loads++
		} else {
			execs++
		}
	}
	if loads < 1 || execs != 1 {
		t.Fatalf("kernel markers: %s", markerSummary(ms))
	}
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256", "sha384"), "boot 2")
	evmctlAgrees(t, res, 2, "sha1", "sha256")
	t.Logf("zstd zboot through kexec_file_load: boot 2 %s; markers %s", describe(list2), markerSummary(ms))
}
