package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/gokexec/gokexec/plan"
)

// kexec-tools' image types (its file_type tables, kexec/arch/x86_64 and
// kexec/arch/arm64): -t names one of them. gokexec loads the kinds in
// typeKinds and refuses the others by name.
var kexecTypes = map[string][]string{
	plan.ArchAMD64: {"multiboot2-x86", "elf-x86_64", "multiboot-x86", "elf-x86", "bzImage64", "bzImage", "beoboot-x86", "nbi-x86", "uki"},
	plan.ArchARM64: {"vmlinux", "Image", "uImage", "vmlinuz", "uki"},
}

// typeKinds maps the types gokexec loads to the kind of file they are.
var typeKinds = map[string]string{
	"bzImage": "bzImage", "bzImage64": "bzImage", "elf-x86_64": "elf64",
	"Image": "arm64 Image", "vmlinuz": "zboot", "vmlinux": "elf64",
}

// checkType is -t/--type, checked as kexec-tools checks it: a name its
// architecture does not know is "unsupported", a file of another kind is
// "wrong file type". The kind is read from the image's magic numbers
// only; the loader parses the image itself.
func (c *cli) checkType(kernel string) error {
	if c.typ == "" {
		return nil
	}
	arch := c.arch
	switch arch {
	case "":
		arch = runtime.GOARCH
	case "x86_64":
		arch = plan.ArchAMD64
	case "aarch64":
		arch = plan.ArchARM64
	}
	known := false
	for _, t := range kexecTypes[arch] {
		known = known || t == c.typ
	}
	if !known {
		return usageErr("-t %s: unsupported kernel type on %s; kexec-tools' types are %s", c.typ, arch, strings.Join(kexecTypes[arch], ", "))
	}
	want, ok := typeKinds[c.typ]
	if !ok {
		return usageErr("-t %s: gokexec does not load this kind of image (it loads %s)", c.typ, strings.Join(loadable(arch), ", "))
	}
	got, err := sniffKind(kernel)
	if err != nil {
		return err
	}
	if got != want {
		return usageErr("-t %s: wrong file type, %s is %s", c.typ, kernel, article(got))
	}
	return nil
}

func loadable(arch string) []string {
	var l []string
	for _, t := range kexecTypes[arch] {
		if _, ok := typeKinds[t]; ok {
			l = append(l, t)
		}
	}
	return l
}

func article(kind string) string {
	if kind == "" {
		return "of no kind gokexec knows"
	}
	if strings.ContainsAny(kind[:1], "aeiouAEIOU") {
		return "an " + kind
	}
	return "a " + kind
}

// sniffKind names the kind of image a file is from its first 4 KiB.
func sniffKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	b = b[:n]
	switch {
	case len(b) >= 5 && bytes.Equal(b[:4], []byte("\x7fELF")) && b[4] == 2:
		return "elf64", nil
	case len(b) >= 0x206 && bytes.Equal(b[0x202:0x206], []byte("HdrS")):
		return "bzImage", nil
	case len(b) >= 8 && bytes.Equal(b[:2], []byte("MZ")) && bytes.Equal(b[4:8], []byte("zimg")):
		return "zboot", nil
	case len(b) >= 0x3c && binary.LittleEndian.Uint32(b[0x38:]) == 0x644d5241: // "ARM\x64"
		return "arm64 Image", nil
	}
	return "", nil
}
