package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/loader"
)

var update = flag.Bool("update", false, "rewrite docs/bad-inputs.md from the bad-input table")

const badInputsDoc = "../../docs/bad-inputs.md"

// badInput is one row of the table in docs/bad-inputs.md.
type badInput struct {
	what    string   // the bad input, for the reader
	finding string   // issue 11 finding it comes from ("" for older checks)
	args    []string // gokexec's arguments ($DIR and $REPO are substituted)
	code    int
	must    string // the message must contain this (after substitution)
}

// propBombDTB is issue 11's reproducer, kept just under arm64's 2 MiB DTB
// limit: 87,375 empty properties that all name one 1 MiB string.
func propBombDTB() []byte {
	be := binary.BigEndian
	var st []byte
	st = be.AppendUint32(st, 1)
	st = append(st, 0, 0, 0, 0)
	for i := 0; i < 87375; i++ {
		st = be.AppendUint32(st, 3)
		st = be.AppendUint32(st, 0)
		st = be.AppendUint32(st, 0)
	}
	st = be.AppendUint32(st, 2)
	st = be.AppendUint32(st, 9)
	strs := append(bytes.Repeat([]byte("n"), 1<<20), 0)
	off := 40 + 16
	var h []byte
	for _, v := range []uint32{0xd00dfeed, uint32(off + len(st) + len(strs)), uint32(off), uint32(off + len(st)), 40, 17, 16, 0, uint32(len(strs)), uint32(len(st))} {
		h = be.AppendUint32(h, v)
	}
	return bytes.Join([][]byte{h, make([]byte, 16), st, strs}, nil)
}

