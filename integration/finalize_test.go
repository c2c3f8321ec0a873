package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu/proto"
)

// markers returns the indexes of the kexec_load and kexec_execute entries.
func markers(t *testing.T, es []ima.Entry) (load, exec []int) {
	t.Helper()
	for i := range es {
		switch es[i].EventName(binary.LittleEndian) {
		case "kexec_load":
			load = append(load, i)
		case "kexec_execute":
			exec = append(exec, i)
		}
	}
	return load, exec
}

// TestFinalizeRefreshesAndMeasures: files are read between -l and -e; the
// second kernel's list still replays, holds those files, the loader's
// entries between a kexec_load and a kexec_execute marker, and a kernel
// measurement equal to the sha256 of the loaded file.
func TestFinalizeRefreshesAndMeasures(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k2
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2"), "--ima-extra", "64K"}, ExpectExit: intp(0)},
			{MeasureFiles: 15, Dir: "/tmp/late"},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list"}}}},
	}}
	res := g.run(g.k1, sc)
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "boot 2")
	late := 0
	for i := range list2 {
		if strings.HasPrefix(list2[i].EventName(binary.LittleEndian), "/tmp/late/") {
			late++
		}
	}
	if late != 15 {
		t.Fatalf("boot 2 list holds %d of the 15 files read between -l and -e", late)
	}
	load, exec := markers(t, list2)
	if len(load) != 1 || len(exec) != 1 || exec[0] != len(list2)-2 || load[0] >= exec[0] {
		t.Fatalf("markers kexec_load at %v, kexec_execute at %v in %d entries; want one each, execute right before the new boot_aggregate", load, exec, len(list2))
	}
	// The loader's entries: kernel, initrd, command line between the markers.
	kernel, err := os.ReadFile(g.k2)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(kernel)
	found := false
	for _, e := range list2[load[0]+1 : exec[0]] {
		d, err := e.Decode(binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		if d.Name == "/boot/vmlinuz-2" {
			found = true
			if d.DigestAlgo != "sha256" || !bytes.Equal(d.Digest, want[:]) {
				t.Fatalf("kernel measured as %s:%x, sha256sum of the file is %x", d.DigestAlgo, d.Digest, want)
			}
		}
	}
	if !found {
		t.Fatal("no measurement of /boot/vmlinuz-2 between the markers")
	}
	tl := ima.BuildTimeline(list2, binary.LittleEndian)
	if tl.Verdict != ima.VerdictSoftReboots || len(tl.Boots) != 2 || tl.Boots[0].Exit != "soft-reboot" {
		t.Fatalf("timeline verdict %s, boots %+v", tl.Verdict, tl.Boots)
	}
	t.Logf("boot 2: %s; markers at %d and %d; verdict %s", describe(list2), load[0], exec[0], tl.Verdict)
}

// TestFinalizeOutgrowsHeadroom: the list grows past the reserved headroom
// between -l and -e; finalize re-plans a larger segment and the hand-over
// stays consistent.
func TestFinalizeOutgrowsHeadroom(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2"), "--ima-extra", "0"}, ExpectExit: intp(0)},
			{MeasureFiles: 300, Dir: "/tmp/grow"},
			{Run: []string{"/bin/gokexec", "-d", "--finalize"}, ExpectExit: intp(0)},
			{Exec: []string{"/bin/gokexec", "-d", "-e"}},
		}},
		"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list"}}}},
	}}
	res := g.run(g.k1, sc)
	var out string
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if strings.Contains(strings.Join(c.Argv, " "), "--finalize") {
			out = string(c.Output)
		}
	}
	if !strings.Contains(out, "finalize: handing over") {
		t.Fatalf("--finalize said: %q", out)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	if len(list2) < 300 {
		t.Fatalf("boot 2 list has %d entries; the 300 files read after -l are missing", len(list2))
	}
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "boot 2")
	load, exec := markers(t, list2)
	// The load-time buffer carried a kexec_load marker; the re-planned one
	// does not keep it (it was never extended). --finalize added a
	// kexec_load/kexec_execute pair; -e, which found new entries (its own
	// reading of the state), continued with another kexec_execute.
	if len(load) != 1 || len(exec) != 2 || exec[1] != len(list2)-2 {
		t.Fatalf("markers load %v execute %v in %d entries", load, exec, len(list2))
	}
	t.Logf("re-planned hand-over: %s; %s", describe(list2), strings.TrimSpace(out))
}

