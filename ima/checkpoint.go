package ima

// Incremental verification: a Checkpoint records where a verification of
// a growing list stopped, so that the next one reads only the entries
// that arrived since and still gives the verdict a full run gives.
//
// # What a checkpoint holds (CheckpointFormat, version 1)
//
// JSON, written by MarshalCheckpoint and read by ParseCheckpoint:
//
//	format           "gokexec/ima-checkpoint/1"
//	byte_order       "little" or "big": the list's
//	entries, offset  entries and bytes consumed: the list [0, offset)
//	consumed_sha256  SHA-256 of those bytes (binds the consumed part)
//	sha256_state     the SHA-256 state after them (crypto/sha256's
//	                 MarshalBinary), so the next digest costs only the new bytes
//	tail_len, tail_sha256  SHA-256 of the last tail_len (<= 4096) consumed bytes
//	banks            per bank: its chains, each a method ("per-bank",
//	                 "sha1-padded") and the running value of every PCR
//	                 the list extends, hex, after entry entries-1
//	pcr_entries      entries per PCR
//	first_real       per PCR, the index of its first entry that is not a
//	                 violation (where a bank's two methods part)
//	boots            the timeline so far (Boot values; the last is open)
//	digest_mismatches the first 64 entries of each PCR whose stored SHA-1
//	                 template digest is not the SHA-1 of their data (index, PCR)
//	digest_mismatch_counts  how many such entries each PCR has (exact)
//
// Version 2 added digest_mismatch_counts (issue 21: version 1 kept only
// the first 64 mismatches, so excused ones could hide one that counted);
// a version-1 checkpoint is answered by a full run (ErrCheckpointVersion).
//
// # What a resumed run checks, and what it cannot see
//
// A run from a checkpoint checks that the list is at least offset bytes
// long and that its tail_len bytes before offset hash to tail_sha256 (a
// 4 KiB read), then reads from offset only. It does not re-read the
// consumed part: a rewrite of older entries that leaves the last 4 KiB
// alone is not seen — the checkpoint's running values, not the file's
// old bytes, are what the new entries extend, so such a rewrite cannot
// make a list verify that the TPM did not measure, but a full run on the
// rewritten file would give another verdict. CheckConsumed (imalog
// --checkpoint-check full) re-hashes the consumed part against
// consumed_sha256, at the cost of reading it (about 0.1 s per 150 MB).
//
// The resumed verdict equals the full run's whenever the quoted values
// match a prefix that reaches the checkpoint (they were taken after it).
// When they do not — an older quote, a bank that binds nothing with
// either method (the method-per-boot search), banks other than the
// checkpoint's — VerifyFrom falls back to a full run and says why
// (CheckpointInfo.Restart). A checkpoint is not written after a run that
// needed a method per boot. Whoever can write the checkpoint file can
// forge verdicts: it is the verifier's own state and belongs with it.

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
)

// CheckpointFormat names the checkpoint's format and version.
const CheckpointFormat = "gokexec/ima-checkpoint/2"

// checkpointFormatV1 is the previous version, refused with ErrCheckpointVersion.
const checkpointFormatV1 = "gokexec/ima-checkpoint/1"

// Checkpoint limits.
const (
	MaxCheckpoint = 1 << 20 // bytes of a checkpoint file
	checkTail     = 4096
	maxCPPCRs     = 64
	maxCPBoots    = MaxTimelineBoots
)

// ErrCheckpoint is wrapped by errors about a checkpoint: malformed, of
// another format or byte order, or not matching the list
// (ErrCheckpointMismatch).
var (
	ErrCheckpoint         = errors.New("checkpoint")
	ErrCheckpointMismatch = fmt.Errorf("%w: the list's consumed part changed", ErrCheckpoint)
	// ErrCheckpointVersion: a checkpoint of an earlier version, which a
	// caller answers with a full run.
	ErrCheckpointVersion = fmt.Errorf("%w: an earlier version", ErrCheckpoint)
)

