// Command sysfsdump is the /init of a throwaway QEMU guest: it prints
// /proc/cmdline and the kernel's /sys/firmware/fdt (gzip, base64, between
// marker lines) on the console and powers the guest off. The arm64 boot
// test uses it as well. regen-sysfs-fdt.sh builds and runs it;
// it does nothing unless it runs as PID 1.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"os"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "sysfsdump: not PID 1, refusing to run")
		os.Exit(2)
	}
	defer func() {
		syscall.Sync()
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}()
	os.MkdirAll("/sys", 0o755)
	if err := syscall.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		fmt.Println("FDT-ERROR mount:", err)
		return
	}
	os.MkdirAll("/proc", 0o755)
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err == nil {
		if c, err := os.ReadFile("/proc/cmdline"); err == nil {
			fmt.Printf("CMDLINE: %s", c)
		}
	}
	b, err := os.ReadFile("/sys/firmware/fdt")
	if err != nil {
		fmt.Println("FDT-ERROR read:", err)
		return
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	s := base64.StdEncoding.EncodeToString(z.Bytes())
	fmt.Println("FDT-BEGIN")
	for len(s) > 0 {
		n := min(len(s), 76)
		fmt.Println(s[:n])
		s = s[n:]
	}
	fmt.Println("FDT-END")
}
