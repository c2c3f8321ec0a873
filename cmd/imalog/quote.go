package main

// imalog verify LIST --quote MSG --sig SIG --ak KEY [--nonce HEX] --pcrs FILE...
//
// The quote is checked first (package attest): the AK's signature over
// the message, the nonce, and the digest of the given PCR values over the
// quote's selection. Only the selected values, now attested, are then
// handed to the list's verification, with quote semantics: the values
// were taken at one instant, so every bank must reproduce one common
// prefix (ima.ReadsInstant). A PCR the list extends that no bank of the
// quote selects refuses the verification (pcr_not_selected): nothing
// attests its entries.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gokexec/gokexec/attest"
	"github.com/gokexec/gokexec/ima"
	"github.com/spf13/pflag"
)

// verifyExtension runs the forms of `imalog verify` this file and its
// siblings add (--quote, --checkpoint, --machines); ok is false when args
// use none of them and cmdVerify goes on as before.
func verifyExtension(args []string, stdin io.Reader, stdout io.Writer) (code int, err error, ok bool) {
	has := func(name string) bool {
		for _, a := range args {
			if a == "--" {
				return false
			}
			if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
				return true
			}
		}
		return false
	}
	switch {
	case has("machines"):
		code, err = cmdVerifyMachines(args, stdout)
		return code, err, true
	case has("quote") || has("sig") || has("ak") || has("checkpoint"):
		code, err = cmdVerifyQuote(args, stdin, stdout)
		return code, err, true
	}
	return 0, nil, false
}

// quoteFlags are the options of a quote verification.
type quoteFlags struct {
	quote, sig, ak, nonce *string
	restricted, allowSHA1 *bool
}

func addQuoteFlags(fs *pflag.FlagSet) *quoteFlags {
	return &quoteFlags{
		quote:      fs.String("quote", "", ""),
		sig:        fs.String("sig", "", ""),
		ak:         fs.String("ak", "", ""),
		nonce:      fs.String("nonce", "", ""),
		restricted: fs.Bool("ak-restricted", false, ""),
		allowSHA1:  fs.Bool("allow-sha1", false, ""),
	}
}

// quoteInput is a parsed quote with its key and signature.
type quoteInput struct {
	msg   []byte
	quote *attest.Quote
	sig   *attest.Signature
	ak    *attest.AK
	nonce []byte
}

func loadQuote(qf *quoteFlags, stdin io.Reader) (*quoteInput, error) {
	if *qf.quote == "" || *qf.sig == "" || *qf.ak == "" {
		return nil, usagef("verify: --quote, --sig and --ak go together")
	}
	in := &quoteInput{}
	var err error
	if *qf.nonce != "" {
		if in.nonce, err = hex.DecodeString(strings.TrimPrefix(*qf.nonce, "0x")); err != nil {
			return nil, usagef("verify: --nonce: not hex (%d characters)", len(*qf.nonce))
		}
	}
	if in.msg, err = readSmall(*qf.quote, stdin, attest.MaxMessage); err != nil {
		return nil, fmt.Errorf("--quote: %w", err)
	}
	if in.quote, err = attest.ParseQuote(in.msg); err != nil {
		return nil, fmt.Errorf("%s: %w", *qf.quote, err)
	}
	b, err := readSmall(*qf.sig, stdin, attest.MaxSignature)
	if err != nil {
		return nil, fmt.Errorf("--sig: %w", err)
	}
	if in.sig, err = attest.ParseSignature(b); err != nil {
		return nil, fmt.Errorf("%s: %w", *qf.sig, err)
	}
	if b, err = readSmall(*qf.ak, stdin, attest.MaxAK); err != nil {
		return nil, fmt.Errorf("--ak: %w", err)
	}
	if in.ak, err = attest.ParseAK(b); err != nil {
		return nil, fmt.Errorf("%s: %w", *qf.ak, err)
	}
	return in, nil
}