// Checkpoint is where an incremental verification stopped.
type Checkpoint struct {
	Format    string           `json:"format"`
	ByteOrder string           `json:"byte_order"`
	Entries   int              `json:"entries"`
	Offset    int64            `json:"offset"`
	Consumed  string           `json:"consumed_sha256"`
	HashState []byte           `json:"sha256_state"`
	TailLen   int              `json:"tail_len"`
	Tail      string           `json:"tail_sha256"`
	Banks     []CheckpointBank `json:"banks"`
	Counts    map[uint32]int   `json:"pcr_entries"`
	FirstReal map[uint32]int   `json:"first_real"`
	Boots     []Boot           `json:"boots"`
	BootCount int              `json:"boot_count"`
	Exits     map[string]int   `json:"exits,omitempty"`
	// AggregateMismatches: boots whose boot_aggregate did not match the
	// firmware PCRs quoted at the time.
	AggregateMismatches int                `json:"boot_aggregate_mismatches,omitempty"`
	Mismatches          []CheckpointDigest `json:"digest_mismatches,omitempty"`
	MismatchN           map[uint32]int     `json:"digest_mismatch_counts,omitempty"`
}

// CheckpointBank is one bank's replay state.
type CheckpointBank struct {
	Bank   string            `json:"bank"`
	Chains []CheckpointChain `json:"chains"`
}

// CheckpointChain is one method's running PCR values.
type CheckpointChain struct {
	Method string            `json:"method"`
	Values map[uint32]string `json:"values"`
}

// CheckpointDigest is an entry whose stored SHA-1 differs from its data.
type CheckpointDigest struct {
	Index int    `json:"index"`
	PCR   uint32 `json:"pcr"`
}

// CheckpointInfo says what an incremental verification did.
type CheckpointInfo struct {
	From    int    // entries the checkpoint had consumed (0: none given)
	Read    int    // entries read by the resumed pass
	Restart string // why the verdict came from a full run ("": it did not)
	// Next is the checkpoint to keep; nil when none may be written, and
	// NoNext says why (a method per boot was needed; a bound).
	Next   *Checkpoint
	NoNext string
}

func orderName(o endian) string {
	if o.byteOrder() == binary.ByteOrder(binary.BigEndian) {
		return "big"
	}
	return "little"
}

func parseMethodName(s string) (Method, error) {
	for _, m := range []Method{MethodPerBank, MethodSHA1Padded} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: method %q", ErrCheckpoint, s)
}

