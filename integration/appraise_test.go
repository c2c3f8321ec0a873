package integration

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// evmSign signs a copy of src with evmctl (sha256, detached .sig) and
// returns the copy's path.
func evmSign(t *testing.T, dir, name, src, key string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	writeFile(t, dst, b)
	if out, err := exec.Command("evmctl", "ima_sign", "--key", key, "--hashalgo", "sha256", "--sigfile", dst).CombinedOutput(); err != nil {
		t.Fatalf("evmctl ima_sign %s: %v\n%s", name, err, out)
	}
	return dst
}

// TestAppraisal: with --appraise=enforce, a kernel whose evmctl signature no
// longer matches is refused and nothing is loaded; a good signed kernel and
// initrd load and boot, and their measurements in the next kernel's list
// are ima-sig entries carrying the signatures.
func TestAppraisal(t *testing.T) {
	g := newGuest(t)
	key, cert := "../appraise/testdata/openssl/rsa.key", "../appraise/testdata/openssl/rsa.pem"
	// The second kernel's initramfs is built here so it can be signed.
	next := qemu.NewInitramfs()
	if err := next.AddFile("/init", g.bins[qemu.AgentPackage]); err != nil {
		t.Fatal(err)
	}
	step2 := &proto.Scenario{Steps: map[string]proto.Step{"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list"}}}}}}
	if err := next.AddScenario(step2); err != nil {
		t.Fatal(err)
	}
	nextPath := filepath.Join(g.art, "next.cpio.unsigned")
	if err := next.WriteTo(nextPath); err != nil {
		t.Fatal(err)
	}
	signedInitrd := evmSign(t, g.art, "next.cpio", nextPath, key)
	signedKernel := evmSign(t, g.art, "vmlinuz-2", g.k1, key)
	bad := evmSign(t, g.art, "vmlinuz-bad", g.k1, key)
	kb, _ := os.ReadFile(bad)
	kb[len(kb)/2] ^= 0xff // tampered after signing
	writeFile(t, bad, kb)
	for gp, hp := range map[string]string{
		"/boot/vmlinuz-2": signedKernel, "/boot/vmlinuz-2.sig": signedKernel + ".sig",
		"/boot/next.cpio": signedInitrd, "/boot/next.cpio.sig": signedInitrd + ".sig",
		"/boot/vmlinuz-bad": bad, "/boot/vmlinuz-bad.sig": bad + ".sig",
		"/etc/gokexec/cert.pem": cert,
	} {
		g.files[gp] = hp
	}
	ap := []string{"--appraise", "enforce", "--key", "/etc/gokexec/cert.pem"}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Policy: basePolicy},
		{MeasureFiles: 5},
		{Run: append([]string{"/bin/gokexec", "-l", "/boot/vmlinuz-bad", "--initrd", "/boot/next.cpio"}, ap...), ExpectExit: intp(1)},
		{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(0)},
		{Run: append([]string{"/bin/gokexec", "-d", "-l", "/boot/vmlinuz-2", "--initrd", "/boot/next.cpio", "--append", nextAppend("2")}, ap...), ExpectExit: intp(0)},
		{Exec: []string{"/bin/gokexec", "-e"}},
	}}}}
	res := g.run(g.k1, sc)
	refused := cmdOut(res, 1, "vmlinuz-bad")
	if len(refused) == 0 || !strings.Contains(string(refused[0].Output), "/boot/vmlinuz-bad") || !strings.Contains(string(refused[0].Output), "refused") {
		t.Fatalf("tampered kernel: want a refusal naming the file, got %+v", refused)
	}
	good := cmdOut(res, 1, "-d", "-l")
	if len(good) == 0 || !strings.Contains(string(good[0].Output), "signature v2") {
		t.Fatalf("signed kernel: %+v", good)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	requireReplays(t, list2, pcrValues(t, res.PCRs(2), "sha1", "sha256"), "boot 2")
	sigs := map[string]string{"/boot/vmlinuz-2": signedKernel + ".sig", "/boot/next.cpio": signedInitrd + ".sig"}
	load, exec := markers(t, list2)
	if len(load) != 1 || len(exec) != 1 {
		t.Fatalf("markers load %v execute %v", load, exec)
	}
	// The loader's own entries lie between the markers (the kernel also
	// measured the files when gokexec read them, with its own template).
	ours := list2[load[0]+1 : exec[0]]
	for path, sigFile := range sigs {
		want, _ := os.ReadFile(sigFile)
		found := false
		for _, e := range ours {
			d, err := e.Decode(binary.LittleEndian)
			if err != nil || d.Name != path {
				continue
			}
			found = true
			if e.TemplateName != "ima-sig" || !bytes.Equal(d.Sig, want) {
				t.Fatalf("%s measured as %s with sig %x; want ima-sig with the evmctl signature %x", path, e.TemplateName, d.Sig, want)
			}
		}
		if !found {
			t.Fatalf("no measurement of %s in the next kernel's list", path)
		}
	}
	t.Logf("refused: %s", strings.TrimSpace(string(refused[0].Output)))
}
