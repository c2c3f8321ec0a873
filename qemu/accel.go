package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Accelerator names, as GOKEXEC_QEMU_ACCEL takes them and Accel.Name holds them.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// AccelEnv names the environment variable that overrides the accelerator
// choice: auto (the default: probe KVM, else software emulation), kvm or tcg.
const AccelEnv = "GOKEXEC_QEMU_ACCEL"

// ErrAccel is wrapped by Run's error when the guest died on its accelerator
// (QEMU reported a KVM failure or stopped the VM); the message carries
// QEMU's words and the serial log's path.
var ErrAccel = errors.New("qemu: accelerator failed")

// Accel is the accelerator chosen for one guest architecture.
type Accel struct {
	Name   string // AccelKVM or AccelTCG
	Mode   string // the GOKEXEC_QEMU_ACCEL mode that chose it: auto, kvm or tcg
	Reason string // why, in a few words, for logs
}

func (a Accel) String() string { return a.Name + " (" + a.Reason + ")" }

// args returns the -machine/-cpu arguments for arch under a.
func (a Accel) args(arch string) []string {
	switch arch {
	case "arm64":
		if a.Name == AccelKVM {
			return []string{"-machine", "virt,accel=kvm,gic-version=host", "-cpu", "host"}
		}
		// pauth-impdef: the architected pointer-auth algorithm makes TCG
		// about 10x slower (25 s vs 2.7 s to the agent).
		return []string{"-machine", "virt,accel=tcg", "-cpu", "max,pauth-impdef=on"}
	default:
		if a.Name == AccelKVM {
			return []string{"-machine", "q35,accel=kvm", "-cpu", "host"}
		}
		return []string{"-machine", "q35,accel=tcg", "-cpu", "max"}
	}
}

// Scale returns d adjusted to the accelerator: scenario timeouts are written
// for software emulation, and a KVM guest that needs more than a third of
// that (but at least a minute) is stuck, not slow.
func (a Accel) Scale(d time.Duration) time.Duration {
	if a.Name != AccelKVM {
		return d
	}
	s := d / 3
	if s < time.Minute {
		s = min(d, time.Minute)
	}
	return s
}

// Probe bounds. A working KVM boots a Debian kernel to its root-mount panic
// in a second or two; software emulation in two to five.
var (
	probeTimeout = 30 * time.Second
	kvmDevice    = "/dev/kvm"
)

var accelCache struct {
	sync.Mutex
	m map[string]Accel // by guest arch
}

// ChooseAccel returns the accelerator for guests of arch, deciding once per
// process and arch. kernel is a bootable kernel for arch, used by the probe.
// In auto mode KVM is chosen only when a probe guest on it boots that kernel
// to a known point (its "Linux version" banner and then the root-mount
// panic, which resets the VM under -no-reboot) within a bound; otherwise
// software emulation. The choice and its reason go to stderr once.
func ChooseAccel(ctx context.Context, arch, kernel string) (Accel, error) {
	mode := os.Getenv(AccelEnv)
	if mode == "" {
		mode = AccelAuto
	}
	switch mode {
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return Accel{}, fmt.Errorf("qemu: %s=%q: want auto, kvm or tcg", AccelEnv, mode)
	}
	accelCache.Lock()
	defer accelCache.Unlock()
	key := mode + "/" + arch
	if a, ok := accelCache.m[key]; ok {
		return a, nil
	}
	var a Accel
	switch mode {
	case AccelKVM:
		a = Accel{Name: AccelKVM, Mode: mode, Reason: AccelEnv + "=kvm"}
	case AccelTCG:
		a = Accel{Name: AccelTCG, Mode: mode, Reason: AccelEnv + "=tcg"}
	default:
		a = probeAccel(ctx, arch, kernel)
		a.Mode = mode
	}
	if accelCache.m == nil {
		accelCache.m = map[string]Accel{}
	}
	accelCache.m[key] = a
	fmt.Fprintf(os.Stderr, "qemu: %s guests use %s\n", arch, a)
	return a, nil
}

// demoteAccel records that KVM failed in a real run, so later runs of this
// process go straight to software emulation.
func demoteAccel(arch, why string) Accel {
	a := Accel{Name: AccelTCG, Mode: AccelAuto, Reason: "KVM failed in a run: " + why}
	accelCache.Lock()
	defer accelCache.Unlock()
	if accelCache.m == nil {
		accelCache.m = map[string]Accel{}
	}
	accelCache.m[AccelAuto+"/"+arch] = a
	fmt.Fprintf(os.Stderr, "qemu: %s guests use %s\n", arch, a)
	return a
}

