package main

import (
	"bufio"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
	"github.com/spf13/pflag"
)

func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

func parseFlags(fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%s: %v", fs.Name(), err)
	}
	return fs.Args(), nil
}

func oneFile(cmd string, rest []string) (string, error) {
	if len(rest) != 1 {
		return "", usagef("%s: want exactly one FILE, got %d arguments", cmd, len(rest))
	}
	return rest[0], nil
}

// listInput opens FILE as a binary list (or, with kexec, a hand-over
// buffer, whose header it checks) and returns the reader of its entries.
// finish checks a hand-over buffer's count once the entries are read.
// For a regular file of known size, in.ra and in.raSize give the entries
// again at offsets.
func listInput(name string, stdin io.Reader, order binary.ByteOrder, kexec bool) (in *input, r io.Reader, finish func(n int) error, err error) {
	in, err = openInput(name, stdin)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the list FILE: %w", err)
	}
	finish = func(int) error { return nil }
	r = in.r
	if kexec {
		size := int64(-1)
		if in.size > 0 {
			size = in.size
		}
		h, lr, err := ima.KexecListReader(r, size, order)
		if err != nil {
			in.Close()
			return nil, nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		r = lr
		finish = func(n int) error { return ima.CheckKexecCount(h, n) }
		if in.size > 0 {
			in.raSize = int64(h.BufferSize) - ima.KexecHeaderSize
			in.ra = io.NewSectionReader(in.f, ima.KexecHeaderSize, in.raSize)
		}
	} else if in.size > 0 {
		in.ra, in.raSize = in.f, in.size
	}
	return in, r, finish, nil
}

type jsonEntry struct {
	Index          int            `json:"index"`
	PCR            uint32         `json:"pcr"`
	TemplateDigest string         `json:"template_digest"`
	Template       string         `json:"template"`
	TemplateHex    string         `json:"template_hex,omitempty"`
	Violation      bool           `json:"violation,omitempty"`
	Fields         map[string]any `json:"fields"`
}

