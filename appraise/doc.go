// Package appraise decides whether a file the loader is about to use (kernel,
// initramfs, DTB) may be used: by its IMA signature, by an allowlist of
// digests, or both, under a Mode of off, log or enforce.
//
// It is pure: it never reads files, xattrs or keyrings itself. The caller
// hands it bytes (certificates, signature blobs, allowlist files) and
// digests it computed.
//
// Formats, as the kernel and ima-evm-utils define them:
//
//   - An IMA signature is the value of security.ima (or of the detached
//     FILE.sig that `evmctl ima_sign --sigfile` writes, which is the same
//     bytes): a 9-byte header {u8 type; u8 version; u8 hash_algo; be32
//     keyid; be16 sig_size} followed by sig_size bytes of signature
//     (struct signature_v2_hdr in the kernel's security/integrity/integrity.h).
//     type 0x03 (EVM_IMA_XATTR_DIGSIG) goes with version 2: the signature
//     is over the file digest itself. type 0x06 (IMA_VERITY_DIGSIG) goes with
//     version 3: the signature is over H(struct ima_file_id{u8 hash_type=6;
//     u8 hash_algo; u8 digest[]}) with H the signature's hash. hash_algo is
//     the kernel's enum hash_algo (sha1=2, sha256=4, sha384=5, sha512=6, ...).
//   - RSA signatures are PKCS#1 v1.5 with the DigestInfo of hash_algo; ECDSA
//     signatures are the DER ECDSA-Sig-Value (the kernel's "x962" encoding).
//   - The key id is the last four bytes of the certificate's Subject Key
//     Identifier, which is what the kernel matches ("id:%08x"). evmctl
//     signs with that id when it can see the certificate, and otherwise with
//     the last four bytes of SHA-1 over the subjectPublicKey bit string (which
//     equals OpenSSL's default SKID). A Keyring indexes each certificate under
//     both ids, so signatures made either way are found; Keyring.SKIDOnly
//     restricts matching to the SKID, as the kernel's x509 parser (which
//     takes key ids only from the SKID extension) does.
//   - Allowlists: coreutils' `sha256sum` (and sha1/384/512sum) output, in text,
//     binary (`*`) and `--tag` forms, and keylime's runtime-policy JSON
//     (`meta.version`, `digests: {path: [hex...]}`, `excludes: [regex...]`).
//     Excludes are kept as text and never applied: they name runtime
//     measurements a verifier may skip, and a loader's own inputs (kernel,
//     initramfs, DTB) pass only by a listed digest or a valid signature.
//
// Invariants: parsers check every length before slicing or allocating and
// never panic on input; a signature is accepted only if its header is exactly
// as the kernel would accept it (type/version pairing, sig_size equal to the
// remaining bytes, known hash algorithm) and a certificate whose key id
// matches verifies it; an allowlist lookup is an exact path match plus a
// digest of the same hash algorithm (callers resolve paths first). SHA-1
// signatures and digests, and RSA keys under MinRSABits, never make a file
// pass (ErrWeak). Errors wrap the sentinels below with %w so callers can
// use errors.Is.
//
// Why not a library: no Go package parses IMA signature headers or keylime
// policies; the cryptography is the standard library's crypto/rsa and
// crypto/ecdsa, and certificates are parsed by crypto/x509.
package appraise
