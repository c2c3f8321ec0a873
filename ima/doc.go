// Package ima reads, writes, renders and replays Linux IMA measurement lists.
//
// It understands the binary list the kernel exports in securityfs
// (binary_runtime_measurements) for every built-in template (ima, ima-ng,
// ima-sig, ima-buf, ima-modsig, ima-ngv2, ima-sigv2, evm-sig) and for custom
// field formats ("d-ng|n-ng|iuid" ...), the ASCII rendering of the same list
// (ascii_runtime_measurements), the kexec hand-over buffer (struct
// ima_kexec_hdr followed by the entries), template digests per PCR bank, PCR
// replay, prefix verification against quoted PCR values, and the
// boot/kexec timeline with its verdict.
//
// Invariants:
//   - The package is pure: no syscalls, no file or device access, no logging,
//     no os.Exit. Callers pass bytes in and get values or wrapped errors out.
//   - Every parser takes an explicit binary.ByteOrder (native little- or
//     big-endian, or little-endian for the kernel's ima_canonical_fmt) and
//     never panics on input. Length fields are checked against the bytes that
//     remain before anything is sliced or allocated, so a lying length (up
//     to 0xffffffff) yields an error naming the offset, never a large
//     allocation.
//   - Parse followed by Append is byte-identical: Entry.TemplateData holds the
//     template data exactly as it appeared in the list (it aliases the input
//     slice; copy it if the input will be reused).
//   - Verify, VerifyList, VerifyReaderAt and ParseList (lists of 1 MiB and
//     more) run up to GOMAXPROCS goroutines over chunks of entries, all of
//     which exit once the call has returned; the results (entries, errors
//     with offsets and indices, verdicts) are those of a sequential pass,
//     which tests check chunk size by chunk size. Only each bank's PCR
//     extend chain is sequential. VerifyList and VerifyReaderAt hold a
//     bounded pool of chunks, never the whole list's entries or digests
//     (VerifyReaderAt not even its bytes, unless the list is malformed and
//     the exact parse error must be reported).
//   - A stored SHA-1 template digest is compared with its data wherever a
//     quoted bank does not already bind both: within the matched prefix,
//     entries of PCRs that the SHA-1 bank and a bank hashed with its own
//     algorithm both reproduce are taken as the kernel extended them.
//   - Errors wrap sentinels (ErrTruncated, ErrUnknownTemplate, ErrMalformed,
//     ErrNotRestorable, ErrBadPCRFile ...) that errors.Is matches; positional
//     parse errors are *ParseError values that errors.As extracts.
//
// Why hand-written: no maintained Go library parses every IMA template, the
// kexec buffer, or replays per bank with the kernel's two extension methods;
// go-tpm and go-attestation cover TPM access and only the ima-ng subset.
// Facts about formats come from the kernel's security/integrity/ima sources
// (ima_fs.c, ima_template.c, ima_template_lib.c, ima_crypto.c).
package ima
