package loader

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gokexec/gokexec/ima"
)

// mixedLog builds three boots whose sha384 extends alternate between the
// SHA-1-padded and per-bank methods, as Debian 6.1 -> 6.12 -> 6.1 does.
func mixedLog(t *testing.T) ([]ima.Entry, []int) {
	var es []ima.Entry
	var starts []int
	for b := 0; b < 3; b++ {
		starts = append(starts, len(es))
		d := sha256.Sum256([]byte(fmt.Sprint("boot", b)))
		e, err := ima.NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
		for i := 0; i < 4; i++ {
			d := sha256.Sum256([]byte(fmt.Sprint(b, i)))
			e, _ := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/f%d-%d", b, i), d[:], crypto.SHA256, nil)
			es = append(es, e)
		}
	}
	return es, starts
}

func TestPlanBanksMixedMethods(t *testing.T) {
	es, _ := mixedLog(t)
	want := []ima.Method{ima.MethodSHA1Padded, ima.MethodPerBank, ima.MethodSHA1Padded}
	quoted := ima.PCRValues{
		crypto.SHA1:   ima.ReplayBootMethods(es, binary.LittleEndian, crypto.SHA1, []ima.Method{0, 0, 0}),
		crypto.SHA256: ima.ReplayBootMethods(es, binary.LittleEndian, crypto.SHA256, []ima.Method{0, 0, 0}),
		crypto.SHA384: ima.ReplayBootMethods(es, binary.LittleEndian, crypto.SHA384, want),
	}
	plans, kl, err := planBanks(es, quoted, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The pass that replayed also checked and encoded the list.
	if want, err := ima.MarshalKexecBuffer(es, binary.LittleEndian); err != nil || !bytes.Equal(kl.Buffer(), want) {
		t.Fatalf("planBanks' hand-over list differs from MarshalKexecBuffer's (%v)", err)
	}
	if got := current(plans)[crypto.SHA384]; got != ima.MethodSHA1Padded {
		t.Fatalf("running kernel's sha384 method %v", got)
	}
	for _, p := range plans {
		if p.bank == crypto.SHA384 {
			for i := range want {
				if p.methods[i] != want[i] {
					t.Fatalf("sha384 methods %v, want %v", p.methods, want)
				}
			}
		}
	}
	for _, p := range plans {
		if got := ima.ReplayBootMethods(es, binary.LittleEndian, p.bank, p.methods); !reproduces(got, quoted[p.bank]) {
			t.Fatalf("bank %v: the plan planBanks found does not replay", p.bank)
		}
	}
	// A single-boot list takes the one-pass path: uniform methods.
	one := es[:ima.BootStarts(es, binary.LittleEndian)[1]]
	q1 := ima.PCRValues{crypto.SHA1: ima.Replay(one, crypto.SHA1, ima.MethodPerBank), crypto.SHA384: ima.Replay(one, crypto.SHA384, ima.MethodSHA1Padded)}
	if p1, _, err := planBanks(one, q1, nil); err != nil || len(p1) != 2 || p1[1].methods[0] != ima.MethodSHA1Padded {
		t.Fatalf("single boot: %+v %v", p1, err)
	}
	// One flipped PCR value: no plan.
	quoted[crypto.SHA256][10] = make([]byte, 32)
	if _, _, err := planBanks(es, quoted, nil); err == nil {
		t.Fatal("a wrong sha256 PCR was accepted")
	}
}
