package loader

// Appraiser decides whether an input may be loaded. Package
// loader/appraisal makes one from an appraise.Policy; the loader itself
// links no certificate or signature code.
type Appraiser interface {
	// Appraise appraises data, the input named name with its IMA
	// signature sig (nil: none). An error refuses the input; a nil error
	// with Pass false lets it through with a warning (log mode).
	Appraise(name string, data, sig []byte) (Appraisal, error)
}

// Appraisal is the outcome for one input, recorded in the state and shown
// by a dry run.
type Appraisal struct {
	Path   string `json:"path"`
	Pass   bool   `json:"pass"`
	Method string `json:"method,omitempty"`
	Reason string `json:"reason"`
	// Signature is the verified IMA signature when it can stand in an
	// ima-sig entry of the loader's (made over a sha256 digest); nil
	// otherwise.
	Signature []byte `json:"signature,omitempty"`
}
