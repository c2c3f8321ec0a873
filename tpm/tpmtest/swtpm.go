// Package tpmtest runs a swtpm TPM 2.0 on a loopback TCP data channel for
// tests, manufactured with the PCR banks a test asks for. A missing swtpm
// fails the test (scripts/setup.sh installs it); nothing here touches a
// real TPM device. The process is stopped at test cleanup.
package tpmtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// SWTPM is one running software TPM.
type SWTPM struct {
	cmd  *exec.Cmd
	port int
	log  *bytes.Buffer
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start manufactures a TPM 2.0 state with banks ("sha1,sha256,...") and
// runs swtpm on it.
func Start(t testing.TB, banks string) *SWTPM {
	t.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install swtpm (scripts/setup.sh)", tool)
		}
	}
	// Not t.TempDir(): subtest names may hold commas, which swtpm's
	// option syntax cannot carry.
	dir, err := os.MkdirTemp("", "gokexec-swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	setup := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", dir, "--pcr-banks", banks, "--overwrite")
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		lastErr = nil
		port := freePort(t)
		ctrl := freePort(t)
		s := &SWTPM{port: port, log: &bytes.Buffer{}}
		s.cmd = exec.Command("swtpm", "socket", "--tpm2",
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", ctrl),
			"--tpmstate", "dir="+dir,
			"--flags", "not-need-init,startup-clear",
			"--runas", "root")
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("swtpm: %v", err)
		}
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		stop := func() {
			s.cmd.Process.Kill()
			<-done
		}
		// Wait until the data port accepts connections or swtpm exits.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				lastErr = fmt.Errorf("swtpm exited: %s", s.log.String())
			default:
			}
			if lastErr != nil {
				break
			}
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				t.Cleanup(stop)
				return s
			}
			time.Sleep(20 * time.Millisecond)
		}
		if lastErr == nil {
			stop()
			lastErr = fmt.Errorf("swtpm did not listen on %d: %s", port, s.log.String())
		}
	}
	t.Fatal(lastErr)
	return nil
}

// Dial opens a connection to the data channel (swtpm serves one at a
// time); it is closed at test cleanup.
func (s *SWTPM) Dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
