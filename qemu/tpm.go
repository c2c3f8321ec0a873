package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

var lookPath = exec.LookPath

// DefaultBanks are the PCR banks StartTPM allocates when none are given.
var DefaultBanks = []string{"sha1", "sha256", "sha384"}

// TPM is a swtpm (TPM 2.0) serving one QEMU at a time through a control
// socket, with its state in Dir. Within one Run the PCRs survive guest
// kexecs (the TPM is never reset); every Run starts with QEMU initialising
// the TPM, a cold boot that resets the PCRs. swtpm exits when QEMU shuts the
// TPM down; Run restarts it on the same state when needed.
type TPM struct {
	Dir    string   // state directory
	Socket string   // the unixio control socket QEMU connects to
	Log    string   // swtpm log file
	Banks  []string // active PCR banks
	swtpm  string
	state  string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
}

// StartTPM creates fresh TPM 2.0 state in dir with the given PCR banks
// (DefaultBanks when nil) using swtpm_setup and starts swtpm on a unix
// control socket in dir. The guest's firmware or kernel sends TPM2_Startup.
func StartTPM(ctx context.Context, dir string, banks []string) (*TPM, error) {
	setup, err := lookTool("swtpm_setup")
	if err != nil {
		return nil, err
	}
	swtpm, err := lookTool("swtpm")
	if err != nil {
		return nil, err
	}
	if len(banks) == 0 {
		banks = DefaultBanks
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu: tpm: %w", err)
	}
	state := filepath.Join(dir, "state")
	if err := os.RemoveAll(state); err != nil {
		return nil, fmt.Errorf("qemu: tpm: %w", err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: tpm: %w", err)
	}
	var out bytes.Buffer
	c := exec.CommandContext(ctx, setup, "--tpm2", "--tpmstate", state,
		"--pcr-banks", strings.Join(banks, ","), "--overwrite", "--runas", "root",
		"--logfile", filepath.Join(dir, "swtpm_setup.log"))
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "swtpm_setup.log"))
		return nil, fmt.Errorf("qemu: swtpm_setup: %w: %s%s", err, out.Bytes(), log)
	}
	t := &TPM{
		Dir:    dir,
		Socket: filepath.Join(dir, "swtpm.sock"),
		Log:    filepath.Join(dir, "swtpm.log"),
		Banks:  append([]string(nil), banks...),
		swtpm:  swtpm,
		state:  state,
	}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// start runs swtpm on the state directory and waits for its socket.
func (t *TPM) start(ctx context.Context) error {
	_ = os.Remove(t.Socket)
	t.done = make(chan struct{})
	t.cmd = exec.Command(t.swtpm, "socket", "--tpm2",
		"--tpmstate", "dir="+t.state,
		"--ctrl", "type=unixio,path="+t.Socket,
		"--log", "file="+t.Log+",level=1",
		"--runas", "root")
	var serr bytes.Buffer
	t.cmd.Stdout, t.cmd.Stderr = &serr, &serr
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("qemu: swtpm: %w", err)
	}
	cmd, done := t.cmd, t.done
	go func() { t.err = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(t.Socket); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("qemu: swtpm exited at start: %v: %s", t.err, serr.Bytes())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("qemu: swtpm: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Stop()
			return fmt.Errorf("qemu: swtpm: control socket %s did not appear within 10s: %s", t.Socket, serr.Bytes())
		}
	}
}

// ensure restarts swtpm on the same state if it has ended: swtpm exits
// when QEMU shuts the emulated TPM down at the end of a run. PCRs start over
// anyway at the next QEMU start (a cold boot); persistent state is kept.
func (t *TPM) ensure(ctx context.Context) error {
	if t.Running() {
		if _, err := os.Stat(t.Socket); err == nil {
			return nil
		}
		// Shutting down: give it a moment, then make sure it is gone.
		select {
		case <-t.done:
		case <-time.After(3 * time.Second):
			_ = t.cmd.Process.Kill()
			<-t.done
		}
	}
	return t.start(ctx)
}

// Running reports whether swtpm is still alive.
func (t *TPM) Running() bool {
	select {
	case <-t.done:
		return false
	default:
		return true
	}
}

// Stop kills swtpm and waits for it. It is safe to call more than once.
func (t *TPM) Stop() error {
	if t == nil || t.cmd == nil || t.cmd.Process == nil {
		return nil
	}
	if t.Running() {
		_ = t.cmd.Process.Kill()
	}
	<-t.done
	var ee *exec.ExitError
	if t.err != nil && !errors.As(t.err, &ee) {
		return fmt.Errorf("qemu: swtpm: %w", t.err)
	}
	return nil
}
