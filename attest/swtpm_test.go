package attest_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// simTPM is a swtpm on two loopback TCP ports driven with tpm2-tools
// through the swtpm TCTI. Missing tools fail the test: scripts/setup.sh
// installs swtpm and tpm2-tools.
type simTPM struct {
	dir  string
	tcti string
	cmd  *exec.Cmd
}

func needTool(t testing.TB, name string) string {
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

func startSimTPM(t testing.TB) *simTPM {
	t.Helper()
	needTool(t, "tpm2_quote")
	setup, swtpm := needTool(t, "swtpm_setup"), needTool(t, "swtpm")
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
		s := &simTPM{dir: dir, tcti: fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", srv)}
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

// run runs a tpm2-tools command in the TPM's directory; transient objects
// and sessions are flushed afterwards (swtpm has no resource manager).
func (s *simTPM) run(args ...string) ([]byte, error) {
	c := exec.Command(args[0], args[1:]...)
	c.Dir = s.dir
	c.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+s.tcti)
	out, err := c.CombinedOutput()
	for _, f := range []string{"-t", "-s"} {
		fc := exec.Command("tpm2_flushcontext", f)
		fc.Env = c.Env
		fc.Run()
	}
	return out, err
}

func (s *simTPM) must(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := s.run(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *simTPM) path(name string) string { return filepath.Join(s.dir, name) }

// akSpec is one kind of attestation key.
type akSpec struct {
	name, keyAlg, sigAlg, hash string
}

var akSpecs = []akSpec{
	{"rsassa-sha256", "rsa", "rsassa", "sha256"},
	{"rsapss-sha256", "rsa", "rsapss", "sha256"},
	{"ecdsa-sha256", "ecc", "ecdsa", "sha256"},
	{"rsassa-sha384", "rsa", "rsassa", "sha384"},
	{"ecdsa-sha1", "ecc", "ecdsa", "sha1"},
}

// makeAK creates an EK and an AK of kind k; it writes NAME.ctx, NAME.pub
// (TPM2B_PUBLIC) and NAME.pem in the TPM's directory.
func (s *simTPM) makeAK(t testing.TB, k akSpec) {
	t.Helper()
	if _, err := os.Stat(s.path("ek.ctx")); err != nil {
		s.must(t, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
	}
	s.must(t, "tpm2_createak", "-C", "ek.ctx", "-c", k.name+".ctx", "-G", k.keyAlg, "-g", k.hash, "-s", k.sigAlg,
		"-u", k.name+".pub", "-n", k.name+".name")
	s.must(t, "tpm2_readpublic", "-c", k.name+".ctx", "-f", "pem", "-o", k.name+".pem")
}

// quote makes OUT.msg, OUT.sig and OUT.pcrs (serialized) with the AK.
func (s *simTPM) quote(t testing.TB, k akSpec, out, sel, nonceHex string) {
	t.Helper()
	args := []string{"tpm2_quote", "-c", k.name + ".ctx", "-l", sel, "-g", k.hash, "--scheme", k.sigAlg,
		"-m", out + ".msg", "-s", out + ".sig", "-o", out + ".pcrs"}
	if nonceHex != "" {
		args = append(args, "-q", nonceHex)
	}
	s.must(t, args...)
}

// extend extends a PCR in the sha1 and sha256 banks.
func (s *simTPM) extend(t testing.TB, pcr int, seed byte) {
	t.Helper()
	s.must(t, "tpm2_pcrextend", fmt.Sprintf("%d:sha1=%s,sha256=%s", pcr,
		strings.Repeat(fmt.Sprintf("%02x", seed), 20), strings.Repeat(fmt.Sprintf("%02x", seed), 32)))
}

// checkquote runs tpm2_checkquote and reports whether it accepted.
func checkquote(t testing.TB, dir, ak, msg, sig, pcrs, hash, nonceHex string) (bool, string) {
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
		if !errorsAs(err, &ee) {
			t.Fatalf("tpm2_checkquote: %v", err)
		}
		return false, string(out)
	}
	return true, string(out)
}
