package verdict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ManifestSchema names the fleet manifest format's version
// (docs/verdict-schema.md).
const ManifestSchema = "gokexec/imalog-manifest/1"

// MaxMachines bounds the machines of one manifest.
const MaxMachines = 1 << 20

// Manifest lists the machines of one fleet run.
type Manifest struct {
	Schema   string            `json:"schema"`
	Machines []ManifestMachine `json:"machines"`
}

// ManifestMachine is one machine: its list and what vouches for it.
// Paths are as written (imalog resolves them against the manifest's
// directory).
type ManifestMachine struct {
	Name string `json:"name"`
	List string `json:"list"`
	// PCRs are --pcrs arguments ([BANK,]FILE); with Quote, the quoted
	// values (tpm2_quote -o).
	PCRs  []string       `json:"pcrs,omitempty"`
	Reads string         `json:"reads,omitempty"` // auto (default), instant, per-bank; a quote is instant
	Quote *ManifestQuote `json:"quote,omitempty"`
	// Checkpoint, when set, makes the verification incremental: read
	// from it when it exists, rewritten after the run.
	Checkpoint string `json:"checkpoint,omitempty"`
	ByteOrder  string `json:"byte_order,omitempty"` // native (default), little, big
	Kexec      bool   `json:"kexec,omitempty"`      // the list is a hand-over buffer
	Strict     bool   `json:"strict,omitempty"`
	// AKRestricted refuses an AK not known to be a restricted signing
	// key (as --ak-restricted does for every machine).
	AKRestricted bool `json:"ak_restricted,omitempty"`
	// AllowSHA1 accepts a quote signed with SHA-1 (--allow-sha1).
	AllowSHA1 bool `json:"allow_sha1,omitempty"`
	// EventLog is the machine's firmware event log
	// (binary_bios_measurements, --event-log).
	EventLog string `json:"event_log,omitempty"`
}

// ManifestQuote names a machine's quote files.
type ManifestQuote struct {
	Message   string `json:"message"`
	Signature string `json:"signature"`
	AK        string `json:"ak"`
	Nonce     string `json:"nonce,omitempty"` // hex
}

// ErrManifest is wrapped by every error about a manifest.
var ErrManifest = errors.New("manifest")

// ParseManifest reads a manifest: the schema, no unknown fields, at most
// MaxMachines machines, each with a name (unique) and a list.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if m.Schema != ManifestSchema {
		return nil, fmt.Errorf("%w: schema %q, want %q", ErrManifest, m.Schema, ManifestSchema)
	}
	if len(m.Machines) > MaxMachines {
		return nil, fmt.Errorf("%w: %d machines, at most %d", ErrManifest, len(m.Machines), MaxMachines)
	}
	seen := map[string]bool{}
	for i, mm := range m.Machines {
		if mm.Name == "" || mm.List == "" {
			return nil, fmt.Errorf("%w: machine %d: name and list are required", ErrManifest, i)
		}
		if seen[mm.Name] {
			return nil, fmt.Errorf("%w: machine %q twice", ErrManifest, mm.Name)
		}
		seen[mm.Name] = true
	}
	return &m, nil
}
