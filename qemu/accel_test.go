package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// The tests below put this test binary on PATH as qemu-system-x86_64; run
// under that name it plays QEMU in the way GKT_FAKE_QEMU says, so the
// accelerator logic is tested without a broken host.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "qemu-system-x86_64" {
		os.Exit(fakeQEMU(os.Getenv("GKT_FAKE_QEMU"), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU behaviours (every run appends its arguments as one line to the
// file GKT_FAKE_LOG names):
//
//	kvm-dies     KVM: print QEMU's internal-error text and hang (probe included)
//	flaky-kvm    probe on KVM boots fine; a real run on KVM dies as above
//	kvm-stops    probe fine; a real run on KVM pauses the VM (QMP STOP) silently
//	kvm-aborts   KVM: print the MSR assertion and exit 134 (seen on AMD hosts)
//	silent       print nothing, hang
//	good         probe fine, real runs report a boot and done
//
// Software emulation (accel=tcg) always behaves as "good".
func fakeQEMU(mode string, args []string) int {
	joined := strings.Join(args, " ")
	if f, err := os.OpenFile(os.Getenv("GKT_FAKE_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintln(f, joined)
		f.Close()
	}
	kvm := strings.Contains(joined, "accel=kvm")
	probe := strings.Contains(joined, "-nodefaults")
	hang := func() int { time.Sleep(time.Hour); return 0 }
	if kvm {
		switch mode {
		case "silent":
			return hang()
		case "kvm-aborts":
			fmt.Fprintln(os.Stderr, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69")
			fmt.Fprintln(os.Stderr, "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.")
			return 134
		case "kvm-dies":
			fmt.Fprintln(os.Stderr, "KVM internal error. Suberror: 1")
			fmt.Fprintln(os.Stderr, "emulation failure")
			return hang()
		case "flaky-kvm":
			if !probe {
				fmt.Fprintln(os.Stderr, "KVM internal error. Suberror: 1")
				fmt.Fprintln(os.Stderr, "emulation failure")
				return hang()
			}
		case "kvm-stops":
			if !probe {
				return fakeStop(args)
			}
		}
	}
	if probe {
		fmt.Println("[    0.000000] Linux version 6.1.0-fake")
		fmt.Println("[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)")
		return 0
	}
	return fakeGuest(args, kvm)
}

// argAfter returns the value of the first chardev/qmp option holding key.
func argAfter(args []string, flag, key string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != flag {
			continue
		}
		for _, f := range strings.Split(args[i+1], ",") {
			if v, ok := strings.CutPrefix(f, key); ok {
				return v
			}
		}
	}
	return ""
}

// fakeGuest reports one boot and done over the protocol socket.
func fakeGuest(args []string, kvm bool) int {
	sock := argAfter(args, "-chardev", "path=")
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	defer c.Close()
	rel := "fake-tcg"
	if kvm {
		rel = "fake-kvm"
	}
	enc := proto.NewEncoder(c)
	enc.Encode(&proto.Record{Step: "1", Type: proto.TypeBoot, Action: -1, Release: rel})
	enc.Encode(&proto.Record{Step: "1", Type: proto.TypeDone, Action: -1})
	return 0
}

// fakeStop serves QMP and sends a STOP event, as QEMU does when it pauses
// a VM on an internal error, then hangs.
func fakeStop(args []string) int {
	sock := argAfter(args, "-qmp", "unix:")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	c, err := ln.Accept()
	if err != nil {
		return 1
	}
	fmt.Fprintln(c, `{"QMP": {"version": {}, "capabilities": []}}`)
	br := bufio.NewReader(c)
	br.ReadString('\n') // qmp_capabilities
	fmt.Fprintln(c, `{"return": {}}`)
	fmt.Fprintln(c, `{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}`)
	time.Sleep(time.Hour)
	return 0
}

// fakeHost puts the fake QEMU on PATH in mode, makes /dev/kvm a file that
// opens, and forgets earlier accelerator choices. The probe's bound is
// far beyond what a fake that answers needs on a loaded machine (the
// tests assert what was decided, never how fast); a test of the bound
// itself sets a short one.
func fakeHost(t *testing.T, mode, accel string) (kernel string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "qemu-system-x86_64")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv("GKT_FAKE_QEMU", mode)
	t.Setenv("GKT_FAKE_LOG", filepath.Join(dir, "runs"))
	t.Setenv(AccelEnv, accel)
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	oldDev, oldArch, oldBound := kvmDevice, hostArch, probeTimeout
	kvmDevice, hostArch, probeTimeout = dev, func() string { return "amd64" }, 10*time.Minute
	resetAccelCache()
	t.Cleanup(func() {
		kvmDevice, hostArch, probeTimeout = oldDev, oldArch, oldBound
		resetAccelCache()
	})
	kernel = filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return kernel
}

// fakeRuns is how many times the fake QEMU of fakeHost has run.
func fakeRuns(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(os.Getenv("GKT_FAKE_LOG"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestAccelProbe: the probe decides by what the fake QEMU prints or how it
// exits; only "silent" is decided by the bound, which is therefore short
// there (a guest that never prints reaches any bound). No timing is
// asserted: under load a fake may take long to start.
func TestAccelProbe(t *testing.T) {
	for _, tc := range []struct {
		mode, want, reason string
		bound              time.Duration // 0: fakeHost's
	}{
		{"good", AccelKVM, "root-mount panic", 0},
		{"kvm-dies", AccelTCG, "KVM internal error", 0},
		{"kvm-aborts", AccelTCG, "failed to set MSR", 0},
		{"silent", AccelTCG, "no kernel output within 1s", time.Second},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			k := fakeHost(t, tc.mode, "")
			if tc.bound != 0 {
				probeTimeout = tc.bound
			}
			a, err := ChooseAccel(context.Background(), "amd64", k)
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != tc.want || !strings.Contains(a.Reason, tc.reason) || a.Mode != AccelAuto {
				t.Fatalf("got %+v, want %s because %q", a, tc.want, tc.reason)
			}
			if n := fakeRuns(t); n != 1 {
				t.Fatalf("the probe ran QEMU %d times", n)
			}
			// cached: a second call does not probe again (QEMU not run,
			// and a silent QEMU would decide otherwise)
			t.Setenv("GKT_FAKE_QEMU", "silent")
			b, err := ChooseAccel(context.Background(), "amd64", k)
			if err != nil || b != a || fakeRuns(t) != 1 {
				t.Fatalf("second choice %+v, %v, QEMU run %d times; want the cached %+v", b, err, fakeRuns(t), a)
			}
		})
	}
}

func TestAccelNoKVMDevice(t *testing.T) {
	k := fakeHost(t, "good", "")
	kvmDevice = filepath.Join(t.TempDir(), "absent")
	a, err := ChooseAccel(context.Background(), "amd64", k)
	if err != nil || a.Name != AccelTCG || !strings.Contains(a.Reason, "no usable KVM") {
		t.Fatalf("got %+v, %v", a, err)
	}
	// a guest of another architecture never uses KVM
	a, err = ChooseAccel(context.Background(), "arm64", k)
	if err != nil || a.Name != AccelTCG || !strings.Contains(a.Reason, "guest is arm64, host is amd64") {
		t.Fatalf("arm64: got %+v, %v", a, err)
	}
}

func TestAccelEnv(t *testing.T) {
	k := fakeHost(t, "kvm-dies", "tcg")
	a, err := ChooseAccel(context.Background(), "amd64", k)
	if err != nil || a.Name != AccelTCG || a.Mode != AccelTCG {
		t.Fatalf("tcg: %+v, %v", a, err)
	}
	t.Setenv(AccelEnv, "kvm")
	a, err = ChooseAccel(context.Background(), "amd64", k)
	if err != nil || a.Name != AccelKVM || a.Mode != AccelKVM {
		t.Fatalf("kvm: %+v, %v", a, err)
	}
	t.Setenv(AccelEnv, "hvf")
	if _, err := ChooseAccel(context.Background(), "amd64", k); err == nil || !strings.Contains(err.Error(), AccelEnv) {
		t.Fatalf("hvf: %v, want an error naming %s", err, AccelEnv)
	}
}

// fakeRun runs a VM on the fake QEMU and returns its result and error.
func fakeRun(t *testing.T, k string) (*Result, error) {
	t.Helper()
	return Run(context.Background(), VM{Kernel: k, Step: "1", ArtifactsDir: t.TempDir(), Timeout: 5 * time.Minute})
}

func TestRunFailsFastOnKVM(t *testing.T) {
	for _, tc := range []struct{ mode, text string }{
		{"kvm-dies", "KVM internal error. Suberror: 1"},
		{"kvm-aborts", "failed to set MSR"},
		{"kvm-stops", "QEMU stopped the VM"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			k := fakeHost(t, tc.mode, "kvm")
			res, err := fakeRun(t, k)
			if !errors.Is(err, ErrAccel) {
				t.Fatalf("got %v, want ErrAccel", err)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), res.Serial) {
				t.Errorf("error %q does not name %q and the serial log", err, tc.text)
			}
			if res.AccelNote != "" {
				t.Errorf("forced kvm was retried: %s", res.AccelNote)
			}
			log, _ := os.ReadFile(res.Serial)
			if !strings.HasPrefix(string(log), "# accelerator: kvm ("+AccelEnv+"=kvm)") {
				t.Errorf("serial log does not start with the accelerator: %.100q", log)
			}
		})
	}
}

func TestRunRetriesWithTCG(t *testing.T) {
	for _, mode := range []string{"flaky-kvm", "kvm-stops"} {
		t.Run(mode, func(t *testing.T) {
			k := fakeHost(t, mode, "")
			res, err := fakeRun(t, k)
			if err != nil {
				t.Fatalf("after the retry: %v", err)
			}
			if res.Accel.Name != AccelTCG || res.BootInfo(1).Release != "fake-tcg" {
				t.Fatalf("ran on %+v, release %q; want the tcg retry", res.Accel, res.BootInfo(1).Release)
			}
			if !strings.Contains(res.AccelNote, "retried once with software emulation") {
				t.Errorf("note %q", res.AccelNote)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(res.Serial), "serial-kvm.log")); err != nil {
				t.Errorf("the KVM attempt's console was not kept: %v", err)
			}
			// the probe, the KVM attempt and the retry
			if n := fakeRuns(t); n != 3 {
				t.Fatalf("QEMU ran %d times, want 3 (probe, KVM, TCG)", n)
			}
			// later runs go straight to tcg
			res, err = fakeRun(t, k)
			if err != nil || res.Accel.Name != AccelTCG || res.AccelNote != "" || fakeRuns(t) != 4 {
				t.Fatalf("second run: %+v, %v, QEMU run %d times in all", res.Accel, err, fakeRuns(t))
			}
		})
	}
}

func TestRunUsesProbedKVM(t *testing.T) {
	k := fakeHost(t, "good", "")
	res, err := fakeRun(t, k)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accel.Name != AccelKVM || res.BootInfo(1).Release != "fake-kvm" {
		t.Fatalf("ran on %+v (%q)", res.Accel, res.BootInfo(1).Release)
	}
	if !strings.Contains(strings.Join(res.QEMUArgs, " "), "q35,accel=kvm -cpu host") {
		t.Errorf("args %v", res.QEMUArgs)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(res.Serial), "accel.txt"))
	if err != nil || !strings.HasPrefix(string(b), "kvm (probe guest booted") {
		t.Errorf("accel.txt: %q, %v", b, err)
	}
}

func TestAccelScale(t *testing.T) {
	kvm, tcg := Accel{Name: AccelKVM}, Accel{Name: AccelTCG}
	for _, tc := range []struct {
		a       Accel
		in, out time.Duration
	}{
		{tcg, 5 * time.Minute, 5 * time.Minute},
		{kvm, 6 * time.Minute, 2 * time.Minute},
		{kvm, 2 * time.Minute, time.Minute},
		{kvm, 2 * time.Second, 2 * time.Second},
	} {
		if got := tc.a.Scale(tc.in); got != tc.out {
			t.Errorf("%s.Scale(%v) = %v, want %v", tc.a.Name, tc.in, got, tc.out)
		}
	}
}
