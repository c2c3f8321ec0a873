package ima

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

// fieldBytes builds template data from raw fields in order.
func fieldBytes(order binary.ByteOrder, fields ...[]byte) []byte {
	var d []byte
	for _, f := range fields {
		d = appendField(d, order, f)
	}
	return d
}

func mkEntry(pcr uint32, name string, data []byte) Entry {
	return Entry{PCR: pcr, TemplateName: name, TemplateData: data, TemplateDigest: sha1.Sum(data)}
}

func u32(order binary.ByteOrder, v uint32) []byte {
	b := make([]byte, 4)
	order.PutUint32(b, v)
	return b
}

func u16(order binary.ByteOrder, v uint16) []byte {
	b := make([]byte, 2)
	order.PutUint16(b, v)
	return b
}

// legacyEntry builds an "ima" template entry (digest of the padded name).
func legacyEntry(order binary.ByteOrder, pcr uint32, digest [20]byte, name string) Entry {
	var d []byte
	d = append(d, digest[:]...)
	d = append(d, u32(order, uint32(len(name)))...)
	d = append(d, name...)
	e := Entry{PCR: pcr, TemplateName: "ima", TemplateData: d}
	h := sha1.New()
	writeTemplateInput(h, &e)
	copy(e.TemplateDigest[:], h.Sum(nil))
	return e
}

// synthList builds a list using every built-in template, a custom format,
// a violation, markers, a second boot and PCRs 10 and 11.
func synthList(t testing.TB, order binary.ByteOrder) []Entry {
	t.Helper()
	dg := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	dng := func(s string) []byte { return digestNG("", crypto.SHA256, dg(s)) }
	name := func(s string) []byte { return append([]byte(s), 0) }
	var es []Entry
	add := func(e Entry) { es = append(es, e) }
	add(mkEntry(10, "ima-ng", fieldBytes(order, digestNG("", crypto.SHA1, make([]byte, 20)), name("boot_aggregate"))))
	add(mkEntry(10, "ima-ng", fieldBytes(order, dng("/init"), name("/init"))))
	add(mkEntry(10, "ima-sig", fieldBytes(order, dng("/bin/sh"), name("/bin/sh"), nil)))
	add(mkEntry(10, "ima-sig", fieldBytes(order, dng("/bin/ls"), name("/bin/ls"), []byte{0x03, 0x02, 0x04, 0xaa, 0xbb})))
	add(mkEntry(11, "ima-ngv2", fieldBytes(order, digestNG("ima", crypto.SHA256, dg("v2")), name("/usr/lib/v2"))))
	add(mkEntry(11, "ima-sigv2", fieldBytes(order, digestNG("verity", crypto.SHA256, dg("verity")), name("/verity"), []byte{0x06, 1, 2})))
	add(mkEntry(10, "ima-modsig", fieldBytes(order, dng("/lib/modules/m.ko"), name("/lib/modules/m.ko"), nil,
		digestNG("", crypto.SHA256, dg("modsig")), []byte{0x30, 0x82, 0x01})))
	add(mkEntry(10, "ima-modsig", fieldBytes(order, dng("/lib/modules/n.ko"), name("/lib/modules/n.ko"), nil, nil, nil)))
	add(mkEntry(10, "evm-sig", fieldBytes(order, dng("/etc/passwd"), name("/etc/passwd"), []byte{0x05, 0x02, 0x01},
		name("security.ima|security.selinux"), append(u32(order, 3), u32(order, 2)...), []byte{1, 2, 3, 4, 5},
		u32(order, 1000), u32(order, 100), u16(order, 0o100644))))
	add(mkEntry(12, "d-ng|n-ng|iuid|imode", fieldBytes(order, digestNG("", crypto.SHA512, make([]byte, 64)), name("/custom"), u32(order, 0), u16(order, 0o755))))
	add(legacyEntry(order, 10, sha1.Sum([]byte("legacy")), "/legacy/file"))
	// violation: zero digest, d-ng with 20 zero bytes
	add(Entry{PCR: 10, TemplateName: "ima-ng", TemplateData: fieldBytes(order, digestNG("", crypto.SHA256, make([]byte, 32)), name("/tmp/tomtou"))})
	add(mkEntry(10, "ima-buf", fieldBytes(order, digestNG("", crypto.SHA256, dg(KexecMarkerPayload(8192, 4000, 13))), name("kexec_load"), []byte(KexecMarkerPayload(8192, 4000, 13)))))
	add(mkEntry(10, "ima-buf", fieldBytes(order, dng("cmdline"), name("kexec-cmdline"), []byte("console=ttyS0"))))
	add(mkEntry(10, "ima-buf", fieldBytes(order, dng("exec"), name("kexec_execute"), []byte(KexecMarkerPayload(8192, 4200, 15)))))
	// second boot
	add(mkEntry(10, "ima-ng", fieldBytes(order, digestNG("", crypto.SHA1, make([]byte, 20)), name("boot_aggregate"))))
	for i := 0; i < 4; i++ {
		add(mkEntry(10, "ima-ng", fieldBytes(order, dng(fmt.Sprint(i)), name(fmt.Sprintf("/usr/bin/p%d", i)))))
	}
	add(mkEntry(10, "ima-buf", fieldBytes(order, dng("empty"), name("empty-buf"), nil)))
	return es
}