// ParseCheckpoint reads a checkpoint and checks its shape.
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	if len(b) > MaxCheckpoint {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCheckpoint, len(b), MaxCheckpoint)
	}
	var cp Checkpoint
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	bad := func(why string) (*Checkpoint, error) { return nil, fmt.Errorf("%w: %s", ErrCheckpoint, why) }
	switch {
	case cp.Format == checkpointFormatV1:
		return nil, ErrCheckpointVersion
	case cp.Format != CheckpointFormat:
		return bad(fmt.Sprintf("format %q, want %q", cp.Format, CheckpointFormat))
	case cp.ByteOrder != "little" && cp.ByteOrder != "big":
		return bad("byte order " + cp.ByteOrder)
	case cp.Entries < 0 || cp.Offset < 0 || (cp.Entries == 0) != (cp.Offset == 0):
		return bad("entries and offset")
	case cp.TailLen < 0 || cp.TailLen > checkTail || int64(cp.TailLen) > cp.Offset:
		return bad("tail")
	case len(cp.Counts) > maxCPPCRs || len(cp.Boots) > maxCPBoots || len(cp.Mismatches) > maxCPPCRs*maxMismatches || len(cp.MismatchN) > maxCPPCRs:
		return bad("too many PCRs, boots or mismatches")
	}
	for _, h := range []string{cp.Consumed, cp.Tail} {
		if d, err := hex.DecodeString(h); err != nil || len(d) != sha256.Size {
			return bad("digest")
		}
	}
	var sh = sha256.New()
	if err := sh.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.HashState); err != nil {
		return bad("sha256 state: " + err.Error())
	}
	total := 0
	for p, n := range cp.Counts {
		if n < 0 || p > maxPCRIndex {
			return bad("count")
		}
		total += n
	}
	if total != cp.Entries {
		return bad("entries per PCR do not add up")
	}
	seen := map[crypto.Hash]bool{}
	for _, b := range cp.Banks {
		h, err := ParseHashName(b.Bank)
		if err != nil || checkBank(h) != nil || seen[h] {
			return bad("bank " + b.Bank)
		}
		seen[h] = true
		if len(b.Chains) == 0 || len(b.Chains) > 2 {
			return bad("chains of " + b.Bank)
		}
		for _, c := range b.Chains {
			if _, err := parseMethodName(c.Method); err != nil {
				return nil, err
			}
			if len(c.Values) > maxCPPCRs {
				return bad("values")
			}
			for p, v := range c.Values {
				d, err := hex.DecodeString(v)
				if err != nil || len(d) != h.Size() {
					return bad(fmt.Sprintf("%s PCR %d value", b.Bank, p))
				}
				if _, ok := cp.Counts[p]; !ok {
					return bad(fmt.Sprintf("%s PCR %d has a value but no entries", b.Bank, p))
				}
			}
		}
	}
	last, exits := 0, 0
	for _, c := range cp.Exits {
		if c < 0 {
			return bad("exits")
		}
		exits += c
	}
	for k := range cp.Exits {
		if !problemExit(k) && k != "soft-reboot" {
			return bad("exit " + k)
		}
	}
	for i, bt := range cp.Boots {
		open := i == len(cp.Boots)-1
		if bt.Start < last || bt.Start > cp.Entries || (i > 0 && (bt.Start <= cp.Boots[i-1].Start || bt.Number <= cp.Boots[i-1].Number)) ||
			bt.Number < 1 || bt.Number > cp.BootCount || (open && (bt.Exit != "" || bt.Number != cp.BootCount)) ||
			(!open && bt.Exit != exitOf(&bt)) || len(bt.Markers) > KeepMarkers+2 || bt.MarkerCount < len(bt.Markers) {
			return bad("boots")
		}
		for _, m := range bt.Markers {
			if len(m.Payload) > MaxMarkerPayload || m.Index < bt.Start || m.Index >= cp.Entries {
				return bad("markers")
			}
		}
		last = bt.Start
	}
	if (cp.Entries > 0) != (len(cp.Boots) > 0) || exits != max(cp.BootCount-1, 0) || cp.AggregateMismatches < 0 || cp.AggregateMismatches > cp.BootCount {
		return bad("boots")
	}
	listed := map[uint32]int{}
	prev := map[uint32]int{}
	for _, m := range cp.Mismatches {
		if m.Index < 0 || m.Index >= cp.Entries {
			return bad("mismatch index")
		}
		if k, ok := prev[m.PCR]; ok && m.Index <= k {
			return bad("mismatch order")
		}
		prev[m.PCR] = m.Index
		listed[m.PCR]++
	}
	for p, c := range listed {
		if c > maxMismatches || cp.MismatchN[p] < c || (c < maxMismatches && cp.MismatchN[p] != c) {
			return bad("mismatch counts")
		}
	}
	for p, c := range cp.MismatchN {
		if listed[p] == 0 || c > cp.Counts[p] {
			return bad("mismatch counts")
		}
	}
	if len(cp.FirstReal) > maxCPPCRs {
		return bad("first_real")
	}
	for p, k := range cp.FirstReal {
		if _, ok := cp.Counts[p]; !ok || k < 0 || k >= cp.Entries {
			return bad("first_real")
		}
	}
	return &cp, nil
}

