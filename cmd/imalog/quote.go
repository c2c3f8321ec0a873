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
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/gokexec/gokexec/attest"
	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
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

// loadQuote reads the quote's files (each error names its option) and
// the claimed PCR values: tpm2_quote -o files (serialized or values, read
// by the quote's selection), or anything --pcrs takes without a quote.
func loadQuote(qf *quoteFlags, pcrs []string, stdin io.Reader) (*verdict.Quote, error) {
	if *qf.quote == "" || *qf.sig == "" || *qf.ak == "" {
		return nil, usagef("verify: --quote, --sig and --ak go together")
	}
	in := &verdict.Quote{RequireRestricted: *qf.restricted, AllowSHA1: *qf.allowSHA1}
	var err error
	if *qf.nonce != "" {
		if in.Nonce, err = hex.DecodeString(strings.TrimPrefix(*qf.nonce, "0x")); err != nil {
			return nil, usagef("verify: --nonce: not hex (%d characters)", len(*qf.nonce))
		}
	}
	if in.Message, err = readSmall(*qf.quote, stdin, attest.MaxMessage); err != nil {
		return nil, fmt.Errorf("--quote: %w", err)
	}
	if in.Signature, err = readSmall(*qf.sig, stdin, attest.MaxSignature); err != nil {
		return nil, fmt.Errorf("--sig: %w", err)
	}
	if in.AK, err = readSmall(*qf.ak, stdin, attest.MaxAK); err != nil {
		return nil, fmt.Errorf("--ak: %w", err)
	}
	q, err := attest.ParseQuote(in.Message)
	if err != nil {
		return nil, fmt.Errorf("--quote %s: %w", *qf.quote, err)
	}
	in.PCRs = attest.PCRValues{}
	for _, a := range pcrs {
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
			if in.PCRs[h] == nil {
				in.PCRs[h] = map[uint32][]byte{}
			}
			for p, val := range m {
				in.PCRs[h][p] = val
			}
		}
	}
	return in, nil
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
		"quote", "sig", "ak", "nonce", "ak-restricted", "allow-sha1", "checkpoint", "checkpoint-check", "event-log"); err != nil {
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
		in, err := loadQuote(qf, *pcrs, stdin)
		if err != nil {
			return exitBad, err
		}
		r := listRun{name: name, eventLog: *vf.eventLog, order: order, kexec: *kexec, ev: verdict.Evidence{Quote: in}, opt: verdict.Options{Strict: *strict}, cp: cpo}
		if v, err = r.run(stdin); err != nil {
			return exitBad, err
		}
	} else {
		m := verdict.ManifestMachine{List: name, PCRs: *pcrs, Reads: *readsF, Kexec: *kexec, Strict: *strict, EventLog: *vf.eventLog}
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
