package integration

// The one host-side check of a hand-over scenario (issue 23, Must have 2).
//
// It is written against DESIGN §3.1, §3.2 and §4 and shares no code with
// the producer: it splits the binary list itself, hashes template data with
// crypto/sha1, crypto/sha256 and crypto/sha512 directly, extends the PCRs
// itself and reads the marker payloads with its own pattern. A digest or
// counting bug in ima/ or loader/ therefore cannot cancel out between the
// code that writes a list and the code that checks it.

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
)

// hopHeaderSize is sizeof(struct ima_kexec_hdr) (DESIGN §3.2), which the
// kernel's ima_binary_runtime_size counts.
const hopHeaderSize = 24

// hopPage is the page size the hand-over segment is rounded to.
const hopPage = 4096

// bootReport is what one boot of a hand-over scenario reported: its kernel
// release, its binary list and its PCR values (bank -> 24 hex values),
// each the LAST of its kind that boot reported, so that every check judges
// one snapshot. List or PCRs may be nil for a boot that did not report them.
type bootReport struct {
	Release string
	List    []byte
	PCRs    map[string][]string
}

// rawEntry is one entry of a binary list as this file splits it.
type rawEntry struct {
	off, end int // byte range in the list
	pcr      uint32
	digest   []byte // the SHA-1 template digest as stored
	template string
	data     []byte // template data (for template "ima": digest | u32 len | name)
}

// splitRaw splits a little-endian binary measurement list (DESIGN §3.1).
func splitRaw(b []byte) ([]rawEntry, error) {
	var out []rawEntry
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		e := rawEntry{off: off}
		p := off
		need := func(n int) error {
			if n < 0 || len(b)-p < n {
				return fmt.Errorf("entry %d at byte %d: truncated", len(out), off)
			}
			return nil
		}
		if err := need(4 + 20 + 4); err != nil {
			return nil, err
		}
		e.pcr = le.Uint32(b[p:])
		e.digest = b[p+4 : p+24]
		nl := int(le.Uint32(b[p+24:]))
		p += 28
		if nl > 255 {
			return nil, fmt.Errorf("entry %d at byte %d: template name length %d", len(out), off, nl)
		}
		if err := need(nl); err != nil {
			return nil, err
		}
		e.template = string(b[p : p+nl])
		p += nl
		if e.template == "ima" {
			if err := need(24); err != nil {
				return nil, err
			}
			fl := int(le.Uint32(b[p+20:]))
			if fl > 255 {
				return nil, fmt.Errorf("entry %d at byte %d: ima name length %d", len(out), off, fl)
			}
			if err := need(24 + fl); err != nil {
				return nil, err
			}
			e.data = b[p : p+24+fl]
			p += 24 + fl
		} else {
			if err := need(4); err != nil {
				return nil, err
			}
			dl := int(le.Uint32(b[p:]))
			p += 4
			if err := need(dl); err != nil {
				return nil, err
			}
			e.data = b[p : p+dl]
			p += dl
		}
		e.end = p
		out = append(out, e)
		off = p
	}
	return out, nil
}

// fields splits template data into its u32-length-prefixed fields.
func (e rawEntry) fields() ([][]byte, error) {
	var out [][]byte
	d := e.data
	for len(d) > 0 {
		if len(d) < 4 {
			return nil, errors.New("truncated field length")
		}
		n := int(binary.LittleEndian.Uint32(d))
		d = d[4:]
		if n > len(d) {
			return nil, errors.New("truncated field")
		}
		out = append(out, d[:n])
		d = d[n:]
	}
	return out, nil
}

// eventName is the n-ng field without its NUL ("" if there is none).
func (e rawEntry) eventName() string {
	if e.template == "ima" {
		return string(e.data[24:])
	}
	f, err := e.fields()
	if err != nil || len(f) < 2 {
		return ""
	}
	return string(bytes.TrimSuffix(f[1], []byte{0}))
}

func (e rawEntry) isBootAggregate() bool { return e.eventName() == "boot_aggregate" }

func (e rawEntry) isViolation() bool { return bytes.Equal(e.digest, make([]byte, 20)) }

// hopBanks are the banks this file can replay, with the standard library's
// hash of each.
var hopBanks = map[string]func() hash.Hash{
	"sha1": sha1.New, "sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New,
}

