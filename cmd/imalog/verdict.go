package main

import "github.com/gokexec/gokexec/verdict"

// The verdict and its reasons are package verdict's; these names keep the
// command's code short.
type (
	Verdict           = verdict.Verdict
	QuoteVerdict      = verdict.QuoteVerdict
	CheckpointVerdict = verdict.CheckpointVerdict
)

// VerdictSchema names the JSON verdict's version (docs/verdict-schema.md).
const VerdictSchema = verdict.Schema

const (
	ReasonOK               = verdict.ReasonOK
	ReasonBadInput         = verdict.ReasonBadInput
	ReasonBadSignature     = verdict.ReasonBadSignature
	ReasonSchemeMismatch   = verdict.ReasonSchemeMismatch
	ReasonWrongNonce       = verdict.ReasonWrongNonce
	ReasonDigestMismatch   = verdict.ReasonDigestMismatch
	ReasonPCRMissing       = verdict.ReasonPCRMissing
	ReasonPCRNotSelected   = verdict.ReasonPCRNotSelected
	ReasonNotRestricted    = verdict.ReasonNotRestricted
	ReasonKeyPolicy        = verdict.ReasonKeyPolicy
	ReasonEventsLost       = verdict.ReasonEventsLost
	ReasonListMismatch     = verdict.ReasonListMismatch
	ReasonCheckpointBroken = verdict.ReasonCheckpointBroken
)

// The fleet manifest is package verdict's too.
type (
	Manifest        = verdict.Manifest
	ManifestMachine = verdict.ManifestMachine
	ManifestQuote   = verdict.ManifestQuote
)