func hexOrNil(b []byte) any {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

func decodedJSON(d ima.Decoded) map[string]any {
	m := map[string]any{}
	put := func(k string, v any) {
		switch x := v.(type) {
		case nil:
			return
		case string:
			if x == "" {
				return
			}
		case *uint64:
			if x == nil {
				return
			}
			v = *x
		case []string:
			if x == nil {
				return
			}
		case []uint32:
			if x == nil {
				return
			}
		}
		m[k] = v
	}
	put("digest_type", d.DigestType)
	put("digest_algo", d.DigestAlgo)
	put("digest", hexOrNil(d.Digest))
	name, nameHex := ima.JSONText(d.Name)
	put("name", name)
	put("name_hex", nameHex)
	put("sig", hexOrNil(d.Sig))
	put("buf", hexOrNil(d.Buf))
	put("modsig_digest_algo", d.ModsigAlgo)
	put("modsig_digest", hexOrNil(d.ModsigDigest))
	put("modsig", hexOrNil(d.Modsig))
	put("evmsig", hexOrNil(d.EvmSig))
	put("xattr_names", d.XattrNames)
	put("xattr_lengths", d.XattrLengths)
	if d.XattrValues != nil {
		var vs []string
		for _, v := range d.XattrValues {
			vs = append(vs, hex.EncodeToString(v))
		}
		m["xattr_values"] = vs
	}
	put("uid", d.UID)
	put("gid", d.GID)
	put("mode", d.Mode)
	return m
}

func cmdShow(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	fs := newFlags("show")
	format := fs.String("format", "ascii", "ascii or json")
	bo := fs.String("byte-order", "native", "native, little (canonical) or big")
	kexec := fs.Bool("kexec", false, "FILE is a kexec hand-over buffer")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	name, err := oneFile("show", rest)
	if err != nil {
		return exitBad, err
	}
	order, err := parseOrder(*bo)
	if err != nil {
		return exitBad, err
	}
	if *format != "ascii" && *format != "json" {
		return exitBad, usagef("show: --format %q: want ascii or json", *format)
	}
	in, r, finish, err := listInput(name, stdin, order, *kexec)
	if err != nil {
		return exitBad, err
	}
	defer in.Close()
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	tb := ima.NewTimelineBuilder(order)
	var line []byte
	n := 0
	if *format == "json" {
		w.WriteString("{\n  \"schema\": \"" + SchemaShow + "\",\n  \"entries\": [")
	}
	err = ima.Scan(r, order, func(i int, off int64, e *ima.Entry) error {
		n = i + 1
		if *format == "ascii" {
			var err error
			line, err = ima.AppendASCII(line[:0], []ima.Entry{*e}, order)
			if err != nil {
				var pe *ima.ParseError
				if errors.As(err, &pe) {
					pe.Index, pe.Offset = i, off
				}
				return err
			}
			_, err = w.Write(line)
			return err
		}
		tb.Add(i, e)
		d, err := e.Decode(order)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		tmpl, tmplHex := ima.JSONText(e.TemplateName)
		b, err := json.MarshalIndent(jsonEntry{Index: i, PCR: e.PCR, TemplateDigest: hex.EncodeToString(e.TemplateDigest[:]),
			Template: tmpl, TemplateHex: tmplHex, Violation: e.Violation(), Fields: decodedJSON(d)}, "    ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n    ")
		_, err = w.Write(b)
		return err
	})
	if err == nil {
		err = finish(n)
	}
	if err != nil {
		return exitBad, fmt.Errorf("%s: %w", name, err)
	}
	if *format == "json" {
		tl, err := json.MarshalIndent(tb.Finish(n), "  ", "  ")
		if err != nil {
			return exitBad, err
		}
		if n > 0 {
			w.WriteString("\n  ")
		}
		fmt.Fprintf(w, "],\n  \"timeline\": %s\n}\n", tl)
	}
	return exitOK, w.Flush()
}

func parseBanks(names []string) ([]crypto.Hash, error) {
	var out []crypto.Hash
	for _, n := range names {
		for p := range strings.SplitSeq(n, ",") {
			h, err := ima.ParseHashName(p)
			if err != nil {
				return nil, usagef("--bank: %v", err)
			}
			if !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out, nil
}

func cmdReplay(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	fs := newFlags("replay")
	banksF := fs.StringArray("bank", nil, "bank to replay (repeatable; default sha1,sha256,sha384)")
	methodF := fs.String("method", "per-bank", "per-bank, sha1-padded or both")
	asJSON := fs.Bool("json", false, "JSON output")
	bo := fs.String("byte-order", "native", "native, little (canonical) or big")
	kexec := fs.Bool("kexec", false, "FILE is a kexec hand-over buffer")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	name, err := oneFile("replay", rest)
	if err != nil {
		return exitBad, err
	}
	order, err := parseOrder(*bo)
	if err != nil {
		return exitBad, err
	}
	if len(*banksF) == 0 {
		*banksF = []string{"sha1,sha256,sha384"}
	}
	banks, err := parseBanks(*banksF)
	if err != nil {
		return exitBad, err
	}
	var methods []ima.Method
	switch *methodF {
	case "per-bank":
		methods = []ima.Method{ima.MethodPerBank}
	case "sha1-padded":
		methods = []ima.Method{ima.MethodSHA1Padded}
	case "both":
		methods = []ima.Method{ima.MethodPerBank, ima.MethodSHA1Padded}
	default:
		return exitBad, usagef("replay: --method %q: want per-bank, sha1-padded or both", *methodF)
	}
	var runs []ima.BankMethod
	for _, b := range banks {
		for _, m := range methods {
			runs = append(runs, ima.BankMethod{Bank: b, Method: m})
		}
	}
	in, r, finish, err := listInput(name, stdin, order, *kexec)
	if err != nil {
		return exitBad, err
	}
	defer in.Close()
	replayed, n, err := ima.ReplayReader(r, order, runs)
	if err == nil {
		err = finish(n)
	}
	if err != nil {
		return exitBad, fmt.Errorf("%s: %w", name, err)
	}
	type result struct {
		Bank   string            `json:"bank"`
		Method string            `json:"method"`
		PCRs   map[uint32]string `json:"pcrs"`
	}
	var results []result
	for i, v := range replayed {
		r := result{Bank: ima.HashName(runs[i].Bank), Method: runs[i].Method.String(), PCRs: map[uint32]string{}}
		for p, d := range v {
			r.PCRs[p] = hex.EncodeToString(d)
		}
		results = append(results, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitOK, enc.Encode(map[string]any{"schema": SchemaReplay, "exit": exitOK, "entries": n, "replay": results})
	}
	fmt.Fprintf(stdout, "%s: %d entries\n", escapeText(name), n)
	for _, r := range results {
		fmt.Fprintf(stdout, "%s (%s):\n", r.Bank, r.Method)
		for _, p := range sortedKeys(r.PCRs) {
			fmt.Fprintf(stdout, "  PCR-%02d: %s\n", p, r.PCRs[p])
		}
	}
	return exitOK, nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// loadPCRArg reads one --pcrs [BANK,]FILE argument.
func loadPCRArg(arg string, stdin io.Reader) (ima.PCRValues, error) {
	var bank crypto.Hash
	file := arg
	if b, f, ok := strings.Cut(arg, ","); ok {
		h, err := ima.ParseHashName(b)
		if err == nil {
			bank, file = h, f
		} else if _, statErr := os.Stat(arg); statErr != nil {
			// neither BANK,FILE nor a file whose name has a comma
			return nil, usagef("--pcrs %q: %v", arg, err)
		}
	}
	data, err := readSmall(file, stdin, maxPCRFile)
	if err != nil {
		return nil, fmt.Errorf("--pcrs: %w", err)
	}
	if ima.IsBareHex(data) {
		// A sysfs pcr-<bank>/<n> file: the index is the file's name, the
		// bank BANK, or else the directory's name.
		idx, err := strconv.ParseUint(filepath.Base(file), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--pcrs %s: bare hex, but the file name is not a PCR index (a sysfs pcr-<bank>/<n> file)", file)
		}
		if bank == 0 {
			if b, ok := strings.CutPrefix(filepath.Base(filepath.Dir(file)), "pcr-"); ok {
				bank, _ = ima.ParseHashName(b)
			}
		}
		if bank == 0 {
			return nil, fmt.Errorf("--pcrs %s: bare hex without a bank: give BANK,FILE or a pcr-<bank> directory", file)
		}
		v, err := ima.ParseSysfsPCR(data, bank, idx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return v, nil
	}
	v, err := ima.ParsePCRFile(data, bank)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

func cmdVerify(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	if code, err, ok := verifyExtension(args, stdin, stdout); ok { // quote.go: --quote, --checkpoint, --machines
		return code, err
	}
	vf := newVerifyFlags()
	fs := vf.fs
	pcrs, tpmDev, readsF, strict, asJSON, bo, kexec := vf.pcrs, vf.tpm, vf.reads, vf.strict, vf.json, vf.byteOrder, vf.kexec
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	if err := vf.only("--pcrs or --tpm", "pcrs", "tpm", "reads", "strict", "json", "byte-order", "kexec", "ignore-violations", "event-log"); err != nil {
		return exitBad, err
	}
	name, err := oneFile("verify", rest)
	if err != nil {
		return exitBad, err
	}
	order, err := parseOrder(*bo)
	if err != nil {
		return exitBad, err
	}
	useTPM := fs.Changed("tpm")
	if len(*pcrs) == 0 && !useTPM {
		return exitBad, usagef("verify: need --pcrs or --tpm")
	}
	switch *readsF {
	case "auto", "instant", "per-bank":
	default:
		return exitBad, usagef("verify: --reads %q: want auto, instant or per-bank", *readsF)
	}
	quoted := ima.PCRValues{}
	var sources []pcrSource
	if useTPM {
		// PCRs first, list second: a running system keeps measuring, and
		// PCRs read before the list match a prefix of it.
		dev := *tpmDev
		if dev == "auto" {
			dev = ""
		}
		v, err := readTPM(dev)
		if err != nil {
			return exitBad, err
		}
		quoted.Merge(v)
		sources = append(sources, pcrSource{"--tpm", len(v)})
	}
	for _, a := range *pcrs {
		v, err := loadPCRArg(a, stdin)
		if err != nil {
			return exitBad, err
		}
		quoted.Merge(v)
		sources = append(sources, pcrSource{a, len(v)})
	}
	reads := decideReads(*readsF, sources, len(quoted))
	ev := verdict.Evidence{Values: quoted, Why: reads.why}
	if reads.perBank {
		ev.Reads = ima.ReadsPerBank
	}
	v, err := listRun{name: name, eventLog: *vf.eventLog, order: order, kexec: *kexec, ev: ev, opt: verdict.Options{Strict: *strict}}.run(stdin)
	if err != nil {
		return exitBad, err
	}
	code := v.Exit
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(v)
	}
	res := *v.Verify
	w := bufio.NewWriter(stdout)
	printTimeline(w, name, res.Timeline)
	printVerify(w, res, reads)
	return code, w.Flush()
}

// pcrSource is one input of quoted values and how many banks it held.
type pcrSource struct {
	arg   string
	banks int
}

// readsChoice is the reading mode and why it applies.
type readsChoice struct {
	perBank bool
	why     string
}

// decideReads applies --reads, or when it is auto, infers from the inputs
// how the values were taken, and says so.
func decideReads(flag string, sources []pcrSource, banks int) readsChoice {
	switch flag {
	case "instant":
		return readsChoice{false, "instant (--reads instant)"}
	case "per-bank":
		return readsChoice{true, "per-bank (--reads per-bank)"}
	}
	switch {
	case banks <= 1:
		return readsChoice{false, "instant (assumed: one bank, for which both readings agree)"}
	case len(sources) == 1 && sources[0].arg == "--tpm":
		return readsChoice{false, "instant (assumed: --tpm reads every bank in one pass, with nothing measured in between)"}
	case len(sources) == 1:
		return readsChoice{false, fmt.Sprintf("instant (assumed: one file holds all %d banks, as one tpm2_pcrread command writes them; --reads per-bank if its banks were read one after another)", banks)}
	}
	return readsChoice{true, fmt.Sprintf("per-bank (assumed: the values come from %d separate inputs, as the sysfs pcr-<bank> files are read one bank after another; --reads instant if they were taken at one instant)", len(sources))}
}

func printTimeline(w io.Writer, name string, tl ima.Timeline) {
	fmt.Fprintf(w, "list %s: %d entries, %d boot(s)\n", escapeText(name), tl.Entries, tl.BootCount)
	prev := 0
	for _, b := range tl.Boots {
		if b.Number > prev+1 {
			fmt.Fprintf(w, "  boots %d-%d: not shown\n", prev+1, b.Number-1)
		}
		prev = b.Number
		start := "no boot_aggregate"
		if b.BootAggregate {
			start = "boot_aggregate"
		}
		agg := ""
		switch b.AggregateMatch {
		case ima.AggregateMatch:
			agg = ", boot_aggregate matches PCRs 0-9 (" + b.AggregateAlgo + ")"
		case ima.AggregateMismatch:
			agg = ", boot_aggregate DOES NOT MATCH PCRs 0-9 (" + b.AggregateAlgo + ")"
		}
		fmt.Fprintf(w, "  boot %d: entries %d-%d (%s), %d violation(s), exit: %s%s\n", b.Number, b.Start, b.End-1, start, b.Violations, b.Exit, agg)
		for k, m := range b.Markers {
			if k == ima.KeepMarkers && b.MarkerCount > len(b.Markers) {
				fmt.Fprintf(w, "    (%d markers not shown; the last kexec_load and kexec_execute follow)\n", b.MarkerCount-len(b.Markers))
			}
			trunc := ""
			if m.Truncated {
				trunc = " (truncated)"
			}
			fmt.Fprintf(w, "    #%d %s (PCR %d): %s%s\n", m.Index, ima.Escape(m.Name), m.PCR, ima.Escape(m.Payload), trunc)
		}
	}
	if tl.BootsOmitted > 0 {
		var parts []string
		for _, e := range []string{"soft-reboot", "events-lost", "unmarked", "running"} {
			if c := tl.Exits[e]; c > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c, e))
			}
		}
		fmt.Fprintf(w, "  %d of %d boots not shown (every boot by exit: %s)\n", tl.BootsOmitted, tl.BootCount, strings.Join(parts, ", "))
	}
	if tl.AggregateMismatches > 0 {
		fmt.Fprintf(w, "  %s with a boot_aggregate that does not match the quoted PCRs 0-9\n", plural(tl.AggregateMismatches, "boot", "boots"))
	}
	fmt.Fprintf(w, "markers: %s: %s\n", tl.Verdict, escapeText(tl.Reason))
}

// entryRange renders the first k entries.
func entryRange(k int) string {
	switch {
	case k <= 0:
		return "no entries"
	case k == 1:
		return "entry 0"
	}
	return fmt.Sprintf("entries 0-%d", k-1)
}

func joinPCRs(ps []uint32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

func printVerify(w io.Writer, res ima.VerifyResult, reads readsChoice) {
	perBank := res.Reads == ima.ReadsPerBank
	fmt.Fprintf(w, "pcr reads: %s\n", reads.why)
	for _, b := range res.Banks {
		fmt.Fprintf(w, "bank %s: PCRs %s ", b.Bank, joinPCRs(b.PCRs))
		bound := res.Prefix
		if perBank || bound < 0 {
			bound = b.OwnPrefix
		}
		switch {
		case len(b.BootMethods) > 0:
			names := make([]string, len(b.BootMethods))
			for i, m := range b.BootMethods {
				names[i] = methodName(&m)
			}
			fmt.Fprintf(w, "bind %s of %d, a method per boot: %s (the kernels hashed this bank differently)\n", entryRange(b.OwnPrefix), res.Entries, strings.Join(names, ", "))
		case b.Method != nil && bound > 0:
			fmt.Fprintf(w, "bind %s of %d (%s)", entryRange(bound), res.Entries, methodName(b.Method))
			if !perBank && b.OwnPrefix > bound {
				fmt.Fprintf(w, "; alone they bind %s (%s)", entryRange(b.OwnPrefix), methodName(b.OwnMethod))
			}
			fmt.Fprintln(w)
		case b.OwnPrefix > 0:
			fmt.Fprintf(w, "bind no prefix common to every bank; alone they bind %s (%s)\n", entryRange(b.OwnPrefix), methodName(b.OwnMethod))
		default:
			fmt.Fprintf(w, "bind no prefix of the list\n")
		}
		if b.Method == nil && len(b.BootMethods) == 0 {
			for _, p := range b.PCRs {
				fmt.Fprintf(w, "  PCR-%02d quoted   %s\n", p, b.Quoted[p])
				fmt.Fprintf(w, "  PCR-%02d replayed %s (per-bank, whole list)\n", p, b.Replayed[p])
				if b.ReplayedP != nil {
					fmt.Fprintf(w, "  PCR-%02d replayed %s (sha1-padded, whole list)\n", p, b.ReplayedP[p])
				}
			}
		}
	}
	if res.MethodSearch != "" {
		fmt.Fprintf(w, "method search: %s\n", res.MethodSearch)
	}
	for _, u := range res.Unquoted {
		fmt.Fprintf(w, "not checked: PCR %d has %s, not quoted in bank %s\n", u.PCR, plural(u.Entries, "entry", "entries"), strings.Join(u.Banks, ", "))
	}
	if res.Prefix >= 0 && res.Unbound > 0 {
		fmt.Fprintf(w, "not bound: %s after the matched prefix (%d-%d)\n", plural(res.Unbound, "entry", "entries"), res.Prefix, res.Entries-1)
	}
	for _, i := range res.DigestMismatches {
		fmt.Fprintf(w, "entry %d: stored template digest differs from the SHA-1 of its data\n", i)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "problem: %s\n", escapeText(p))
	}
	strict := ""
	if res.Strict {
		strict = ", strict"
	}
	switch {
	case res.Consistent && perBank:
		fmt.Fprintf(w, "verdict: consistent (bank by bank%s): every bank binds %s, some bank binds %s, of %d\n", strict, entryRange(res.Prefix), entryRange(res.Some), res.Entries)
	case res.Consistent:
		fmt.Fprintf(w, "verdict: consistent (one instant%s): %s of %d reproduce every quoted PCR\n", strict, entryRange(res.Prefix), res.Entries)
	case res.Timeline.Verdict == ima.VerdictEventsLost:
		fmt.Fprintf(w, "verdict: inconsistent: %s\n", res.Timeline.Reason)
	case res.Prefix > 0 && res.Strict:
		fmt.Fprintf(w, "verdict: inconsistent (strict): %s\n", escapeText(res.Problems[len(res.Problems)-1]))
	default:
		fmt.Fprintf(w, "verdict: inconsistent: no prefix of the list reproduces the quoted PCRs\n")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// methodName names an extension method in text output: "per-bank hash"
// (the bank's own hash of the template data) or "sha1-padded" (the SHA-1
// template digest zero-padded).
func methodName(m *ima.Method) string {
	switch {
	case m == nil:
		return "none"
	case *m == ima.MethodPerBank:
		return "per-bank hash"
	}
	return m.String()
}

func cmdRestore(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	fs := newFlags("restore")
	bo := fs.String("byte-order", "native", "native, little (canonical) or big")
	asList := fs.Bool("list", false, "FILE is a binary list, not a hand-over buffer")
	asJSON := fs.Bool("json", false, "JSON output")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	name, err := oneFile("restore", rest)
	if err != nil {
		return exitBad, err
	}
	order, err := parseOrder(*bo)
	if err != nil {
		return exitBad, err
	}
	b, err := readSmall(name, stdin, maxInput)
	if err != nil {
		return exitBad, err
	}
	var rep ima.KexecReport
	if *asList {
		entries, err := ima.ParseList(b, order)
		if err != nil {
			return exitBad, fmt.Errorf("%s: %w", name, err)
		}
		rep.Header = ima.KexecHeader{Version: 1, Count: uint64(len(entries))}
		rep.Restored = len(entries)
		if err := ima.CheckRestorable(entries, order); err != nil {
			re := err.(*ima.RestoreError)
			rep.Problems, rep.Restored = re.Problems, re.Restored
		}
	} else {
		rep = ima.SimulateRestore(b, order)
	}
	code := exitOK
	if !rep.OK() {
		code = exitMismatch
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(struct {
			Schema string `json:"schema"`
			Exit   int    `json:"exit"`
			ima.KexecReport
		}{SchemaRestore, code, rep})
	}
	fmt.Fprintf(stdout, "%s: the next kernel would restore %d of %d entries\n", escapeText(name), rep.Restored, rep.Header.Count)
	for _, p := range rep.Problems {
		where := "header"
		if p.Index >= 0 {
			where = fmt.Sprintf("entry %d (offset %d)", p.Index, p.Offset)
		}
		fmt.Fprintf(stdout, "  %s: %s: %s\n", where, escapeText(p.Kind), escapeText(p.Reason))
	}
	return code, nil
}

// verifyFlags are every option of `imalog verify`, whatever the mode: one
// flag set (help.go describes each), so every mode takes every option
// name and refuses, by name, those that do not apply to it.
type verifyFlags struct {
	fs                                         *pflag.FlagSet
	pcrs                                       *[]string
	tpm, reads, byteOrder, checkpoint, cpCheck *string
	machines, eventLog                         *string
	strict, json, kexec, cpEach                *bool
	jobs                                       *int
	quote                                      *quoteFlags
}

func newVerifyFlags() *verifyFlags {
	fs := newFlags("verify")
	vf := &verifyFlags{fs: fs}
	vf.pcrs = fs.StringArray("pcrs", nil, "")
	vf.tpm = fs.String("tpm", "", "")
	fs.Lookup("tpm").NoOptDefVal = "auto"
	vf.reads = fs.String("reads", "auto", "")
	vf.strict = fs.Bool("strict", false, "")
	vf.json = fs.Bool("json", false, "")
	vf.byteOrder = fs.String("byte-order", "native", "")
	vf.kexec = fs.Bool("kexec", false, "")
	// Accepted for drop-in use in place of `evmctl ima_measurement`:
	// violations are always replayed as the kernel extends them (all 0xff).
	fs.Bool("ignore-violations", false, "")
	vf.quote = addQuoteFlags(fs)
	vf.checkpoint = fs.String("checkpoint", "", "")
	vf.cpCheck = fs.String("checkpoint-check", "tail", "")
	vf.machines = fs.String("machines", "", "")
	vf.jobs = fs.Int("jobs", runtime.GOMAXPROCS(0), "")
	vf.cpEach = fs.Bool("checkpoint-each", false, "")
	vf.eventLog = fs.String("event-log", "", "")
	return vf
}

// only refuses every option given that is not among names (mode says
// which mode the run is in).
func (vf *verifyFlags) only(mode string, names ...string) error {
	var bad error
	vf.fs.Visit(func(f *pflag.Flag) {
		if bad == nil && !slices.Contains(names, f.Name) {
			bad = usagef("verify: --%s does not apply to a run with %s", f.Name, mode)
		}
	})
	return bad
}
