package segment

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// maxMapEntries bounds what a parser accepts; real maps have tens of entries.
const maxMapEntries = 4096

// ParseSysfsMemmap reads a /sys/firmware/memmap tree: one directory per entry
// holding `start` and `end` (inclusive, hex) and `type`. This is the firmware's
// map as it was at boot, which is what the next kernel must be told.
func ParseSysfsMemmap(fsys fs.FS) (Map, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMap, err)
	}
	var m Map
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if len(m) >= maxMapEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadMap, maxMapEntries)
		}
		read := func(name string) (string, error) {
			b, err := fs.ReadFile(fsys, path.Join(e.Name(), name))
			if err != nil {
				return "", fmt.Errorf("%w: entry %s: %w", ErrBadMap, e.Name(), err)
			}
			return strings.TrimSpace(string(b)), nil
		}
		ss, err := read("start")
		if err != nil {
			return nil, err
		}
		es, err := read("end")
		if err != nil {
			return nil, err
		}
		ts, err := read("type")
		if err != nil {
			return nil, err
		}
		start, err1 := strconv.ParseUint(strings.TrimPrefix(ss, "0x"), 16, 64)
		last, err2 := strconv.ParseUint(strings.TrimPrefix(es, "0x"), 16, 64)
		if err1 != nil || err2 != nil || last < start {
			return nil, fmt.Errorf("%w: entry %s: bad range %q-%q", ErrBadMap, e.Name(), ss, es)
		}
		if last == ^uint64(0) {
			return nil, fmt.Errorf("%w: entry %s: range ends at the top of the address space", ErrBadMap, e.Name())
		}
		m = append(m, Region{Range{start, last + 1}, TypeFromName(ts)})
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: no entries", ErrBadMap)
	}
	return m.Normalize()
}

// ParseIomemUsable is ParseIomem for placing a loader's segments: the
// nested "reserved" entries under System RAM, at any depth, are carved out
// of it as Reserved. On arm64 the kernel lists there every memblock
// reservation it made at boot, among them what the firmware handed over
// and the next kernel still reads: under UEFI the memory attributes table,
// the memreserve list, the TPM event log and the UEFI memory map. A
// kexec_load segment over one of them corrupts it (seen under AAVMF: the
// second kernel found a garbled memory attributes table); kexec-tools
// leaves these ranges out on arm64 too. A crash dump's view of RAM keeps
// them (ParseIomem).
func ParseIomemUsable(r io.Reader) (Map, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<24))
	if err != nil {
		return nil, fmt.Errorf("%w: iomem: %w", ErrBadMap, err)
	}
	m, err := ParseIomem(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var cut []Range
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		t := sc.Text()
		if t == "" || (t[0] != ' ' && t[0] != '\t') {
			continue
		}
		rng, name, ok := strings.Cut(strings.TrimSpace(t), " : ")
		if !ok || (strings.TrimSpace(name) != "reserved" && strings.TrimSpace(name) != "Reserved") {
			continue
		}
		ss, es, ok := strings.Cut(rng, "-")
		start, err1 := strconv.ParseUint(ss, 16, 64)
		last, err2 := strconv.ParseUint(es, 16, 64)
		if !ok || err1 != nil || err2 != nil || last < start || last == ^uint64(0) {
			return nil, fmt.Errorf("%w: iomem: bad nested range %q", ErrBadMap, rng)
		}
		cut = append(cut, Range{start, last + 1})
	}
	if len(cut) == 0 {
		return m, nil
	}
	var out Map
	for _, r := range m {
		if r.Type != TypeRAM {
			out = append(out, r)
			continue
		}
		for _, f := range Subtract([]Range{r.Range}, cut) {
			out = append(out, Region{f, TypeRAM})
		}
		for _, c := range cut {
			if c.Overlaps(r.Range) {
				out = append(out, Region{Range{max(c.Start, r.Start), min(c.End, r.End)}, TypeReserved})
			}
		}
	}
	return out.Normalize()
}

// ParseIomem reads the top level of /proc/iomem ("start-end : name", ends
// inclusive). Nested lines (indented) describe users of a range and are
// skipped. A file read without privilege shows all-zero addresses; that is
// reported as an error rather than treated as an empty map.
func ParseIomem(r io.Reader) (Map, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var m Map
	allZero := true
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		if t == "" || t[0] == ' ' || t[0] == '\t' {
			continue
		}
		rng, name, ok := strings.Cut(t, " : ")
		if !ok {
			return nil, fmt.Errorf("%w: iomem line %d: %q has no \" : \"", ErrBadMap, line, t)
		}
		ss, es, ok := strings.Cut(strings.TrimSpace(rng), "-")
		if !ok {
			return nil, fmt.Errorf("%w: iomem line %d: %q is not start-end", ErrBadMap, line, rng)
		}
		start, err1 := strconv.ParseUint(ss, 16, 64)
		last, err2 := strconv.ParseUint(es, 16, 64)
		if err1 != nil || err2 != nil || last < start {
			return nil, fmt.Errorf("%w: iomem line %d: bad range %q", ErrBadMap, line, rng)
		}
		if start != 0 || last != 0 {
			allZero = false
		}
		name = strings.TrimSpace(name)
		typ := TypeReserved
		switch name {
		case "System RAM":
			typ = TypeRAM
		case "ACPI Tables":
			typ = TypeACPI
		case "ACPI Non-volatile Storage":
			typ = TypeNVS
		case "Reserved", "reserved":
			typ = TypeReserved
		default:
			// PCI windows, device MMIO, ROMs: not memory for a loader.
			continue
		}
		if last == ^uint64(0) {
			continue
		}
		if len(m) >= maxMapEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadMap, maxMapEntries)
		}
		m = append(m, Region{Range{start, last + 1}, typ})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: iomem: %w", ErrBadMap, err)
	}
	if allZero && line > 0 {
		return nil, fmt.Errorf("%w: iomem shows all-zero addresses (read it as root)", ErrBadMap)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: iomem has no memory entries", ErrBadMap)
	}
	return m.Normalize()
}

// FormatSysfs renders a map as text lines "start end type" for humans and tests.
func (m Map) String() string {
	var b bytes.Buffer
	for _, r := range m {
		fmt.Fprintf(&b, "%#016x-%#016x %s\n", r.Start, r.End-1, r.Type)
	}
	return b.String()
}
