package kexec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
		m, err := segment.ParseSysfsMemmap(boundedFS{os.DirFS(path), path, 64 << 10})
		if err != nil {
			return nil, fmt.Errorf("memory map %s: %w", path, err)
		}
		return m, nil
	}
	b, err := ReadInput("memory map", path, MaxMemmapBytes)
	if err != nil {
		return nil, err
	}
	m, err := segment.ParseIomemUsable(bytes.NewReader(b))
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
		b, err := ReadInput("IMA list", p, MaxIMAListBytes)
		if err == nil {
			return b, p, nil
		}
		if path != "" || !errors.Is(err, fs.ErrNotExist) {
			return nil, p, err
		}
	}
	return nil, "", ErrNoIMA
}

// ACPIRSDP returns the ACPI RSDP address an EFI-booted system recorded in
// /sys/firmware/efi/systab, or 0 on a BIOS system (where the next kernel
// finds the RSDP by scanning low memory).
func ACPIRSDP() uint64 {
	b, err := readSmall(EFISystab)
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
	b, err := ReadInput("the running command line", ProcCmdline, MaxSmallBytes)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n\x00 "), nil
}

// KallsymsFacts are what /proc/kallsyms says about the running kernel's
// IMA kexec support. Symbols are looked up by name only: the addresses are
// zero for an unprivileged reader, and names are what tell kernels apart
// (never their version, which distributions backport against).
type KallsymsFacts struct {
	// HandsOver: CONFIG_IMA_KEXEC, the kernel can carry its list itself on
	// kexec_file_load (ima_add_kexec_buffer).
	HandsOver bool
	// MeasuresAtExec: the kernel has the kexec-execute reboot notifier of
	// about 6.15 and later (ima_update_kexec_buffer, or
	// ima_measure_kexec_event, which measures the kexec_execute
	// critical-data entry in it). Such a kernel adds an entry to its list
	// after any user-space snapshot taken before the reboot, for
	// kexec_load images too (DESIGN §3.3.1).
	MeasuresAtExec bool
}

// Kallsyms symbol names that decide KallsymsFacts.
const (
	SymAddKexecBuffer     = "ima_add_kexec_buffer"
	SymUpdateKexecBuffer  = "ima_update_kexec_buffer"
	SymMeasureKexecEvent  = "ima_measure_kexec_event"
	maxKallsymsLineBytes  = 1 << 12
	maxKallsymsTotalBytes = 1 << 30
)

// ParseKallsyms scans a /proc/kallsyms-format stream ("ADDR TYPE NAME
// [MODULE]" lines) for the symbols of KallsymsFacts. Lines longer than
// 4 KiB and streams over 1 GiB are refused.
//
// The scan ends at the built-in kernel's end of text, the _etext line:
// the table lists the built-in symbols in address order, and the symbols
// of KallsymsFacts are functions of built-in, non-init code (IMA is never
// a module), so none can follow it; the data, init and module symbols
// that do (under emulation, half the time of reading the table) are not
// read. A table without _etext is read to its end.
func ParseKallsyms(r io.Reader) (KallsymsFacts, error) {
	var f KallsymsFacts
	err := scanKallsyms(r, imaPrefix, textEnd, func(_, name []byte) {
		switch string(name) {
		case SymAddKexecBuffer:
			f.HandsOver = true
		case SymUpdateKexecBuffer, SymMeasureKexecEvent:
			f.MeasuresAtExec = true
		}
	})
	return f, err
}

// imaPrefix starts the name of every symbol KallsymsFacts looks for.
var imaPrefix = []byte("ima_")

// kallsymsReadSize is the size asked of each read of kallsyms (the line
// scanner's own buffer is 4 KiB). Linux hands out about a page per read
// of /proc/kallsyms whatever is asked; a tree's copy or a kernel that
// fills larger reads takes fewer calls.
const kallsymsReadSize = 256 << 10

// textEnd ends the built-in kernel's text in kallsyms ("ADDR T _etext").
var textEnd = []byte(" _etext")

// scanKallsyms calls fn with the type and name of every built-in symbol
// whose name starts with prefix (a module's symbols carry a fourth field,
// "[module]", and IMA is never a module), within the bounds of
// ParseKallsyms. Lines without prefix anywhere are not split into fields.
// A line ending in stop (if not nil) ends the scan.
func scanKallsyms(r io.Reader, prefix, stop []byte, fn func(typ, name []byte)) error {
	sc := bufio.NewScanner(bufio.NewReaderSize(io.LimitReader(r, maxKallsymsTotalBytes+1), kallsymsReadSize))
	sc.Buffer(make([]byte, 0, maxKallsymsLineBytes), maxKallsymsLineBytes)
	var total int64
	for sc.Scan() {
		line := sc.Bytes()
		total += int64(len(line)) + 1
		if total > maxKallsymsTotalBytes {
			return fmt.Errorf("kallsyms: %w: more than %d bytes", ErrTooLarge, maxKallsymsTotalBytes)
		}
		if stop != nil && bytes.HasSuffix(line, stop) {
			return nil
		}
		if !bytes.Contains(line, prefix) {
			continue
		}
		var fields [4][]byte
		n := 0
		for rest := line; n < 4; n++ {
			rest = bytes.TrimLeft(rest, " \t")
			if len(rest) == 0 {
				break
			}
			end := bytes.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			fields[n], rest = rest[:end], rest[end:]
		}
		if n != 3 || !bytes.HasPrefix(fields[2], prefix) {
			continue
		}
		fn(fields[1], fields[2])
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kallsyms: %w", err)
	}
	return nil
}

// ReadKallsyms reads the kernel's facts from root/proc/kallsyms: the
// running kernel's with root "" or "/", a captured host's (capture-host,
// --host) otherwise.
func ReadKallsyms(root string) (KallsymsFacts, error) { return kallsymsIn(sysFiles{root}) }

// KernelHandsOverIMA reports whether the running kernel can hand the IMA
// list over by itself on kexec_file_load (CONFIG_IMA_KEXEC): its symbol
// table then holds ima_add_kexec_buffer.
func KernelHandsOverIMA() (bool, error) {
	f, err := ReadKallsyms("")
	return f.HandsOver, err
}

// KexecLoadDisabled reports sysctl kernel.kexec_load_disabled.
func KexecLoadDisabled() bool { return KexecLoadDisabledAt("") }

// KexecLoadDisabledAt is KexecLoadDisabled of the tree at root ("": this
// system).
func KexecLoadDisabledAt(root string) bool { return kexecLoadDisabledIn(sysFiles{root}) }

func kexecLoadDisabledIn(fl files) bool {
	b, err := fl.readFile("system file", "proc/sys/kernel/kexec_load_disabled", MaxSmallBytes)
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func rootOr(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// HasCapSysBoot reports whether this process holds CAP_SYS_BOOT.
func HasCapSysBoot() bool {
	b, err := readSmall("/proc/self/status")
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
