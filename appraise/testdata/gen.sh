#!/usr/bin/env bash
# Regenerates the appraise package's golden data with the real producers:
# openssl (keys, self-signed certificates), evmctl from ima-evm-utils
# (IMA signatures v2, detached .sig files), coreutils (sha*sum allowlists),
# and openssl dgst for sigv3 (evmctl 1.4 cannot write v3 signatures; the
# kernel's v3 input is the ima_file_id struct, built here with printf).
#
# Layout, named by producer:
#   data/                 files that get signed
#   openssl/              keys (*.key) and certificates (*.pem, *.der)
#   evmctl/               signatures: <file>.<key>.<hash>.sig
#   openssl-sigv3/        v3 signatures: <file>.<key>.<hash>.sig
#   coreutils/            sha256sum/sha512sum output over data/
#   handwritten/          keylime runtime policy (keylime is not packaged
#                         for Debian 12; follows keylime's RuntimePolicyType)
# Run from anywhere: bash appraise/testdata/gen.sh
set -euo pipefail
cd "$(dirname "$0")"
rm -rf openssl evmctl openssl-sigv3 coreutils handwritten data
mkdir -p openssl evmctl openssl-sigv3 coreutils handwritten data

# Data: a short text file and a 64 KiB binary blob.
printf 'gokexec appraisal test file\n' >data/hello.txt
openssl rand -out data/blob.bin 65536

mkcert() { # name keyopts... -- extra req args
	local name=$1; shift
	local keyargs=() reqargs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do keyargs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	reqargs=("$@")
	openssl genpkey "${keyargs[@]}" -out "openssl/$name.key" 2>/dev/null
	openssl req -x509 -new -key "openssl/$name.key" -days 36500 \
		-subj "/CN=gokexec appraise test $name/" \
		-addext keyUsage=digitalSignature -addext extendedKeyUsage=codeSigning \
		"${reqargs[@]}" -out "openssl/$name.pem"
	openssl x509 -in "openssl/$name.pem" -outform DER -out "openssl/$name.der"
}

