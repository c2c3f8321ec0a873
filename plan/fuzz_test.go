package plan

import (
	"encoding/binary"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// FuzzIMAList feeds arbitrary lists to the planner: it must refuse them
// cleanly or hand over exactly what the restoring kernel would accept.
func FuzzIMAList(f *testing.F) {
	raw, _ := list(f, 3)
	f.Add(raw)
	f.Add(raw[:len(raw)-1])
	f.Add([]byte{})
	base := inputs(f, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := *base
		in.IMAList = b
		p, err := Build(&in)
		if err != nil {
			return
		}
		for _, s := range p.Segments {
			if s.Name == "ima" {
				if rep := ima.SimulateRestore(s.Buf, binary.LittleEndian); !rep.OK() {
					t.Fatalf("planned a buffer the kernel would not fully restore: %+v", rep.Problems)
				}
				// What is handed over is the input, byte for byte.
				es, err := ima.ParseList(b, binary.LittleEndian)
				if err != nil {
					t.Fatalf("planned a list ima cannot parse: %v", err)
				}
				requireHandoverBytes(t, s.Buf, b, len(es))
			}
		}
	})
}
