package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// VM describes one QEMU run. A run may span several guest boots (kexec).
type VM struct {
	Arch   string // "amd64" (default) or "arm64"
	Kernel string // host path of the first kernel
	Initrd string // host path of the initramfs
	// Append is added after the harness defaults (DefaultAppend) on the
	// kernel command line; put gkt.step=NAME here, or set Step.
	Append  string
	Step    string        // if set, gkt.step=Step is appended
	MemMiB  int           // default 1024
	TPM     *TPM          // optional; attached as tpm-tis (amd64) or tpm-tis-device (arm64)
	Timeout time.Duration // whole run, default 5 minutes
	// Serial is the host file receiving the guest console (all boots).
	// Default: <ArtifactsDir>/serial.log, or a temporary file.
	Serial string
	// ArtifactsDir, when set, receives records.jsonl, protocol.log,
	// serial.log and per-boot payloads (see the package documentation).
	ArtifactsDir string
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
	// Firmware is "bios" (default: SeaBIOS on amd64, none on arm64) or
	// "uefi" (OVMF on amd64, AAVMF on arm64).
	Firmware string
	// CPUs is the number of vCPUs; default 1.
	CPUs int
	// Disk, when set, is attached as the first virtio disk (/dev/vda):
	// a qcow2 file (by its .qcow2 suffix; see Overlay) or a raw image.
	// Writes go through QEMU's cache without flushes (cache=unsafe).
	Disk string
	// Reset lets a guest reboot reset the machine (firmware, TPM and all)
	// and boot again within the same run; by default (-no-reboot) a reboot
	// ends the run.
	Reset bool
}

// Result is what came back from a run. Run returns it also with an error,
// as far as the run got.
type Result struct {
	Records []proto.Record
	// Arrived[i] is when Records[i] reached the host, since QEMU started.
	Arrived     []time.Duration
	Serial      string // console log path
	ProtocolLog string // raw protocol stream path ("" on arm64, where it is in Serial)
	Elapsed     time.Duration
	QEMUArgs    []string
	// Accel is the accelerator the run used.
	Accel Accel
	// AccelNote is set when an auto-mode run died on KVM and was retried
	// with software emulation; it says so, with KVM's error.
	AccelNote string
}

// Errors of Run.
var (
	ErrTimeout = errors.New("qemu: timeout")
	ErrQEMU    = errors.New("qemu: qemu-system failed")
	ErrGuest   = errors.New("qemu: guest reported failure")
)

// DefaultAppend is the command line the harness puts before VM.Append; a
// guest that kexecs into the next kernel should pass it on too.
func DefaultAppend(arch string) string {
	if arch == "arm64" {
		// quiet: records share the console; fewer kernel lines to cut into them.
		return "console=ttyAMA0 quiet panic=-1 gkt.out=/dev/console"
	}
	// ttyS0: kernel console; ttyS1: protocol records only.
	// no_timer_check: under software emulation on a loaded host the
	// IO-APIC timer check can fail and panic the kernel ("IO-APIC + timer
	// doesn't work"); seen after kexec into 6.12.
	return "console=ttyS0 panic=-1 no_timer_check gkt.out=/dev/ttyS1"
}

// Run boots the VM and collects records until QEMU exits (the guest powered
// off), the timeout passes or ctx ends. It returns an error wrapping
// ErrTimeout, ErrAccel (the guest died on KVM), ErrQEMU, ErrGuest (an "error"
// record, or no final "done") or proto.ErrBadLine; the error names the
// serial log.
//
// The accelerator comes from ChooseAccel; VM.Timeout is scaled to it. In
// auto mode a run that dies on KVM is run once more with software emulation
// (Result.AccelNote says so, and the KVM attempt's console is kept as
// serial-kvm.log beside the serial log).
func Run(ctx context.Context, vm VM) (*Result, error) {
	if vm.Arch == "" {
		vm.Arch = "amd64"
	}
	if vm.MemMiB == 0 {
		vm.MemMiB = 1024
	}
	if vm.Timeout == 0 {
		vm.Timeout = 5 * time.Minute
	}
	if vm.Arch != "amd64" && vm.Arch != "arm64" {
		return nil, fmt.Errorf("qemu: unknown arch %q", vm.Arch)
	}
	accel, err := ChooseAccel(ctx, vm.Arch, vm.Kernel)
	if err != nil {
		return nil, err
	}
	res, err := runOnce(ctx, vm, accel)
	if err == nil || !errors.Is(err, ErrAccel) || accel.Mode != AccelAuto || accel.Name != AccelKVM {
		return res, err
	}
	kept := filepath.Join(filepath.Dir(res.Serial), "serial-kvm.log")
	if rerr := os.Rename(res.Serial, kept); rerr != nil {
		kept = res.Serial + " (not kept: " + rerr.Error() + ")"
	}
	note := fmt.Sprintf("the run died on KVM (%v; console kept as %s); retried once with software emulation", err, kept)
	fmt.Fprintln(os.Stderr, "qemu: "+note)
	res, err = runOnce(ctx, vm, demoteAccel(vm.Arch, err.Error()))
	if res != nil {
		res.AccelNote = note
	}
	return res, err
}

