package appraisal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gokexec/gokexec/appraise"
	"github.com/gokexec/gokexec/internal/testkernel"
	"github.com/gokexec/gokexec/loader"
	"github.com/gokexec/gokexec/loader/appraisal"
	"github.com/gokexec/gokexec/loader/loadertest"
	"github.com/gokexec/gokexec/plan"
)

var ctx = context.Background()

func policyOf(t *testing.T, keys, allowlists []string) loader.Appraiser {
	t.Helper()
	pol, err := appraisal.PolicyFiles(appraise.ModeEnforce, keys, allowlists)
	if err != nil {
		t.Fatal(err)
	}
	return appraisal.Appraiser(pol)
}

func fileImage(t *testing.T, kernel, initrd, dtb string) loader.Image {
	t.Helper()
	img, err := loader.FileImage(kernel, initrd, dtb, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := appraisal.Sign(&img); err != nil {
		t.Fatal(err)
	}
	return img
}

// A signature (evmctl) and an allowlist each vouch for a file; tampered
// bytes are refused naming the file; log mode reports and lets through;
// only a sha256 signature is handed back for the ima-sig entry.
func TestAppraiser(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../../appraise/testdata/data/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile("../../appraise/testdata/evmctl/hello.txt.rsa.sha256.sig")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "vmlinuz")
	os.WriteFile(f, data, 0o644)
	os.WriteFile(f+".sig", sig, 0o644)
	if got, err := appraisal.SignatureOf(f); err != nil || !bytes.Equal(got, sig) {
		t.Fatalf("signature of %s: %v", f, err)
	}
	a := policyOf(t, []string{"../../appraise/testdata/openssl/rsa.pem"}, nil)
	r, err := a.Appraise(f, data, sig)
	if err != nil || !r.Pass || r.Method != "signature" || !bytes.Equal(r.Signature, sig) {
		t.Fatalf("good file: %+v %v", r, err)
	}
	tampered := append([]byte(nil), data...)
	tampered[0] ^= 1
	if _, err := a.Appraise(f, tampered, sig); !errors.Is(err, appraise.ErrBadSignature) || !strings.Contains(err.Error(), f) {
		t.Fatalf("tampered bytes: %v", err)
	}
	pol, _ := appraisal.PolicyFiles(appraise.ModeLog, []string{"../../appraise/testdata/openssl/rsa.pem"}, nil)
	if r, err := appraisal.Appraiser(pol).Appraise(f, tampered, sig); err != nil || r.Pass {
		t.Fatalf("log mode must report but allow: %+v %v", r, err)
	}
	if appraisal.Appraiser(appraise.Policy{}) != nil {
		t.Fatal("mode off must plug in no appraiser")
	}
	sum := sha256.Sum256(data)
	al := filepath.Join(dir, "allow.txt")
	os.WriteFile(al, []byte(hex.EncodeToString(sum[:])+"  "+f+"\n"), 0o644)
	a = policyOf(t, nil, []string{al})
	if r, err := a.Appraise(f, data, nil); err != nil || r.Method != "allowlist" || r.Signature != nil {
		t.Fatalf("allowlisted: %+v %v", r, err)
	}
	if _, err := a.Appraise(f, tampered, nil); err == nil {
		t.Fatal("a digest not on the allowlist was accepted")
	}
}

// With appraisal on, kexec_file_load is handed the appraised bytes,
// sealed: swapping the file after appraisal changes nothing the kernel
// reads (kexec.OpenFileInput makes the sealed memfd; kexec's tests check
// the seals).
func TestFileLoadGetsAppraisedBytes(t *testing.T) {
	h := loadertest.NewHost()
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	kb := testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	os.WriteFile(k, kb, 0o644)
	sum := sha256.Sum256(kb)
	al := filepath.Join(dir, "allow")
	os.WriteFile(al, []byte(hex.EncodeToString(sum[:])+"  "+k+"\n"), 0o644)
	img := fileImage(t, k, "", "")
	// The attacker swaps the file between the read and the load.
	os.WriteFile(k, testkernel.Bytes(t, testkernel.Deb61, 0x66), 0o644)
	if _, err := loader.Load(ctx, h, img, loader.Options{Arch: "amd64", Mode: plan.ModeFile, NoIMA: true, Appraiser: policyOf(t, nil, []string{al})}); err != nil {
		t.Fatal(err)
	}
	got := h.FileLoads[0].Kernel
	if !got.Sealed || !bytes.Equal(got.Data, kb) {
		t.Fatal("kexec_file_load was handed bytes other than the appraised ones, or unsealed")
	}
}

