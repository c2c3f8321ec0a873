// Command agent is the guest side of the gokexec QEMU harness. It runs as
// /init (PID 1) inside a QEMU guest: it mounts the pseudo file systems, reads
// the scenario the host put at /scenario.json, runs the actions of the step
// named by gkt.step= on the kernel command line, reports results as protocol
// lines (see package qemu/proto) and powers the guest off.
//
// With --service it runs instead as a systemd service in a Debian guest
// image (service.go): the scenario comes from fw_cfg and the step is the
// boot number counted on the guest's disk.
//
// Invariants:
//   - It refuses to do anything when it is not PID 1, so it can never power
//     off or reboot the machine it was built on; in service mode it refuses
//     unless the guest image's marker file exists and the kernel command
//     line carries the harness's gkt.out=.
//   - Every boot produces a "boot" record first and ends with either a "done"
//     record or an "error" record, followed by power-off; a watchdog powers
//     off after the step's deadline even if an action hangs.
//   - Records go to the device named by gkt.out= (default /dev/console); the
//     amd64 harness uses /dev/ttyS1 so kernel messages cannot interleave.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

type agent struct {
	mu     sync.Mutex
	out    *os.File
	enc    *proto.Encoder
	step   string
	action int
	// service is set in service mode (--service; see service.go).
	service bool
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--service" {
		serviceMain()
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "gokexec guest agent: not PID 1, refusing to run (it powers the machine off)")
		os.Exit(2)
	}
	mountAll()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	args := parseCmdline(string(cmdline))
	a := &agent{step: args["gkt.step"], action: -1}
	a.openOut(args["gkt.out"])

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	a.send(&proto.Record{Type: proto.TypeBoot, Release: unix.ByteSliceToString(uts.Release[:]), Cmdline: strings.TrimSpace(string(cmdline))})

	sc, err := loadScenario()
	if err != nil {
		a.fail(err)
	}
	a.runStep(sc)
}

// runStep runs the actions of the step named a.step under the step's
// watchdog, reports "done" and powers off; on an error it reports it and
// powers off.
func (a *agent) runStep(sc *proto.Scenario) {
	st, ok := sc.Steps[a.step]
	if !ok {
		a.fail(fmt.Errorf("no step %q in %s (gkt.step= on the command line)", a.step, proto.ScenarioPath))
	}
	deadline := time.Duration(st.DeadlineSec) * time.Second
	if deadline <= 0 {
		deadline = 120 * time.Second
	}
	go func() {
		time.Sleep(deadline)
		a.mu.Lock()
		a.action = -1
		a.mu.Unlock()
		a.fail(fmt.Errorf("watchdog: step %q did not finish within %v", a.step, deadline))
	}()
	for i := range st.Actions {
		a.mu.Lock()
		a.action = i
		a.mu.Unlock()
		if err := a.do(&st.Actions[i]); err != nil {
			a.fail(fmt.Errorf("action %d (%s): %w", i, st.Actions[i].Kind(), err))
		}
	}
	a.mu.Lock()
	a.action = -1
	a.mu.Unlock()
	a.send(&proto.Record{Type: proto.TypeDone})
	a.powerOff()
}

func parseCmdline(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func mountAll() {
	mounts := []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	}
	for _, m := range mounts {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.typ, 0, "")
	}
}

func (a *agent) openOut(dev string) {
	if dev == "" {
		dev = "/dev/console"
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		f, err = os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			f = os.Stdout
		}
	}
	// Raw output, fast line: no \n -> \r\n translation, 115200 baud.
	if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		t.Cflag = t.Cflag&^unix.CBAUD | unix.B115200
		_ = unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
	}
	a.out = f
	a.enc = proto.NewEncoder(f)
}

func (a *agent) send(r *proto.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.Step = a.step
	r.Action = a.action
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		r.MonoNS = ts.Nano()
	}
	if err := a.enc.Encode(r); err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
	}
}