// loadQuotePCRs reads --pcrs arguments: tpm2_quote -o files (serialized or
// values, read by the quote's selection), or anything --pcrs takes
// without a quote.
func loadQuotePCRs(args []string, q *attest.Quote, stdin io.Reader) (attest.PCRValues, error) {
	v := attest.PCRValues{}
	for _, a := range args {
		var got attest.PCRValues
		if b, err := readSmall(a, stdin, attest.MaxPCRFile); err == nil {
			got, _ = attest.ParsePCRFile(b, q.Selection)
		}
		if got == nil {
			iv, err := loadPCRArg(a, stdin)
			if err != nil {
				return nil, err
			}
			got = attest.PCRValues(iv)
		}
		for h, m := range got {
			if v[h] == nil {
				v[h] = map[uint32][]byte{}
			}
			for p, val := range m {
				v[h][p] = val
			}
		}
	}
	return v, nil
}

// quoteRun is one list verified against one quote.
type quoteRun struct {
	list         string
	order        binary.ByteOrder
	kexec        bool
	strict       bool
	pcrs         []string
	restricted   bool
	allowSHA1    bool
	methodBudget int
	cp           cpOptions
}

// run checks the quote and, when it holds, the list against its values.
// It returns the verdict; err is set only for bad input (exit 2).
func (r quoteRun) run(in *quoteInput, stdin io.Reader) (*Verdict, error) {
	v := &Verdict{Schema: VerdictSchema, List: r.list, Reads: "instant (a TPM2 quote: every value taken at one instant)"}
	v.Quote = quoteVerdict(in.quote, in.sig, in.ak)
	vals, err := loadQuotePCRs(r.pcrs, in.quote, stdin)
	if err != nil {
		return nil, err
	}
	qr, err := attest.Verify(in.msg, in.sig, in.ak, attest.Options{Nonce: in.nonce, PCRs: vals, RequireRestricted: r.restricted, AllowSHA1: r.allowSHA1})
	if err != nil {
		reason, refused := quoteReason(err)
		if !refused {
			return nil, err
		}
		v.Exit, v.Reason, v.Error = exitMismatch, reason, err.Error()
		return v, nil
	}
	v.Quote.Verified, v.Quote.Ignored = true, qr.Ignored
	res, cv, err := verifyListCP(r.list, stdin, r.order, r.kexec, toIMA(qr.Values),
		ima.VerifyOptions{Reads: ima.ReadsInstant, Strict: r.strict, MethodSearchBudget: r.methodBudget}, r.cp)
	v.Checkpoint = cv
	if err != nil {
		if checkpointRefused(v, err) {
			return v, nil
		}
		return nil, err
	}
	v.Verify, v.Timeline = &res, &res.Timeline
	v.Consistent, v.Reason = res.Consistent, listReason(res)
	if err := in.quote.CheckSelected(listPCRs(res)); err != nil {
		var ns *attest.NotSelectedError
		if errors.As(err, &ns) {
			v.Quote.NotSelected = ns.PCRs
		}
		v.Consistent, v.Reason, v.Error = false, ReasonPCRNotSelected, err.Error()
	}
	v.Exit = exitMismatch
	if v.Consistent {
		v.Exit = exitOK
	}
	return v, nil
}

// verifyListFile verifies the list in FILE as cmdVerify does.
func verifyListFile(name string, stdin io.Reader, order binary.ByteOrder, kexec bool, quoted ima.PCRValues, opt ima.VerifyOptions) (ima.VerifyResult, error) {
	in, r, finish, err := listInput(name, stdin, order, kexec)
	if err != nil {
		return ima.VerifyResult{}, err
	}
	defer in.Close()
	var res ima.VerifyResult
	if in.ra != nil {
		// A regular file: read again where a second pass is cheaper.
		res, err = ima.VerifyReaderAt(in.ra, in.raSize, order, quoted, opt)
	} else {
		res, err = ima.VerifyReader(r, order, quoted, opt)
	}
	if err == nil {
		err = finish(res.Entries)
	}
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}

