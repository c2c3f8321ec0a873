package elfcore

import "testing"

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
			if _, err := Build(h); err != nil {
				t.Fatalf("Build with parsed notes: %v", err)
			}
		}
		_, _ = ParseVMCoreInfo(vmci)
	})
}
