package integration

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/qemu/proto"
)

// cmdOut returns the cmd records of boot b whose argv contains all of want.
func cmdOut(res interface {
	Find(int, string, string) []proto.Record
}, b int, want ...string) []proto.Record {
	var out []proto.Record
	for _, c := range res.Find(b, proto.TypeCmd, "") {
		joined := strings.Join(c.Argv, " ")
		ok := true
		for _, w := range want {
			if !strings.Contains(joined, w) {
				ok = false
			}
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}

// brokenKernel writes a copy of kernel with its boot-protocol header edited.
func brokenKernel(t *testing.T, dir, name, kernel string, edit func(b []byte)) string {
	t.Helper()
	b, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	edit(b)
	p := filepath.Join(dir, name)
	writeFile(t, p, b)
	return p
}

// TestSyscallModesAndBadInput: each bad input is a clear error, and
// afterwards -S reports nothing loaded. Then -s loads with kexec_file_load,
// warning that the list will not be carried; -u unloads; -a picks
// kexec_load; and an exec through kexec_file_load boots the new kernel
// without the list, as warned.
func TestSyscallModesAndBadInput(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	g.files["/boot/vmlinuz-32bit"] = brokenKernel(t, g.art, "vmlinuz-32bit", g.k1, func(b []byte) { binary.LittleEndian.PutUint16(b[0x236:], 0) })
	g.files["/boot/vmlinuz-old"] = brokenKernel(t, g.art, "vmlinuz-old", g.k1, func(b []byte) { binary.LittleEndian.PutUint16(b[0x206:], 0x0209) })
	notLoaded := proto.Action{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(0)}
	loaded := proto.Action{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(1)}
	app := nextAppend("2")
	bad := [][]string{
		{"/bin/gokexec", "-l", "/init"},
		{"/bin/gokexec", "-l", "/boot/vmlinuz-32bit"},
		{"/bin/gokexec", "-l", "/boot/vmlinuz-old"},
		{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/nonexistent.img"},
		{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--mem-max", "0x2000000"},
		{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--ima-extra", "900M"},
		{"/bin/gokexec", "-e"},
	}
	acts := []proto.Action{{Policy: basePolicy}, {MeasureFiles: 5}, {RepackInitrd: "/run/next.cpio"}, notLoaded}
	for _, argv := range bad {
		acts = append(acts, proto.Action{Run: argv, ExpectExit: intp(1)}, notLoaded)
	}
	acts = append(acts,
		proto.Action{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--bogus-option"}, ExpectExit: intp(2)}, notLoaded,
		proto.Action{Run: []string{"/bin/gokexec", "-s", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app}, ExpectExit: intp(0)}, loaded,
		proto.Action{Run: []string{"/bin/gokexec", "-u"}, ExpectExit: intp(0)}, notLoaded,
		proto.Action{Run: []string{"/bin/gokexec", "-d", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app}, ExpectExit: intp(0)}, loaded,
		proto.Action{Run: []string{"/bin/gokexec", "-u"}, ExpectExit: intp(0)}, notLoaded,
		proto.Action{Run: []string{"/bin/gokexec", "-s", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app}, ExpectExit: intp(0)},
		proto.Action{Exec: []string{"/bin/gokexec", "-e"}},
	)
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {DeadlineSec: 300, Actions: acts},
		"2": {Actions: []proto.Action{{Report: []string{"boot", "pcrs", "list"}}}},
	}}
	res := g.run(g.k1, sc)
	wantMsg := map[string]string{
		"/init":            "no PT_LOAD segment is linked at a kernel-space address", // an ELF executable, not a vmlinux
		"vmlinuz-32bit":    "32-bit",
		"vmlinuz-old":      "older than 2.12",
		"/nonexistent.img": "no such file",
		"--mem-max":        "no room",
		"--ima-extra":      "IMA buffer",
		"--bogus-option":   "unrecognized option",
	}
	for arg, msg := range wantMsg {
		cs := cmdOut(res, 1, arg)
		if len(cs) == 0 || !strings.Contains(string(cs[0].Output), msg) {
			t.Errorf("gokexec with %s: want a message containing %q, got %+v", arg, msg, cs)
		} else {
			t.Logf("%-18s -> %s", arg, strings.TrimSpace(string(cs[0].Output)))
		}
	}
	var bareExec []proto.Record
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if strings.Join(c.Argv, " ") == "/bin/gokexec -e" {
			bareExec = append(bareExec, c)
		}
	}
	if len(bareExec) == 0 || !strings.Contains(string(bareExec[0].Output), "no kernel is loaded") {
		t.Errorf("-e with nothing loaded: %+v", bareExec)
	}
	fileLoads := cmdOut(res, 1, "-s", "-l")
	if len(fileLoads) == 0 || !strings.Contains(string(fileLoads[0].Output), "will not be carried") {
		t.Errorf("-s must warn that the list will not be carried: %+v", fileLoads)
	}
	auto := cmdOut(res, 1, "-d", "-l")
	if len(auto) == 0 || !strings.Contains(string(auto[0].Output), "syscall kexec_load") || !strings.Contains(string(auto[0].Output), "IMA is active") {
		t.Errorf("-a must choose kexec_load and say why: %+v", auto)
	}
	list2 := parseList(t, res.List(2, "binary_runtime_measurements"), "boot 2")
	if countBootAggregates(list2) != 1 {
		t.Fatalf("after kexec_file_load on a kernel without CONFIG_IMA_KEXEC the list should start over: %s", describe(list2))
	}
}

// TestLockdown: under lockdown=integrity, -c is refused naming lockdown and
// leaves nothing loaded; -a turns to kexec_file_load and warns that the list
// will not be carried. Debian's kernel is signed for Secure Boot, but
// without UEFI firmware holding Debian's CA in db the guest has no key to
// verify it with, so the kernel refuses that load too — with an error that
// says so, and nothing loaded.
func TestLockdown(t *testing.T) {
	g := newGuest(t)
	g.files["/boot/vmlinuz-2"] = g.k1
	app := nextAppend("2")
	sc := &proto.Scenario{Steps: map[string]proto.Step{
		"1": {Actions: []proto.Action{
			{Policy: basePolicy},
			{MeasureFiles: 5},
			{RepackInitrd: "/run/next.cpio"},
			{File: "/sys/kernel/security/lockdown"},
			{Run: []string{"/bin/gokexec", "-c", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app}, ExpectExit: intp(1)},
			{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app, "--dry-run"}, ExpectExit: intp(0)},
			{Run: []string{"/bin/gokexec", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", app}, ExpectExit: intp(1)},
			{Run: []string{"/bin/gokexec", "-S", "-l"}, ExpectExit: intp(0)},
		}},
	}}
	g.appendExtra = "lockdown=integrity"
	res := g.run(g.k1, sc)
	lock := res.Find(1, proto.TypeFile, "/sys/kernel/security/lockdown")
	if len(lock) == 0 || !strings.Contains(string(lock[0].Data), "[integrity]") {
		t.Fatalf("guest not locked down: %+v", lock)
	}
	c := cmdOut(res, 1, "-c", "-l")
	if len(c) == 0 || !strings.Contains(string(c[0].Output), "lockdown (integrity) forbids kexec_load") {
		t.Fatalf("-c under lockdown: want a refusal naming lockdown, got %+v", c)
	}
	dry := cmdOut(res, 1, "--dry-run")
	if len(dry) == 0 || !strings.Contains(string(dry[0].Output), "syscall kexec_file_load") || !strings.Contains(string(dry[0].Output), "lockdown (integrity) forbids kexec_load") {
		t.Fatalf("-a under lockdown must choose kexec_file_load and say why: %+v", dry)
	}
	var auto string
	for _, r := range res.Find(1, proto.TypeCmd, "") {
		if r.Argv[1] == "-l" && !strings.Contains(strings.Join(r.Argv, " "), "--dry-run") {
			auto = string(r.Output)
		}
	}
	for _, want := range []string{"warning: the IMA measurement list will not be carried", "kexec_file_load", "lockdown", "signed by a trusted key"} {
		if !strings.Contains(auto, want) {
			t.Errorf("-a under lockdown: output lacks %q:\n%s", want, auto)
		}
	}
	t.Logf("-c: %s\n-a: %s", strings.TrimSpace(string(c[0].Output)), strings.TrimSpace(auto))
}
