package ima

import (
	"bytes"
	"crypto"
)

// The boot_aggregate against the firmware.
//
// A boot's boot_aggregate entry holds the digest the kernel computed at
// boot from the TPM's firmware PCRs (ima_calc_boot_aggregate): in the
// bank of the entry's digest algorithm, the hash of PCRs 0-7 for SHA-1
// and of PCRs 0-9 for other banks (8 and 9 hold the boot loader's
// command line and kernel image). A kexec does not touch those PCRs, so
// after a chain of soft reboots every boot's boot_aggregate must still
// be the one the firmware's PCRs give — as evmctl ima_boot_aggregate and
// keylime check it. Given quoted values of those PCRs in a bank, each
// boot_aggregate of that algorithm is compared (Boot.AggregateMatch); a
// mismatch makes the verification inconsistent.

// Results of the comparison.
const (
	AggregateMatch    = "match"
	AggregateMismatch = "mismatch"
	AggregateUnknown  = "unknown" // no quoted values of PCRs 0-7/0-9 in the entry's bank
)

// BootAggregateOf computes the boot_aggregate the kernel would record
// for bank h from the values of its PCRs; ok is false when one of the
// PCRs it needs is missing or of the wrong size.
func BootAggregateOf(values map[uint32][]byte, h crypto.Hash) ([]byte, bool) {
	if checkBank(h) != nil {
		return nil, false
	}
	last := uint32(9)
	if h == crypto.SHA1 {
		last = 7
	}
	d := h.New()
	for p := uint32(0); p <= last; p++ {
		v, ok := values[p]
		if !ok || len(v) != h.Size() {
			return nil, false
		}
		d.Write(v)
	}
	return d.Sum(nil), true
}

// expectedAggregates are the boot_aggregates quoted gives, per algorithm
// name.
func expectedAggregates(quoted PCRValues) map[string][]byte {
	out := map[string][]byte{}
	for b, v := range quoted {
		if d, ok := BootAggregateOf(v, b); ok {
			out[HashName(b)] = d
		}
	}
	return out
}

// aggregateMatch compares a boot_aggregate entry with the expectations.
func aggregateMatch(e *Entry, order endian, expect map[string][]byte) (algo, match string) {
	d, err := e.Decode(order.byteOrder())
	if err != nil || d.DigestAlgo == "" {
		return "", AggregateUnknown
	}
	want, ok := expect[d.DigestAlgo]
	switch {
	case !ok:
		return d.DigestAlgo, AggregateUnknown
	case bytes.Equal(want, d.Digest):
		return d.DigestAlgo, AggregateMatch
	}
	return d.DigestAlgo, AggregateMismatch
}
