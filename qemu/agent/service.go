package main

// Service mode: the agent as a systemd service inside a Debian guest image
// (qemu.BuildDebianImage installs it as gkt-agent.service, ordered after
// multi-user.target). There it is not PID 1 and mounts nothing:
//   - it refuses to run unless the image's marker file exists and the
//     kernel command line carries gkt.out= (only the harness sets it), so
//     it cannot power off a machine that is not a harness guest;
//   - the scenario comes from QEMU's fw_cfg (opt/gkt/scenario), since the
//     image is shared by every test;
//   - the step is the boot number, counted on the guest's disk
//     (/var/lib/gkt-agent/boots): "1" for the first boot of a run, "2" for
//     the system that comes up after systemctl kexec or a reboot, ...;
//   - an "exec" action whose command returns 0 (systemctl kexec queues the
//     shutdown and returns) waits for the shutdown to stop the service.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
	"golang.org/x/sys/unix"
)

// Paths inside the Debian guest image.
const (
	serviceMarker   = "/etc/gkt-agent/harness-guest"
	serviceBootFile = "/var/lib/gkt-agent/boots"
	fwCfgScenario   = "/sys/firmware/qemu_fw_cfg/by_name/opt/gkt/scenario/raw"
)

func serviceMain() {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	args := parseCmdline(string(cmdline))
	if _, err := os.Stat(serviceMarker); err != nil || args["gkt.out"] == "" {
		fmt.Fprintf(os.Stderr, "gokexec guest agent: --service needs %s and gkt.out= on the kernel command line; refusing to run (it powers the machine off)\n", serviceMarker)
		os.Exit(2)
	}
	n, err := countBoot(serviceBootFile)
	a := &agent{step: strconv.Itoa(n), action: -1, service: true}
	a.openOut(args["gkt.out"])
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	a.send(&proto.Record{Type: proto.TypeBoot, Release: unix.ByteSliceToString(uts.Release[:]), Cmdline: strings.TrimSpace(string(cmdline))})
	if err != nil {
		a.fail(err)
	}
	sc, err := serviceScenario()
	if err != nil {
		a.fail(err)
	}
	a.runStep(sc)
}

// countBoot increments the boot counter on disk and returns the new value.
func countBoot(path string) (int, error) {
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	} else if !errors.Is(err, os.ErrNotExist) {
		return 1, fmt.Errorf("boot counter: %w", err)
	}
	n++
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return n, fmt.Errorf("boot counter: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return n, fmt.Errorf("boot counter: %w", err)
	}
	if _, err := fmt.Fprintln(f, n); err != nil {
		f.Close()
		return n, fmt.Errorf("boot counter: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return n, fmt.Errorf("boot counter: %w", err)
	}
	return n, f.Close()
}

// serviceScenario reads the scenario from fw_cfg, loading the driver if
// systemd-modules-load has not yet.
func serviceScenario() (*proto.Scenario, error) {
	var last error
	for i := 0; i < 40; i++ {
		b, err := os.ReadFile(fwCfgScenario)
		if err == nil {
			return proto.ParseScenario(b)
		}
		last = err
		if i == 0 {
			_ = exec.Command("/sbin/modprobe", "qemu_fw_cfg").Run()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return nil, fmt.Errorf("scenario from fw_cfg: %w", last)
}

// waitForShutdown is where an "exec" action ends in service mode when its
// command returned success: the shutdown it started stops this service.
func (a *agent) waitForShutdown() {
	a.mu.Lock()
	a.drain()
	a.mu.Unlock()
	select {}
}