// templateDigest is the entry's digest in a bank: the bank's hash over the
// template data (for "ima": digest ‖ name zero-padded to 256 bytes), or,
// with padded, the SHA-1 digest zero-padded to the bank's size (the method
// some kernels use, DESIGN §3.1). A violation extends all 0xff.
func (e rawEntry) templateDigest(newH func() hash.Hash, padded bool) []byte {
	size := newH().Size()
	if e.isViolation() {
		return bytes.Repeat([]byte{0xff}, size)
	}
	in := e.data
	if e.template == "ima" {
		name := make([]byte, 256)
		copy(name, e.data[24:])
		in = append(append([]byte(nil), e.data[:20]...), name...)
	}
	if padded {
		s := sha1.Sum(in)
		return append(s[:], make([]byte, size-20)...)
	}
	h := newH()
	h.Write(in)
	return h.Sum(nil)
}

// replayMatches extends the bank's PCRs over es from zero and returns
// every n (0..len(es)) at which the values of es[:n] equal want for every
// PCR es extends (a PCR not yet extended must read as zero). padded[i] says
// whether boot segment i (split at boot_aggregate) extends SHA-1 padded.
// The second result describes the first mismatch at len(es).
func replayMatches(es []rawEntry, newH func() hash.Hash, padded []bool, want map[uint32][]byte) ([]int, string, error) {
	size := newH().Size()
	pcrs := map[uint32][]byte{}
	for _, e := range es {
		if _, ok := want[e.pcr]; !ok {
			return nil, "", fmt.Errorf("the list extends PCR %d, which was not reported", e.pcr)
		}
		pcrs[e.pcr] = make([]byte, size)
	}
	differ := 0
	for p, v := range pcrs {
		if !bytes.Equal(v, want[p]) {
			differ++
		}
	}
	var at []int
	if differ == 0 {
		at = append(at, 0)
	}
	seg := -1
	for i, e := range es {
		if e.isBootAggregate() || seg < 0 {
			seg++
		}
		cur := pcrs[e.pcr]
		was := bytes.Equal(cur, want[e.pcr])
		h := newH()
		h.Write(cur)
		h.Write(e.templateDigest(newH, seg < len(padded) && padded[seg]))
		cur = h.Sum(nil)
		pcrs[e.pcr] = cur
		is := bytes.Equal(cur, want[e.pcr])
		switch {
		case was && !is:
			differ++
		case !was && is:
			differ--
		}
		if differ == 0 {
			at = append(at, i+1)
		}
	}
	desc := ""
	for p, v := range pcrs {
		if !bytes.Equal(v, want[p]) {
			desc = fmt.Sprintf("PCR %d replays to %x, TPM has %x", p, v, want[p])
			break
		}
	}
	return at, desc, nil
}

// checkReplay checks that es replays to pcrs in every bank of pcrs this
// file knows. With minPrefix < 0 the whole list must match (PCRs read at
// one instant, nothing measured meanwhile). Otherwise each bank must match
// some prefix of at least minPrefix entries (PCRs read bank by bank while
// the system keeps measuring, DESIGN §3.1); the longest is returned per
// bank. releases[i] is the kernel of boot segment i: the method (bank hash
// or SHA-1 padded) is chosen per bank per kernel release, since a kernel
// uses one method per bank for all its boots.
func checkReplay(es []rawEntry, pcrs map[string][]string, releases []string, minPrefix int) (map[string]int, error) {
	if len(pcrs) == 0 {
		return nil, errors.New("no PCR values reported")
	}
	group := map[string]int{}
	segGroup := make([]int, len(releases))
	for i, r := range releases {
		if r == "" {
			r = "boot " + strconv.Itoa(i)
		}
		if _, ok := group[r]; !ok {
			group[r] = len(group)
		}
		segGroup[i] = group[r]
	}
	if len(group) > 8 {
		return nil, fmt.Errorf("%d distinct kernels: too many to try a method per kernel", len(group))
	}
	prefixes := map[string]int{}
	var errs []error
	banks := make([]string, 0, len(pcrs))
	for b := range pcrs {
		banks = append(banks, b)
	}
	sort.Strings(banks)
	for _, bank := range banks {
		newH, ok := hopBanks[bank]
		if !ok {
			continue
		}
		want := map[uint32][]byte{}
		for i, v := range pcrs[bank] {
			d, err := hex.DecodeString(v)
			if err != nil || len(d) != newH().Size() {
				return nil, fmt.Errorf("%s PCR %d: bad value %q", bank, i, v)
			}
			want[uint32(i)] = d
		}
		best, last := -1, ""
		for combo := 0; combo < 1<<len(group); combo++ {
			padded := make([]bool, len(releases))
			for i := range padded {
				padded[i] = combo&(1<<segGroup[i]) != 0
			}
			at, desc, err := replayMatches(es, newH, padded, want)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", bank, err)
			}
			if desc != "" {
				last = desc
			}
			if len(at) > 0 && at[len(at)-1] > best {
				best = at[len(at)-1]
			}
		}
		prefixes[bank] = best
		switch {
		case minPrefix < 0 && best != len(es):
			errs = append(errs, fmt.Errorf("%s bank: the %d entries do not replay to the PCRs with any method per kernel (e.g. %s)", bank, len(es), last))
		case minPrefix >= 0 && best < minPrefix:
			errs = append(errs, fmt.Errorf("%s bank: the PCRs match no prefix of at least %d of the %d entries (longest %d; e.g. %s)", bank, minPrefix, len(es), best, last))
		}
	}
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("no replayable bank among %v", banks)
	}
	return prefixes, errors.Join(errs...)
}