// badInputs writes the files the table needs into dir and returns the rows.
func badInputs(t *testing.T, dir string) []badInput {
	t.Helper()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// $DIR/vmlinuz is a link, as /boot/vmlinuz often is: messages name
	// the resolved file.
	os.Mkdir(filepath.Join(dir, "boot"), 0o755)
	write("boot/vmlinuz-6.1", read(kernelFile(t)))
	os.Symlink("boot/vmlinuz-6.1", filepath.Join(dir, "vmlinuz"))
	write("empty.img", nil)
	write("random.bin", bytes.Repeat([]byte{0x5a, 0xa5, 0x17}, 4096))
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	hdr := read("../../arm64/testdata/deb61-arm64-Image-header.bin")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(hdr)
	zw.Close()
	write("Image.gz", gz.Bytes())
	write("Image", append(hdr, make([]byte, 1<<20)...))
	write("bomb.dtb", propBombDTB())
	// Appraisal inputs: a "kernel" signed with SHA-1 by evmctl, a keylime
	// policy that excludes everything, a sha1sum allowlist.
	hello := read("../../appraise/testdata/data/hello.txt")
	write("signed-sha1", hello)
	write("signed-sha1.sig", read("../../appraise/testdata/evmctl/hello.txt.rsa.sha1.sig"))
	write("exclude-all.json", []byte(`{"meta": {"version": 1}, "digests": {}, "excludes": ["", "/.*"]}`))
	write("other.sha256", []byte(strings.Repeat("0", 64)+"  /boot/other\n"))
	write("garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))

	dry := []string{"--dry-run", "--memmap", memmap, "--ima-log", imaList, "--arch", "amd64"}
	l := func(kernel string, extra ...string) []string {
		return append(append([]string{"-l", kernel}, dry...), extra...)
	}
	arm := func(kernel string, extra ...string) []string {
		return append([]string{"-l", kernel, "--dry-run", "--arch", "arm64", "--ima-log", imaList}, extra...)
	}
	key := "$REPO/appraise/testdata/openssl/rsa.pem"
	// Crash kernels (-p): the QEMU map with a 16 MiB "Crash kernel"
	// reservation, and kernels that cannot run as crash kernels.
	iomem := string(read(memmap))
	write("iomem-crash16m", []byte(strings.Replace(iomem, "  20eb1000-213fffff : Kernel bss\n", "  20eb1000-213fffff : Kernel bss\n  3e000000-3effffff : Crash kernel\n", 1)))
	k := read(kernelFile(t))
	k[0x234] = 0
	write("vmlinuz-fixed", k)
	k = read(kernelFile(t))
	binary.LittleEndian.PutUint16(k[0x206:], 0x020b)
	write("vmlinuz-2.11", k)
	crash := func(kernel, iomem string) []string {
		return []string{"-s", "-p", kernel, "--dry-run", "--memmap", iomem}
	}
	return []badInput{
		{"kernel is /dev/zero", "7", l("/dev/zero"), 1, "kernel /dev/zero: not a regular file (a character device)"},
		{"--initrd is /dev/zero", "7", l("$DIR/vmlinuz", "--initrd", "/dev/zero"), 1, "initrd /dev/zero: not a regular file"},
		{"--dtb is /dev/zero", "7", arm("$DIR/Image", "--dtb", "/dev/zero"), 1, "device tree /dev/zero: not a regular file"},
		{"--ima-log is /dev/zero", "7", []string{"-l", "$DIR/vmlinuz", "--dry-run", "--memmap", memmap, "--arch", "amd64", "--ima-log", "/dev/zero"}, 1, "IMA list /dev/zero: not a regular file"},
		{"--key is /dev/zero", "7", l("$DIR/vmlinuz", "--appraise", "enforce", "--key", "/dev/zero"), 1, "certificate /dev/zero: not a regular file"},
		{"--allowlist is /dev/zero", "7", l("$DIR/vmlinuz", "--appraise", "enforce", "--allowlist", "/dev/zero"), 1, "allowlist /dev/zero: not a regular file"},
		{"--memmap is /dev/zero", "7", []string{"-l", "$DIR/vmlinuz", "--dry-run", "--memmap", "/dev/zero", "--arch", "amd64", "--no-ima"}, 1, "memory map /dev/zero: not a regular file"},
		{"kernel is a directory", "7", l("$DIR/adir"), 1, "kernel $DIR/adir: not a regular file (a directory)"},
		{"kernel is a FIFO", "7", l("$DIR/fifo"), 1, "kernel $DIR/fifo: not a regular file (a named pipe)"},
		{"kernel does not exist", "", l("$DIR/missing"), 1, "$DIR/missing"},
		{"kernel is not a kernel", "", l("$DIR/random.bin"), 1, "not a bzImage"},
		{"initrd is empty", "", l("$DIR/vmlinuz", "--initrd", "$DIR/empty.img"), 1, "initrd $DIR/empty.img is empty"},
		{"arm64 Image.gz of a bare 64-byte header (truncated)", "7", arm("$DIR/Image.gz", "--dtb", "$REPO/fdt/testdata/dtc-board.dtb"), 1, "truncated Image"},
		{"DTB: 87,375 properties naming one 1 MiB string", "7", arm("$DIR/Image", "--dtb", "$DIR/bomb.dtb"), 1, "longer than 255 bytes"},
		{"kernel covered only by keylime excludes (enforce)", "4", l("$DIR/vmlinuz", "--appraise", "enforce", "--allowlist", "$DIR/exclude-all.json"), 1, "path not in allowlist"},
		{"kernel not in the allowlist (enforce)", "", l("$DIR/vmlinuz", "--appraise", "enforce", "--allowlist", "$DIR/other.sha256"), 1, "refused"},
		{"kernel signed over SHA-1 (enforce)", "4", l("$DIR/signed-sha1", "--appraise", "enforce", "--key", key), 1, "too weak: signature over a SHA-1 digest"},
		{"--key is not a certificate", "4", l("$DIR/vmlinuz", "--appraise", "enforce", "--key", "$DIR/garbage.pem"), 1, "malformed input: certificate"},
		{"--tpm-device names a missing device", "1", l("$DIR/vmlinuz", "--tpm-device", "/dev/tpmrm9"), 1, "TPM unavailable: stat /dev/tpmrm9: no such file or directory"},
		{"--ima-pcr out of range", "", l("$DIR/vmlinuz", "--ima-pcr", "24"), 2, "PCRs are 0-23"},
		{"-t names a type kexec-tools does not know", "", []string{"-t", "zImage", "-l", "$DIR/vmlinuz", "--dry-run", "--arch", "amd64"}, 2, "-t zImage: unsupported kernel type on amd64"},
		{"-t names another kind of image", "", []string{"-t", "elf-x86_64", "-l", "$DIR/vmlinuz", "--dry-run", "--arch", "amd64"}, 2, "wrong file type"},
		{"-p: no crash kernel region reserved", "", []string{"-p", "$DIR/vmlinuz", "--dry-run", "--memmap", memmap}, 1, "no crash kernel region reserved (boot with crashkernel=SIZE)"},
		{"-p: the crash kernel does not fit", "", crash("$DIR/vmlinuz", "$DIR/iomem-crash16m"), 1, "the crash kernel does not fit in the crash kernel region"},
		{"-p: kernel not relocatable", "", crash("$DIR/vmlinuz-fixed", "$DIR/iomem-crash16m"), 1, "is not relocatable"},
		{"-p: boot protocol 2.11", "", crash("$DIR/vmlinuz-2.11", "$DIR/iomem-crash16m"), 1, "older than 2.12"},
		{"--load-preserve-context", "", []string{"--load-preserve-context", "$DIR/vmlinuz"}, 2, "KEXEC_PRESERVE_CONTEXT"},
		{"--real-mode", "", []string{"-l", "$DIR/vmlinuz", "--real-mode"}, 2, "real mode"},
		{"--append when nothing is loaded", "", []string{"-e", "--append", "quiet"}, 2, "--append applies to a kernel being loaded"},
	}
}

// TestBadInputs runs every bad input of the table through the command
// (dry runs only: nothing here can load or reboot), checks the exit code
// and message, and compares docs/bad-inputs.md with the table (go test
// -run TestBadInputs -update rewrites it).
func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rows := badInputs(t, dir)
	sub := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "$DIR", dir), "$REPO", repo)
	}
	unsub := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, dir, "$DIR"), repo, "$REPO")
	}
	var doc strings.Builder
	doc.WriteString(docHeader)
	doc.WriteString("| bad input | issue 11 finding | command | exit | message (stderr) |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		args := make([]string, len(r.args))
		for i, a := range r.args {
			args[i] = sub(a)
		}
		code, stdout, stderr := runCLI(args...)
		msg := strings.TrimSpace(stderr)
		if code != r.code || !strings.Contains(msg, sub(r.must)) || stdout != "" {
			t.Errorf("%s: gokexec %v: exit %d, stderr %q, stdout %d bytes; want exit %d, a message containing %q", r.what, args, code, msg, len(stdout), r.code, sub(r.must))
		}
		if strings.Count(msg, "\n") != 0 {
			t.Errorf("%s: message is not one line: %q", r.what, msg)
		}
		f := r.finding
		if f == "" {
			f = "—"
		}
		shown := strings.Join(r.args, " ")
		shown = strings.ReplaceAll(shown, memmap, "$MEMMAP")
		shown = strings.ReplaceAll(shown, imaList, "$IMALIST")
		fmt.Fprintf(&doc, "| %s | %s | `gokexec %s` | %d | `%s` |\n", r.what, f, shown, code, strings.ReplaceAll(unsub(msg), "|", "\\|"))
	}
	doc.WriteString(docFooter)
	if *update {
		if err := os.WriteFile(badInputsDoc, []byte(doc.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(badInputsDoc)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/gokexec -run TestBadInputs -update)", err)
	}
	if string(have) != doc.String() {
		t.Fatalf("%s is out of date: run go test ./cmd/gokexec -run TestBadInputs -update\n--- want\n%s", badInputsDoc, doc.String())
	}
}

