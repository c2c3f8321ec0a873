package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ovmfCapture = "../../plan/testdata/host-qemu-q35-ovmf-1g-linux-image-6.1.0-57-cloud-amd64"

// dryRunHost plans the test kernel against the OVMF capture and returns
// the plan's boot_params.
func dryRunHost(t *testing.T, host string, extra ...string) (map[string]any, []any) {
	t.Helper()
	args := append([]string{"-l", kernelFile(t), "-c", "--dry-run", "--json", "--host", host}, extra...)
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("gokexec %v: exit %d: %s", args, code, errb.String())
	}
	var p struct {
		BootParams map[string]any `json:"boot_params"`
		IMA        map[string]any `json:"ima"`
		Warnings   []any          `json:"warnings"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.IMA == nil || p.IMA["entries"].(float64) < 2 {
		t.Errorf("--host: the capture's IMA list not planned: %v", p.IMA)
	}
	return p.BootParams, p.Warnings
}

func TestDryRunHostOVMF(t *testing.T) {
	bp, warn := dryRunHost(t, ovmfCapture)
	e, ok := bp["efi"].(map[string]any)
	if !ok || len(warn) != 0 {
		t.Fatalf("efi %v, warnings %v", bp["efi"], warn)
	}
	for _, k := range []string{"systab", "memmap", "memmap_size", "memdesc_size", "memdesc_version"} {
		if v, ok := e[k].(float64); !ok || v == 0 {
			t.Errorf("boot_params.efi.%s = %v", k, e[k])
		}
	}
	var types []float64
	for _, n := range bp["setup_data"].([]any) {
		types = append(types, n.(map[string]any)["type"].(float64))
	}
	if len(types) == 0 || types[len(types)-1] != 4 {
		t.Errorf("setup_data types %v, want SETUP_EFI (4) among them", types)
	}
	bp, warn = dryRunHost(t, ovmfCapture, "--noefi")
	if bp["efi"] != nil || len(warn) != 0 {
		t.Errorf("--noefi: efi %v, warnings %v", bp["efi"], warn)
	}
}

// TestDryRunHostNoRuntimeMap: a host without runtime-map (a kernel without
// CONFIG_EFI_RUNTIME_MAP) plans without EFI and warns, naming what is lost.
func TestDryRunHostNoRuntimeMap(t *testing.T) {
	dir := t.TempDir()
	if err := copyTree(ovmfCapture, dir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "sys/firmware/efi/runtime-map")); err != nil {
		t.Fatal(err)
	}
	bp, warn := dryRunHost(t, dir)
	if bp["efi"] != nil || len(warn) != 1 || !strings.Contains(warn[0].(string), "runtime-map") || !strings.Contains(warn[0].(string), "TPM event log") {
		t.Fatalf("efi %v, warnings %v", bp["efi"], warn)
	}
	// A truncated boot_params is an error, not a silent non-EFI plan.
	bpPath := filepath.Join(dir, "sys/kernel/boot_params/data")
	if err := os.WriteFile(bpPath, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-l", kernelFile(t), "-c", "--dry-run", "--host", dir}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "truncated") {
		t.Fatalf("truncated boot_params: exit %d, %q", code, errb.String())
	}
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}
