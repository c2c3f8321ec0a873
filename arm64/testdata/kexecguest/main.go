// Command kexecguest is the /init of a QEMU arm64 guest that exercises the
// arm64 package through a real kexec_load. Stage 1 (the first boot) plans a
// load of /Image with /stage2.cpio as initrd, prepares the running
// kernel's /sys/firmware/fdt with arm64.PrepareDTB, loads kernel, initrd,
// IMA buffer, DTB and arm64.Trampoline with kexec_load and reboots into
// them. Stage 2 (command line holds gokexec.stage=2) prints its command
// line, /sys/firmware/fdt and /proc/iomem and powers off.
//
// It refuses to do anything unless it is PID 1 on arm64: it is only ever
// meant to run inside a throwaway QEMU guest (see TestKexecLoadInGuest).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/gokexec/gokexec/arm64"
	"github.com/gokexec/gokexec/fdt"
)

type segment struct {
	buf   unsafe.Pointer
	bufsz uintptr
	mem   uintptr
	memsz uintptr
}

func main() {
	if os.Getpid() != 1 || runtime.GOARCH != "arm64" {
		fmt.Fprintln(os.Stderr, "kexecguest: not PID 1 in an arm64 guest, refusing to run")
		os.Exit(2)
	}
	defer func() {
		syscall.Sync()
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}()
	for _, m := range [][3]string{{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}} {
		os.MkdirAll(m[1], 0o755)
		if err := syscall.Mount(m[0], m[1], m[2], 0, ""); err != nil {
			fmt.Println("GUEST-ERROR mount", m[1], err)
			return
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fmt.Printf("CMDLINE: %s", cmdline)
	if bytes.Contains(cmdline, []byte("gokexec.stage=2")) {
		dump("FDT", "/sys/firmware/fdt")
		dump("IOMEM", "/proc/iomem")
		return
	}
	if err := stage1(); err != nil {
		fmt.Println("GUEST-ERROR", err)
	}
}

// dump prints a file gzipped and base64-encoded between marker lines.
func dump(tag, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Println("GUEST-ERROR read", path, err)
		return
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	s := base64.StdEncoding.EncodeToString(z.Bytes())
	fmt.Println(tag + "-BEGIN")
	for len(s) > 0 {
		n := min(len(s), 76)
		fmt.Println(s[:n])
		s = s[n:]
	}
	fmt.Println(tag + "-END")
}

func pageUp(v uint64) uint64 { return (v + 4095) &^ 4095 }

func stage1() error {
	kb, err := os.ReadFile("/Image")
	if err != nil {
		return err
	}
	im, err := arm64.ParseImage(kb)
	if err != nil {
		return err
	}
	if err := im.CheckPageSize(uint64(os.Getpagesize())); err != nil {
		return err
	}
	initrd, err := os.ReadFile("/stage2.cpio")
	if err != nil {
		return err
	}
	raw, err := os.ReadFile("/sys/firmware/fdt")
	if err != nil {
		return err
	}
	tree, err := fdt.Parse(raw)
	if err != nil {
		return err
	}
	mem, err := tree.MemoryRanges()
	if err != nil {
		return err
	}
	ram := mem[0]

	// A fixed plan inside the first RAM bank: kernel at the first 2 MiB
	// boundary above 2 MiB, the rest above it.
	kp, err := im.Placement()
	if err != nil {
		return err
	}
	base := (ram.Start + 2*kp.Align - 1) &^ (kp.Align - 1)
	entry, err := im.LoadAddress(base)
	if err != nil {
		return err
	}
	kernel := fdt.Range{Start: entry, Size: im.ImageSize}
	initrdR := fdt.Range{Start: (entry + im.ImageSize + 0x1fffff) &^ 0x1fffff, Size: uint64(len(initrd))}
	if err := arm64.CheckInitrd(kernel, initrdR); err != nil {
		return err
	}
	ima := bytes.Repeat([]byte("gokexec-ima-handover "), 400)
	imaR := fdt.Range{Start: pageUp(initrdR.Start + initrdR.Size), Size: uint64(len(ima))}
	if err := arm64.PrepareDTB(tree, arm64.ChosenOptions{
		Bootargs:  strings.TrimSpace(string(mustRead("/proc/cmdline"))) + " gokexec.stage=2",
		Initrd:    &initrdR,
		KASLRSeed: 0x5eed5eed5eed5eed,
		RNGSeed:   bytes.Repeat([]byte{0x17}, arm64.RNGSeedSize),
		IMABuffer: &imaR,
	}); err != nil {
		return err
	}
	dtb, err := arm64.BuildDTB(tree)
	if err != nil {
		return err
	}
	dtbAddr := (imaR.Start + imaR.Size + arm64.DTBAlign - 1) &^ (arm64.DTBAlign - 1)
	if err := arm64.CheckDTB(dtbAddr, uint64(len(dtb))); err != nil {
		return err
	}
	trampAddr := pageUp(dtbAddr + uint64(len(dtb)))
	tramp := arm64.Trampoline(dtbAddr, entry)
	fmt.Printf("PLAN kernel=%#x+%#x initrd=%#x+%#x ima=%#x+%#x dtb=%#x+%#x tramp=%#x\n",
		entry, im.ImageSize, initrdR.Start, initrdR.Size, imaR.Start, imaR.Size, dtbAddr, len(dtb), trampAddr)

	seg := func(b []byte, at, memsz uint64) segment {
		return segment{buf: unsafe.Pointer(&b[0]), bufsz: uintptr(len(b)), mem: uintptr(at), memsz: uintptr(pageUp(memsz))}
	}
	segs := []segment{
		seg(im.Kernel, entry, im.ImageSize),
		seg(initrd, initrdR.Start, initrdR.Size),
		seg(ima, imaR.Start, imaR.Size),
		seg(dtb, dtbAddr, uint64(len(dtb))),
		seg(tramp, trampAddr, uint64(len(tramp))),
	}
	_, _, errno := syscall.Syscall6(syscall.SYS_KEXEC_LOAD, uintptr(trampAddr), uintptr(len(segs)), uintptr(unsafe.Pointer(&segs[0])), 0, 0, 0)
	runtime.KeepAlive(im.Kernel)
	runtime.KeepAlive(initrd)
	runtime.KeepAlive(ima)
	runtime.KeepAlive(dtb)
	runtime.KeepAlive(tramp)
	if errno != 0 {
		return fmt.Errorf("kexec_load: %w", errno)
	}
	fmt.Println("KEXEC-LOADED")
	syscall.Sync()
	return syscall.Reboot(syscall.LINUX_REBOOT_CMD_KEXEC)
}

func mustRead(p string) []byte {
	b, _ := os.ReadFile(p)
	return b
}