var markerPayload = regexp.MustCompile(`^kexec_segment_size=([0-9]+);ima_binary_runtime_size=([0-9]+);ima_runtime_measurements_count=([0-9]+);$`)

// hopMarker is one kexec_load/kexec_execute entry as read by this file.
type hopMarker struct {
	index                 int
	name                  string
	seg, size, count      uint64
	bufferEnd             int // byte offset where the entry ends
	hopPCR                uint32
	template, rawPayload  string
	decodeErr             error
	expectSize, expectCnt uint64
}

func readMarker(es []rawEntry, i int) hopMarker {
	e := es[i]
	m := hopMarker{index: i, name: e.eventName(), bufferEnd: e.end, hopPCR: e.pcr, template: e.template,
		expectSize: uint64(hopHeaderSize + e.off), expectCnt: uint64(i)}
	f, err := e.fields()
	if err != nil || len(f) != 3 {
		m.decodeErr = fmt.Errorf("template data is not d-ng|n-ng|buf (%v)", err)
		return m
	}
	m.rawPayload = string(f[2])
	sm := markerPayload.FindStringSubmatch(m.rawPayload)
	if sm == nil {
		m.decodeErr = fmt.Errorf("payload %q is not kexec_segment_size=N;ima_binary_runtime_size=N;ima_runtime_measurements_count=N;", m.rawPayload)
		return m
	}
	m.seg, _ = strconv.ParseUint(sm[1], 10, 64)
	m.size, _ = strconv.ParseUint(sm[2], 10, 64)
	m.count, _ = strconv.ParseUint(sm[3], 10, 64)
	return m
}

// isMarkerName reports names that look like a marker, misspelt ones
// included, so that a misspelt marker is reported rather than ignored.
func isMarkerName(n string) bool {
	return n == "kexec_load" || n == "kexec_execute" || (len(n) > 5 && n[:5] == "kexec" && n != "kexec-cmdline")
}