// runOnce is one QEMU run on accel.
func runOnce(ctx context.Context, vm VM, accel Accel) (*Result, error) {
	bin := qemuBinary(vm.Arch)
	args := accel.args(vm.Arch)
	timeout := accel.Scale(vm.Timeout)
	qbin, err := lookTool(bin)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "gkt-vm-")
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	defer os.RemoveAll(work)
	if vm.Serial == "" {
		if vm.ArtifactsDir != "" {
			vm.Serial = filepath.Join(vm.ArtifactsDir, "serial.log")
		} else {
			vm.Serial = filepath.Join(work, "serial.log")
		}
	}
	res := &Result{Serial: vm.Serial, Accel: accel}
	serial, err := os.Create(vm.Serial)
	if err != nil {
		return res, fmt.Errorf("qemu: serial log: %w", err)
	}
	defer serial.Close()
	fmt.Fprintf(serial, "# accelerator: %s; timeout %v\n", accel, timeout)
	if vm.ArtifactsDir != "" {
		if err := os.MkdirAll(vm.ArtifactsDir, 0o755); err != nil {
			return res, fmt.Errorf("qemu: artifacts: %w", err)
		}
		if err := os.WriteFile(filepath.Join(vm.ArtifactsDir, "accel.txt"), []byte(accel.String()+"\n"), 0o644); err != nil {
			return res, fmt.Errorf("qemu: artifacts: %w", err)
		}
	}

	appendLine := DefaultAppend(vm.Arch)
	if vm.Append != "" {
		appendLine += " " + vm.Append
	}
	if vm.Step != "" {
		appendLine += " gkt.step=" + vm.Step
	}
	qmpSock := filepath.Join(work, "qmp.sock")
	fw, err := firmwareArgs(vm, work)
	if err != nil {
		return res, err
	}
	args = append(args, fw...)
	cpus := vm.CPUs
	if cpus < 1 {
		cpus = 1
	}
	args = append(args, "-m", fmt.Sprint(vm.MemMiB), "-smp", fmt.Sprint(cpus),
		"-display", "none", "-monitor", "none",
		"-qmp", "unix:"+qmpSock+",server=on,wait=off",
		"-kernel", vm.Kernel, "-append", appendLine, "-serial", "stdio")
	if !vm.Reset {
		args = append(args, "-no-reboot")
	}
	if vm.Initrd != "" {
		args = append(args, "-initrd", vm.Initrd)
	}
	if vm.Disk != "" {
		format := "raw"
		if strings.HasSuffix(vm.Disk, ".qcow2") {
			format = "qcow2"
		}
		args = append(args, "-drive", "file="+vm.Disk+",format="+format+",if=virtio,cache=unsafe")
	}
	var ln net.Listener
	if vm.Arch == "amd64" {
		sock := filepath.Join(work, "proto.sock")
		ln, err = net.Listen("unix", sock)
		if err != nil {
			return res, fmt.Errorf("qemu: protocol socket: %w", err)
		}
		defer ln.Close()
		args = append(args, "-chardev", "socket,id=gkt,path="+sock, "-serial", "chardev:gkt")
	}
	if vm.TPM != nil {
		if err := vm.TPM.ensure(ctx); err != nil {
			return res, err
		}
		dev := "tpm-tis"
		if vm.Arch == "arm64" {
			dev = "tpm-tis-device"
		}
		args = append(args, "-chardev", "socket,id=chrtpm,path="+vm.TPM.Socket,
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", dev+",tpmdev=tpm0")
	}
	args = append(args, vm.ExtraArgs...)
	res.QEMUArgs = append([]string{qbin}, args...)

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// died is set (once) when QEMU reports that the guest died on its
	// accelerator or stopped the VM; the run is then ended at once.
	var (
		diedOnce sync.Once
		died     string
	)
	kill, killed := context.WithCancel(rctx)
	defer killed()
	fail := func(why string) {
		diedOnce.Do(func() { died = why; killed() })
	}
	cmd := exec.CommandContext(kill, qbin, args...)
	cmd.WaitDelay = 5 * time.Second
	// Not cmd.StdoutPipe: Wait closes that pipe and the console's last
	// lines (the final records on arm64) would be lost. The reader below
	// runs to EOF, which comes when QEMU exits.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return res, fmt.Errorf("qemu: %w", err)
	}
	defer stdout.Close()
	cmd.Stdout = stdoutW
	stderr := &watchedWriter{check: func(s string) {
		if msg := accelFailure(s); msg != "" {
			fail(msg)
		}
	}}
	cmd.Stderr = stderr
	cmd.Stdin = nil
	start := time.Now()
	fmt.Fprintf(serial, "# %s\n", strings.Join(res.QEMUArgs, " "))
	err = cmd.Start()
	stdoutW.Close()
	if err != nil {
		return res, fmt.Errorf("%w: start: %v", ErrQEMU, err)
	}
	go watchQMP(kill, qmpSock, func(event string) {
		// Give QEMU a moment to print why before the kill.
		time.Sleep(300 * time.Millisecond)
		if msg := accelFailure(stderr.String()); msg != "" {
			fail(msg)
			return
		}
		fail("QEMU stopped the VM (QMP event " + event + ")")
	})

	var (
		mu       sync.Mutex
		dec      proto.Decoder
		protoErr error
	)
	feed := func(line string) {
		rec, err := dec.Feed(line)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if protoErr == nil {
				protoErr = err
			}
			return
		}
		if rec != nil {
			res.Records = append(res.Records, *rec)
			res.Arrived = append(res.Arrived, time.Since(start))
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // console
		defer wg.Done()
		br := bufio.NewReaderSize(stdout, 1<<16)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				serial.WriteString(line)
				if ln == nil { // arm64: protocol shares the console
					feed(line)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	if ln != nil {
		var plog io.Writer = io.Discard
		if vm.ArtifactsDir != "" {
			res.ProtocolLog = filepath.Join(vm.ArtifactsDir, "protocol.log")
			if f, err := os.Create(res.ProtocolLog); err == nil {
				defer f.Close()
				plog = f
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 1<<16)
			for {
				line, err := br.ReadString('\n')
				if line != "" {
					io.WriteString(plog, line)
					feed(line)
				}
				if err != nil {
					return
				}
			}
		}()
	}
	werr := cmd.Wait()
	res.Elapsed = time.Since(start)
	ln0 := ln
	if ln0 != nil {
		ln0.Close() // unblocks Accept if QEMU never connected
	}
	wg.Wait()
	errText := stderr.String()
	if errText != "" {
		fmt.Fprintf(serial, "# qemu stderr:\n%s", errText)
	}
	fmt.Fprintf(serial, "# qemu exited after %v: %v\n", res.Elapsed.Round(time.Millisecond), werr)
	diedOnce.Do(func() {}) // no more fail() after this point
	if died == "" && werr != nil && accel.Name == AccelKVM && rctx.Err() == nil && ctx.Err() == nil {
		if msg := accelFailure(errText); msg != "" {
			died = msg
		}
	}

	if vm.ArtifactsDir != "" {
		if err := res.WriteArtifacts(vm.ArtifactsDir); err != nil {
			return res, err
		}
	}
	switch {
	case died != "" && ctx.Err() == nil:
		return res, fmt.Errorf("%w on %s after %v: %s (serial log %s)", ErrAccel, accel.Name, res.Elapsed.Round(time.Millisecond), died, vm.Serial)
	case rctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		return res, fmt.Errorf("%w after %v on %s (%s; %s)", ErrTimeout, timeout, accel.Name, res.lastWords(), vm.Serial)
	case ctx.Err() != nil:
		return res, fmt.Errorf("qemu: %w (serial log %s)", ctx.Err(), vm.Serial)
	case werr != nil:
		return res, fmt.Errorf("%w: %v: %s (serial log %s)", ErrQEMU, werr, strings.TrimSpace(errText), vm.Serial)
	case protoErr != nil:
		return res, fmt.Errorf("%w (serial log %s)", protoErr, vm.Serial)
	}
	if e := res.Errors(); len(e) > 0 {
		return res, fmt.Errorf("%w: %s (serial log %s)", ErrGuest, strings.Join(e, "; "), vm.Serial)
	}
	if !res.Done() {
		return res, fmt.Errorf("%w: guest stopped without a done record (%s; serial log %s)", ErrGuest, res.lastWords(), vm.Serial)
	}
	return res, nil
}

// watchedWriter collects QEMU's stderr and calls check on what it has so far
// after each write.
type watchedWriter struct {
	lockedBuffer
	check func(string)
}

func (w *watchedWriter) Write(p []byte) (int, error) {
	n, err := w.lockedBuffer.Write(p)
	w.check(w.String())
	return n, err
}

// watchQMP connects to QEMU's QMP socket once it exists and calls stopped
// (once) on a STOP event: QEMU pauses a VM whose vCPU hit an internal error
// instead of exiting. It returns when ctx ends or the connection closes.
func watchQMP(ctx context.Context, sock string, stopped func(event string)) {
	var conn net.Conn
	for conn == nil {
		c, err := net.Dial("unix", sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	if _, err := io.WriteString(conn, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		return
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		var msg struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil {
			continue
		}
		if msg.Event == "STOP" {
			stopped(msg.Event)
			return
		}
	}
}

func (r *Result) lastWords() string {
	if len(r.Records) == 0 {
		return "no records"
	}
	l := r.Records[len(r.Records)-1]
	return fmt.Sprintf("%d records, last: boot %d step %q type %s", len(r.Records), l.Boot, l.Step, l.Type)
}
