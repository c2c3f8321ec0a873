package main

// imalog verify --machines DIR|MANIFEST [--jobs N]
//
// Verifies many machines in one process and prints one JSON verdict per
// machine per line (JSON Lines, in the manifest's or the directory's
// order; docs/verdict-schema.md). A machine that cannot be read gets a
// verdict with exit 2 and reason bad_input; the others go on. The exit
// status is the worst machine's: 2 if any had bad input, else 1 if any
// was inconsistent, else 0.
//
// A manifest is a JSON file (ManifestSchema); paths in it are relative to
// its directory. A directory holds one subdirectory per machine, named
// after it, with:
//
//	binary_runtime_measurements   the list (required)
//	quote.msg quote.sig quote.pcrs  a quote (tpm2_quote -m -s -o), with
//	ak.pub or ak.pem              its AK, and
//	nonce                         the nonce sent, hex (optional)
//	pcrs.*                        otherwise: PCR values in one file (one instant), or
//	pcr-<bank>.txt                one file per bank (read bank by bank)
//	checkpoint                    with --checkpoint-each: read if present, rewritten
//
// A manifest machine with "checkpoint" is verified incrementally.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/verdict"
)

// Limits of a fleet run.
const (
	maxManifest  = 64 << 20
	maxNonceFile = 1 << 10
)

// machine is a manifest machine (package verdict's) and where its files
// are confined.
type machine struct {
	verdict.ManifestMachine
	dir       string // the files' confinement: the machine's (or the manifest's) directory
	nonceFile string // a directory machine's nonce file
}

// ManifestSchema names the manifest format's version.
const ManifestSchema = verdict.ManifestSchema

// loadMachines reads a manifest file or scans a directory.
func loadMachines(path string, cpEach bool) ([]machine, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return scanMachineDir(path, cpEach)
	}
	b, err := readSmall(path, nil, maxManifest)
	if err != nil {
		return nil, err
	}
	m, err := verdict.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	ms := make([]machine, len(m.Machines))
	for i := range m.Machines {
		mm := &ms[i]
		mm.ManifestMachine, mm.dir = m.Machines[i], base
		mm.List, mm.Checkpoint, mm.EventLog = rel(mm.List), rel(mm.Checkpoint), rel(mm.EventLog)
		for j, a := range mm.PCRs {
			if b, f, ok := strings.Cut(a, ","); ok {
				if _, err := ima.ParseHashName(b); err == nil {
					mm.PCRs[j] = b + "," + rel(f)
					continue
				}
			}
			mm.PCRs[j] = rel(a)
		}
		if q := mm.Quote; q != nil {
			q.Message, q.Signature, q.AK = rel(q.Message), rel(q.Signature), rel(q.AK)
		}
	}
	return ms, nil
}

// scanMachineDir makes a machine of every subdirectory holding a list.
func scanMachineDir(dir string, cpEach bool) ([]machine, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ms []machine
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		d := filepath.Join(dir, e.Name())
		has := func(n string) bool { _, err := os.Lstat(filepath.Join(d, n)); return err == nil }
		if !has("binary_runtime_measurements") {
			continue
		}
		if len(ms) >= verdict.MaxMachines {
			return nil, fmt.Errorf("%s: more than %d machines", dir, verdict.MaxMachines)
		}
		m := machine{ManifestMachine: verdict.ManifestMachine{Name: e.Name(), List: filepath.Join(d, "binary_runtime_measurements")}, dir: d}
		if has("quote.msg") {
			q := &verdict.ManifestQuote{Message: filepath.Join(d, "quote.msg"), Signature: filepath.Join(d, "quote.sig"), AK: filepath.Join(d, "ak.pub")}
			if !has("ak.pub") {
				q.AK = filepath.Join(d, "ak.pem")
			}
			if has("nonce") {
				m.nonceFile = filepath.Join(d, "nonce")
			}
			m.Quote, m.PCRs = q, []string{filepath.Join(d, "quote.pcrs")}
		} else {
			files, _ := filepath.Glob(filepath.Join(d, "pcrs.*"))
			banks, _ := filepath.Glob(filepath.Join(d, "pcr-*.txt"))
			for _, f := range banks {
				b := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "pcr-"), ".txt")
				if _, err := ima.ParseHashName(b); err == nil {
					files = append(files, b+","+f)
				}
			}
			m.PCRs = files
		}
		if cpEach {
			m.Checkpoint = filepath.Join(d, "checkpoint")
		}
		if has("binary_bios_measurements") {
			m.EventLog = filepath.Join(d, "binary_bios_measurements")
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b machine) int { return strings.Compare(a.Name, b.Name) })
	return ms, nil
}

// verifyMachine verifies one machine; problems reading it become a
// verdict with exit 2.
// fleetFlags are the command-line options that apply to every machine.
type fleetFlags struct{ akRestricted, allowSHA1 bool }

