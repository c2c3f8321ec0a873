package verdict

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"strings"

	"github.com/gokexec/gokexec/ima"
	tcg "github.com/google/go-attestation/attest"
)

// The firmware's TCG event log (binary_bios_measurements) as a source of
// PCRs 0-9 for the boot_aggregate comparison (ima/bootaggregate.go).
// go-attestation parses the log; its events are replayed into PCRs 0-9 of
// every bank the log carries (an EV_NO_ACTION event extends nothing; a
// StartupLocality one sets PCR 0's starting value). Where the evidence
// also holds a value of one of those PCRs (quoted or attested), the log
// must replay to it — go-attestation's own replay checks that — or the
// verdict is a refusal (event_log_mismatch); the log's values fill only
// what the evidence lacks.

// ErrEventLog is wrapped by a log that does not replay to the evidence.
var ErrEventLog = errors.New("the event log does not replay to the PCR values")

const evNoAction = tcg.EventType(0x03)

var tcgHashes = map[tcg.HashAlg]crypto.Hash{tcg.HashSHA1: crypto.SHA1, tcg.HashSHA256: crypto.SHA256, tcg.HashSHA384: crypto.SHA384, tcg.HashSHA512: crypto.SHA512}

// ReplayEventLog parses a TCG event log and returns the values of PCRs
// 0-9 it replays to, per bank.
func ReplayEventLog(log []byte) (*tcg.EventLog, ima.PCRValues, error) {
	el, err := tcg.ParseEventLog(log)
	if err != nil {
		return nil, nil, inputErr("event log", err)
	}
	out := ima.PCRValues{}
	for _, alg := range el.Algs {
		h, ok := tcgHashes[alg]
		if !ok {
			continue
		}
		vals := map[uint32][]byte{}
		for p := uint32(0); p <= 9; p++ {
			vals[p] = make([]byte, h.Size())
		}
		for _, e := range el.Events(alg) {
			if e.Index < 0 || e.Index > 9 {
				continue
			}
			if e.Type == evNoAction {
				if e.Index == 0 && len(e.Data) == 17 && strings.HasPrefix(string(e.Data), "StartupLocality") {
					vals[0][h.Size()-1] = e.Data[16]
				}
				continue
			}
			if len(e.Digest) != h.Size() {
				return nil, nil, inputErr("event log", fmt.Errorf("an event of PCR %d without a %v digest", e.Index, h))
			}
			d := h.New()
			d.Write(vals[uint32(e.Index)])
			d.Write(e.Digest)
			vals[uint32(e.Index)] = d.Sum(nil)
		}
		out[h] = vals
	}
	if len(out) == 0 {
		return nil, nil, inputErr("event log", fmt.Errorf("no bank this verifier replays (%v)", el.Algs))
	}
	return el, out, nil
}

// firmwareValues merges the evidence's PCRs 0-9 with the log's: the log
// must replay to every one the evidence holds.
func firmwareValues(log []byte, values ima.PCRValues) (ima.PCRValues, error) {
	el, replayed, err := ReplayEventLog(log)
	if err != nil {
		return nil, err
	}
	fw := ima.PCRValues{}
	for h, rv := range replayed {
		var check []tcg.PCR
		fw[h] = map[uint32][]byte{}
		for p, v := range rv {
			q, ok := values[h][p]
			switch {
			case !ok:
				fw[h][p] = v
			case !bytes.Equal(q, v):
				return nil, fmt.Errorf("%w: %s PCR %d", ErrEventLog, ima.HashName(h), p)
			default:
				fw[h][p] = q
				check = append(check, tcg.PCR{Index: int(p), Digest: q, DigestAlg: h})
			}
		}
		if len(check) > 0 {
			if _, err := el.Verify(check); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrEventLog, err)
			}
		}
	}
	for h, v := range values {
		if fw[h] == nil {
			fw[h] = v
		}
	}
	return fw, nil
}
