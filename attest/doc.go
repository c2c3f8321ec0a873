// Package attest verifies TPM 2.0 quotes as an attestation server receives
// them from tpm2-tools: the quote message (tpm2_quote -m, a TPMS_ATTEST),
// its signature (tpm2_quote -s, a TPMT_SIGNATURE), the attestation key
// (PEM, or a TPM2B_PUBLIC/TPMT_PUBLIC as tpm2_createak -u and
// tpm2_readpublic -o write it) and the PCR values (tpm2_quote -o, in the
// "serialized" or "values" layout, or any PCRValues the caller has).
//
// Verify answers one question: did the TPM holding this key sign, for this
// nonce, a digest of exactly these PCR values? It checks, in this order,
// the signature over the message bytes as received (RSASSA-PKCS1-v1_5,
// RSASSA-PSS or ECDSA, with the hash the signature names); that the
// message is a quote (TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE); the
// nonce against extraData; and the digest of the selected PCRs, computed
// with the signature's hash over the selection's banks in the order the
// quote lists them and each bank's PCRs in ascending order (TPM 2.0 Part 3,
// TPM2_Quote). Values outside the selection are not attested: Verify
// returns only the selected ones, and CheckSelected tells a caller whether
// the PCRs it relies on were quoted at all.
//
// # Invariants
//
//   - Pure: no syscalls, files, devices, logging or exits. Bytes in,
//     values or wrapped errors out.
//   - Every parser caps its input size (MaxMessage, MaxSignature, MaxAK,
//     MaxPCRFile), checks every count and length before slicing or
//     allocating, and never panics: the go-tpm unmarshalling is called
//     behind a recover, and its result is marshalled again and compared
//     with the input, so trailing or non-canonical bytes are refused.
//   - No hand-written cryptography: structures are go-tpm's (tpm2
//     package), signatures are checked by crypto/rsa and crypto/ecdsa, PEM
//     keys parsed by crypto/x509, digests computed by crypto's hashes.
//   - Every failure wraps one of the sentinels below, matched with
//     errors.Is; the ones with details are typed (*NonceError,
//     *DigestError, *MissingPCRError, *NotSelectedError) for errors.As.
//     No caller needs to look at error text.
//   - The nonce is always compared, as tpm2_checkquote compares it: no
//     nonce means the quote must carry none. A server that issues no
//     fresh nonce per quote accepts replayed quotes.
//   - Verify applies a key policy of its own, whatever GODEBUG says
//     (crypto/rsa honours rsa1024min=0): RSA keys of at least 2048 bits,
//     ECDSA keys on P-256 or P-384 (the curves TPMs implement), signature
//     hashes of SHA-256 or more unless Options.AllowSHA1; a refusal is a
//     *KeyPolicyError naming the rule (ErrKeyPolicy).
//
// What a quote does not prove: that the AK is a key of a genuine TPM
// (that is the credential activation the server did when it enrolled the
// AK), that the AK is restricted unless it comes as a TPM2B_PUBLIC
// (AK.Restricted, Options.RequireRestricted), or anything about PCRs it
// does not select.
package attest