func verifyMachine(m machine, fl fleetFlags) *Verdict {
	bad := func(err error) *Verdict {
		v := verdict.BadInput(err)
		v.SetNames(m.List, m.Name)
		return v
	}
	root, err := os.OpenRoot(m.dir)
	if err != nil {
		return bad(err)
	}
	defer root.Close()
	fsys := &confined{root: root, dir: m.dir}
	order, err := parseOrder(m.ByteOrder)
	if err != nil {
		return bad(err)
	}
	paths := append([]string{m.List, m.Checkpoint}, m.PCRs...)
	if m.Quote != nil {
		paths = append(paths, m.Quote.Message, m.Quote.Signature, m.Quote.AK)
	}
	if slices.Contains(paths, "-") {
		return bad(errors.New(`"-" (standard input) names no machine's file`))
	}
	if len(m.PCRs) == 0 {
		return bad(errors.New("no PCR values (pcrs) for the list"))
	}
	var v *Verdict
	switch {
	case m.Quote != nil:
		nonce := m.Quote.Nonce
		if m.nonceFile != "" {
			b, err := readSmall(m.nonceFile, fsys, maxNonceFile)
			if err != nil {
				return bad(err)
			}
			nonce = strings.TrimSpace(string(b))
		}
		restricted := fl.akRestricted || m.AKRestricted
		allow := m.AllowSHA1 || fl.allowSHA1
		qf := &quoteFlags{quote: &m.Quote.Message, sig: &m.Quote.Signature, ak: &m.Quote.AK, nonce: &nonce, restricted: &restricted, allowSHA1: &allow}
		in, err := loadQuote(qf, m.PCRs, fsys)
		if err != nil {
			return bad(err)
		}
		r := listRun{name: m.List, eventLog: m.EventLog, order: order, kexec: m.Kexec, ev: verdict.Evidence{Quote: in}, opt: verdict.Options{Strict: m.Strict}, cp: cpOptions{path: m.Checkpoint}}
		if v, err = r.run(fsys); err != nil {
			return bad(err)
		}
	default:
		v, err = verifyWithPCRs(m.ManifestMachine, order, fsys, cpOptions{path: m.Checkpoint})
		if err != nil {
			return bad(err)
		}
	}
	v.SetNames(m.List, m.Name)
	return v
}

// verifyWithPCRs is `imalog verify LIST --pcrs ...` as a Verdict.
func verifyWithPCRs(m verdict.ManifestMachine, order binary.ByteOrder, stdin io.Reader, cpo cpOptions) (*Verdict, error) {
	quoted := ima.PCRValues{}
	var sources []pcrSource
	for _, a := range m.PCRs {
		pv, err := loadPCRArg(a, stdin)
		if err != nil {
			return nil, err
		}
		quoted.Merge(pv)
		sources = append(sources, pcrSource{a, len(pv)})
	}
	reads := m.Reads
	if reads == "" {
		reads = "auto"
	}
	switch reads {
	case "auto", "instant", "per-bank":
	default:
		return nil, fmt.Errorf("reads %q: want auto, instant or per-bank", reads)
	}
	rc := decideReads(reads, sources, len(quoted))
	ev := verdict.Evidence{Values: quoted, Why: rc.why}
	if rc.perBank {
		ev.Reads = ima.ReadsPerBank
	}
	return listRun{name: m.List, eventLog: m.EventLog, order: order, kexec: m.Kexec, ev: ev, opt: verdict.Options{Strict: m.Strict}, cp: cpo}.run(stdin)
}

func cmdVerifyMachines(args []string, stdout io.Writer) (int, error) {
	vf := newVerifyFlags()
	fs := vf.fs
	src, jobs, useCP, akRestricted, allowSHA1 := vf.machines, vf.jobs, vf.cpEach, vf.quote.restricted, vf.quote.allowSHA1
	rest, err := parseFlags(fs, args)
	if err != nil {
		return exitBad, err
	}
	if err := vf.only("--machines", "machines", "jobs", "json", "checkpoint-each", "ak-restricted", "allow-sha1"); err != nil {
		return exitBad, err
	}
	if len(rest) != 0 {
		return exitBad, usagef("verify --machines: the lists come from %s; got arguments %q", *src, rest)
	}
	if *jobs < 1 {
		*jobs = 1
	}
	ms, err := loadMachines(*src, *useCP)
	if err != nil {
		return exitBad, err
	}
	verdicts := make([]*Verdict, len(ms))
	done := make([]chan struct{}, len(ms))
	for i := range done {
		done[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range *jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				verdicts[i] = verifyMachine(ms[i], fleetFlags{*akRestricted, *allowSHA1})
				close(done[i])
			}
		}()
	}
	go func() {
		for i := range ms {
			next <- i
		}
		close(next)
	}()
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	code := exitOK
	for i := range ms {
		<-done[i]
		v := verdicts[i]
		if err := enc.Encode(v); err != nil {
			return exitBad, err
		}
		verdicts[i] = nil
		switch {
		case v.Exit == exitBad:
			code = exitBad
		case v.Exit == exitMismatch && code == exitOK:
			code = exitMismatch
		}
	}
	wg.Wait()
	return code, w.Flush()
}
