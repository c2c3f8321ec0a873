package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// TestLoaderVsKexecTools compares, inside one QEMU guest, gokexec -c -l
// with Debian's kexec -c -l on the same kernel and initrd (DESIGN §7: plan
// + hash + load no slower than kexec-tools; peak memory at most the bytes
// loaded + 16 MiB). Runs alternate, each followed by an unload; the test
// logs medians and the per-pair ratio and asserts nothing about time (it is
// a measurement, not a check). Opt-in: GOKEXEC_BENCH=1 (scripts/bench-guest.sh).
func TestLoaderVsKexecTools(t *testing.T) {
	if os.Getenv("GOKEXEC_BENCH") == "" {
		t.Skip("a benchmark; run scripts/bench-guest.sh (GOKEXEC_BENCH=1)")
	}
	const rounds = 7
	g := newGuest(t)
	g.timeout = 20 * time.Minute
	g.files["/boot/vmlinuz-2"] = g.k1
	g.hostBin["/sbin/kexec"] = "/sbin/kexec"
	g.hostBin["/usr/bin/time"] = "/usr/bin/time"
	args := []string{"-c", "-l", "/boot/vmlinuz-2", "--initrd", "/run/next.cpio", "--append", nextAppend("2")}
	acts := []proto.Action{{Policy: basePolicy}, {MeasureFiles: 5000}, {RepackInitrd: "/run/next.cpio"},
		{Run: append([]string{"/bin/gokexec", "--dry-run", "--json"}, args...), ExpectExit: intp(0)}}
	for i := 0; i < rounds; i++ {
		acts = append(acts,
			proto.Action{Run: append([]string{"/usr/bin/time", "-v", "/bin/gokexec"}, args...), ExpectExit: intp(0)},
			proto.Action{Run: []string{"/bin/gokexec", "-u"}, ExpectExit: intp(0)},
			proto.Action{Run: append([]string{"/usr/bin/time", "-v", "/sbin/kexec"}, args...), ExpectExit: intp(0)},
			proto.Action{Run: []string{"/sbin/kexec", "-u"}, ExpectExit: intp(0)},
		)
	}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {DeadlineSec: 1200, Actions: acts}}}
	res := g.run(g.k1, sc)
	wall := regexp.MustCompile(`Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)`)
	rss := regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
	type sample struct{ wall, rssKiB float64 }
	got := map[string][]sample{}
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if c.Argv[0] != "/usr/bin/time" {
			continue
		}
		w := wall.FindStringSubmatch(string(c.Output))
		r := rss.FindStringSubmatch(string(c.Output))
		if w == nil || r == nil {
			t.Fatalf("no /usr/bin/time figures in:\n%s", c.Output)
		}
		h, _ := strconv.ParseFloat(w[1]+"0", 64)
		m, _ := strconv.ParseFloat(w[2], 64)
		s, _ := strconv.ParseFloat(w[3], 64)
		kib, _ := strconv.ParseFloat(r[1], 64)
		got[c.Argv[2]] = append(got[c.Argv[2]], sample{h/10*3600 + m*60 + s, kib})
	}
	g1, k1 := got["/bin/gokexec"], got["/sbin/kexec"]
	if len(g1) != rounds || len(k1) != rounds {
		t.Fatalf("%d gokexec and %d kexec samples, want %d each", len(g1), len(k1), rounds)
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	var gw, kw, ratio, gr, kr []float64
	for i := range g1 {
		gw, kw, gr, kr = append(gw, g1[i].wall), append(kw, k1[i].wall), append(gr, g1[i].rssKiB), append(kr, k1[i].rssKiB)
		ratio = append(ratio, g1[i].wall/k1[i].wall)
	}
	var loaded uint64
	for _, c := range res.Find(1, proto.TypeCmd, "") {
		if len(c.Argv) > 1 && c.Argv[1] == "--dry-run" {
			var p struct {
				Segments []struct {
					Bufsz uint64 `json:"bufsz"`
				} `json:"segments"`
			}
			// The plan is the first JSON value; the dry run's own notice may follow.
			if err := json.NewDecoder(bytes.NewReader(c.Output)).Decode(&p); err != nil {
				t.Fatalf("dry-run plan: %v", err)
			}
			for _, s := range p.Segments {
				loaded += s.Bufsz
			}
		}
	}
	t.Logf("in-guest, %d alternating rounds (software emulation; compare the ratio, not the seconds):", rounds)
	t.Logf("  gokexec -c -l: wall median %.2f s, peak RSS median %.0f KiB", median(gw), median(gr))
	t.Logf("  kexec   -c -l: wall median %.2f s, peak RSS median %.0f KiB", median(kw), median(kr))
	t.Logf("  per-round ratio gokexec/kexec-tools: median %.2f (min %.2f, max %.2f)", median(ratio), minOf(ratio), maxOf(ratio))
	t.Logf("  bytes loaded %d (%.0f KiB); target: gokexec peak RSS <= that + 16 MiB = %.0f KiB", loaded, float64(loaded)/1024, float64(loaded)/1024+16*1024)
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