// TestForeignExecLosesEvents: gokexec -l, then kexec-tools' kexec -e (no
// finalize): the second list has a kexec_load but no kexec_execute, and the
// verifier says a cold boot is needed.
func TestForeignExecLosesEvents(t *testing.T) {
	g := newGuest(t, "./cmd/imalog")
	g.files["/boot/vmlinuz-2"] = g.k1
	g.files["/bin/imalog"] = g.bins["./cmd/imalog"]
	g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 10},
			{RepackInitrd: "/run/next.cpio"},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}, ExpectExit: intp(0)},
			{MeasureFiles: 5, Dir: "/tmp/late"},
			{Exec: []string{"/sbin/kexec", "-e"}},
		}},
		"2": {Actions: []proto.Action{
			{Report: []string{"boot", "pcrs", "list"}},
			{Run: []string{"/bin/imalog", "verify", "/sys/kernel/security/ima/binary_runtime_measurements", "--tpm"}},
		}},
	}}
	res := g.run(g.k1, sc)
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	load, exec := markers(t, list2)
	if len(load) != 1 || len(exec) != 0 {
		t.Fatalf("markers load %v execute %v; want a kexec_load without kexec_execute", load, exec)
	}
	tl := ima.BuildTimeline(list2, binary.LittleEndian)
	if tl.Verdict != ima.VerdictEventsLost {
		t.Fatalf("timeline verdict %s (%s), want %s", tl.Verdict, tl.Reason, ima.VerdictEventsLost)
	}
	if r := ima.Verify(list2, binary.LittleEndian, pcrValues(t, res.PCRs(2), "sha1", "sha256"), ima.VerifyOptions{}); r.Consistent {
		t.Fatal("the list replays although events were lost")
	}
	cmds := res.Find(2, proto.TypeCmd, "")
	if len(cmds) != 1 || cmds[0].Exit != 1 || !strings.Contains(string(cmds[0].Output), "cold boot") {
		t.Fatalf("imalog verify --tpm in the guest: %+v", cmds)
	}
	t.Logf("verdict %s: %s\nimalog in the guest:\n%s", tl.Verdict, tl.Reason, cmds[0].Output)
}

// TestChangedInputRefused: a kernel file that changes between -l and -e is
// refused at -e: no reboot, the loaded image stays as it was.
func TestChangedInputRefused(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Policy: basePolicy},
		{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--append", nextAppend("2")}, ExpectExit: intp(0)},
		// The kernel's own file no longer matters after the load (-e boots
		// the bytes -l read and kept, issue 25); the kept copy must not
		// change: -e checks it against the digest the load recorded.
		{WriteFile: "/run/gokexec/kernel.bin", Data: []byte("replaced after it was loaded\n")},
		{Run: []string{"/bin/gokexec", "-e"}, ExpectExit: intp(1)},
		{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(1)},
	}}}}
	res := g.run(g.k1, sc)
	if res.Boots() != 1 {
		t.Fatalf("%d boots: -e rebooted with an altered kept kernel", res.Boots())
	}
	var out string
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if strings.Join(c.Argv, " ") == "/bin/gokexec -e" {
			out = string(c.Output)
		}
	}
	if !strings.Contains(out, "kept kernel does not match the recorded digest") || !strings.Contains(out, "not rebooting") {
		t.Fatalf("-e after the kept kernel changed said %q", out)
	}
	t.Logf("-e: %s", strings.TrimSpace(out))
}