func (a *agent) fail(err error) {
	a.send(&proto.Record{Type: proto.TypeError, Error: err.Error()})
	a.powerOff()
}

func (a *agent) powerOff() {
	a.mu.Lock() // never released: nothing may be sent after this
	// Wait until the terminal has sent everything, then power off.
	a.drain()
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Power-off failed: halt, and never return to the caller.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	select {}
}

// drain is tcdrain(3): TCSBRK with a non-zero argument waits until the
// terminal has transmitted its buffer. The wait is interruptible and the Go
// runtime signals its threads (preemption), so retry on EINTR.
func (a *agent) drain() {
	for i := 0; i < 1000; i++ {
		err := unix.IoctlSetInt(int(a.out.Fd()), unix.TCSBRK, 1)
		if err != unix.EINTR {
			return
		}
	}
}

func loadScenario() (*proto.Scenario, error) {
	b, err := os.ReadFile(proto.ScenarioPath)
	if err != nil {
		return nil, err
	}
	return proto.ParseScenario(b)
}

func (a *agent) do(act *proto.Action) error {
	switch act.Kind() {
	case "policy":
		return writePolicy(act.Policy)
	case "measure_files":
		return measureFiles(or(act.Dir, "/tmp/m"), act.MeasureFiles, act.Owner)
	case "violation":
		return violation(or(act.Dir, "/tmp/v"), act.Owner)
	case "add_key":
		return addKey()
	case "report":
		for _, what := range act.Report {
			if err := a.report(what); err != nil {
				return err
			}
		}
		return nil
	case "run":
		argv := act.Run
		out, code, err := run(argv)
		if err != nil {
			return err
		}
		a.send(&proto.Record{Type: proto.TypeCmd, Argv: argv, Exit: code, Output: out})
		if act.ExpectExit != nil && *act.ExpectExit != code {
			return fmt.Errorf("%q exited %d, want %d", argv, code, *act.ExpectExit)
		}
		return nil
	case "file":
		b, err := readFile(act.File, act.Limit)
		if err != nil {
			return err
		}
		a.send(&proto.Record{Type: proto.TypeFile, Name: act.File, Data: b})
		return nil
	case "repack_initrd":
		return repack(act.RepackInitrd)
	case "exec":
		// Flush before a command that may replace the kernel.
		a.mu.Lock()
		a.drain()
		a.mu.Unlock()
		unix.Sync()
		out, code, err := run(act.Exec)
		if err != nil {
			return err
		}
		a.send(&proto.Record{Type: proto.TypeCmd, Argv: act.Exec, Exit: code, Output: out})
		if a.service && code == 0 {
			a.waitForShutdown() // systemctl kexec returned: the shutdown is under way
		}
		return fmt.Errorf("%q returned (exit %d), expected it not to", act.Exec, code)
	case "write_file":
		if err := os.MkdirAll(filepath.Dir(act.WriteFile), 0o755); err != nil {
			return err
		}
		return os.WriteFile(act.WriteFile, act.Data, 0o644)
	}
	return fmt.Errorf("unknown action")
}

// readFile reads a whole file, or its first limit bytes when limit > 0.
func readFile(path string, limit int) ([]byte, error) {
	if limit <= 0 {
		return os.ReadFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, limit)
	n, err := io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:n], err
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func run(argv []string) ([]byte, int, error) {
	var buf bytes.Buffer
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout = &buf
	c.Stderr = &buf
	c.Env = []string{"PATH=/sbin:/bin:/usr/sbin:/usr/bin", "HOME=/"}
	err := c.Run()
	if err == nil {
		return buf.Bytes(), 0, nil
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return buf.Bytes(), ee.ExitCode(), nil
	}
	return buf.Bytes(), -1, err
}

const imaDir = "/sys/kernel/security/ima"