// cmdVerifyQuote is `imalog verify` with --quote and/or --checkpoint.
func cmdVerifyQuote(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	vf := newVerifyFlags()
	fs, qf := vf.fs, vf.quote
	pcrs, cpPath, cpCheck, strict, asJSON, bo, kexec, readsF := vf.pcrs, vf.checkpoint, vf.cpCheck, vf.strict, vf.json, vf.byteOrder, vf.kexec, vf.reads
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	if err := vf.only("--quote or --checkpoint", "pcrs", "reads", "strict", "json", "byte-order", "kexec", "ignore-violations",
		"quote", "sig", "ak", "nonce", "ak-restricted", "allow-sha1", "checkpoint", "checkpoint-check"); err != nil {
		return exitBad, err
	}
	name, err := oneFile("verify", rest)
	if err != nil {
		return exitBad, err
	}
	quoted := fs.Changed("quote") || fs.Changed("sig") || fs.Changed("ak")
	switch {
	case quoted && *readsF != "instant" && *readsF != "auto":
		return exitBad, usagef("verify: --reads %q with --quote: a quote's values are taken at one instant", *readsF)
	case len(*pcrs) == 0 && quoted:
		return exitBad, usagef("verify: --quote needs the quoted values: --pcrs FILE (tpm2_quote -o)")
	case len(*pcrs) == 0:
		return exitBad, usagef("verify: --checkpoint needs --pcrs or --quote")
	case *cpCheck != "tail" && *cpCheck != "full":
		return exitBad, usagef("verify: --checkpoint-check %q: want tail or full", *cpCheck)
	}
	order, err := parseOrder(*bo)
	if err != nil {
		return exitBad, err
	}
	cpo := cpOptions{path: *cpPath, check: *cpCheck}
	var v *Verdict
	if quoted {
		in, err := loadQuote(qf, stdin)
		if err != nil {
			return exitBad, err
		}
		v, err = quoteRun{list: name, order: order, kexec: *kexec, strict: *strict, pcrs: *pcrs, restricted: *qf.restricted, allowSHA1: *qf.allowSHA1, cp: cpo}.run(in, stdin)
		if err != nil {
			return exitBad, err
		}
	} else {
		m := ManifestMachine{List: name, PCRs: *pcrs, Reads: *readsF, Kexec: *kexec, Strict: *strict}
		if v, err = verifyWithPCRs(m, order, stdin, cpo); err != nil {
			return exitBad, err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return v.Exit, enc.Encode(v)
	}
	w := bufio.NewWriter(stdout)
	if v.Quote != nil {
		printQuote(w, v)
	}
	printCheckpoint(w, v.Checkpoint)
	if v.Verify != nil {
		printTimeline(w, name, *v.Timeline)
		var buf bytes.Buffer
		printVerify(&buf, *v.Verify, readsChoice{v.Verify.Reads == ima.ReadsPerBank, v.Reads})
		out := buf.Bytes()
		if v.Reason == ReasonPCRNotSelected {
			// The list's own verdict is the last line; the quote overrides it.
			if i := bytes.LastIndex(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")); i >= 0 && bytes.HasPrefix(out[i+1:], []byte("verdict: ")) {
				out = out[:i+1]
			}
			out = fmt.Appendf(out, "verdict: inconsistent: %s has entries that the quote does not attest\n", pcrNames(v.Quote.NotSelected))
		}
		w.Write(out)
	} else {
		fmt.Fprintf(w, "verdict: refused: %s (%s)\n", escapeText(v.Error), v.Reason)
	}
	return v.Exit, w.Flush()
}

func pcrNames(ps []uint32) string {
	if len(ps) == 1 {
		return fmt.Sprintf("PCR %d", ps[0])
	}
	return "PCRs " + joinPCRs(ps)
}

func printQuote(w io.Writer, v *Verdict) {
	q := v.Quote
	state := "verified"
	if !q.Verified {
		state = "REFUSED: " + v.Reason
	}
	fmt.Fprintf(w, "quote: %s; %s/%s signature, nonce %s, clock %d, reset %d, restart %d\n", state, q.Scheme, q.Hash,
		orNone(q.Nonce), q.Clock, q.ResetCount, q.RestartCount)
	for _, b := range []string{"sha1", "sha256", "sha384", "sha512"} {
		if ps, ok := q.Selection[b]; ok {
			fmt.Fprintf(w, "quote: selects %s PCRs %s\n", b, joinPCRs(ps))
		}
	}
	if q.AKRestricted != nil && !*q.AKRestricted {
		fmt.Fprintf(w, "quote: warning: the AK is not a restricted signing key: it can sign data that looks like a quote\n")
	}
	if q.Ignored > 0 {
		fmt.Fprintf(w, "quote: %d given PCR value(s) outside the selection ignored (not attested)\n", q.Ignored)
	}
	if q.Nonce == "" {
		fmt.Fprintf(w, "quote: warning: no nonce: a replayed quote cannot be told from a fresh one\n")
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
