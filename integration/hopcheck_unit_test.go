package integration

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/qemu"
	"github.com/gokexec/gokexec/qemu/proto"
)

// The unit tests of the scenario checks themselves: no QEMU, they run with
// -short. A check that cannot fail is a defect (issue 23), so each fault
// the check exists for is built here and must make it fail.

// synthHop builds a three-boot, two-hop hand-over as the design says it
// looks: per boot a boot_aggregate and some files; per hop kexec_load,
// the kernel, the initrd, the command line and kexec_execute with the
// kernel's numbers. It returns the entries and, for each boot, how many
// entries that boot's report saw.
type synthHop struct {
	es       []ima.Entry
	reports  []int // entries in each boot's report
	releases []string
	extra    uint64
	// fault hooks
	payload func(hop int, name string, seg, size, count uint64) string
	name    func(hop int, name string) string
}

func fileEntry(t *testing.T, path string) ima.Entry {
	t.Helper()
	d := sha256.Sum256([]byte(path))
	e, err := ima.NewFileEntry(10, "ima-ng", path, d[:], crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (s *synthHop) build(t *testing.T) {
	t.Helper()
	if s.payload == nil {
		s.payload = func(_ int, _ string, seg, size, count uint64) string {
			return fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", seg, size, count)
		}
	}
	if s.name == nil {
		s.name = func(_ int, n string) string { return n }
	}
	s.extra = 64 << 10
	size := func() uint64 { return uint64(len(ima.AppendList(nil, s.es, binary.LittleEndian))) }
	for boot := 1; boot <= 3; boot++ {
		s.es = append(s.es, fileEntry(t, "boot_aggregate"))
		for i := 0; i < 3; i++ {
			s.es = append(s.es, fileEntry(t, fmt.Sprintf("/tmp/m%d/f%d", boot, i)))
		}
		s.reports = append(s.reports, len(s.es))
		s.releases = append(s.releases, "6.1.0-test")
		if boot == 3 {
			break
		}
		// The segment: buffer at finalize plus headroom, page-rounded.
		seg := (size() + 24 + 1024 + s.extra + 4095) / 4096 * 4096
		s.es = append(s.es, ima.NewBufEntry(10, s.name(boot, "kexec_load"), []byte(s.payload(boot, "kexec_load", seg, 24+size(), uint64(len(s.es)))), crypto.SHA256))
		s.es = append(s.es, fileEntry(t, "/boot/vmlinuz-2"), fileEntry(t, "/run/next.cpio"))
		s.es = append(s.es, ima.NewBufEntry(10, "kexec-cmdline", []byte("console=ttyS0"), crypto.SHA256))
		s.es = append(s.es, ima.NewBufEntry(10, s.name(boot, "kexec_execute"), []byte(s.payload(boot, "kexec_execute", seg, 24+size(), uint64(len(s.es)))), crypto.SHA256))
	}
}

// pcrsOf replays es with the ima package (a second implementation, so a
// passing good case is two codes agreeing) into a harness PCR report.
func pcrsOf(es []ima.Entry, sha256Method ima.Method) map[string][]string {
	out := map[string][]string{}
	for name, h := range map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256} {
		m := ima.MethodPerBank
		if h == crypto.SHA256 {
			m = sha256Method
		}
		r := ima.Replay(es, h, m)
		vals := make([]string, 24)
		for i := range vals {
			if v, ok := r[uint32(i)]; ok {
				vals[i] = hex.EncodeToString(v)
			} else {
				vals[i] = strings.Repeat("00", h.Size())
			}
		}
		out[name] = vals
	}
	return out
}

func (s *synthHop) reportsOf() []bootReport {
	var out []bootReport
	for i, n := range s.reports {
		out = append(out, bootReport{Release: s.releases[i], List: ima.AppendList(nil, s.es[:n], binary.LittleEndian), PCRs: pcrsOf(s.es[:n], ima.MethodPerBank)})
	}
	return out
}

func TestHopCheckAcceptsAGoodChain(t *testing.T) {
	var s synthHop
	s.build(t)
	es, err := hopCheck(s.reportsOf(), s.extra)
	if err != nil {
		t.Fatalf("a correct two-hop chain fails the check: %v", err)
	}
	if len(es) != len(s.es) {
		t.Fatalf("check split %d entries, the list has %d", len(es), len(s.es))
	}
}

// TestHopCheckCatchesMarkerFaults (issue 23: "gokexec's own marker
// payloads are never checked", "the hand-over scenarios do not look at
// markers"): every fault the scenarios' check exists for makes it fail.
func TestHopCheckCatchesMarkerFaults(t *testing.T) {
	off := func(field string, by int64) func(int, string, uint64, uint64, uint64) string {
		return func(hop int, name string, seg, size, count uint64) string {
			if hop == 2 && name == "kexec_execute" {
				switch field {
				case "seg":
					seg = uint64(int64(seg) + by)
				case "size":
					size = uint64(int64(size) + by)
				case "count":
					count = uint64(int64(count) + by)
				}
			}
			return fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", seg, size, count)
		}
	}
	cases := []struct {
		name string
		edit func(*synthHop)
		post func(*synthHop, []bootReport) // after the reports are built
		want string
	}{
		{name: "count+1", edit: func(s *synthHop) { s.payload = off("count", 1) }, want: "ima_runtime_measurements_count"},
		{name: "count-1", edit: func(s *synthHop) { s.payload = off("count", -1) }, want: "ima_runtime_measurements_count"},
		{name: "size without header", edit: func(s *synthHop) { s.payload = off("size", -24) }, want: "ima_binary_runtime_size"},
		{name: "size+1", edit: func(s *synthHop) { s.payload = off("size", 1) }, want: "ima_binary_runtime_size"},
		{name: "segment+999", edit: func(s *synthHop) { s.payload = off("seg", 999) }, want: "kexec_segment_size"},
		{name: "segment+1 page", edit: func(s *synthHop) { s.payload = off("seg", 4096) }, want: "kexec_segment_size"},
		{name: "misspelt", edit: func(s *synthHop) {
			s.name = func(hop int, n string) string {
				if hop == 1 && n == "kexec_execute" {
					return "kexec_exceute"
				}
				return n
			}
		}, want: "want exactly kexec_load then kexec_execute"},
		{name: "missing execute", post: func(s *synthHop, r []bootReport) {
			es := dropEntry(t, s.es, "kexec_execute", 2)
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "want exactly kexec_load then kexec_execute"},
		{name: "missing load", post: func(s *synthHop, r []bootReport) {
			es := dropEntry(t, s.es, "kexec_load", 1)
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "want exactly kexec_load then kexec_execute"},
		{name: "misplaced execute", post: func(s *synthHop, r []bootReport) {
			// hop 1's kexec_execute moved after boot 2's boot_aggregate.
			es := append([]ima.Entry(nil), s.es...)
			i := indexOf(t, es, "kexec_execute", 1)
			es[i], es[i+1] = es[i+1], es[i]
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "markers"},
		{name: "two loads", post: func(s *synthHop, r []bootReport) {
			es := append([]ima.Entry(nil), s.es...)
			i := indexOf(t, es, "kexec_load", 2)
			es = append(es[:i+1], es[i:]...)
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "want exactly kexec_load then kexec_execute"},
		{name: "not a prefix", post: func(s *synthHop, r []bootReport) {
			es := append([]ima.Entry(nil), s.es[:s.reports[0]]...)
			es[2] = fileEntry(t, "/tmp/other")
			r[0].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[0].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "not a byte prefix"},
		{name: "last entry dropped", post: func(s *synthHop, r []bootReport) {
			// The hand-over buffer lost its last entry (kexec_execute of
			// hop 2): the next list is no longer the same.
			es := dropEntry(t, s.es, "kexec_execute", 2)
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(s.es, ima.MethodPerBank)
		}, want: "do not replay"},
		{name: "wrong PCR", post: func(s *synthHop, r []bootReport) {
			v := []byte(r[2].PCRs["sha256"][10])
			v[0] ^= 1
			r[2].PCRs["sha256"][10] = string(v)
		}, want: "sha256 bank"},
		{name: "wrong PCR on an earlier boot", post: func(s *synthHop, r []bootReport) {
			r[1].PCRs = pcrsOf(s.es[:s.reports[1]-1], ima.MethodPerBank)
		}, want: "boot 2"},
		{name: "wrong bank digest for the loader's entries", post: func(s *synthHop, r []bootReport) {
			// Hop 1's own entries extended with the SHA-1 digest padded in
			// the sha256 bank, the kernel's with sha256.
			lo := indexOf(t, s.es, "kexec_load", 1)
			hi := indexOf(t, s.es, "kexec_execute", 1)
			pcr := ima.Replay(s.es[:lo], crypto.SHA256, ima.MethodPerBank)[10]
			for _, e := range s.es[lo : hi+1] {
				h := sha256.New()
				h.Write(pcr)
				h.Write(ima.TemplateDigest(e, crypto.SHA256, ima.MethodSHA1Padded))
				pcr = h.Sum(nil)
			}
			for _, e := range s.es[hi+1:] {
				h := sha256.New()
				h.Write(pcr)
				h.Write(ima.TemplateDigest(e, crypto.SHA256, ima.MethodPerBank))
				pcr = h.Sum(nil)
			}
			r[2].PCRs["sha256"][10] = hex.EncodeToString(pcr)
		}, want: "sha256 bank"},
		{name: "stored digest wrong", post: func(s *synthHop, r []bootReport) {
			es := append([]ima.Entry(nil), s.es...)
			es[1].TemplateDigest[0] ^= 1
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
		}, want: "stored template digest"},
		{name: "markers after the last boot", post: func(s *synthHop, r []bootReport) {
			es := append(append([]ima.Entry(nil), s.es...), ima.NewBufEntry(10, "kexec_load", []byte("kexec_segment_size=4096;ima_binary_runtime_size=1;ima_runtime_measurements_count=1;"), crypto.SHA256))
			r[2].List = ima.AppendList(nil, es, binary.LittleEndian)
			r[2].PCRs = pcrsOf(es, ima.MethodPerBank)
		}, want: "the last"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s synthHop
			if c.edit != nil {
				c.edit(&s)
			}
			s.build(t)
			r := s.reportsOf()
			if c.post != nil {
				c.post(&s, r)
			}
			_, err := hopCheck(r, s.extra)
			if err == nil {
				t.Fatalf("%s: the hand-over check passed", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: failed for another reason than %q: %v", c.name, c.want, err)
			}
		})
	}
}

// TestHopCheckMethodPerKernel: a kernel that extends a bank SHA-1-padded
// for all its boots passes (Debian 6.1's sha384, DESIGN §3.1); the check
// stays independent of ima's replay.
func TestHopCheckMethodPerKernel(t *testing.T) {
	var s synthHop
	s.build(t)
	r := s.reportsOf()
	for i := range r {
		r[i].PCRs = pcrsOf(s.es[:s.reports[i]], ima.MethodSHA1Padded)
	}
	if _, err := hopCheck(r, s.extra); err != nil {
		t.Fatalf("one kernel, one method per bank: %v", err)
	}
}

func indexOf(t *testing.T, es []ima.Entry, name string, nth int) int {
	t.Helper()
	n := 0
	for i, e := range es {
		if e.TemplateName == "ima-buf" {
			if d, err := e.Decode(binary.LittleEndian); err == nil && d.Name == name {
				if n++; n == nth {
					return i
				}
			}
		}
	}
	t.Fatalf("no %d-th %s", nth, name)
	return -1
}

func dropEntry(t *testing.T, es []ima.Entry, name string, nth int) []ima.Entry {
	i := indexOf(t, es, name, nth)
	return append(append([]ima.Entry(nil), es[:i]...), es[i+1:]...)
}

// TestEvmctlOracleCannotPassVacuously is the reproducer of issue 23's
// first finding: evmctl 1.4 exits 0 with "Failed to read any TPM PCRs"
// when a PCR file is missing or empty. The oracle wrapper must fail then,
// fail when the PCRs match only a prefix of the list, and pass on a
// capture whose PCRs match the whole list.
func TestEvmctlOracleCannotPassVacuously(t *testing.T) {
	cap := filepath.Join("..", "ima", "testdata", "captures", "linux-image-6.12.117+deb12-cloud-amd64")
	list := filepath.Join(cap, "binary_runtime_measurements")
	raw, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	es, err := splitRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := len(es)
	good := map[string]string{"sha1": filepath.Join(cap, "pcr-sha1.txt"), "sha256": filepath.Join(cap, "pcr-sha256.txt")}
	if err := evmctlOracle(list, good, n); err != nil {
		t.Fatalf("the capture's own PCRs: %v", err)
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	writeFile(t, empty, nil)
	bad := filepath.Join(dir, "bad.txt")
	b, err := os.ReadFile(good["sha256"])
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, bad, []byte(strings.Replace(string(b), "PCR-10: ", "PCR-10: 0", 1)[:len(b)]))
	for name, c := range map[string]struct {
		files map[string]string
		n     int
	}{
		"missing PCR file":  {map[string]string{"sha1": filepath.Join(dir, "nonexistent"), "sha256": good["sha256"]}, n},
		"empty PCR file":    {map[string]string{"sha1": empty, "sha256": empty}, n},
		"one empty":         {map[string]string{"sha1": good["sha1"], "sha256": empty}, n},
		"no PCR files":      {map[string]string{}, n},
		"wrong PCR":         {map[string]string{"sha256": bad}, n},
		"prefix match only": {map[string]string{"sha1": filepath.Join(cap, "pcr-sha1-prefix.txt")}, n},
		"other snapshot":    {good, n + 1},
	} {
		if err := evmctlOracle(list, c.files, c.n); err == nil {
			t.Errorf("%s: the evmctl oracle passed", name)
		}
	}
}

// TestEvmctlJudgesTheLastReport (issue 23: evmctl "checks the first report
// of a boot while the Go checks use the last"): a boot whose first PCR
// report is stale and whose last one is current passes evmctlAgrees, which
// it can only do by judging the last report, as the Go checks do.
func TestEvmctlJudgesTheLastReport(t *testing.T) {
	cap := filepath.Join("..", "ima", "testdata", "captures", "linux-image-6.12.117+deb12-cloud-amd64")
	raw, err := os.ReadFile(filepath.Join(cap, "binary_runtime_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := ima.ParseList(raw, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	stale := pcrsOf(es[:len(es)-3], ima.MethodPerBank)
	current := pcrsOf(es, ima.MethodPerBank)
	for _, b := range []string{"sha1", "sha256"} {
		// PCR 11 of the capture: keep the capture's entries' PCRs apart.
		for i := range current[b] {
			if current[b][i] == "" {
				t.Fatal("empty PCR")
			}
		}
	}
	res := &qemu.Result{Records: []proto.Record{
		{Boot: 1, Type: proto.TypeBoot},
		{Boot: 1, Type: proto.TypePCRs, PCRs: stale},
		{Boot: 1, Type: proto.TypeList, Name: "binary_runtime_measurements", Data: raw[:len(ima.AppendList(nil, es[:len(es)-3], binary.LittleEndian))]},
		{Boot: 1, Type: proto.TypePCRs, PCRs: current},
		{Boot: 1, Type: proto.TypeList, Name: "binary_runtime_measurements", Data: raw},
	}}
	evmctlAgrees(t, res, 1, "sha1", "sha256")
}

// TestHopCheckPerBank: PCRs read bank by bank while a system keeps
// measuring match a prefix; the per-bank check accepts one that covers the
// whole hand-over and the new boot_aggregate, reports where it ends, and
// refuses one that stops before (issue 23: "no systemd test checks ...
// where the matched prefix ends"). The strict check refuses both.
func TestHopCheckPerBank(t *testing.T) {
	var s synthHop
	s.build(t)
	r := s.reportsOf()
	n := len(s.es)
	r[2].PCRs = pcrsOf(s.es[:n-1], ima.MethodPerBank) // one entry arrived after the read
	if _, err := hopCheck(r, s.extra); err == nil {
		t.Fatal("strict check accepted PCRs that match only a prefix")
	}
	_, pre, err := hopCheckPerBank(r, s.extra)
	if err != nil || pre["sha256"] != n-1 || pre["sha1"] != n-1 {
		t.Fatalf("per-bank check: prefix %v, err %v; want %d", pre, err, n-1)
	}
	ba := s.reports[1] // boot 3's boot_aggregate is the entry after boot 2's hop
	for i := len(s.es) - 1; i >= 0; i-- {
		if d, _ := s.es[i].Decode(binary.LittleEndian); d.Name == "boot_aggregate" {
			ba = i
			break
		}
	}
	r[2].PCRs = pcrsOf(s.es[:ba], ima.MethodPerBank)
	if _, _, err := hopCheckPerBank(r, s.extra); err == nil || !strings.Contains(err.Error(), "match no prefix") {
		t.Fatalf("per-bank check accepted PCRs that stop before the last boot_aggregate: %v", err)
	}
}

// TestHopCheckOnRealHandover runs the check on what a real guest reported
// (testdata/handover61to61-records.jsonl: TestHandover61to61 on Debian's
// 6.1 cloud kernel under QEMU and swtpm, 2026-12-07, gokexec with the
// kernel's marker numbers), then on the same list with one fault at a time,
// the PCRs re-extended so that only the fault is wrong: the scenarios'
// check catches each on a real kernel's list, not only on a synthetic one.
func TestHopCheckOnRealHandover(t *testing.T) {
	res := readRecords(t, filepath.Join("testdata", "handover61to61-records.jsonl"))
	boots := bootReports(res, 1, 2)
	if _, err := hopCheck(boots, 64<<10); err != nil {
		t.Fatalf("the real hand-over fails the check: %v", err)
	}
	es, err := ima.ParseList(boots[1].List, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	exec := indexOf(t, es, "kexec_execute", 1)
	load := indexOf(t, es, "kexec_load", 1)
	payload := func(i int) (seg, size, count uint64) {
		d, err := es[i].Decode(binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscanf(string(d.Buf), "kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", &seg, &size, &count); err != nil {
			t.Fatalf("payload %q: %v", d.Buf, err)
		}
		return
	}
	rewrite := func(base []ima.Entry, i int, name string, seg, size, count uint64) []ima.Entry {
		out := append([]ima.Entry(nil), base...)
		out[i] = ima.NewBufEntry(10, name, []byte(fmt.Sprintf("kexec_segment_size=%d;ima_binary_runtime_size=%d;ima_runtime_measurements_count=%d;", seg, size, count)), crypto.SHA256)
		return out
	}
	seg, size, count := payload(exec)
	lseg, lsize, lcount := payload(load)
	for name, c := range map[string]struct {
		es   []ima.Entry
		want string
	}{
		"execute count+1":             {rewrite(es, exec, "kexec_execute", seg, size, count+1), "ima_runtime_measurements_count"},
		"load count-1":                {rewrite(es, load, "kexec_load", lseg, lsize, lcount-1), "ima_runtime_measurements_count"},
		"execute size+7":              {rewrite(es, exec, "kexec_execute", seg, size+7, count), "ima_binary_runtime_size"},
		"execute size without header": {rewrite(es, exec, "kexec_execute", seg, size-24, count), "ima_binary_runtime_size"},
		"segment+999":                 {rewrite(rewrite(es, exec, "kexec_execute", seg+999, size, count), load, "kexec_load", lseg+999, lsize, lcount), "kexec_segment_size"},
		"load names another segment":  {rewrite(es, load, "kexec_load", lseg+4096, lsize, lcount), "kexec_segment_size"},
		"execute misspelt":            {rewrite(es, exec, "kexec_exceute", seg, size, count), "want exactly kexec_load then kexec_execute"},
		"execute dropped":             {append(append([]ima.Entry(nil), es[:exec]...), es[exec+1:]...), "want exactly kexec_load then kexec_execute"},
	} {
		r := append([]bootReport(nil), boots...)
		r[1].List = ima.AppendList(nil, c.es, binary.LittleEndian)
		r[1].PCRs = reextend(t, boots[1].PCRs, c.es)
		_, err := hopCheck(r, 64<<10)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: the check says %v; want a failure naming %q", name, err, c.want)
		}
	}
	// The PCRs re-extended over the unchanged list still pass: the faults
	// above fail for themselves, not for the re-extension.
	r := append([]bootReport(nil), boots...)
	r[1].PCRs = reextend(t, boots[1].PCRs, es)
	if _, err := hopCheck(r, 64<<10); err != nil {
		t.Fatalf("re-extended real PCRs: %v", err)
	}
}

// reextend is rep with the sha1 and sha256 values of the PCRs es extends
// replaced by ima's replay of es (the other PCRs keep the guest's values;
// the other banks are left out).
func reextend(t *testing.T, rep map[string][]string, es []ima.Entry) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, h := range map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256} {
		vals := append([]string(nil), rep[name]...)
		for pcr, v := range ima.Replay(es, h, ima.MethodPerBank) {
			vals[pcr] = hex.EncodeToString(v)
		}
		out[name] = vals
	}
	return out
}

// readRecords reads a scenario's records (one JSON proto.Record a line).
func readRecords(t *testing.T, path string) *qemu.Result {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res := &qemu.Result{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r proto.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
		res.Records = append(res.Records, r)
	}
	return res
}
