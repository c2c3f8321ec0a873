package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gokexec/gokexec/kexec"
)

// captureCrash adds to a capture-host tree what a crash plan reads besides
// /proc/iomem: /sys/kernel/vmcoreinfo, every CPU's crash_notes and
// crash_notes_size, and /proc/kcore's headers (no memory). Files the host
// lacks (no CONFIG_CRASH_DUMP, no root) are left out.
func captureCrash(src, dir string) error {
	put := func(rel string, b []byte) error {
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	}
	copyIf := func(rel string) error {
		b, err := kexec.ReadInput("capture-host", filepath.Join(src, rel), kexec.MaxSmallBytes)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return put(rel, b)
	}
	if err := copyIf("sys/kernel/vmcoreinfo"); err != nil {
		return err
	}
	cpus := "sys/devices/system/cpu"
	ents, err := os.ReadDir(filepath.Join(src, cpus))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "cpu")
		if _, err := strconv.Atoi(n); !ok || err != nil || !e.IsDir() {
			continue
		}
		for _, f := range []string{"crash_notes", "crash_notes_size"} {
			if err := copyIf(filepath.Join(cpus, e.Name(), f)); err != nil {
				return err
			}
		}
	}
	if h, err := kexec.KcoreHeaders(filepath.Join(src, "proc/kcore")); err == nil {
		return put("proc/kcore", h)
	}
	return nil
}
