package kexec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gokexec/gokexec/segment"
)

// Paths of the running system's descriptions.
const (
	SysfsMemmap = "/sys/firmware/memmap"
	ProcIomem   = "/proc/iomem"
	IMAList     = "/sys/kernel/security/ima/binary_runtime_measurements"
	IMAListAlt  = "/sys/kernel/security/integrity/ima/binary_runtime_measurements"
	EFISystab   = "/sys/firmware/efi/systab"
	ProcCmdline = "/proc/cmdline"
	SysfsFDT    = "/sys/firmware/fdt"
)

// ReadMemoryMap reads the memory map from path, which may name a
// /sys/firmware/memmap-style directory or an /proc/iomem-style file. An empty
// path tries the firmware map first, then /proc/iomem.
func ReadMemoryMap(path string) (segment.Map, string, error) {
	if path == "" {
		if m, err := readMap(SysfsMemmap); err == nil {
			return m, SysfsMemmap, nil
		}
		path = ProcIomem
	}
	m, err := readMap(path)
	if err != nil {
		return nil, path, err
	}
	return m, path, nil
}

func readMap(path string) (segment.Map, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("memory map %s: %w", path, err)
	}
	if st.IsDir() {
		m, err := segment.ParseSysfsMemmap(os.DirFS(path))
		if err != nil {
			return nil, fmt.Errorf("memory map %s: %w", path, err)
		}
		return m, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("memory map %s: %w", path, err)
	}
	defer f.Close()
	m, err := segment.ParseIomem(f)
	if err != nil {
		return nil, fmt.Errorf("memory map %s: %w", path, err)
	}
	return m, nil
}

// ErrNoIMA says the running kernel exposes no IMA measurement list.
var ErrNoIMA = errors.New("no IMA measurement list (securityfs not mounted or IMA inactive)")

// ReadIMAList reads the running kernel's binary measurement list, or the
// file at path when path is not empty.
func ReadIMAList(path string) ([]byte, string, error) {
	cands := []string{path}
	if path == "" {
		cands = []string{IMAList, IMAListAlt}
	}
	for _, p := range cands {
		b, err := os.ReadFile(p)
		if err == nil {
			return b, p, nil
		}
		if path != "" || !errors.Is(err, fs.ErrNotExist) {
			return nil, p, fmt.Errorf("IMA list %s: %w", p, err)
		}
	}
	return nil, "", ErrNoIMA
}

// ACPIRSDP returns the ACPI RSDP address an EFI-booted system recorded in
// /sys/firmware/efi/systab, or 0 on a BIOS system (where the next kernel
// finds the RSDP by scanning low memory).
func ACPIRSDP() uint64 {
	b, err := os.ReadFile(EFISystab)
	if err != nil {
		return 0
	}
	return parseSystab(string(b))
}

// parseSystab returns ACPI20= (preferred) or ACPI= from an EFI systab file.
func parseSystab(s string) uint64 {
	var acpi uint64
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(v), "0x"), 16, 64)
		if err != nil {
			continue
		}
		switch k {
		case "ACPI20":
			return n
		case "ACPI":
			acpi = n
		}
	}
	return acpi
}

// Cmdline returns the running kernel's command line, for --reuse-cmdline.
func Cmdline() (string, error) {
	b, err := os.ReadFile(ProcCmdline)
	if err != nil {
		return "", fmt.Errorf("reuse-cmdline: %w", err)
	}
	return strings.TrimRight(string(b), "\n\x00 "), nil
}

// KernelHandsOverIMA reports whether the running kernel can hand the IMA
// list over by itself on kexec_file_load (CONFIG_IMA_KEXEC): its symbol
// table then holds ima_add_kexec_buffer.
func KernelHandsOverIMA() (bool, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return false, fmt.Errorf("kallsyms: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sym := []byte(" ima_add_kexec_buffer")
	for sc.Scan() {
		if bytes.HasSuffix(sc.Bytes(), sym) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// KexecLoadDisabled reports sysctl kernel.kexec_load_disabled.
func KexecLoadDisabled() bool {
	b, err := os.ReadFile("/proc/sys/kernel/kexec_load_disabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// HasCapSysBoot reports whether this process holds CAP_SYS_BOOT.
func HasCapSysBoot() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<22) != 0
		}
	}
	return false
}

// IMAXattr returns a file's security.ima extended attribute, or nil when it
// has none.
func IMAXattr(path string) ([]byte, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Getxattr(path, "security.ima", buf)
		switch {
		case err == unix.ERANGE && len(buf) < 1<<16:
			buf = make([]byte, 2*len(buf))
			continue
		case err == unix.ENODATA || err == unix.ENOTSUP || err == unix.EOPNOTSUPP:
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("security.ima of %s: %w", path, err)
		}
		return buf[:n], nil
	}
}
