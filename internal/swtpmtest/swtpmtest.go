// Package swtpmtest runs a swtpm TPM 2.0 on loopback TCP for tests and
// drives it with tpm2-tools through the swtpm TCTI. A missing tool fails
// the test (scripts/setup.sh installs swtpm and tpm2-tools); nothing here
// touches a real TPM.
package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TPM is a swtpm on two loopback TCP ports driven with tpm2-tools
// through the swtpm TCTI. Missing tools fail the test: scripts/setup.sh
// installs swtpm and tpm2-tools.
type TPM struct {
	Dir  string
	TCTI string // TPM2TOOLS_TCTI value
	cmd  *exec.Cmd
}

func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (scripts/setup.sh installs it): %v", name, err)
	}
	return p
}

// freePorts returns two consecutive loopback ports (the swtpm TCTI puts
// the control channel on the server's port + 1) that were free a moment
// ago.
func freePorts(t testing.TB) (int, int) {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, p + 1
		}
	}
	t.Fatal("no two consecutive free loopback ports")
	return 0, 0
}

// Start sets up fresh TPM state (sha1, sha256, sha384 banks) in a
// temporary directory and starts swtpm on it; the test's cleanup stops it.
func Start(t testing.TB) *TPM {
	t.Helper()
	NeedTool(t, "tpm2_quote")
	setup, swtpm := NeedTool(t, "swtpm_setup"), NeedTool(t, "swtpm")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setup, "--tpm2", "--tpmstate", state, "--pcr-banks", "sha1,sha256,sha384",
		"--overwrite", "--runas", "root").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		srv, ctrl := freePorts(t)
		s := &TPM{Dir: dir, TCTI: fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", srv)}
		var log bytes.Buffer
		s.cmd = exec.Command(swtpm, "socket", "--tpm2", "--tpmstate", "dir="+state,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", srv),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", ctrl),
			"--flags", "not-need-init,startup-clear", "--runas", "root")
		s.cmd.Stdout, s.cmd.Stderr = &log, &log
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		up := false
		for i := 0; i < 200 && !up; i++ {
			select {
			case <-done:
				i = 200
			case <-time.After(25 * time.Millisecond):
				if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", srv)); err == nil {
					c.Close()
					up = true
				}
			}
		}
		if up {
			t.Cleanup(func() {
				s.cmd.Process.Kill()
				<-done
			})
			return s
		}
		s.cmd.Process.Kill()
		<-done
		lastErr = fmt.Errorf("swtpm did not listen on %d: %s", srv, log.Bytes())
	}
	t.Fatal(lastErr)
	return nil
}

// Run runs a tpm2-tools command in the TPM's directory; transient objects
// and sessions are flushed afterwards (swtpm has no resource manager).
func (s *TPM) Run(args ...string) ([]byte, error) {
	c := exec.Command(args[0], args[1:]...)
	c.Dir = s.Dir
	c.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.TCTI)
	out, err := c.CombinedOutput()
	for _, f := range []string{"-t", "-s"} {
		fc := exec.Command("tpm2_flushcontext", f)
		fc.Env = c.Env
		fc.Run()
	}
	return out, err
}

func (s *TPM) Must(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := s.Run(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *TPM) Path(name string) string { return filepath.Join(s.Dir, name) }

// AKSpec is one kind of attestation key.
type AKSpec struct {
	Name, KeyAlg, SigAlg, Hash string
}

// AKSpecs are the kinds tests cover.
var AKSpecs = []AKSpec{
	{"rsassa-sha256", "rsa", "rsassa", "sha256"},
	{"rsapss-sha256", "rsa", "rsapss", "sha256"},
	{"ecdsa-sha256", "ecc", "ecdsa", "sha256"},
	{"rsassa-sha384", "rsa", "rsassa", "sha384"},
	{"ecdsa-sha1", "ecc", "ecdsa", "sha1"},
}

// MakeAK creates an EK and an AK of kind k; it writes NAME.ctx, NAME.pub
// (TPM2B_PUBLIC) and NAME.pem in the TPM's directory.
func (s *TPM) MakeAK(t testing.TB, k AKSpec) {
	t.Helper()
	if _, err := os.Stat(s.Path("ek.ctx")); err != nil {
		s.Must(t, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
	}
	s.Must(t, "tpm2_createak", "-C", "ek.ctx", "-c", k.Name+".ctx", "-G", k.KeyAlg, "-g", k.Hash, "-s", k.SigAlg,
		"-u", k.Name+".pub", "-n", k.Name+".name")
	s.Must(t, "tpm2_readpublic", "-c", k.Name+".ctx", "-f", "pem", "-o", k.Name+".pem")
}

// Quote makes OUT.msg, OUT.sig and OUT.pcrs (serialized) with the AK.
func (s *TPM) Quote(t testing.TB, k AKSpec, out, sel, nonceHex string) {
	t.Helper()
	args := []string{"tpm2_quote", "-c", k.Name + ".ctx", "-l", sel, "-g", k.Hash, "--scheme", k.SigAlg,
		"-m", out + ".msg", "-s", out + ".sig", "-o", out + ".pcrs"}
	if nonceHex != "" {
		args = append(args, "-q", nonceHex)
	}
	s.Must(t, args...)
}

// Extend extends a PCR in the sha1 and sha256 banks.
func (s *TPM) Extend(t testing.TB, pcr int, seed byte) {
	t.Helper()
	s.Must(t, "tpm2_pcrextend", fmt.Sprintf("%d:sha1=%s,sha256=%s", pcr,
		strings.Repeat(fmt.Sprintf("%02x", seed), 20), strings.Repeat(fmt.Sprintf("%02x", seed), 32)))
}

// Checkquote runs tpm2_checkquote and reports whether it accepted.
func Checkquote(t testing.TB, dir, ak, msg, sig, pcrs, hash, nonceHex string) (bool, string) {
	t.Helper()
	args := []string{"-u", ak, "-m", msg, "-s", sig, "-g", hash}
	if pcrs != "" {
		args = append(args, "-f", pcrs)
	}
	if nonceHex != "" {
		args = append(args, "-q", nonceHex)
	}
	c := exec.Command("tpm2_checkquote", args...)
	c.Dir = dir
	out, err := c.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("tpm2_checkquote: %v", err)
		}
		return false, string(out)
	}
	return true, string(out)
}
