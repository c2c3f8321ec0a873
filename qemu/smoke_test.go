package qemu

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gokexec/gokexec/qemu/proto"
)

func TestBootSmoke(t *testing.T) {
	ctx := context.Background()
	art := ArtifactsDir(t)
	k, err := Kernel(Deb61AMD64)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := BuildGuestBinaries(ctx, filepath.Join(art, "bin"), AgentPackage)
	if err != nil {
		t.Fatal(err)
	}
	tpm, err := StartTPM(ctx, filepath.Join(art, "tpm"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Stop()
	ir := NewInitramfs()
	if err := ir.AddFile("/init", bins[AgentPackage]); err != nil {
		t.Fatal(err)
	}
	sc := &proto.Scenario{Steps: map[string]proto.Step{"1": {Actions: []proto.Action{
		{Policy: "measure func=FILE_CHECK mask=MAY_READ uid=0\n"},
		{MeasureFiles: 5},
		{Report: []string{"pcrs", "list", "ascii"}},
	}}}}
	if err := ir.AddScenario(sc); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(art, "initrd.cpio")
	if err := ir.WriteTo(initrd); err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, VM{Kernel: k, Initrd: initrd, Step: "1", TPM: tpm, ArtifactsDir: art, Timeout: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("elapsed %v, %d records", res.Elapsed, len(res.Records))
	for i, r := range res.Records {
		t.Logf("%v %s %s %d", res.Arrived[i], r.Type, r.Name, len(r.Data))
	}
}
