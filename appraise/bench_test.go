package appraise

import (
	"crypto"
	"testing"
)

func benchVerify(b *testing.B, sigFile string, h crypto.Hash) {
	kr, err := LoadCerts(readTD(b, "openssl/bundle.pem"))
	if err != nil {
		b.Fatal(err)
	}
	sig := readTD(b, sigFile)
	dg := digestOf(b, h, readTD(b, "data/hello.txt"))
	b.ReportAllocs()
	for b.Loop() {
		if err := kr.Verify(dg, h, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRSA2048(b *testing.B) {
	benchVerify(b, "evmctl/hello.txt.rsa.sha256.sig", crypto.SHA256)
}
func BenchmarkVerifyECDSAP256(b *testing.B) {
	benchVerify(b, "evmctl/hello.txt.ec.sha256.sig", crypto.SHA256)
}

func BenchmarkAllowlistCheck(b *testing.B) {
	a, err := ParseChecksums(readTD(b, "coreutils/sha256sum.txt"))
	if err != nil {
		b.Fatal(err)
	}
	dg := digestOf(b, crypto.SHA256, readTD(b, "data/blob.bin"))
	for b.Loop() {
		if err := a.Check("blob.bin", crypto.SHA256, dg); err != nil {
			b.Fatal(err)
		}
	}
}
