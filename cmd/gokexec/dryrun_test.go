package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/kexec"
	"github.com/gokexec/gokexec/loader/loadertest"
)

// softTPM is a TPM with one SHA-256 bank that counts its extends: the
// trace of what finalize did to the TPM.
type softTPM struct {
	pcrs    map[uint32][]byte
	extends int
}

func (s *softTPM) ReadPCRs(pcrs []uint32) (map[crypto.Hash]map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	for _, p := range pcrs {
		v := s.pcrs[p]
		if v == nil {
			v = make([]byte, sha256.Size)
		}
		out[p] = append([]byte(nil), v...)
	}
	return map[crypto.Hash]map[uint32][]byte{crypto.SHA256: out}, nil
}

func (s *softTPM) Extend(pcr uint32, d map[crypto.Hash][]byte) error {
	s.extends++
	v := s.pcrs[pcr]
	if v == nil {
		v = make([]byte, sha256.Size)
	}
	sum := sha256.Sum256(append(v, d[crypto.SHA256]...))
	s.pcrs[pcr] = sum[:]
	return nil
}

func (s *softTPM) Close() error { return nil }

// trace is what a command line did to the fake machine.
type trace struct {
	loads, fileLoads, unloads, reboots, extends, shutdowns, syncs int
}

func (t trace) String() string {
	return fmt.Sprintf("kexec_load %d, kexec_file_load %d, unload %d, reboot %d, TPM extend %d, shutdown %d, sync %d",
		t.loads, t.fileLoads, t.unloads, t.reboots, t.extends, t.shutdowns, t.syncs)
}

func (t trace) acted() bool {
	return t.loads+t.fileLoads+t.unloads+t.reboots+t.extends+t.shutdowns+t.syncs > 0
}

// fakeMachine routes every act of the command through a loadertest.Host
// with a soft TPM, and records the shutdown and sync seams.
type fakeMachine struct {
	h         *loadertest.Host
	tpm       *softTPM
	shutdowns [][]string
	syncs     int
	state     string
}

func newFakeMachine(t *testing.T) *fakeMachine {
	t.Helper()
	m := &fakeMachine{h: loadertest.NewHost(), tpm: &softTPM{pcrs: map[uint32][]byte{}}}
	m.h.TPM, m.h.TPMName = m.tpm, "softtpm"
	m.state = filepath.Join(t.TempDir(), "state")
	oldHost, oldHand, oldSync := testHost, handOver, syncAll
	crash, err := kexec.ReadCrashFacts(crashHost(t, true), "", true)
	if err != nil {
		t.Fatal(err)
	}
	m.h.Crash = crash
	testHost = m.h
	handOver = func(argv []string) error { m.shutdowns = append(m.shutdowns, argv); return nil }
	syncAll = func() { m.syncs++ }
	t.Cleanup(func() { testHost, handOver, syncAll = oldHost, oldHand, oldSync })
	return m
}

func (m *fakeMachine) trace() trace {
	return trace{len(m.h.Loads), len(m.h.FileLoads), m.h.Unloads, m.h.Reboots, m.tpm.extends, len(m.shutdowns), m.syncs}
}

// run runs gokexec with the fake machine's state directory and the
// options every load needs off-target; -c first (kexec_load, whose
// hand-over gokexec builds) unless the line names another syscall.
func (m *fakeMachine) run(args ...string) (int, string, string) {
	return runCLI(append(append([]string{"-c"}, args...), "--state-dir", m.state, "--arch", "amd64")...)
}

// actionCombos are every action option alone and every ordered pair, with
// and without a kernel operand, and a few longer lines callers send.
func actionCombos(k string) [][]string {
	opts := []string{"-l", "-e", "-u", "-p", "-f", "--finalize", "-S"}
	var out [][]string
	out = append(out, []string{k})
	for _, a := range opts {
		out = append(out, []string{a}, []string{a, k})
		for _, b := range opts {
			out = append(out, []string{a, b}, []string{a, b, k})
		}
	}
	out = append(out,
		[]string{"-u", "-p", "-s", k},
		[]string{"-l", k, "-e", "-x", "-y"},
		[]string{"-p", "-u", "-s"},
		[]string{"-f", "-y", "-x", k},
	)
	return out
}