// MarshalCheckpoint writes cp as indented JSON.
func MarshalCheckpoint(cp *Checkpoint) ([]byte, error) {
	return json.MarshalIndent(cp, "", " ")
}

// CheckConsumed re-reads the checkpoint's consumed part of the list and
// compares its SHA-256 with consumed_sha256.
func CheckConsumed(r io.ReaderAt, size int64, cp *Checkpoint) error {
	if size < cp.Offset {
		return fmt.Errorf("%w: the list has %d bytes, the checkpoint consumed %d", ErrCheckpointMismatch, size, cp.Offset)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, cp.Offset)); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != cp.Consumed {
		return fmt.Errorf("%w: the consumed %d bytes hash differently", ErrCheckpointMismatch, cp.Offset)
	}
	return nil
}

// checkTailOf compares the bytes just before the checkpoint's offset.
func checkTailOf(r io.ReaderAt, size int64, cp *Checkpoint) error {
	if size < cp.Offset {
		return fmt.Errorf("%w: the list has %d bytes, the checkpoint consumed %d", ErrCheckpointMismatch, size, cp.Offset)
	}
	buf := make([]byte, cp.TailLen)
	if _, err := r.ReadAt(buf, cp.Offset-int64(cp.TailLen)); err != nil && !(errors.Is(err, io.EOF) && cp.TailLen == 0) {
		return fmt.Errorf("%w: reading the tail: %v", ErrCheckpoint, err)
	}
	s := sha256.Sum256(buf)
	if hex.EncodeToString(s[:]) != cp.Tail {
		return fmt.Errorf("%w: the %d bytes before offset %d differ", ErrCheckpointMismatch, cp.TailLen, cp.Offset)
	}
	return nil
}

// resumed is the state a pass starts from and ends in.
type resumed struct {
	n      int
	off    int64
	hs     hash.Hash
	chains map[crypto.Hash][]*chain
	counts map[uint32]int
	first  map[uint32]int // first non-violation entry per PCR
	tb     *TimelineBuilder
	led    *ledger
}

// VerifyFrom verifies the list in r (size bytes, in order) against quoted
// from the checkpoint cp (nil: from the start), reading only what follows
// cp, and returns the verdict, what it did, and the next checkpoint. The
// verdict is the one VerifyReaderAt gives on the whole list; when the
// resumed state cannot decide it, a full run does (info.Restart). An error
// wrapping ErrCheckpointMismatch means the list no longer starts with
// what cp consumed.
func VerifyFrom(r io.ReaderAt, size int64, order binary.ByteOrder, cp *Checkpoint, quoted PCRValues, opt VerifyOptions) (VerifyResult, CheckpointInfo, error) {
	var info CheckpointInfo
	if order == nil {
		return VerifyResult{}, info, errNilOrder
	}
	eo := endianOf(order)
	banks := make([]crypto.Hash, 0, len(quoted))
	for b := range quoted {
		if checkBank(b) == nil {
			banks = append(banks, b)
		}
	}
	slices.SortFunc(banks, func(a, b crypto.Hash) int { return cmp.Or(bankSize(a)-bankSize(b), int(a)-int(b)) })
	st, restart, err := restore(r, size, eo, cp, banks)
	if err != nil {
		return VerifyResult{}, info, err
	}
	info.From = st.n
	if restart != "" {
		info.Restart = restart
		st, _, _ = restore(r, size, eo, nil, banks)
		info.From = 0
	}
	start := st.n
	st.tb.SetFirmware(opt.firmware(quoted))
	if err := resumePass(r, size, eo, st, quoted); err != nil {
		return VerifyResult{}, info, err
	}
	info.Read = st.n - start
	res, why := decideResumed(st, quoted, opt, start, len(quoted))
	if why != "" {
		if info.Restart == "" {
			info.Restart = why
		}
		full, err := VerifyReaderAt(r, size, order, quoted, opt)
		if err != nil {
			return full, info, err
		}
		res = full
	}
	for _, b := range res.Banks {
		if len(b.BootMethods) > 0 {
			info.NoNext = "a method per boot was needed"
			return res, info, nil
		}
	}
	next, err := st.checkpoint(r, eo)
	if err != nil {
		return res, info, err
	}
	// Only a checkpoint the next run accepts is handed out: one that
	// would exceed a bound (more than maxCPPCRs PCRs, MaxCheckpoint
	// bytes) is not.
	b, err := MarshalCheckpoint(next)
	if err != nil {
		return res, info, err
	}
	if _, err := ParseCheckpoint(b); err != nil {
		info.NoNext = "it would not be accepted: " + err.Error()
		return res, info, nil
	}
	info.Next = next
	return res, info, nil
}