func writePolicy(p string) error {
	f, err := os.OpenFile(imaDir+"/policy", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	// The kernel parses one rule per write; give it the whole text in one
	// write, which it splits at newlines.
	if _, err := f.Write([]byte(strings.TrimSpace(p) + "\n")); err != nil {
		f.Close()
		return fmt.Errorf("ima policy rejected (see the kernel log): %w", err)
	}
	return f.Close()
}

func measureFiles(dir string, n, owner int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(p, fmt.Appendf(nil, "gokexec measured file %d in %s\n", i, dir), 0o644); err != nil {
			return err
		}
		if err := os.Chown(p, owner, owner); err != nil {
			return err
		}
		if _, err := os.ReadFile(p); err != nil {
			return err
		}
	}
	return nil
}

func violation(dir string, owner int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := filepath.Join(dir, fmt.Sprintf("open-writer-%d", time.Now().UnixNano()))
	w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Chown(owner, owner); err != nil {
		return err
	}
	if _, err := w.WriteString("written while read\n"); err != nil {
		return err
	}
	_, err = os.ReadFile(p)
	return err
}

func addKey() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gokexec harness test key " + serial.String()},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(4102444800, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	ring, err := unix.AddKey("keyring", "gkt-keys", nil, unix.KEY_SPEC_PROCESS_KEYRING)
	if err != nil {
		return fmt.Errorf("add_key keyring: %w", err)
	}
	if _, err := unix.AddKey("asymmetric", "", der, ring); err != nil {
		return fmt.Errorf("add_key asymmetric: %w", err)
	}
	return nil
}

func (a *agent) report(what string) error {
	switch what {
	case "boot":
		cmdline, _ := os.ReadFile("/proc/cmdline")
		var uts unix.Utsname
		_ = unix.Uname(&uts)
		a.send(&proto.Record{Type: proto.TypeBootInfo, Release: unix.ByteSliceToString(uts.Release[:]), Cmdline: strings.TrimSpace(string(cmdline))})
	case "pcrs":
		pcrs, err := readPCRs()
		if err != nil {
			return err
		}
		a.send(&proto.Record{Type: proto.TypePCRs, PCRs: pcrs})
	case "list", "ascii":
		name := "binary_runtime_measurements"
		if what == "ascii" {
			name = "ascii_runtime_measurements"
		}
		b, err := os.ReadFile(imaDir + "/" + name)
		if err != nil {
			return err
		}
		a.send(&proto.Record{Type: proto.TypeList, Name: name, Data: b})
	}
	return nil
}

func readPCRs() (map[string][]string, error) {
	const base = "/sys/class/tpm/tpm0"
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("no TPM: %w", err)
	}
	out := map[string][]string{}
	for _, e := range ents {
		bank, ok := strings.CutPrefix(e.Name(), "pcr-")
		if !ok {
			continue
		}
		vals := make([]string, 24)
		for i := range vals {
			b, err := os.ReadFile(base + "/" + e.Name() + "/" + strconv.Itoa(i))
			if err != nil {
				return nil, err
			}
			vals[i] = strings.ToLower(strings.TrimSpace(string(b)))
		}
		out[bank] = vals
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no pcr-<bank> directories in %s", base)
	}
	return out, nil
}

// repack writes a newc archive of the root file system, skipping the
// contents of the pseudo and scratch mounts (their directories are kept) and
// adding /dev/console so the next kernel's init has a console.
func repack(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	w := cpio.Newc.Writer(f)
	rec := cpio.NewRecorder()
	skip := map[string]bool{"/proc": true, "/sys": true, "/dev": true, "/run": true, "/tmp": true}
	err = filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
		r, err := rec.GetRecord(p)
		if err != nil {
			return err
		}
		r.Name = strings.TrimPrefix(p, "/")
		if err := w.WriteRecord(r); err != nil {
			return err
		}
		if d.IsDir() && skip[p] {
			if p == "/dev" {
				if err := w.WriteRecord(cpio.CharDev("dev/console", 0o600, 5, 1)); err != nil {
					return err
				}
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return err
	}
	return f.Close()
}
