package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// TestBootARM64 boots Debian's arm64 kernel on QEMU virt (no TPM: tpm_tis
// is a module there) and reads back the device tree the kernel booted with.
func TestBootARM64(t *testing.T) {
	skipShort(t)
	ctx := context.Background()
	art := ArtifactsDir(t)
	k, err := Kernel(Deb61ARM64)
	if err != nil {
		t.Fatal(err)
	}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{File: "/sys/firmware/fdt"},
	}}}}
	ir, err := AgentInitramfs(ctx, "arm64", filepath.Join(art, "bin"), sc)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, VM{Arch: "arm64", Kernel: k, Initrd: initrd, Step: "1", ArtifactsDir: art, Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := KernelRelease(k)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.BootInfo(1); b.Release != rel {
		t.Errorf("release %q, want %q", b.Release, rel)
	}
	f := res.Find(1, proto.TypeFile, "/sys/firmware/fdt")
	if len(f) != 1 || len(f[0].Data) < 40 || binary.BigEndian.Uint32(f[0].Data) != 0xd00dfeed {
		t.Fatal("no flattened device tree came back")
	}
	if !bytes.Contains(f[0].Data, []byte("gkt.step=1")) {
		t.Error("the DTB's /chosen/bootargs does not hold the command line")
	}
	t.Logf("arm64 boot: %v, DTB %d bytes", res.Elapsed, len(f[0].Data))
}
