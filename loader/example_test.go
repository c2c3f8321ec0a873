package loader_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/gokexec/gokexec/ima"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/loadertest"
	"github.com/gokexec/gokexec/plan"
)

// standInKernel is a Debian 6.1 bzImage's real setup sectors followed by
// filler where the compressed kernel would be: it plans as the real
// kernel does.
func standInKernel() []byte {
	setup, err := os.ReadFile("../bzimage/testdata/debian-6.1.0-56-cloud-amd64.setup")
	if err != nil {
		panic(err)
	}
	sys := binary.LittleEndian.Uint32(setup[0x1f4:]) * 16
	return append(setup, make([]byte, sys)...)
}

// measuredHost is a fake machine whose kernel has measured a
// boot_aggregate and two files.
func measuredHost() *loadertest.Host {
	h := loadertest.NewHost()
	for _, name := range []string{"boot_aggregate", "/init", "/bin/boot"} {
		d := sha256.Sum256([]byte(name))
		e, _ := ima.NewFileEntry(10, "ima-ng", name, d[:], crypto.SHA256, nil)
		h.List = ima.AppendList(h.List, []ima.Entry{e}, binary.LittleEndian)
	}
	return h
}

// A bootloader that found a kernel and an initramfs boots them with the
// running kernel's IMA list handed over. On a real machine the host is
// &loader.System{}; here it is a machine in memory.
func Example() {
	ctx := context.Background()
	host := measuredHost()
	img := loader.Image{
		Kernel:  loader.Bytes("/boot/vmlinuz-6.1", standInKernel()),
		Initrd:  loader.Bytes("/boot/initrd.img-6.1", bytes.Repeat([]byte("initramfs"), 100)),
		Cmdline: "console=ttyS0 root=/dev/vda1",
	}
	l, err := loader.Load(ctx, host, img, loader.Options{Arch: plan.ArchAMD64, IMAExtra: 64 << 10})
	if err != nil {
		fmt.Println("load:", err)
		return
	}
	fmt.Println("syscall:", l.Plan().Syscall)

	// Just before the reboot: the loader's own entries join the list.
	rep, err := l.Finalize(ctx)
	if err != nil {
		fmt.Println("finalize:", err)
		return
	}
	fmt.Printf("handing over %d entries (%d of the loader's); no TPM on this machine: %v\n", rep.Count, len(rep.Entries), rep.NoTPM)
	for _, e := range rep.Entries {
		d, _ := e.Decode(binary.LittleEndian)
		fmt.Printf("  %s %s\n", e.TemplateName, d.Name)
	}
	if err := l.Exec(); err != nil { // a real Exec does not return
		fmt.Println("exec:", err)
	}
	fmt.Println("reboots:", host.Reboots)
	// Output:
	// syscall: kexec_load
	// handing over 8 entries (5 of the loader's); no TPM on this machine: true
	//   ima-buf kexec_load
	//   ima-ng /boot/vmlinuz-6.1
	//   ima-ng /boot/initrd.img-6.1
	//   ima-buf kexec-cmdline
	//   ima-buf kexec_execute
	// reboots: 1
}

// Every refusal wraps a sentinel error: callers match with errors.Is,
// never the text.
func Example_errors() {
	ctx := context.Background()
	host := loadertest.NewHost()
	host.List = nil // a kernel without IMA: nothing to hand over, and no refusal
	img := loader.Image{Kernel: loader.Bytes("/boot/vmlinuz", standInKernel())}
	l, err := loader.Load(ctx, host, img, loader.Options{Arch: plan.ArchAMD64, Warn: func(s string) { fmt.Println("warning:", s) }})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Exec refuses until Finalize succeeds.
	fmt.Println(errors.Is(l.Exec(), loader.ErrNotFinalized))

	// A bad input (here an empty initramfs) is plan.ErrInput.
	img.Initrd = loader.Bytes("/boot/initrd.img", nil)
	_, err = loader.Load(ctx, host, img, loader.Options{Arch: plan.ArchAMD64, NoIMA: true})
	fmt.Println(errors.Is(err, plan.ErrInput))
	// Output:
	// warning: the running kernel has no IMA measurement list: nothing to hand over; loading without the hand-over
	// true
	// true
}

// Plan is a dry run: it shows every address and the hand-over segment, and
// loads nothing.
func ExamplePlan() {
	host := measuredHost()
	img := loader.Image{Kernel: loader.Bytes("/boot/vmlinuz", standInKernel()), Cmdline: "console=ttyS0"}
	p, err := loader.Plan(context.Background(), host, img, loader.Options{Arch: plan.ArchAMD64, Mode: plan.ModeLoad, IMAExtra: 4096})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s, IMA list of %d entries (the kexec_load marker included) in a %d-byte segment; %d loads\n",
		p.Syscall, p.IMA.Entries, p.IMA.Size, len(host.Loads))
	// Output:
	// kexec_load, IMA list of 4 entries (the kexec_load marker included) in a 8192-byte segment; 0 loads
}

// A DryRun wraps a host: load, finalize and exec read and plan as they
// would, and every act (kexec_load, kexec_file_load, unload, reboot,
// mounting securityfs, TPM extends) is recorded instead of made.
func ExampleDryRun() {
	ctx := context.Background()
	host := measuredHost()
	dry := loader.NewDryRun(host)
	img := loader.Image{Kernel: loader.Bytes("/boot/vmlinuz", standInKernel()), Cmdline: "console=ttyS0"}
	l, err := loader.Load(ctx, dry, img, loader.Options{Arch: plan.ArchAMD64, Mode: plan.ModeLoad})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := l.Finalize(ctx); err != nil {
		fmt.Println(err)
		return
	}
	_ = l.Exec()
	for _, a := range dry.Acts {
		fmt.Println(a.Op)
	}
	fmt.Println("acts on the host:", len(host.Loads)+host.Reboots)
	// Output:
	// kexec_load
	// kexec_load
	// reboot
	// acts on the host: 0
}

// Two processes (a load now, the exec at shutdown): the state keeps what
// the load read, so the second process never opens the kernel's files —
// a separate /boot may be unmounted by then.
func ExampleResume() {
	ctx := context.Background()
	host := measuredHost()
	dir, err := os.MkdirTemp("", "gokexec-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	state := loader.StateDir(dir + "/run")

	// Process 1: load and record.
	img := loader.Image{Kernel: loader.Bytes("/boot/vmlinuz", standInKernel()), Cmdline: "console=ttyS0"}
	l, err := loader.Load(ctx, host, img, loader.Options{Arch: plan.ArchAMD64, Mode: plan.ModeLoad, IMAExtra: 4096})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := state.Save(l.State()); err != nil {
		fmt.Println(err)
		return
	}

	// Process 2: resume, finalize, record, reboot.
	s, err := state.Read()
	if err != nil {
		fmt.Println(err)
		return
	}
	l2, err := loader.Resume(host, s)
	if err != nil {
		fmt.Println(err)
		return
	}
	rep, err := l2.Finalize(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := state.Save(l2.State()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("entries handed over:", rep.Count, "reboot:", l2.Exec() == nil)
	// Output:
	// entries handed over: 7 reboot: true
}