// restore builds the starting state from cp, or says why a full start is
// needed (restart). A checkpoint that does not match the list is an error.
func restore(r io.ReaderAt, size int64, eo endian, cp *Checkpoint, banks []crypto.Hash) (*resumed, string, error) {
	st := &resumed{hs: sha256.New(), chains: map[crypto.Hash][]*chain{}, counts: map[uint32]int{}, first: map[uint32]int{}, tb: NewTimelineBuilder(eo.byteOrder()), led: newLedger()}
	for _, b := range banks {
		st.chains[b] = newChains(b)
	}
	if cp == nil {
		return st, "", nil
	}
	if cp.ByteOrder != orderName(eo) {
		return nil, "", fmt.Errorf("%w: written for a %s-endian list", ErrCheckpoint, cp.ByteOrder)
	}
	if err := checkTailOf(r, size, cp); err != nil {
		return nil, "", err
	}
	have := map[crypto.Hash]CheckpointBank{}
	for _, b := range cp.Banks {
		h, _ := ParseHashName(b.Bank)
		have[h] = b
	}
	if len(have) != len(banks) {
		return st, "the quoted banks are not the checkpoint's", nil
	}
	for _, b := range banks {
		cb, ok := have[b]
		if !ok {
			return st, "the quoted banks are not the checkpoint's", nil
		}
		for _, x := range st.chains[b] {
			var vals map[uint32]string
			for _, c := range cb.Chains {
				if m, _ := parseMethodName(c.Method); m == x.method {
					vals = c.Values
				}
			}
			if vals == nil {
				return st, "the checkpoint lacks a method of bank " + HashName(b), nil
			}
			for p, v := range vals {
				d, _ := hex.DecodeString(v)
				s := x.state(p)
				copy(s.v, d)
			}
		}
	}
	if err := st.hs.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.HashState); err != nil {
		return nil, "", fmt.Errorf("%w: sha256 state: %v", ErrCheckpoint, err)
	}
	st.n, st.off = cp.Entries, cp.Offset
	for p, c := range cp.Counts {
		st.counts[p] = c
	}
	for p, k := range cp.FirstReal {
		st.first[p] = k
	}
	st.tb.restoreState(cp.Boots, cp.BootCount, cp.Exits, cp.AggregateMismatches)
	for _, m := range cp.Mismatches {
		st.led.first[m.PCR] = append(st.led.first[m.PCR], m.Index)
	}
	for p, c := range cp.MismatchN {
		st.led.counts[p] = c
	}
	return st, "", nil
}

// newChains are a bank's chains as a streamed verification runs them:
// its own hash, and for other banks than SHA-1 the padded SHA-1 too.
func newChains(b crypto.Hash) []*chain {
	if b == crypto.SHA1 {
		return []*chain{newChain(b, MethodPerBank, srcStored, nil)}
	}
	return []*chain{newChain(b, MethodPerBank, 0, nil), newChain(b, MethodSHA1Padded, srcStored, nil)}
}