const docHeader = `# Bad inputs and what gokexec says

GENERATED by ` + "`TestBadInputs`" + ` in cmd/gokexec/badinputs_test.go — do not edit by
hand; run ` + "`go test ./cmd/gokexec -run TestBadInputs -update`" + ` after a change.

Every row is run by the test as a dry run (` + "`--dry-run`" + `: nothing is loaded
and nothing reboots) and must give the exit code and the one-line message
shown. ` + "`$DIR`" + ` is the test's scratch directory (` + "`$DIR/vmlinuz`" + ` a link to a
stand-in Debian 6.1 bzImage: paths are resolved, so messages name the link's
target), ` + "`$REPO`" + ` the repository, ` + "`$MEMMAP`" + ` and ` + "`$IMALIST`" + ` the committed
QEMU memory map and Debian 6.1 IMA capture. Exit 2 is a usage error, exit 1
any other refusal.

`

const docFooter = `
## Bounds

Every file gokexec reads must be a regular file and is read through one
descriptor, at most this many bytes (` + "`kexec/input.go`" + `); a larger file is
refused before it is read whole:

| input | bound |
|---|---|
| kernel | 512 MiB (an arm64 Image.gz also at most 256 MiB decompressed) |
| ` + "`--initrd`" + ` | 2 GiB |
| ` + "`--dtb`" + `, /sys/firmware/fdt | 8 MiB |
| ` + "`--ima-log`" + `, securityfs list | 1 GiB |
| ` + "`--key`" + ` | 1 MiB |
| ` + "`--allowlist`" + ` | 256 MiB |
| FILE.sig | 64 KiB + 16 |
| ` + "`--memmap`" + ` (iomem file) | 16 MiB; each sysfs memmap value 64 KiB |
| state.json / handover.bin | 64 MiB / 1 GiB |
| /proc/kallsyms | 1 GiB, lines of 4 KiB |

procfs, sysfs and securityfs files are regular files whose stat size is 0
or 4096; the bound holds on the bytes actually read. FDT property names are
at most 255 bytes (the Devicetree Specification allows 31; Linux bindings
sometimes exceed it, hence the margin) and are stored once per strings-block
offset.

## What -e can and cannot tell about the loaded image

The state in /run/gokexec (0700, owned by the loading user, files 0600,
written with openat/O_NOFOLLOW/O_EXCL and renamed into place) is bound to the
boot it was made in (boot_id) and to the image it loaded. -e refuses with
"the recorded gokexec load is not what is loaded now" when:

- the state comes from another boot;
- /sys/kernel/kexec_loaded is 0 (something unloaded the image);
- the kernel's IMA list holds more kexec-cmdline entries than right after
  gokexec's load: another tool used kexec_file_load (only when the IMA
  policy measures KEXEC_CMDLINE, which the kernel's own critical rules do on
  most distributions' policies; without such a rule this is not visible);
- kernel, initrd or DTB no longer hash to the recorded digests. A kept
  file that is still the one the load left there (same device, inode,
  size, modification and change time, recorded in state.json) is not
  hashed again; any write to it moves its change time, and it is then
  hashed and, if it changed, refused.

The kernel offers no way to read back what a kexec_load put into it, so a
kexec_load by another tool after gokexec's cannot be seen. For a
kexec_load plan, -e then re-loads from the verified files, so what boots is
what gokexec appraised and measured (the other tool's image is replaced).
A kexec_file_load plan is re-loaded from the verified files at -e only on
kernels that hand the list over themselves (loader/refresh.go); elsewhere
such a foreign kexec_load would boot an image gokexec never saw.
`

// Issue 11, finding 1: -e says when this machine has no TPM or the IMA
// hand-over was left out, without -d.
func TestReportFinalizeSaysWhatWasLeftOut(t *testing.T) {
	var b bytes.Buffer
	reportFinalize(&loader.Report{NoTPM: true, TPM: loader.NoTPM, Entries: make([]ima.Entry, 5)}, false, &b)
	if !strings.Contains(b.String(), "no TPM") || !strings.Contains(b.String(), "5 entries") || !strings.Contains(b.String(), "no PCR") {
		t.Errorf("no TPM: %q", b.String())
	}
	b.Reset()
	reportFinalize(&loader.Report{NoIMA: true}, false, &b)
	if !strings.Contains(b.String(), "--no-ima") {
		t.Errorf("no IMA: %q", b.String())
	}
	b.Reset()
	reportFinalize(&loader.Report{TPM: "/dev/tpmrm0", Extended: true, Entries: make([]ima.Entry, 5)}, false, &b)
	if b.Len() != 0 {
		t.Errorf("a normal finalize printed %q without -d", b.String())
	}
}