// checkHopMarkers checks, between each pair of boot_aggregate entries of
// es, exactly one kexec_load followed by exactly one kexec_execute (ima-buf,
// PCR 10) whose payload numbers equal their position: the count of entries
// before the marker, the bytes before it plus the 24-byte hand-over header
// (as the kernel's ima_get_binary_runtime_size counts them), and the same
// page-aligned hand-over segment size in both, large enough for the buffer
// through kexec_execute and no larger than that plus --ima-extra (extra)
// and two pages of slack. After the last boot_aggregate there is none.
func checkHopMarkers(es []rawEntry, boots int, extra uint64) error {
	var bas []int
	for i, e := range es {
		if e.isBootAggregate() {
			bas = append(bas, i)
		}
	}
	if len(bas) != boots {
		return fmt.Errorf("%d boot_aggregate entries, want %d (one per boot)", len(bas), boots)
	}
	if bas[0] != 0 {
		return fmt.Errorf("the list starts with %d entries before the first boot_aggregate", bas[0])
	}
	var errs []error
	for k := range bas {
		lo, hi := bas[k], len(es)
		if k+1 < len(bas) {
			hi = bas[k+1]
		}
		var ms []hopMarker
		for i := lo; i < hi; i++ {
			if isMarkerName(es[i].eventName()) {
				ms = append(ms, readMarker(es, i))
			}
		}
		if k == len(bas)-1 {
			if len(ms) != 0 {
				errs = append(errs, fmt.Errorf("boot %d (the last): %d marker(s) after its boot_aggregate, want none", k+1, len(ms)))
			}
			continue
		}
		if len(ms) != 2 || ms[0].name != "kexec_load" || ms[1].name != "kexec_execute" {
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%q@%d", m.name, m.index))
			}
			errs = append(errs, fmt.Errorf("hop %d (entries %d..%d): markers %v, want exactly kexec_load then kexec_execute", k+1, lo, hi-1, got))
			continue
		}
		for _, m := range ms {
			where := fmt.Sprintf("hop %d: %s at entry %d", k+1, m.name, m.index)
			switch {
			case m.decodeErr != nil:
				errs = append(errs, fmt.Errorf("%s: %w", where, m.decodeErr))
				continue
			case m.template != "ima-buf" || m.hopPCR != 10:
				errs = append(errs, fmt.Errorf("%s: template %s PCR %d, want ima-buf in PCR 10", where, m.template, m.hopPCR))
			}
			if m.count != m.expectCnt {
				errs = append(errs, fmt.Errorf("%s: ima_runtime_measurements_count=%d, but %d entries precede it", where, m.count, m.expectCnt))
			}
			if m.size != m.expectSize {
				errs = append(errs, fmt.Errorf("%s: ima_binary_runtime_size=%d, but the entries before it take %d bytes with the 24-byte header", where, m.size, m.expectSize))
			}
		}
		ld, ex := ms[0], ms[1]
		if ld.decodeErr != nil || ex.decodeErr != nil {
			continue
		}
		buf := uint64(hopHeaderSize + ex.bufferEnd)
		maxSeg := (buf+extra+hopPage-1)/hopPage*hopPage + 2*hopPage
		switch {
		case ld.seg != ex.seg:
			errs = append(errs, fmt.Errorf("hop %d: kexec_load says kexec_segment_size=%d, kexec_execute %d", k+1, ld.seg, ex.seg))
		case ex.seg%hopPage != 0:
			errs = append(errs, fmt.Errorf("hop %d: kexec_segment_size=%d is not page-aligned", k+1, ex.seg))
		case ex.seg < buf:
			errs = append(errs, fmt.Errorf("hop %d: kexec_segment_size=%d is smaller than the %d-byte hand-over buffer through kexec_execute", k+1, ex.seg, buf))
		case ex.seg > maxSeg:
			errs = append(errs, fmt.Errorf("hop %d: kexec_segment_size=%d exceeds buffer %d + ima-extra %d (+2 pages)", k+1, ex.seg, buf, extra))
		}
	}
	return errors.Join(errs...)
}

// hopCheck checks a hand-over scenario's reports, one per boot in boot
// order (boots[i] is boot i+1): the last boot's list and PCRs must be
// present. Every reported list is a byte prefix of every later one; every
// boot that reported both a list and PCRs has a list that replays to them
// in full (the same snapshot: the last report of that boot); the last list
// has one boot_aggregate per boot and the markers of every hop with their
// payload numbers (checkHopMarkers). extra is the --ima-extra every hop
// used. It returns the last boot's entries split by this file.
func hopCheck(boots []bootReport, extra uint64) ([]rawEntry, error) {
	es, _, err := hopCheckMode(boots, extra, false)
	return es, err
}

// hopCheckPerBank is hopCheck for guests that keep measuring while the
// harness reads PCRs bank by bank from sysfs (a systemd system): in each
// boot every bank must match a prefix of that boot's list that reaches at
// least past its own boot_aggregate, i.e. covers every entry handed over
// and every marker. It returns the matched prefix per bank of the last
// boot, which a scenario should log.
func hopCheckPerBank(boots []bootReport, extra uint64) ([]rawEntry, map[string]int, error) {
	return hopCheckMode(boots, extra, true)
}

