// Package verdict judges a Linux IMA measurement list against PCR
// evidence: the one decision path behind every input mode of imalog (a
// file, a stream, a resumed checkpoint, a TPM2 quote, a fleet), for an
// attestation server to import.
//
// Verify takes the list as an io.Reader (read once) or an io.ReaderAt
// (read again where that is cheaper), the evidence — PCR values with how
// they were read, or a quote with its signature, AK, nonce and claimed
// values that yields attested values — an optional checkpoint as bytes,
// and options. It returns the versioned Verdict and the next checkpoint
// as bytes. Modes differ only in how the list and the values are
// obtained: the judgement (ima's chains, prefixes, digest-mismatch
// ledger, timeline) is the same code for all, and a test compares them.
//
// Invariants: pure (no files, no clock, no logging); every refusal of
// the evidence is a Verdict with a Reason, every malformed input an error
// wrapping ErrInput that names the part (*InputError); the verdict's
// JSON is the schema in docs/verdict-schema.md (Schema).
package verdict
