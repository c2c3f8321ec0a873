package main

import (
	"crypto"
	"encoding/hex"
	"errors"
	"slices"

	"github.com/gokexec/gokexec/attest"
	"github.com/gokexec/gokexec/ima"
)

// VerdictSchema names the JSON verdict's version (docs/verdict-schema.md).
// A change that removes or retypes a field, or gives a reason a new
// meaning, bumps the number; new optional fields and reasons do not.
const VerdictSchema = "gokexec/imalog-verdict/1"

// Verdict is what `imalog verify --json` prints with --quote, --checkpoint
// or --machines: one object per list (per machine).
type Verdict struct {
	Schema     string             `json:"schema"`
	Machine    string             `json:"machine,omitempty"`
	List       string             `json:"list"`
	Consistent bool               `json:"consistent"`
	Exit       int                `json:"exit"`
	Reason     string             `json:"reason"`
	Error      string             `json:"error,omitempty"`
	Reads      string             `json:"reads_reason,omitempty"`
	Quote      *QuoteVerdict      `json:"quote,omitempty"`
	Checkpoint *CheckpointVerdict `json:"checkpoint,omitempty"`
	Verify     *ima.VerifyResult  `json:"verify,omitempty"`
	Timeline   *ima.Timeline      `json:"timeline,omitempty"`
}

// QuoteVerdict describes a checked quote.
type QuoteVerdict struct {
	Verified        bool                `json:"verified"`
	Scheme          string              `json:"scheme,omitempty"`
	Hash            string              `json:"hash,omitempty"`
	Nonce           string              `json:"nonce"`
	Selection       map[string][]uint32 `json:"selection,omitempty"`
	PCRDigest       string              `json:"pcr_digest,omitempty"`
	Clock           uint64              `json:"clock"`
	ResetCount      uint32              `json:"reset_count"`
	RestartCount    uint32              `json:"restart_count"`
	Safe            bool                `json:"safe"`
	FirmwareVersion uint64              `json:"firmware_version"`
	Signer          string              `json:"signer,omitempty"`
	AKRestricted    *bool               `json:"ak_restricted,omitempty"`
	Ignored         int                 `json:"ignored_values,omitempty"`
	NotSelected     []uint32            `json:"not_selected,omitempty"`
}

// CheckpointVerdict describes an incremental run.
type CheckpointVerdict struct {
	File    string `json:"file"`
	Resumed bool   `json:"resumed"`           // started from a checkpoint
	From    int    `json:"from"`              // entries the checkpoint had consumed
	Read    int    `json:"read"`              // entries read in this run
	Written bool   `json:"written"`           // a new checkpoint was written
	Restart string `json:"restart,omitempty"` // why a full run was made instead
}

// Reasons: the one word a fleet dashboard groups machines by.
const (
	ReasonOK               = "ok"
	ReasonBadInput         = "bad_input"
	ReasonBadSignature     = "bad_signature"
	ReasonSchemeMismatch   = "scheme_mismatch"
	ReasonWrongNonce       = "wrong_nonce"
	ReasonDigestMismatch   = "digest_mismatch"
	ReasonPCRMissing       = "pcr_missing"
	ReasonPCRNotSelected   = "pcr_not_selected"
	ReasonNotRestricted    = "ak_not_restricted"
	ReasonKeyPolicy        = "key_policy"
	ReasonEventsLost       = "events_lost"
	ReasonListMismatch     = "list_mismatch"
	ReasonCheckpointBroken = "checkpoint_mismatch"
)

// quoteReason maps a refused quote to its reason; ok=false for errors that
// are bad input rather than a refusal.
func quoteReason(err error) (string, bool) {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{attest.ErrBadSignature, ReasonBadSignature},
		{attest.ErrSchemeMismatch, ReasonSchemeMismatch},
		{attest.ErrNonceMismatch, ReasonWrongNonce},
		{attest.ErrDigestMismatch, ReasonDigestMismatch},
		{attest.ErrPCRMissing, ReasonPCRMissing},
		{attest.ErrPCRNotSelected, ReasonPCRNotSelected},
		{attest.ErrNotRestricted, ReasonNotRestricted},
		{attest.ErrKeyPolicy, ReasonKeyPolicy},
	} {
		if errors.Is(err, r.err) {
			return r.reason, true
		}
	}
	return ReasonBadInput, false
}

// listReason is the reason of an ima verification.
func listReason(res ima.VerifyResult) string {
	switch {
	case res.Consistent:
		return ReasonOK
	case res.Timeline.Verdict == ima.VerdictEventsLost:
		return ReasonEventsLost
	}
	return ReasonListMismatch
}

func quoteVerdict(q *attest.Quote, sig *attest.Signature, ak *attest.AK) *QuoteVerdict {
	qv := &QuoteVerdict{Nonce: hex.EncodeToString(q.ExtraData), Selection: map[string][]uint32{},
		PCRDigest: hex.EncodeToString(q.PCRDigest), Clock: q.Clock, ResetCount: q.ResetCount,
		RestartCount: q.RestartCount, Safe: q.Safe, FirmwareVersion: q.FirmwareVersion,
		Signer: hex.EncodeToString(q.Signer)}
	for _, s := range q.Selection {
		n := ima.HashName(s.Bank)
		qv.Selection[n] = append(qv.Selection[n], s.PCRs...)
	}
	if sig != nil {
		qv.Scheme, qv.Hash = attest.SchemeName(sig.Scheme), ima.HashName(sig.Hash)
	}
	if ak != nil && ak.Attributes {
		r := ak.Restricted && ak.Sign
		qv.AKRestricted = &r
	}
	return qv
}

// listPCRs is every PCR the list extends, as a verification saw them.
func listPCRs(res ima.VerifyResult) []uint32 {
	var ps []uint32
	add := func(p uint32) {
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	for _, b := range res.Banks {
		for _, p := range b.PCRs {
			add(p)
		}
		for _, p := range b.Unverified {
			add(p)
		}
	}
	for _, u := range res.Unquoted {
		add(u.PCR)
	}
	slices.Sort(ps)
	return ps
}

func toIMA(v attest.PCRValues) ima.PCRValues {
	out := ima.PCRValues{}
	for h, m := range v {
		out[crypto.Hash(h)] = m
	}
	return out
}
