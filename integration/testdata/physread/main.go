// Command physread copies a range of physical memory out of /proc/kcore
// into a file, for a QEMU guest to report what a previous kernel left in a
// reserved region. Kernels built with STRICT_DEVMEM refuse /dev/mem for
// RAM; /proc/kcore gives each RAM segment's physical address in its ELF
// program header. It refuses to run unless it is inside the test guest
// (the agent is PID 1 there and sets no other process up).
//
// Usage: physread ADDR SIZE OUT (ADDR and SIZE in C syntax, e.g. 0x4000)
//
//	physread ima OUT   reads the range /chosen/linux,ima-kexec-buffer names
//	                   in the running kernel's device tree (2 address and
//	                   2 size cells, as on arm64)
package main

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "ima" {
		os.Args = append(os.Args, "")
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: physread ADDR SIZE OUT")
		os.Exit(2)
	}
	if os.Getppid() != 1 {
		fmt.Fprintln(os.Stderr, "physread: only runs under the test guest's agent (PID 1)")
		os.Exit(2)
	}
	var addr, size uint64
	var err1, err2 error
	if os.Args[1] == "ima" {
		b, err := os.ReadFile("/sys/firmware/devicetree/base/chosen/linux,ima-kexec-buffer")
		if err != nil || len(b) != 16 {
			fmt.Fprintf(os.Stderr, "physread: linux,ima-kexec-buffer: %v (%d bytes)\n", err, len(b))
			os.Exit(1)
		}
		addr, size = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
		os.Args[3] = os.Args[2]
	} else {
		addr, err1 = strconv.ParseUint(os.Args[1], 0, 64)
		size, err2 = strconv.ParseUint(os.Args[2], 0, 64)
	}
	if err1 != nil || err2 != nil || size == 0 || size > 64<<20 {
		fmt.Fprintln(os.Stderr, "physread: bad ADDR or SIZE")
		os.Exit(2)
	}
	f, err := elf.Open("/proc/kcore")
	if err != nil {
		fmt.Fprintln(os.Stderr, "physread:", err)
		os.Exit(1)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Paddr == ^uint64(0) || addr < p.Paddr || addr+size > p.Paddr+p.Memsz {
			continue
		}
		buf := make([]byte, size)
		if _, err := p.ReadAt(buf, int64(addr-p.Paddr)); err != nil {
			fmt.Fprintln(os.Stderr, "physread:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(os.Args[3], buf, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "physread:", err)
			os.Exit(1)
		}
		fmt.Printf("read %#x bytes at %#x (kcore segment vaddr %#x)\n", size, addr, p.Vaddr)
		return
	}
	fmt.Fprintf(os.Stderr, "physread: no /proc/kcore RAM segment holds [%#x, +%#x)\n", addr, size)
	os.Exit(1)
}