// resumePass reads the list from st.off and extends st with it. The
// chains' quoted values are set first, so that intervals start at st.n.
func resumePass(r io.ReaderAt, size int64, eo endian, st *resumed, quoted PCRValues) error {
	var jb job
	var all []*chain
	for _, b := range sortedBanks(st.chains) {
		cs := st.chains[b]
		for _, x := range cs {
			x.quoted = quoted[b]
			if x.src >= 0 {
				x.src = len(jb.own)
				jb.own = append(jb.own, b)
			}
			for _, p := range x.pcrs.indices() {
				s := x.pcrs.get(p)
				s.q, s.from, s.lo, s.hi = nil, -1, -1, 0
			}
			// every PCR the bank quotes starts tracked at st.n
			for p, q := range x.quoted {
				if len(q) != x.size {
					continue
				}
				s := x.state(p)
				s.q = q
				if bytes.Equal(s.v, q) {
					s.from = st.n
				}
			}
		}
		all = append(all, cs...)
	}
	jb.sha1 = true
	base, off := st.n, st.off
	sec := io.NewSectionReader(r, off, size-off)
	src := source{order: eo, open: func() (io.Reader, error) { return io.TeeReader(sec, st.hs), nil }}
	n, err := runPass(src, jb, func(c *chunk) error {
		c.base += base
		extendChunk(all, c)
		for i := range c.es {
			e, k := &c.es[i], c.base+i
			st.counts[e.PCR]++
			if _, ok := st.first[e.PCR]; !ok && !e.Violation() {
				st.first[e.PCR] = k
			}
		}
		st.led.chunk(c, all)
		for _, i := range c.cand {
			st.tb.Add(c.base+int(i), &c.es[i])
		}
		c.base -= base
		return nil
	})
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Index += base
			pe.Offset += off
		}
		return err
	}
	st.n += n
	st.off = size
	for _, cs := range st.chains {
		for _, x := range cs {
			x.finish(st.n)
		}
	}
	return nil
}

func sortedBanks(m map[crypto.Hash][]*chain) []crypto.Hash {
	bs := make([]crypto.Hash, 0, len(m))
	for b := range m {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(a, b crypto.Hash) int { return cmp.Or(bankSize(a)-bankSize(b), int(a)-int(b)) })
	return bs
}

// decideResumed makes the verdict from the resumed state as verifySource
// does from a full pass, or says why it cannot (a full run must).
func decideResumed(st *resumed, quoted PCRValues, opt VerifyOptions, start, nq int) (VerifyResult, string) {
	n := st.n
	res := VerifyResult{Prefix: -1, Some: -1, Reads: opt.Reads, Strict: opt.Strict, Entries: n}
	res.Timeline = st.tb.Finish(n)
	used := make([]uint32, 0, len(st.counts))
	for p, c := range st.counts {
		if c > 0 {
			used = append(used, p)
		}
	}
	slices.Sort(used)
	if nq == 0 {
		return res, "no quoted PCR values"
	}
	unquoted := map[uint32][]string{}
	for _, b := range sortedBanks(st.chains) {
		br, problems := newBankResult(b, used, quoted[b], unquoted)
		if len(problems) > 0 {
			// A full run reports the problem (and a verdict of inconsistent).
			return res, problems[0]
		}
		cs := st.chains[b]
		br.Replayed = hexMap(cs[0].values(), br.PCRs)
		reaches := func(x *chain) (run, bool) {
			lo, hi := x.interval(br.PCRs)
			return run{x.method, lo, hi}, lo <= hi && hi >= max(start, 1)
		}
		// As a full run on a file decides: the bank's own hash first, the
		// padded SHA-1 only if that binds nothing. A resumed run sees
		// prefixes from start on only, so "binds nothing" is known only
		// from the start of the list.
		own, ok := reaches(cs[0])
		switch {
		case ok:
			br.runs = []run{own}
		case len(cs) == 1:
			return res, "bank " + br.Bank + " reproduces no prefix reaching the checkpoint"
		case start > 0 && !partedBefore(st.first, br.PCRs, start):
			// Its own hash could then bind a prefix before start.
			return res, "bank " + br.Bank + " reproduces no prefix reaching the checkpoint with its own hash"
		default:
			pad, ok := reaches(cs[1])
			if !ok {
				return res, "bank " + br.Bank + " reproduces no prefix reaching the checkpoint with either method"
			}
			br.runs = []run{own, pad}
			br.ReplayedP = hexMap(cs[1].values(), br.PCRs)
		}
		res.Banks = append(res.Banks, br)
	}
	for _, p := range used {
		if bs := unquoted[p]; len(bs) > 0 {
			res.Unquoted = append(res.Unquoted, UnquotedPCR{PCR: p, Entries: st.counts[p], Banks: bs})
		}
	}
	if len(res.Banks) != nq {
		return res, "a quoted bank this package cannot replay"
	}
	decide(&res, opt, n)
	if opt.Reads != ReadsPerBank && res.Prefix < start {
		return res, "no prefix common to the banks reaches the checkpoint"
	}
	// The ledger holds the counts at every prefix end from start on (the
	// checkpoint's counts are those before start); every threshold is one.
	st.led.classify(&res, dataBound(&res), max(res.Some, res.Prefix, 0), n)
	return res, ""
}