func hopCheckMode(boots []bootReport, extra uint64, perBank bool) ([]rawEntry, map[string]int, error) {
	if len(boots) < 2 {
		return nil, nil, fmt.Errorf("%d boots: a hand-over needs at least 2", len(boots))
	}
	last := boots[len(boots)-1]
	if last.List == nil || last.PCRs == nil {
		return nil, nil, fmt.Errorf("boot %d (the last) reported no list or no PCRs", len(boots))
	}
	var errs []error
	var prev []byte
	prevBoot := 0
	var lastEs []rawEntry
	var lastPrefix map[string]int
	for i, b := range boots {
		if b.List == nil {
			continue
		}
		es, err := splitRaw(b.List)
		if err != nil {
			return nil, nil, fmt.Errorf("boot %d list: %w", i+1, err)
		}
		for j, e := range es {
			if e.isViolation() {
				continue
			}
			if s := sha1.Sum(e.data); e.template != "ima" && !bytes.Equal(s[:], e.digest) {
				errs = append(errs, fmt.Errorf("boot %d entry %d: stored template digest %x, SHA-1 of its template data %x", i+1, j, e.digest, s))
			}
		}
		if prev != nil && !bytes.HasPrefix(b.List, prev) {
			n := 0
			for n < len(prev) && n < len(b.List) && prev[n] == b.List[n] {
				n++
			}
			errs = append(errs, fmt.Errorf("boot %d's list (%d bytes) is not a byte prefix of boot %d's (%d bytes): they differ at byte %d", prevBoot, len(prev), i+1, len(b.List), n))
		}
		if n := countRawBA(es); n != i+1 {
			errs = append(errs, fmt.Errorf("boot %d's list has %d boot_aggregate entries, want %d", i+1, n, i+1))
		}
		if b.PCRs != nil {
			rel := make([]string, i+1)
			for k := range rel {
				rel[k] = boots[k].Release
			}
			min := -1
			if perBank {
				min = 0
				for k, e := range es {
					if e.isBootAggregate() {
						min = k + 1
					}
				}
			}
			pre, err := checkReplay(es, b.PCRs, rel, min)
			if err != nil {
				errs = append(errs, fmt.Errorf("boot %d: %w", i+1, err))
			}
			if i == len(boots)-1 {
				lastPrefix = pre
			}
		}
		prev, prevBoot, lastEs = b.List, i+1, es
	}
	if err := checkHopMarkers(lastEs, len(boots), extra); err != nil {
		errs = append(errs, fmt.Errorf("boot %d's list: %w", len(boots), err))
	}
	return lastEs, lastPrefix, errors.Join(errs...)
}

func countRawBA(es []rawEntry) int {
	n := 0
	for _, e := range es {
		if e.isBootAggregate() {
			n++
		}
	}
	return n
}

// bootReports collects each boot's last release, list and PCRs from a
// harness result, boots first..last.
func bootReports(res *qemu.Result, first, last int) []bootReport {
	var out []bootReport
	for b := first; b <= last; b++ {
		r := bootReport{List: res.List(b, "binary_runtime_measurements"), PCRs: res.PCRs(b)}
		if info := res.BootInfo(b); info != nil {
			r.Release = info.Release
		}
		out = append(out, r)
	}
	return out
}

// requireHandover is THE check of every hand-over scenario (issue 23):
// every boot of res, every hop, with an independent replay, the byte-prefix
// rule and the markers' payloads (hopCheck), then evmctl on the last boot's
// last report. extra is the --ima-extra every hop used (64K when in doubt:
// it only bounds the segment size from above). It returns the last boot's
// list decoded by ima for the scenario's own further checks.
func requireHandover(t *testing.T, res *qemu.Result, extra uint64) []ima.Entry {
	t.Helper()
	n := res.Boots()
	boots := bootReports(res, 1, n)
	if _, err := hopCheck(boots, extra); err != nil {
		t.Fatalf("hand-over check over %d boots:\n%v", n, err)
	}
	evmctlAgrees(t, res, n, "sha1", "sha256")
	es := parseList(t, boots[n-1].List, fmt.Sprintf("boot %d", n))
	t.Logf("hand-over check: %d boots, %d hops: every hop's markers, the byte prefixes and an independent replay agree", n, n-1)
	return es
}

// requireHandoverPerBank is requireHandover for a guest that keeps
// measuring while its PCRs are read bank by bank (a systemd system,
// DESIGN §3.1 and §3.3.2). It is how such a scenario verifies on the host
// what its guest's own imalog says (issue 23: no scenario takes a guest's
// verdict as its result): the first system's list must be a byte prefix of
// the second's, the hop's kexec_load/kexec_execute payloads must equal
// their positions, and each bank must match a prefix of the list that
// reaches past the last boot_aggregate; where each bank's matched prefix
// ends is logged. evmctl is not run: it accepts a per-bank prefix by
// itself, which the check above already bounds.
func requireHandoverPerBank(t *testing.T, res *qemu.Result, extra uint64) []ima.Entry {
	t.Helper()
	n := res.Boots()
	boots := bootReports(res, 1, n)
	es, pre, err := hopCheckPerBank(boots, extra)
	if err != nil {
		t.Fatalf("hand-over check (PCRs read bank by bank) over %d boots:\n%v", n, err)
	}
	t.Logf("hand-over check: %d boots; the last list has %d entries, the matched prefix ends at %v", n, len(es), pre)
	return parseList(t, boots[n-1].List, fmt.Sprintf("boot %d", n))
}
