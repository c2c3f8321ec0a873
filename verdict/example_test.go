package verdict_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
)

// An attestation server judges a machine's list against the PCR values
// it read at one instant, keeps the checkpoint, and next time reads only
// what the list gained.
func ExampleVerify() {
	agg, _ := ima.NewFileEntry(10, "ima-ng", ima.BootAggregate, make([]byte, 32), crypto.SHA256, nil)
	d := sha256.Sum256([]byte("/usr/bin/true"))
	e, _ := ima.NewFileEntry(10, "ima-ng", "/usr/bin/true", d[:], crypto.SHA256, nil)
	list := []ima.Entry{agg, e}
	raw := ima.AppendList(nil, list, binary.LittleEndian)
	pcrs := ima.PCRValues{crypto.SHA256: ima.Replay(list, crypto.SHA256, ima.MethodPerBank)}

	v, next, err := verdict.Verify(
		verdict.List{RA: bytes.NewReader(raw), Size: int64(len(raw)), Order: binary.LittleEndian},
		verdict.Evidence{Values: pcrs, Reads: ima.ReadsInstant},
		verdict.Options{WantCheckpoint: true})
	if err != nil {
		fmt.Println("bad input:", err)
		return
	}
	fmt.Println(v.Schema, v.Reason, v.Exit, v.Verify.Prefix, next != nil)

	// The list grows; the server resumes from its checkpoint.
	e2, _ := ima.NewFileEntry(10, "ima-ng", "/usr/bin/false", d[:], crypto.SHA256, nil)
	list = append(list, e2)
	raw = ima.AppendList(nil, list, binary.LittleEndian)
	pcrs = ima.PCRValues{crypto.SHA256: ima.Replay(list, crypto.SHA256, ima.MethodPerBank)}
	v, _, _ = verdict.Verify(
		verdict.List{RA: bytes.NewReader(raw), Size: int64(len(raw)), Order: binary.LittleEndian},
		verdict.Evidence{Values: pcrs},
		verdict.Options{Checkpoint: next})
	fmt.Println(v.Reason, v.Checkpoint.Resumed, v.Checkpoint.Read)
	// Output:
	// gokexec/imalog-verdict/1 ok 0 2 true
	// ok true 1
}