// checkpoint writes the state out.
func (st *resumed) checkpoint(r io.ReaderAt, eo endian) (*Checkpoint, error) {
	cp := &Checkpoint{Format: CheckpointFormat, ByteOrder: orderName(eo), Entries: st.n, Offset: st.off,
		Counts: map[uint32]int{}, FirstReal: map[uint32]int{}}
	sum := st.hs.Sum(nil)
	cp.Consumed = hex.EncodeToString(sum)
	var err error
	if cp.HashState, err = st.hs.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return nil, err
	}
	cp.TailLen = int(min(int64(checkTail), st.off))
	tail := make([]byte, cp.TailLen)
	if _, err := r.ReadAt(tail, st.off-int64(cp.TailLen)); err != nil && cp.TailLen > 0 {
		return nil, err
	}
	ts := sha256.Sum256(tail)
	cp.Tail = hex.EncodeToString(ts[:])
	for p, c := range st.counts {
		if c > 0 {
			cp.Counts[p] = c
		}
	}
	for p, k := range st.first {
		cp.FirstReal[p] = k
	}
	for _, b := range sortedBanks(st.chains) {
		cb := CheckpointBank{Bank: HashName(b)}
		for _, x := range st.chains[b] {
			vals := map[uint32]string{}
			for _, p := range x.pcrs.indices() {
				if cp.Counts[p] > 0 {
					vals[p] = hex.EncodeToString(x.pcrs.get(p).v)
				}
			}
			cb.Chains = append(cb.Chains, CheckpointChain{Method: x.method.String(), Values: vals})
		}
		cp.Banks = append(cp.Banks, cb)
	}
	cp.Boots, cp.BootCount, cp.Exits, cp.AggregateMismatches = st.tb.state(), st.tb.count, maps.Clone(st.tb.exits), st.tb.aggBad
	for _, p := range slices.Sorted(maps.Keys(st.led.first)) {
		for _, k := range st.led.first[p] {
			cp.Mismatches = append(cp.Mismatches, CheckpointDigest{k, p})
		}
	}
	for p, c := range st.led.counts {
		if c > 0 {
			if cp.MismatchN == nil {
				cp.MismatchN = map[uint32]int{}
			}
			cp.MismatchN[p] = c
		}
	}
	return cp, nil
}

// partedBefore reports whether some PCR of check has an entry other than
// a violation before start. A bank's own-hash chain and its padded chain
// then differ at that PCR from there on, and (hash chains not colliding)
// a quote that the padded chain reproduces at or after start is not
// reproduced by the own-hash chain at any prefix 1..start-1: whether the
// own hash binds a non-empty prefix is then known from start on.
func partedBefore(first map[uint32]int, check []uint32, start int) bool {
	for _, p := range check {
		if k, ok := first[p]; ok && k < start {
			return true
		}
	}
	return false
}
