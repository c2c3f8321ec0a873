#!/usr/bin/env bash
# Installs what the demo or the tests need on a fresh Debian 12 machine and
# fetches the Debian kernels the QEMU scenarios boot. Idempotent: a second
# run finds everything in place and returns quickly.
#
#   bash scripts/setup.sh demo   # what scripts/demo.sh boots: QEMU x86, swtpm,
#                                # Debian's 6.1 and 6.12 cloud kernels; nothing else
#   bash scripts/setup.sh test   # (the default) the demo's set, plus the
#                                # test-only tools, the arm64 kernel and the
#                                # self-built test kernels
#   bash scripts/setup.sh demo|test packages   # only the apt packages
#   bash scripts/setup.sh demo|test kernels    # only the kernels (packages present)
#   bash scripts/setup.sh demo|test go         # only the Go check below
#
# Go itself is not installed here (the README asks for a Go tool chain in
# PATH), but what go needs on a fresh machine is: ca-certificates, without
# which a minimal Debian cannot fetch the Go modules over HTTPS, and git,
# which go build uses to stamp the commit into a clone's binaries.
#
# Kernels are resolved by package name through the metapackages, never by a
# hard-coded version, and unpacked with dpkg-deb (nothing is installed into the
# host's /boot). They land in $GOKEXEC_CACHE (default: build/cache).
set -euo pipefail

mode=${1:-test}
step=${2:-all}
case "$mode/$step" in
demo/all | test/all | demo/packages | test/packages | demo/kernels | test/kernels | demo/go | test/go) ;;
*) echo "usage: $0 [demo|test] [packages|kernels|go]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${GOKEXEC_CACHE:-$here/build/cache}
mkdir -p "$cache"
# build/ holds caches (kernels, a Debian root file system being built), never
# Go packages: a go.mod of its own keeps `go vet ./...` and `go test ./...`
# from walking into it (a root file system under construction has /proc
# mounted).
mkdir -p "$here/build"; [ -e "$here/build/go.mod" ] || printf 'module buildcache\n' >"$here/build/go.mod"

