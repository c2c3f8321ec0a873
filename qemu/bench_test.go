package qemu

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

// BenchmarkBootToAgent measures a QEMU run of the first test kernel with
// swtpm and a minimal agent initramfs: the time to the agent's first record
// and to power-off.
func BenchmarkBootToAgent(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	k, _, err := TestKernels()
	if err != nil {
		b.Fatal(err)
	}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{{Report: []string{"pcrs"}}}}}}
	ir, err := AgentInitramfs(ctx, "amd64", filepath.Join(dir, "bin"), sc)
	if err != nil {
		b.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		b.Fatal(err)
	}
	tpm, err := StartTPM(ctx, filepath.Join(dir, "tpm"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tpm.Stop()
	var toAgent time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Run(ctx, VM{Kernel: k, Initrd: initrd, Step: "1", TPM: tpm})
		if err != nil {
			b.Fatal(err)
		}
		toAgent += res.Arrived[0]
	}
	b.ReportMetric(toAgent.Seconds()/float64(b.N), "s-to-agent/op")
}