// TestDryRunNeverActs: finding "--dry-run is ignored by four actions"
// (-e finalized, extended and rebooted; --finalize extended; -u and -p -u
// unloaded). Every action and every pair of actions, with and without a
// kernel, runs under --dry-run against a fake machine that holds a
// gokexec load and a TPM: none calls kexec_load, kexec_file_load, unload,
// reboot, a TPM extend, the shutdown command or sync, and each that
// succeeds says it was a dry run.
func TestDryRunNeverActs(t *testing.T) {
	k := kernelFile(t)
	m := newFakeMachine(t)
	if code, _, errs := m.run("-l", k, "--initrd", initrdFile(t, 4096), "--append", "console=ttyS0"); code != 0 {
		t.Fatalf("setting up the loaded state: exit %d %s", code, errs)
	}
	before := m.trace()
	if before.loads != 1 {
		t.Fatalf("the real load: %s", before)
	}
	n := 0
	for _, args := range actionCombos(k) {
		a := append(append([]string{}, args...), "--dry-run", "-s")
		code, out, errs := m.run(a...)
		if got := m.trace(); got != before {
			t.Fatalf("gokexec %s: acted under --dry-run: %s (before: %s)", strings.Join(a, " "), got, before)
		}
		if code == 0 || code == 1 && errs == "" { // -S answers with 1
			n++
			if !strings.Contains(errs, "gokexec: dry run (") {
				t.Errorf("gokexec %s: exit %d, does not say it was a dry run: %q", strings.Join(a, " "), code, errs)
			}
		} else if !strings.Contains(errs, "dry run") && code != 2 {
			t.Errorf("gokexec %s: exit %d, the error does not say it was a dry run: %q", strings.Join(a, " "), code, errs)
		}
		if testing.Verbose() && len(args) <= 2 {
			t.Logf("gokexec %s: exit %d\n%s%s", strings.Join(a, " "), code, firstLines(out, 3), errs)
		}
	}
	if n < 55 { // the others are usage errors (-l without a kernel, ...) or a dry -e after a dry -u
		t.Fatalf("only %d of %d dry runs succeeded", n, len(actionCombos(k)))
	}
}

// TestActionsTrace: the same fake machine without --dry-run: each action
// makes exactly its calls (so TestDryRunNeverActs cannot pass because the
// fake sees nothing).
func TestActionsTrace(t *testing.T) {
	k := kernelFile(t)
	rd := initrdFile(t, 4096)
	for _, tc := range []struct {
		name  string
		steps [][]string
		want  trace
		shut  string
	}{
		{"-l", [][]string{{"-l", k, "--initrd", rd}}, trace{loads: 1}, ""},
		{"-l then -e", [][]string{{"-l", k}, {"-e"}}, trace{loads: 2, reboots: 1, extends: 4, syncs: 1}, ""},
		{"-l then -e -y", [][]string{{"-l", k}, {"-e", "-y"}}, trace{loads: 2, reboots: 1, extends: 4}, ""},
		{"-l then --finalize", [][]string{{"-l", k}, {"--finalize"}}, trace{loads: 2, extends: 4}, ""},
		{"-f", [][]string{{"-f", k}}, trace{loads: 2, reboots: 1, extends: 4, syncs: 1}, ""},
		{"KERNEL: load, then an orderly shutdown", [][]string{{k}}, trace{loads: 1, shutdowns: 1}, "systemctl kexec|shutdown -r now"},
		{"-e -l K loads only", [][]string{{"-e", "-l", k}}, trace{loads: 1}, ""},
		{"-l then -u", [][]string{{"-l", k}, {"-u"}}, trace{loads: 1, unloads: 1}, ""},
		{"-p -s", [][]string{{"-p", "-s", k}}, trace{fileLoads: 1}, ""},
		{"-p -u", [][]string{{"-p", "-u"}}, trace{unloads: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMachine(t)
			for _, s := range tc.steps {
				if code, _, errs := m.run(s...); code != 0 {
					t.Fatalf("gokexec %v: exit %d %s", s, code, errs)
				}
			}
			got := m.trace()
			if got != tc.want {
				t.Fatalf("%s, want %s", got, tc.want)
			}
			if tc.shut != "" {
				if !strings.Contains(tc.shut, strings.Join(m.shutdowns[0], " ")) {
					t.Fatalf("shutdown command %q", m.shutdowns[0])
				}
				if got := strings.Join(shutdownCommand(), " "); got != strings.Join(m.shutdowns[0], " ") {
					t.Fatalf("ran %q, shutdownCommand says %q", m.shutdowns[0], got)
				}
			}
		})
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitAfter(s, "\n")
	if len(l) > n {
		l = append(l[:n], "...\n")
	}
	return strings.Join(l, "")
}

// TestDryRunJSONStaysJSON: with --json, stdout is the plan alone, whatever
// else the dry run would do (the shutdown after "gokexec KERNEL", -f's
// reboot) is said on stderr.
func TestDryRunJSONStaysJSON(t *testing.T) {
	k := kernelFile(t)
	for _, args := range [][]string{{k}, {"-f", k}, {"-u", "-l", k}} {
		a := append(args, "--dry-run", "--json", "--memmap", memmap, "--no-ima", "--arch", "amd64", "--state-dir", filepath.Join(t.TempDir(), "s"))
		code, out, errs := runCLI(a...)
		var v map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["segments"] == nil {
			t.Errorf("gokexec %v: exit %d, stdout is not the plan's JSON: %.200q %s", args, code, out, errs)
		}
	}
}
