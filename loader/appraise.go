package loader

import (
	"crypto"

	"github.com/gokexec/gokexec/appraise"
)

// Appraisal is the outcome for one input, recorded in the state and shown
// by a dry run.
type Appraisal struct {
	Path      string `json:"path"`
	Pass      bool   `json:"pass"`
	Method    string `json:"method,omitempty"`
	Reason    string `json:"reason"`
	Signature []byte `json:"signature,omitempty"` // the verified IMA signature, for the ima-sig entry
}

// appraiseBytes appraises the bytes that were read for the input named
// name, with its signature sig (nil: none).
func appraiseBytes(p appraise.Policy, name string, data, sig []byte) (Appraisal, error) {
	digests := map[crypto.Hash][]byte{}
	for _, h := range append(p.Hashes(sig), crypto.SHA256) {
		if !h.Available() {
			continue
		}
		hh := h.New()
		hh.Write(data)
		digests[h] = hh.Sum(nil)
	}
	d := p.Decide(appraise.File{Path: name, Digests: digests, Signature: sig})
	a := Appraisal{Path: name, Pass: d.Pass, Method: d.Method, Reason: d.Reason}
	if d.Pass && d.Method == "signature" {
		a.Signature = sig
	}
	return a, d.Error()
}
