package loader

import (
	"crypto"
	"encoding/hex"
	"fmt"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/plan"
)

// Marker names, the same the kernel (6.16+) uses for its own critical-data
// events, so one verifier rule serves both.
const (
	MarkerLoad    = "kexec_load"
	MarkerExecute = "kexec_execute"
	// CmdlineEvent names the command line's ima-buf entry, as the kernel's
	// KEXEC_CMDLINE hook does.
	CmdlineEvent = "kexec-cmdline"
)

// DefaultPCR is where IMA (and gokexec) extends measurements.
const DefaultPCR = 10

// entryHash is the digest algorithm of the loader's own entries' d-ng fields.
const entryHash = crypto.SHA256

// measurements returns the entries describing what a plan loads: one per
// input file (kernel, initrd, the DTB the plan started from; ima-ng, or
// ima-sig when a signature was appraised) and the command line as an
// ima-buf entry.
func measurements(p *plan.Plan, pcr uint32, sigs map[string][]byte) ([]ima.Entry, error) {
	var out []ima.Entry
	files := []*plan.Input{&p.Kernel}
	if p.Initrd != nil {
		files = append(files, p.Initrd)
	}
	if p.DTBInput != nil {
		files = append(files, p.DTBInput)
	}
	for _, in := range files {
		d, err := hex.DecodeString(in.SHA256)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("measure %s: bad recorded digest %q", in.Path, in.SHA256)
		}
		tmpl := "ima-ng"
		// The appraiser hands over only a signature made over a sha256
		// digest (the d-ng digest), so the entry is self-consistent.
		sig := sigs[in.Path]
		if sig != nil {
			tmpl = "ima-sig"
		}
		e, err := ima.NewFileEntry(pcr, tmpl, in.Path, d, entryHash, sig)
		if err != nil {
			return nil, fmt.Errorf("measure %s: %w", in.Path, err)
		}
		out = append(out, e)
	}
	out = append(out, ima.NewBufEntry(pcr, CmdlineEvent, []byte(p.Cmdline), entryHash))
	return out, nil
}