// Paths are resolved before lookup and measurement, and excludes do not
// admit a kernel.
func TestPathsResolvedAndExcludesIgnored(t *testing.T) {
	h := loadertest.NewHost()
	dir := t.TempDir()
	realDir := filepath.Join(dir, "home", "x")
	tmp := filepath.Join(dir, "var", "tmp")
	os.MkdirAll(realDir, 0o755)
	os.MkdirAll(tmp, 0o755)
	kb := testkernel.Bytes(t, testkernel.Deb61, 0xcc)
	real := filepath.Join(realDir, "kernel")
	os.WriteFile(real, kb, 0o644)
	os.Symlink(real, filepath.Join(tmp, "link"))
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"meta": {"version": 1}, "digests": {}, "excludes": ["`+tmp+`/.*", ""]}`), 0o644)
	for _, typed := range []string{filepath.Join(tmp, "..", "..", "home", "x", "kernel"), filepath.Join(tmp, "link")} {
		img := fileImage(t, typed, "", "")
		o := loader.Options{Arch: "amd64", NoIMA: true, Appraiser: policyOf(t, nil, []string{policy})}
		if _, err := loader.Plan(ctx, h, img, o); !errors.Is(err, appraise.ErrNotListed) || !strings.Contains(err.Error(), real) {
			t.Errorf("%s under excludes: %v", typed, err)
		}
		o.Appraiser = nil
		p, err := loader.Plan(ctx, h, img, o)
		if err != nil || p.Kernel.Path != real {
			t.Errorf("%s planned as %q: %v", typed, p.Kernel.Path, err)
		}
	}
	// Listed under its resolved name, it passes, and the measurement names it.
	sum := sha256.Sum256(kb)
	os.WriteFile(policy, []byte(`{"meta": {"version": 1}, "digests": {"`+real+`": ["`+hex.EncodeToString(sum[:])+`"]}}`), 0o644)
	img := fileImage(t, filepath.Join(tmp, "link"), "", "")
	l, err := loader.Load(ctx, h, img, loader.Options{Arch: "amd64", Mode: plan.ModeLoad, Appraiser: policyOf(t, nil, []string{policy})})
	if err != nil {
		t.Fatal(err)
	}
	p := l.Plan()
	if len(p.Appraisal) != 1 || p.Appraisal[0].Path != real || p.Appraisal[0].Method != "allowlist" {
		t.Fatalf("%+v", p.Appraisal)
	}
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := rep.Entries[1].Decode(binary.LittleEndian); err != nil || d.Name != real {
		t.Fatalf("measured as %q (%v)", d.Name, err)
	}
}

// The DTB is appraised and measured like the kernel.
func TestDTBMeasuredAndAppraised(t *testing.T) {
	h := loadertest.NewHost()
	h.NoMemory = true
	dir := t.TempDir()
	hdr, err := os.ReadFile("../../arm64/testdata/deb61-arm64-Image-header.bin")
	if err != nil {
		t.Fatal(err)
	}
	kb := append(hdr, make([]byte, 1<<20)...)
	k := filepath.Join(dir, "Image")
	os.WriteFile(k, kb, 0o644)
	dtbBytes, err := os.ReadFile("../../fdt/testdata/dtc-board.dtb")
	if err != nil {
		t.Fatal(err)
	}
	dtb := filepath.Join(dir, "board.dtb")
	os.WriteFile(dtb, dtbBytes, 0o644)
	ksum, dsum := sha256.Sum256(kb), sha256.Sum256(dtbBytes)
	al := filepath.Join(dir, "allow")
	os.WriteFile(al, []byte(hex.EncodeToString(ksum[:])+"  "+k+"\n"), 0o644)
	load := func() (*loader.Loaded, error) {
		return loader.Load(ctx, h, fileImage(t, k, "", dtb), loader.Options{Arch: "arm64", Mode: plan.ModeLoad, Appraiser: policyOf(t, nil, []string{al})})
	}
	if _, err := load(); !errors.Is(err, appraise.ErrNotListed) || !strings.Contains(err.Error(), dtb) {
		t.Fatalf("unlisted DTB: %v", err)
	}
	os.WriteFile(al, []byte(hex.EncodeToString(ksum[:])+"  "+k+"\n"+hex.EncodeToString(dsum[:])+"  "+dtb+"\n"), 0o644)
	l, err := load()
	if err != nil {
		t.Fatal(err)
	}
	p := l.Plan()
	if p.DTBInput == nil || p.DTBInput.Path != dtb || p.DTBInput.SHA256 != hex.EncodeToString(dsum[:]) || len(p.Appraisal) != 2 {
		t.Fatalf("dtb input %+v appraisals %+v", p.DTBInput, p.Appraisal)
	}
	// A DTB changed after the load does not matter: the bytes read are
	// what is measured and handed over.
	changed := append([]byte(nil), dtbBytes...)
	changed[len(changed)-1] ^= 1
	os.WriteFile(dtb, changed, 0o644)
	rep, err := l.Finalize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range rep.Entries {
		if d, err := e.Decode(binary.LittleEndian); err == nil && d.Name == dtb && bytes.Equal(d.Digest, dsum[:]) {
			found = true
		}
	}
	if !found {
		t.Fatal("no measurement of the DTB read at load among finalize's entries")
	}
}
