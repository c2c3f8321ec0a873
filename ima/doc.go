// Package ima reads, writes, renders and replays Linux IMA measurement lists.
//
// It understands the binary list the kernel exports in securityfs
// (binary_runtime_measurements) for every built-in template (ima, ima-ng,
// ima-sig, ima-buf, ima-modsig, ima-ngv2, ima-sigv2, evm-sig) and for custom
// field formats ("d-ng|n-ng|iuid" ...), the ASCII rendering of the same list
// (ascii_runtime_measurements), the kexec hand-over buffer (struct
// ima_kexec_hdr followed by the entries), template digests per PCR bank, PCR
// replay, verification against quoted PCR values, and the boot/kexec
// timeline with its verdict.
//
// # One engine
//
// parseEntry is the one entry parser (splitFrame, the framing by length
// fields, is shared with the restore simulation). A pass (runPass) reads
// the list in chunks of whole entries, workers compute per-entry template
// digests, and the caller's goroutine hands each chunk, in list order, to
// the extend chains (one per bank and method, each on its own goroutine
// per chunk). ParseList, Scan, Replay, ReplayReader, Verify,
// VerifyReader, VerifyReaderAt, BootMethods, BuildTimeline and
// SimulateRestore are adapters over these. extendedDigest holds the
// violation rule (an all-zero stored digest is extended as all 0xff) and
// the two extension methods.
//
// # Verification semantics
//
// A PCR value read while the system runs matches a prefix of the list:
// entries keep arriving. Each bank is replayed with its own hash
// (MethodPerBank) and, if that reproduces no non-empty prefix, with the
// SHA-1 template digest zero-padded (MethodSHA1Padded). A bank's checked
// PCRs are those the list extends and the bank quotes. What "matches"
// means depends on how the values were taken (VerifyOptions.Reads):
//
//   - ReadsInstant — a TPM quote, one TPM2_PCR_Read, imalog --tpm, one
//     tpm2_pcrread command: every bank must reproduce one common prefix;
//     VerifyResult.Prefix is the longest such prefix.
//   - ReadsPerBank — sysfs pcr-<bank>/<n> files read one bank after
//     another, each read itself measured: each bank reproduces its own
//     prefix (BankResult.OwnPrefix); Prefix is the range every bank binds
//     (the shortest), Some the range some bank binds (the longest).
//
// The verification is consistent when every quoted bank checks at least
// one PCR, the prefix (every bank's, per bank) holds at least one entry or
// the list is empty, and no entry before Some carries a stored SHA-1
// digest that differs from its data where no bank hashed that data with
// its own algorithm. PCRs the list extends that a bank does not quote
// (Unquoted, with entry counts) and entries after Prefix (Unbound) are
// reported and do not count against consistency, unless
// VerifyOptions.Strict is set: then each of them makes the verification
// inconsistent. imalog verify exits 0 when consistent, 1 when not, 2 for
// input it cannot read or parse.
//
// A bank that reproduces no prefix with either method may have been
// extended by kernels that hash it differently (kexec between Debian 6.1
// and 6.12): a method per boot is then searched for, depth first over the
// boots, only for such a bank, for at most MaxBootMethodSearch boots and
// VerifyOptions.MethodSearchBudget PCR extends (default
// DefaultMethodSearchBudget), and VerifyResult.MethodSearch says what it
// found or why it stopped.
//
// # Invariants
//
//   - The package is pure: no syscalls, no file or device access, no logging,
//     no os.Exit. Callers pass bytes or readers in and get values or wrapped
//     errors out.
//   - Every parser and every function that reads template fields takes an
//     explicit binary.ByteOrder (native little- or big-endian, or
//     little-endian for the kernel's ima_canonical_fmt) and never panics on
//     input. Length fields are checked against the bytes that remain and
//     against MaxEntrySize before anything is sliced, allocated or read.
//   - Memory does not depend on the list's size: a pass holds a fixed pool
//     of chunks (128 KiB reads, larger only for an entry that needs it, at
//     most MaxEntrySize), and a PCR's match with its quoted value is kept
//     as one interval of prefix lengths, not per entry; replay and
//     verification refuse entries naming a PCR above 1023 (ErrPCRIndex;
//     kernels use indices below 64), so the per-PCR state is bounded too.
//     Only ParseList (which returns every entry) and the method search
//     (bounded by maxSearchBytes) hold per-entry data. The timeline keeps
//     a bounded set of boots and markers with exact counts (KeepFirstBoots
//     and the others), and the stored-digest mismatches are a ledger of
//     counts per PCR (mismatch.go), so a verdict, its JSON and a
//     checkpoint are bounded whatever the list holds.
//   - One decision for every input mode: a full run (VerifyReaderAt), a
//     stream (VerifyReader) and a resumed checkpoint (VerifyFrom) classify
//     banks with newBankResult, decide prefixes with decide and judge
//     stored-digest mismatches with the ledger's classify; package
//     verdict puts quotes and fleets on top of the same calls.
//   - Library code never writes to the caller's output: a verification's
//     text is the caller's (cmd/imalog), which prints every string from the
//     list through AppendEscaped.
//   - Parse followed by AppendList is byte-identical: Entry.TemplateData
//     holds the template data exactly as it appeared in the list (it
//     aliases the input; copy it if the input will be reused, and in a
//     Scan callback it is valid only during the call).
//   - Results do not depend on chunk sizes or the number of goroutines:
//     tests compare the streaming readers with ParseList and Verify chunk
//     size by chunk size.
//   - AppendASCII escapes the strings it renders with AppendEscaped: bytes
//     the kernel never writes unescaped, and terminal controls, become
//     \xNN. Values (Entry, Decoded, Marker) hold the exact bytes, for JSON.
//   - Hashes are the standard library's crypto/sha1, crypto/sha256 and
//     crypto/sha512 (which use the CPU's SHA extensions where present).
//   - Errors wrap sentinels (ErrTruncated, ErrLength, ErrTooLarge,
//     ErrUnknownTemplate, ErrMalformed, ErrNotRestorable, ErrKexecHeader,
//     ErrBadPCRFile ...) that errors.Is matches; positional parse errors are
//     *ParseError values that errors.As extracts.
//
// Why hand-written: no maintained Go library parses every IMA template, the
// kexec buffer, or replays per bank with the kernel's two extension methods;
// go-tpm and go-attestation cover TPM access and only the ima-ng subset.
// Facts about formats come from the kernel's security/integrity/ima sources
// (ima_fs.c, ima_template.c, ima_template_lib.c, ima_crypto.c).
package ima
