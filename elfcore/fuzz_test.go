package elfcore

import (
	"bytes"
	"debug/elf"
	"testing"
)

func FuzzParseSysfs(f *testing.F) {
	f.Add("3fc1d000\n", "368\n", "2c2a000 1000\n")
	f.Add("0x1000", "", "1 1")
	f.Fuzz(func(t *testing.T, addr, size, vmci string) {
		if n, err := ParseCrashNotes(addr, size); err == nil {
			if n.Addr == 0 || n.Size == 0 || n.Addr+n.Size < n.Addr {
				t.Fatalf("accepted %+v", n)
			}
			h := sample()
			h.CPUNotes = []Note{n}
			if v, err := ParseVMCoreInfo(vmci); err == nil {
				h.VMCoreInfo = v
			}
			b, err := Build(h)
			if err != nil {
				t.Fatalf("Build with parsed notes: %v", err)
			}
			// debug/elf, a second implementation, reads the header back:
			// a core file whose first PT_NOTE is the crash notes parsed.
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("debug/elf refuses the built header: %v", err)
			}
			if f.Type != elf.ET_CORE || len(f.Progs) == 0 {
				t.Fatalf("debug/elf reads type %v with %d program headers", f.Type, len(f.Progs))
			}
			if p := f.Progs[0]; p.Type != elf.PT_NOTE || p.Paddr != n.Addr {
				t.Fatalf("first program header %+v; want the PT_NOTE at %#x", p.ProgHeader, n.Addr)
			}
		}
		_, _ = ParseVMCoreInfo(vmci)
	})
}
