package main

import (
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gokexec/gokexec/ima"
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

// loadList reads and parses a binary list (or, with kexec, a hand-over
// buffer).
func loadList(name string, stdin io.Reader, order binary.ByteOrder, kexec bool) ([]ima.Entry, error) {
	b, err := readInput(name, stdin)
	if err != nil {
		return nil, err
	}
	var entries []ima.Entry
	if kexec {
		entries, err = ima.ParseKexecBuffer(b, order)
	} else {
		entries, err = ima.ParseList(b, order)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return entries, nil
}

type jsonEntry struct {
	Index          int            `json:"index"`
	PCR            uint32         `json:"pcr"`
	TemplateDigest string         `json:"template_digest"`
	Template       string         `json:"template"`
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
	put("name", d.Name)
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
	entries, err := loadList(name, stdin, order, *kexec)
	if err != nil {
		return exitBad, err
	}
	switch *format {
	case "ascii":
		out, err := ima.AppendASCII(nil, entries, order)
		if err != nil {
			return exitBad, fmt.Errorf("%s: %w", name, err)
		}
		_, err = stdout.Write(out)
		return exitOK, err
	case "json":
		list := make([]jsonEntry, len(entries))
		for i := range entries {
			e := &entries[i]
			d, err := e.Decode(order)
			if err != nil {
				return exitBad, fmt.Errorf("%s: entry %d: %w", name, i, err)
			}
			list[i] = jsonEntry{Index: i, PCR: e.PCR, TemplateDigest: hex.EncodeToString(e.TemplateDigest[:]),
				Template: e.TemplateName, Violation: e.Violation(), Fields: decodedJSON(d)}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitOK, enc.Encode(map[string]any{"entries": list, "timeline": ima.BuildTimelineOrder(entries, order)})
	}
	return exitBad, usagef("show: --format %q: want ascii or json", *format)
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
	var replayed []map[uint32][]byte
	var n int
	if *kexec {
		entries, err := loadList(name, stdin, order, true)
		if err != nil {
			return exitBad, err
		}
		replayed, n = ima.ReplayAll(entries, runs), len(entries)
	} else {
		f, size, b, err := openList(name, stdin)
		if err != nil {
			return exitBad, err
		}
		if f != nil {
			defer f.Close()
			replayed, n, err = ima.ReplayReaderAt(f, size, order, runs)
		} else {
			replayed, n, err = ima.ReplayList(b, order, runs)
		}
		if err != nil {
			return exitBad, fmt.Errorf("%s: %w", name, err)
		}
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
		return exitOK, enc.Encode(map[string]any{"entries": n, "replay": results})
	}
	fmt.Fprintf(stdout, "%s: %d entries\n", name, n)
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
	data, err := readInput(file, stdin)
	if err != nil {
		return nil, err
	}
	v, err := ima.ParsePCRFile(data, bank)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

func cmdVerify(args []string, stdin io.Reader, stdout io.Writer) (int, error) {
	fs := newFlags("verify")
	pcrs := fs.StringArray("pcrs", nil, "[BANK,]FILE with quoted PCR values (repeatable)")
	tpmDev := fs.String("tpm", "", "read PCRs from a TPM (--tpm or --tpm=/dev/tpm0)")
	fs.Lookup("tpm").NoOptDefVal = "auto"
	asJSON := fs.Bool("json", false, "JSON output")
	bo := fs.String("byte-order", "native", "native, little (canonical) or big")
	kexec := fs.Bool("kexec", false, "FILE is a kexec hand-over buffer")
	// Accepted for drop-in use in place of `evmctl ima_measurement`:
	// violations are always replayed as the kernel extends them (all 0xff).
	fs.Bool("ignore-violations", false, "accepted for evmctl compatibility; violations always extend 0xff")
	rest, err := parseFlags(fs, args)
	if err != nil {
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
	quoted := ima.PCRValues{}
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
	}
	var res ima.VerifyResult
	var tl ima.Timeline
	if *kexec {
		entries, err := loadList(name, stdin, order, true)
		if err != nil {
			return exitBad, err
		}
		if err := mergePCRArgs(quoted, *pcrs, stdin); err != nil {
			return exitBad, err
		}
		res, tl = ima.VerifyOrder(entries, quoted, order), ima.BuildTimelineOrder(entries, order)
	} else {
		// One parallel pass over the list: parse, hash, extend and
		// timeline without materializing the entries.
		f, size, b, err := openList(name, stdin)
		if err != nil {
			return exitBad, err
		}
		if f != nil {
			defer f.Close()
		}
		if err := mergePCRArgs(quoted, *pcrs, stdin); err != nil {
			return exitBad, err
		}
		if size > 0 {
			res, tl, err = ima.VerifyReaderAt(f, size, order, quoted)
		} else {
			res, tl, err = ima.VerifyList(b, order, quoted)
		}
		if err != nil {
			return exitBad, fmt.Errorf("%s: %w", name, err)
		}
	}
	code := exitMismatch
	if res.Consistent {
		code = exitOK
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(map[string]any{"list": name, "verify": res, "timeline": tl})
	}
	printTimeline(stdout, name, tl)
	printVerify(stdout, res, tl)
	return code, nil
}

// openList opens a list for one pass: a regular file is returned open
// with its size, to be read in segments through small buffers (cheaper
// than holding it, or touching a mapping page by page); stdin, securityfs
// and other files of unknown size are read whole into b.
func openList(name string, stdin io.Reader) (f *os.File, size int64, b []byte, err error) {
	if name != "-" {
		if f, err = os.Open(name); err != nil {
			return nil, 0, nil, err
		}
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > 0 && st.Size() <= maxInput {
			return f, st.Size(), nil, nil
		}
	}
	var r io.Reader = stdin
	if f != nil {
		r = f
	}
	b, err = readAll(name, r)
	if f != nil {
		f.Close()
	}
	return nil, 0, b, err
}

func mergePCRArgs(quoted ima.PCRValues, args []string, stdin io.Reader) error {
	for _, a := range args {
		v, err := loadPCRArg(a, stdin)
		if err != nil {
			return err
		}
		quoted.Merge(v)
	}
	return nil
}

func printTimeline(w io.Writer, name string, tl ima.Timeline) {
	fmt.Fprintf(w, "list %s: %d entries, %d boot(s)\n", name, tl.Entries, len(tl.Boots))
	for i, b := range tl.Boots {
		start := "no boot_aggregate"
		if b.BootAggregate {
			start = "boot_aggregate"
		}
		fmt.Fprintf(w, "  boot %d: entries %d-%d (%s), %d violation(s), exit: %s\n", i+1, b.Start, b.End-1, start, b.Violations, b.Exit)
		for _, m := range b.Markers {
			fmt.Fprintf(w, "    #%d %s (PCR %d): %s\n", m.Index, m.Name, m.PCR, m.Payload)
		}
	}
	fmt.Fprintf(w, "markers: %s: %s\n", tl.Verdict, tl.Reason)
}

func methodName(m *ima.Method) string {
	if m == nil {
		return "none"
	}
	return m.String()
}

func printVerify(w io.Writer, res ima.VerifyResult, tl ima.Timeline) {
	for _, b := range res.Banks {
		pcrs := make([]string, len(b.PCRs))
		for i, p := range b.PCRs {
			pcrs[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(w, "bank %s: PCRs [%s]: ", b.Bank, strings.Join(pcrs, ","))
		if len(b.BootMethods) > 0 {
			names := make([]string, len(b.BootMethods))
			for i, m := range b.BootMethods {
				names[i] = m.String()
			}
			fmt.Fprintf(w, "matches the whole list with a method per boot: %s (the kernels hashed this bank differently)", strings.Join(names, ", "))
		} else if b.Method != nil {
			fmt.Fprintf(w, "matches at the common prefix with %s", methodName(b.Method))
		} else {
			fmt.Fprintf(w, "no match at the common prefix")
		}
		fmt.Fprintf(w, "; alone: longest prefix %d (%s)\n", b.OwnPrefix, methodName(b.OwnMethod))
		if b.Method == nil && len(b.BootMethods) == 0 {
			for _, p := range b.PCRs {
				fmt.Fprintf(w, "  PCR-%02d quoted   %s\n", p, b.Quoted[p])
				fmt.Fprintf(w, "  PCR-%02d replayed %s (per-bank, whole list)\n", p, b.Replayed[p])
				if b.ReplayedP != nil {
					fmt.Fprintf(w, "  PCR-%02d replayed %s (sha1-padded, whole list)\n", p, b.ReplayedP[p])
				}
			}
		}
		if len(b.Unverified) > 0 {
			fmt.Fprintf(w, "  not quoted, not checked: PCRs %v\n", b.Unverified)
		}
	}
	for _, i := range res.DigestMismatches {
		fmt.Fprintf(w, "entry %d: stored template digest differs from the SHA-1 of its data\n", i)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	if res.Consistent {
		fmt.Fprintf(w, "verdict: consistent: the first %d of %d entries reproduce every quoted PCR\n", res.Prefix, res.Entries)
		return
	}
	if tl.Verdict == ima.VerdictEventsLost {
		fmt.Fprintf(w, "verdict: inconsistent: %s\n", tl.Reason)
		return
	}
	fmt.Fprintf(w, "verdict: inconsistent: no prefix of the list reproduces the quoted PCRs\n")
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
	b, err := readInput(name, stdin)
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
		if err := ima.CheckRestorableOrder(entries, order); err != nil {
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
		return code, enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "%s: the next kernel would restore %d of %d entries\n", name, rep.Restored, rep.Header.Count)
	for _, p := range rep.Problems {
		where := "header"
		if p.Index >= 0 {
			where = fmt.Sprintf("entry %d (offset %d)", p.Index, p.Offset)
		}
		fmt.Fprintf(stdout, "  %s: %s: %s\n", where, p.Kind, p.Reason)
	}
	return code, nil
}