mkcert rsa -algorithm RSA -pkeyopt rsa_keygen_bits:2048
mkcert rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072
mkcert ec -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1
mkcert ec384 -algorithm EC -pkeyopt ec_paramgen_curve:secp384r1
# A different key for "wrong key" cases.
mkcert other -algorithm RSA -pkeyopt rsa_keygen_bits:2048
# SKID that is not the public key hash: signatures must carry it via
# evmctl --keyid-from-cert, and a verifier must take the key id from the SKID.
mkcert skid -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -- -addext subjectKeyIdentifier=0011223344556677
# No SKID at all: evmctl falls back to SHA-1 of the public key bits.
mkcert noskid -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -- -addext subjectKeyIdentifier=none
# "other" with the same key id as "rsa": a key-id collision case.
rsaskid=$(openssl x509 -in openssl/rsa.pem -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :')
mkcert collide -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -- -addext "subjectKeyIdentifier=$rsaskid"
# All test certificates in one PEM bundle.
cat openssl/rsa.pem openssl/ec.pem openssl/rsa3072.pem openssl/ec384.pem \
	openssl/skid.pem openssl/noskid.pem >openssl/bundle.pem

sign() { # file key hash [extra evmctl args]
	local f=$1 k=$2 h=$3; shift 3
	local tmp; tmp=$(mktemp -d)
	cp "data/$f" "$tmp/$f"
	evmctl ima_sign --key "openssl/$k.key" --hashalgo "$h" --sigfile "$@" "$tmp/$f" >/dev/null 2>&1
	cp "$tmp/$f.sig" "evmctl/$f.$k.$h.sig"
	rm -rf "$tmp"
}
for f in hello.txt blob.bin; do
	sign "$f" rsa sha256
	sign "$f" ec sha256
done
sign hello.txt rsa sha1
sign hello.txt rsa sha384
sign hello.txt rsa sha512
sign hello.txt rsa3072 sha256
sign hello.txt ec sha384
sign hello.txt ec384 sha384
sign hello.txt ec sha512
sign hello.txt noskid sha256
sign hello.txt skid sha256 --keyid-from-cert openssl/skid.pem
sign hello.txt collide sha256 --keyid-from-cert openssl/collide.pem

# sigv3 (IMA_VERITY_DIGSIG, type 0x06): signature over
# H(struct ima_file_id{u8 hash_type=6; u8 hash_algo; u8 digest[]}).
sigv3() { # file key hash kernel_algo_number
	local f=$1 k=$2 h=$3 algo=$4 tmp
	tmp=$(mktemp -d)
	{ printf "\\x06\\x$(printf %02x "$algo")"; openssl dgst "-$h" -binary "data/$f"; } >"$tmp/fileid"
	openssl dgst "-$h" -sign "openssl/$k.key" -out "$tmp/sig" "$tmp/fileid"
	local keyid len
	keyid=$(openssl x509 -in "openssl/$k.pem" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :' | tail -c 9)
	len=$(stat -c %s "$tmp/sig")
	{ printf "\\x06\\x03\\x$(printf %02x "$algo")"
	  printf "\\x${keyid:0:2}\\x${keyid:2:2}\\x${keyid:4:2}\\x${keyid:6:2}"
	  printf "\\x$(printf %02x $((len >> 8)))\\x$(printf %02x $((len & 255)))"
	  cat "$tmp/sig"; } >"openssl-sigv3/$f.$k.$h.sig"
	rm -rf "$tmp"
}
sigv3 hello.txt rsa sha256 4
sigv3 hello.txt ec sha256 4
sigv3 blob.bin ec384 sha384 5

# Allowlists.
(cd data && sha256sum hello.txt blob.bin) >coreutils/sha256sum.txt
(cd data && sha256sum -b blob.bin) >coreutils/sha256sum-binary.txt
(cd data && sha512sum hello.txt) >coreutils/sha512sum.txt
(cd data && sha256sum --tag hello.txt) >coreutils/sha256sum-tag.txt
# A name with a newline and a backslash: GNU escapes it and marks the line.
esc=$(mktemp -d)
printf 'gokexec appraisal test file\n' >"$esc/new
line\\back"
(cd "$esc" && sha256sum -- *) >coreutils/sha256sum-escaped.txt
rm -rf "$esc"
h256=$(sha256sum data/hello.txt | cut -d' ' -f1)
b256=$(sha256sum data/blob.bin | cut -d' ' -f1)
h384=$(sha384sum data/hello.txt | cut -d' ' -f1)
cat >handwritten/keylime-runtime-policy.json <<JSON
{
  "meta": {"version": 1, "generator": 0, "timestamp": "2026-11-23 22:40:00"},
  "release": 0,
  "digests": {
    "/boot/hello.txt": ["$h256", "$h384"],
    "/boot/blob.bin": ["0000000000000000000000000000000000000000000000000000000000000000", "$b256"]
  },
  "excludes": ["/tmp/.*", "/var/log/"],
  "keyrings": {},
  "ima": {"ignored_keyrings": [], "log_hash_alg": "sha256", "dm_policy": null},
  "ima-buf": {},
  "verification-keys": ""
}
JSON
# Fuzz seed corpus (go test fuzz v1 files) from the golden data above.
rm -rf fuzz
seed() { # target name < bytes
	mkdir -p "fuzz/$1"
	{ printf 'go test fuzz v1\n[]byte("'
	  od -An -v -tx1 | tr -d ' \n' | sed 's/../\\x&/g'
	  printf '")\n'; } >"fuzz/$1/$2"
}
for s in evmctl/hello.txt.rsa.sha256.sig evmctl/hello.txt.ec.sha384.sig \
	evmctl/hello.txt.skid.sha256.sig openssl-sigv3/hello.txt.ec.sha256.sig; do
	seed FuzzParseSignature "${s//\//_}" <"$s"
done
head -c 9 evmctl/hello.txt.ec.sha256.sig | seed FuzzParseSignature header-only
for s in coreutils/*.txt; do seed FuzzParseChecksums "$(basename "$s")" <"$s"; done
seed FuzzParseKeylimePolicy keylime-runtime-policy.json <handwritten/keylime-runtime-policy.json
seed FuzzLoadCerts ec.der <openssl/ec.der
seed FuzzLoadCerts rsa.pem <openssl/rsa.pem
echo "gen.sh: done" >&2