# check_go: the go in PATH builds this module. go.mod's go line is the
# least version; `go env GOVERSION` run in the module reports the tool chain
# go will use (Go 1.21 or later switches to go.mod's version itself unless
# GOTOOLCHAIN=local; Debian 12's own golang-go is 1.19, which cannot).
check_go() {
	local want out tc
	command -v go >/dev/null || { echo "setup: go not found in PATH: install Go from https://go.dev/dl/ (the README's set-up asks for a Go tool chain in PATH)" >&2; return 1; }
	want=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$here/go.mod")
	out=$(cd "$here" && go env GOVERSION 2>&1) || { echo "setup: go cannot build this module (go.mod asks for Go $want): $out" >&2; return 1; }
	if [ "$(printf '%s\n%s\n' "$want" "${out#go}" | sort -V | head -1)" != "$want" ]; then
		tc=$(cd "$here" && go env GOTOOLCHAIN 2>/dev/null) || tc=
		echo "setup: go in PATH is ${out:-older than Go 1.16}${tc:+ (GOTOOLCHAIN=$tc)}, go.mod asks for Go $want: install Go $want or later from https://go.dev/dl/ (a Go from 1.21 on fetches it itself when GOTOOLCHAIN is auto)" >&2
		return 1
	fi
}
if [ "$step" = go ]; then
	check_go
	exit
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# What the demo runs: QEMU for x86, the software TPM and its set-up tool;
# what go needs to fetch the modules and stamp the commit (see above).
demo_pkgs=(qemu-system-x86 swtpm swtpm-tools ca-certificates git)
# What only the tests run: the arm64 guests, the oracles (evmctl, tpm2-tools,
# dtc, readelf, kexec-tools, makedumpfile), the guest image builder
# (mmdebstrap), lintian for the package, and the kernel build.
test_pkgs=(qemu-system-arm qemu-utils kexec-tools ima-evm-utils openssl device-tree-compiler cpio
	busybox-static gzip xz-utils zstd lz4 binutils binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu time ovmf qemu-efi-aarch64
	build-essential bc bison flex libelf-dev libssl-dev mmdebstrap lintian e2fsprogs
	tpm2-tools makedumpfile)
need_pkgs=("${demo_pkgs[@]}")
[ "$mode" = test ] && need_pkgs+=("${test_pkgs[@]}")
if [ "$step" != kernels ]; then
	missing=()
	for p in "${need_pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup: installing ${missing[*]}" >&2
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	check_go
	if [ "$step" = packages ]; then
		echo "setup: packages ready for the ${mode}" >&2
		exit 0
	fi
fi

# resolve METAPKG -> concrete linux-image package name.
resolve() { apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }

# fetch NAME METAPKG: unpack boot/vmlinuz-* and boot/config-* into $cache/NAME.
fetch() {
	local name=$1 meta=$2 pkg dir
	dir=$cache/kernels/$name
	if [ -s "$dir/vmlinuz" ] && [ -s "$dir/config" ]; then return 0; fi
	pkg=$(resolve "$meta")
	if [ -z "$pkg" ]; then
		as_root apt-get update -qq
		pkg=$(resolve "$meta")
	fi
	[ -n "$pkg" ] || { echo "setup: cannot resolve $meta" >&2; return 1; }
	echo "setup: fetching $pkg for $name" >&2
	local tmp; tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "setup: apt-get download $pkg failed" >&2; rm -rf "$tmp"; return 1; }
	dpkg-deb -x "$tmp"/*.deb "$tmp/x"
	mkdir -p "$dir"
	cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz"
	cp "$tmp"/x/boot/config-* "$dir/config"
	echo "$pkg" >"$dir/package"
	rm -rf "$tmp"
}

fetch deb61-amd64 linux-image-cloud-amd64
fetch deb612-amd64 linux-image-6.12-cloud-amd64
if [ "$mode" = demo ]; then
	echo "setup: ready for the demo (cache $cache)" >&2
	exit 0
fi

# arm64 kernels come from the arm64 architecture of the same archive.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	as_root dpkg --add-architecture arm64
	as_root apt-get update -qq
fi
fetch deb61-arm64 linux-image-cloud-arm64:arm64 || echo "setup: arm64 kernel unavailable" >&2
# Debian's arm64 kexec-tools, for the arm64 kexec_file_load scenario's
# side-by-side run (kexec -s -l / -e in the guest): the package and the
# libraries it depends on (recursively; only lib* packages) unpacked into a
# root of their own, from which the test copies /sbin/kexec, the dynamic
# loader and the NEEDED closure into the guest's initramfs.
fetch_root() {
	local name=$1 meta=$2 dir tmp pkgs
	dir=$cache/sysroots/$name
	if [ -s "$dir/packages" ]; then return 0; fi
	pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "$meta" 2>/dev/null | grep -E '^(lib|zlib)[^ ]*:arm64$' | sort -u)
	tmp=$(mktemp -d)
	chmod 755 "$tmp"
	echo "setup: fetching $meta and $(echo "$pkgs" | wc -l) libraries for $name" >&2
	# shellcheck disable=SC2086 # one package name a word
	(cd "$tmp" && apt-get download -q "$meta" $pkgs >/dev/null 2>&1) ||
		{ echo "setup: apt-get download $meta failed" >&2; rm -rf "$tmp"; return 1; }
	mkdir -p "$tmp/root"
	for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$tmp/root"; done
	for d in "$tmp"/*.deb; do dpkg-deb --showformat='${Package}:${Architecture} ${Version}\n' -W "$d"; done >"$tmp/root/packages"
	rm -rf "$dir"
	mkdir -p "$(dirname "$dir")"
	mv "$tmp/root" "$dir"
	rm -rf "$tmp"
}
fetch_root kexec-tools-arm64 kexec-tools:arm64 || echo "setup: arm64 kexec-tools unavailable" >&2
# The CONFIG_IMA_KEXEC test kernels, built from Debian unstable's linux-source
# (cached in ${GOKEXEC_KCACHE:-/var/cache/gokexec/kernels}; see the scripts).
GOKEXEC_CACHE=$cache bash "$here/scripts/build-kernel.sh"
# The same x86 kernel with CONFIG_OF (the --dtb scenario's last kernel).
GOKEXEC_CACHE=$cache bash "$here/scripts/build-kernel.sh" --offline --variant of
if [ -f "$here/scripts/build-kernel-arm64.sh" ]; then
	GOKEXEC_CACHE=$cache bash "$here/scripts/build-kernel-arm64.sh"
fi
echo "setup: ready (cache $cache)" >&2