// resetAccelCache forgets every choice (tests).
func resetAccelCache() {
	accelCache.Lock()
	accelCache.m = nil
	accelCache.Unlock()
}

// hostArch is the host's architecture in VM.Arch's terms (a variable for tests).
var hostArch = func() string { return runtime.GOARCH }

func qemuBinary(arch string) string {
	if arch == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// probeAccel decides auto mode for arch.
func probeAccel(ctx context.Context, arch, kernel string) Accel {
	tcg := func(why string) Accel { return Accel{Name: AccelTCG, Reason: why} }
	if arch != hostArch() {
		return tcg(fmt.Sprintf("guest is %s, host is %s", arch, hostArch()))
	}
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return tcg("no usable KVM: " + err.Error())
	}
	f.Close()
	if kernel == "" {
		return tcg("no kernel to probe KVM with")
	}
	took, err := probeKVM(ctx, arch, kernel)
	if err != nil {
		return tcg("KVM probe failed: " + err.Error())
	}
	return Accel{Name: AccelKVM, Reason: fmt.Sprintf("probe guest booted to its root-mount panic in %v", took.Round(10*time.Millisecond))}
}

// probeKVM boots kernel on KVM with no initrd and waits for the kernel's
// banner and for QEMU to exit (panic=-1 resets the VM when the kernel finds
// no root file system; -no-reboot turns the reset into an exit).
func probeKVM(ctx context.Context, arch, kernel string) (time.Duration, error) {
	bin, err := lookTool(qemuBinary(arch))
	if err != nil {
		return 0, err
	}
	console := "ttyS0"
	if arch == "arm64" {
		console = "ttyAMA0"
	}
	args := append(Accel{Name: AccelKVM}.args(arch),
		"-m", "256", "-smp", "1", "-display", "none", "-monitor", "none", "-no-reboot",
		"-nodefaults", "-serial", "stdio",
		"-kernel", kernel, "-append", "console="+console+" panic=-1 loglevel=4")
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(pctx, bin, args...)
	cmd.WaitDelay = 2 * time.Second
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	banner := make(chan struct{})
	failed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 4096), 1<<20)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			if !seen && strings.Contains(line, "Linux version") {
				seen = true
				close(banner)
			}
			if msg := accelFailure(line); msg != "" {
				select {
				case failed <- msg:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
	}()
	// Watch stderr for QEMU's own KVM errors while the guest runs; a VM that
	// QEMU stopped on an internal error does not exit by itself.
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sawBanner := false
	for {
		select {
		case <-banner:
			sawBanner = true
			banner = nil
		case msg := <-failed:
			cancel()
			<-done
			return 0, errors.New(msg)
		case <-watch.C:
			if msg := accelFailure(stderr.String()); msg != "" {
				cancel()
				<-done
				return 0, errors.New(msg)
			}
		case werr := <-done:
			took := time.Since(start)
			msg := firstLine(stderr.String())
			switch {
			case pctx.Err() != nil:
				if sawBanner {
					return 0, fmt.Errorf("the guest printed its banner but did not reach its root-mount panic within %v", probeTimeout)
				}
				return 0, fmt.Errorf("no kernel output within %v", probeTimeout)
			case werr != nil:
				if msg == "" {
					msg = werr.Error()
				}
				return 0, fmt.Errorf("%s exited: %s", bin, msg)
			case !sawBanner:
				return 0, fmt.Errorf("%s exited without kernel output", bin)
			}
			return took, nil
		}
	}
}

// accelFailure returns the text of a KVM failure in QEMU's output, or "".
func accelFailure(s string) string {
	for _, l := range strings.Split(s, "\n") {
		for _, pat := range accelFailurePatterns {
			if strings.Contains(l, pat) {
				return strings.TrimSpace(l)
			}
		}
	}
	return ""
}

// accelFailurePatterns are QEMU's words when a guest dies on KVM.
var accelFailurePatterns = []string{
	"KVM internal error",
	"emulation failure",
	"kvm run failed",
	"KVM: entry failed",
	"kvm_buf_set_msrs",
	"failed to set MSR",
	"kvm_init_vcpu failed",
	"Could not access KVM kernel module",
	"failed to initialize kvm",
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}
