package verdict

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"slices"

	"github.com/gokexec/gokexec/attest"
	"github.com/gokexec/gokexec/ima"
)

// Schema names the JSON verdict's version (docs/verdict-schema.md). A
// change that removes or retypes a field, or gives a reason a new
// meaning, bumps the number; new optional fields and reasons do not.
const Schema = "gokexec/imalog-verdict/1"

// Exit statuses a verdict carries (imalog's).
const (
	ExitOK       = 0
	ExitMismatch = 1
	ExitBad      = 2
)

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
	ReasonBootAggregate    = "boot_aggregate_mismatch"
	ReasonListMismatch     = "list_mismatch"
	ReasonCheckpointBroken = "checkpoint_mismatch"
	ReasonEventLog         = "event_log_mismatch"
)

// Verdict is the outcome of one verification (one machine of a fleet).
type Verdict struct {
	Schema     string             `json:"schema"`
	Machine    string             `json:"machine,omitempty"`
	MachineHex string             `json:"machine_hex,omitempty"`
	List       string             `json:"list"`
	ListHex    string             `json:"list_hex,omitempty"`
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

// SetNames sets List and Machine (with their _hex members when they are
// not UTF-8).
func (v *Verdict) SetNames(list, machine string) {
	v.List, v.ListHex = ima.JSONText(list)
	v.Machine, v.MachineHex = ima.JSONText(machine)
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
	// NotWritten says why no checkpoint could be written (a method per
	// boot was needed; the list exceeds a checkpoint's bounds).
	NotWritten string `json:"not_written,omitempty"`
}

// ErrInput is wrapped by every error about malformed input.
var ErrInput = errors.New("bad input")

// InputError is an ErrInput naming the part of the input: "list",
// "quote", "signature", "ak", "pcrs", "checkpoint".
type InputError struct {
	Part string
	Err  error
}

func (e *InputError) Error() string { return e.Part + ": " + e.Err.Error() }
func (e *InputError) Unwrap() []error {
	return []error{ErrInput, e.Err}
}

func inputErr(part string, err error) error { return &InputError{Part: part, Err: err} }

// List is the measurement list: R read once, or RA (Size bytes) read at
// offsets — a checkpoint needs RA.
type List struct {
	R     io.Reader
	RA    io.ReaderAt
	Size  int64
	Order binary.ByteOrder // nil: little endian
	// Check, when set, is called with the number of entries read (a
	// hand-over buffer's count); its error is the list's bad input.
	Check func(entries int) error
}

// Quote is a TPM2 quote as tpm2_quote writes it, with what the server
// expects of it.
type Quote struct {
	Message, Signature, AK []byte
	Nonce                  []byte
	// PCRs are the claimed values (tpm2_quote -o, or any PCR file).
	PCRs              attest.PCRValues
	RequireRestricted bool
	AllowSHA1         bool
}

// Evidence is what vouches for the list: Quote, or else Values read as
// Reads says (Why is printed as reads_reason).
type Evidence struct {
	Values ima.PCRValues
	Reads  ima.Reads
	Why    string
	Quote  *Quote
	// EventLog is the firmware's TCG event log (binary_bios_measurements),
	// a source of PCRs 0-9 for the boot_aggregate comparison; it must
	// replay to the values the evidence holds (eventlog.go).
	EventLog []byte
}

// MaxSpool is the size up to which a list given as a stream is held in
// memory and judged exactly as a file is; a longer stream is read once,
// and the method-per-boot search (which reads the list again) does not
// run on it (the verdict's method_search says so).
const MaxSpool = 8 << 20

// Options select the semantics.
type Options struct {
	Strict             bool
	MethodSearchBudget int
	// Checkpoint is the previous checkpoint (nil: none); WantCheckpoint
	// asks for the next one (implied by a non-nil Checkpoint).
	Checkpoint     []byte
	WantCheckpoint bool
	// CheckpointFull re-hashes everything the checkpoint consumed, not
	// only its last 4 KiB.
	CheckpointFull bool
}

// Verify judges the list against the evidence. It returns the verdict
// and, when a checkpoint was given or wanted and may be written, the next
// one; err is set only for malformed input (an *InputError).
func Verify(list List, ev Evidence, opt Options) (*Verdict, []byte, error) {
	v := &Verdict{Schema: Schema}
	if list.Order == nil {
		list.Order = binary.LittleEndian
	}
	values, reads := ev.Values, ev.Reads
	v.Reads = ev.Why
	var q *attest.Quote
	if ev.Quote != nil {
		var refused bool
		var err error
		q, values, refused, err = checkQuote(v, ev.Quote)
		if err != nil {
			return nil, nil, err
		}
		if refused {
			return v, nil, nil
		}
		reads = ima.ReadsInstant
		v.Reads = "instant (a TPM2 quote: every value taken at one instant)"
	}
	iopt := ima.VerifyOptions{Reads: reads, Strict: opt.Strict, MethodSearchBudget: opt.MethodSearchBudget}
	if ev.EventLog != nil {
		fw, err := firmwareValues(ev.EventLog, values)
		if errors.Is(err, ErrEventLog) {
			v.Exit, v.Reason, v.Error = ExitMismatch, ReasonEventLog, err.Error()
			return v, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		iopt.Firmware = fw
	}
	res, next, err := verifyList(v, list, values, iopt, opt)
	if err != nil {
		if errors.Is(err, ima.ErrCheckpointMismatch) {
			v.Consistent, v.Exit, v.Reason, v.Error = false, ExitMismatch, ReasonCheckpointBroken, err.Error()
			return v, nil, nil
		}
		return nil, nil, err
	}
	v.Verify, v.Timeline = &res, &res.Timeline
	v.Consistent, v.Reason = res.Consistent, listReason(res)
	if q != nil {
		if err := q.CheckSelected(listPCRs(res)); err != nil {
			var ns *attest.NotSelectedError
			if errors.As(err, &ns) {
				v.Quote.NotSelected = ns.PCRs
			}
			v.Consistent, v.Reason, v.Error = false, ReasonPCRNotSelected, err.Error()
		}
	}
	v.Exit = ExitMismatch
	if v.Consistent {
		v.Exit = ExitOK
	}
	return v, next, nil
}

// checkQuote parses and checks the quote; refused reports a verdict made.
func checkQuote(v *Verdict, in *Quote) (*attest.Quote, ima.PCRValues, bool, error) {
	q, err := attest.ParseQuote(in.Message)
	if err != nil {
		return nil, nil, false, inputErr("quote", err)
	}
	sig, err := attest.ParseSignature(in.Signature)
	if err != nil {
		return nil, nil, false, inputErr("signature", err)
	}
	ak, err := attest.ParseAK(in.AK)
	if err != nil {
		return nil, nil, false, inputErr("ak", err)
	}
	v.Quote = quoteVerdict(q, sig, ak)
	qr, err := attest.Verify(in.Message, sig, ak, attest.Options{Nonce: in.Nonce, PCRs: in.PCRs,
		RequireRestricted: in.RequireRestricted, AllowSHA1: in.AllowSHA1})
	if err != nil {
		reason, refused := quoteReason(err)
		if !refused {
			return nil, nil, false, inputErr("quote", err)
		}
		v.Exit, v.Reason, v.Error = ExitMismatch, reason, err.Error()
		return nil, nil, true, nil
	}
	v.Quote.Verified, v.Quote.Ignored = true, qr.Ignored
	vals := ima.PCRValues{}
	for h, m := range qr.Values {
		vals[crypto.Hash(h)] = m
	}
	return q, vals, false, nil
}

// verifyList runs the list through ima: from and into a checkpoint when
// one is given or wanted, else a full run (at offsets when it can).
func verifyList(v *Verdict, list List, values ima.PCRValues, iopt ima.VerifyOptions, opt Options) (ima.VerifyResult, []byte, error) {
	var res ima.VerifyResult
	var next []byte
	var err error
	switch {
	case opt.Checkpoint != nil || opt.WantCheckpoint:
		cv := &CheckpointVerdict{}
		v.Checkpoint = cv
		if list.RA == nil {
			return res, nil, inputErr("list", errors.New("a checkpoint needs a list that can be read at offsets (a regular file)"))
		}
		var cp *ima.Checkpoint
		if opt.Checkpoint != nil {
			cp, err = ima.ParseCheckpoint(opt.Checkpoint)
			switch {
			case errors.Is(err, ima.ErrCheckpointVersion):
				cp, cv.Restart = nil, "the checkpoint is of an earlier version"
			case err != nil:
				return res, nil, inputErr("checkpoint", err)
			}
		}
		if cp != nil && opt.CheckpointFull {
			if err := ima.CheckConsumed(list.RA, list.Size, cp); err != nil {
				return res, nil, listErr(err)
			}
		}
		var info ima.CheckpointInfo
		res, info, err = ima.VerifyFrom(list.RA, list.Size, list.Order, cp, values, iopt)
		if err != nil {
			return res, nil, listErr(err)
		}
		cv.Resumed, cv.From, cv.Read = cp != nil && info.Restart == "", info.From, info.Read
		if info.Restart != "" {
			cv.Restart = info.Restart
		}
		if info.Next == nil {
			cv.NotWritten = info.NoNext
		} else if next, err = ima.MarshalCheckpoint(info.Next); err != nil {
			return res, nil, err
		}
	case list.RA != nil:
		res, err = ima.VerifyReaderAt(list.RA, list.Size, list.Order, values, iopt)
	case list.R != nil:
		// A stream that fits MaxSpool is judged as a file (it can then be
		// read again, for the method-per-boot search); a longer one is
		// read once, its first MaxSpool bytes from memory.
		buf := make([]byte, MaxSpool)
		n, rerr := io.ReadFull(list.R, buf)
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			res, err = ima.VerifyReaderAt(bytes.NewReader(buf[:n]), int64(n), list.Order, values, iopt)
		case rerr != nil:
			return res, nil, inputErr("list", rerr)
		default:
			res, err = ima.VerifyReader(io.MultiReader(bytes.NewReader(buf), list.R), list.Order, values, iopt)
		}
	default:
		return res, nil, inputErr("list", errors.New("no list"))
	}
	if err == nil && list.Check != nil {
		err = list.Check(res.Entries)
	}
	if err != nil {
		return res, nil, listErr(err)
	}
	return res, next, nil
}

func listErr(err error) error {
	if errors.Is(err, ima.ErrCheckpointMismatch) {
		return err
	}
	return inputErr("list", err)
}

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
	case res.Timeline.AggregateMismatches > 0:
		return ReasonBootAggregate
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

// BadInput is the verdict of input that could not be judged.
func BadInput(err error) *Verdict {
	return &Verdict{Schema: Schema, Exit: ExitBad, Reason: ReasonBadInput, Error: err.Error()}
}
