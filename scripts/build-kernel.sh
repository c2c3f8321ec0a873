#!/usr/bin/env bash
# Builds the test kernels from Debian unstable's newest linux-source-*
# package, with tinyconfig plus a fragment:
#   (default)                 x86: hands the IMA list over itself (CONFIG_IMA_KEXEC),
#                             scripts/kernel-imakexec.config -> imakexec-amd64
#   --variant of              x86: the same plus CONFIG_OF (reads a device tree from
#                             a SETUP_DTB node; IMA hand-over from its /chosen) -> of-amd64
#   --arch arm64 --variant restore   arm64, IMA_KEXEC off, gzip zboot -> restore-arm64
#   --arch arm64 --variant imakexec  arm64, IMA_KEXEC on, zstd zboot -> imakexec-arm64
# (arm64: scripts/kernel-arm64.config plus the variant's lines, cross-built
# with gcc-aarch64-linux-gnu; scripts/build-kernel-arm64.sh builds both).
#
# The machine's apt sources are never touched: a private sources list and
# private state/cache directories under the kernel cache point apt at
# Debian unstable, and the source .deb is fetched with `apt-get download`
# and unpacked with dpkg-deb (nothing is installed).
#
# Cache: ${GOKEXEC_KCACHE:-/var/cache/gokexec/kernels}/<key>/, where key is
# "<source package>_<version>-<sha256 of config inputs, 12 hex>". A finished
# build there has bzImage (x86) or Image, Image.gz, vmlinuz.efi and vmlinux
# (arm64), config, package and build-seconds; a second run with the same
# source version and fragment returns at once. The result is also linked
# into the harness cache as $GOKEXEC_CACHE/kernels/<name> (vmlinuz, config,
# package; arm64 also Image.gz, vmlinuz.efi, vmlinux), which is where
# qemu.Kernel looks. The x86 key's inputs are unchanged from the
# single-kernel version of this script, so its cache stays valid.
#
# Usage: build-kernel.sh [--offline] [--arch amd64|arm64] [--variant NAME]
# (--offline: use the last resolved source version, do not refresh the
# unstable index)
# Env: GOKEXEC_KCACHE, GOKEXEC_CACHE, GOKEXEC_KJOBS (default: nproc),
#      GOKEXEC_KNICE (default 0; nice level of the compile).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
kcache=${GOKEXEC_KCACHE:-/var/cache/gokexec/kernels}
hcache=${GOKEXEC_CACHE:-$here/build/cache}
jobs=${GOKEXEC_KJOBS:-$(nproc)}
nicelvl=${GOKEXEC_KNICE:-0}
offline=0
arch=amd64
variant=
while [ $# -gt 0 ]; do
	case $1 in
	--offline) offline=1 ;;
	--arch) arch=$2; shift ;;
	--variant) variant=$2; shift ;;
	*) echo "build-kernel: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

# Per architecture: fragment, extra lines, make arguments, targets, and
# the files kept.
case $arch/$variant in
amd64/ | amd64/imakexec | amd64/of)
	fragment=$here/scripts/kernel-imakexec.config
	extra=
	name=imakexec-amd64
	if [ "$variant" = of ]; then
		# Device tree support: the kernel takes a tree from a SETUP_DTB
		# node (gokexec --dtb) and shows it at /sys/firmware/fdt. With
		# OF_FLATTREE an x86 kernel looks for the IMA hand-over in the
		# tree's /chosen/linux,ima-kexec-buffer, not in SETUP_IMA, so this
		# is a kernel of its own, not the CONFIG_IMA_KEXEC scenarios'.
		extra=$'CONFIG_OF=y\nCONFIG_OF_EARLY_FLATTREE=y'
		name=of-amd64
	fi
	makeargs=()
	targets=(bzImage)
	cc=gcc
	;;
arm64/restore | arm64/imakexec)
	fragment=$here/scripts/kernel-arm64.config
	if [ "$variant" = restore ]; then
		# gokexec's own kexec_load hand-over: the kernel must not measure
		# its own kexec_execute after gokexec's snapshot (DESIGN 3.3.1).
		extra=$'CONFIG_IMA_KEXEC=n\nCONFIG_KERNEL_GZIP=y'
	else
		# The kernel's own kexec_file_load hand-over.
		extra=$'CONFIG_IMA_KEXEC=y\nCONFIG_IMA_KEXEC_EXTRA_MEMORY_KB=0\nCONFIG_KERNEL_ZSTD=y'
	fi
	name=$variant-arm64
	makeargs=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
	targets=(Image Image.gz vmlinuz.efi)
	cc=aarch64-linux-gnu-gcc
	command -v $cc >/dev/null || { echo "build-kernel: $cc missing (Debian package gcc-aarch64-linux-gnu)" >&2; exit 1; }
	;;
*) echo "build-kernel: unknown --arch/--variant $arch/$variant" >&2; exit 2 ;;
esac

mkdir -p "$kcache" "$hcache/kernels"
exec 9>"$kcache/.lock"
flock 9 # one builder at a time (setup.sh in CI and a developer may race)

log() { echo "build-kernel: $*" >&2; }

# --- resolve the newest linux-source-* in unstable -------------------------
apt_dir=$kcache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
cat >"$apt_dir/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
EOF
apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=-
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
	-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=-
	-o APT::Architectures::=amd64 -o Acquire::Languages=none
	-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
	-o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false)

resolve() {
	local pkg ver
	pkg=$(apt-cache "${apt_opts[@]}" depends linux-source 2>/dev/null | awk '/Depends: linux-source-/{print $2; exit}')
	[ -n "$pkg" ] || return 1
	ver=$(apt-cache "${apt_opts[@]}" show "$pkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
	[ -n "$ver" ] || return 1
	echo "$pkg $ver"
}

if [ $offline = 1 ] && [ -s "$kcache/resolved" ]; then
	read -r src_pkg src_ver <"$kcache/resolved"
else
	# Index older than a day (or absent): refresh it. Otherwise reuse it, so
	# a cached kernel needs no network at all.
	if [ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*_sid_InRelease' -mmin -1440 2>/dev/null)" ]; then
		log "refreshing the Debian unstable index (private apt state in $apt_dir)"
		apt-get "${apt_opts[@]}" -qq update || {
			[ -s "$kcache/resolved" ] || { log "apt-get update failed and nothing resolved before"; exit 1; }
			log "apt-get update failed; using the last resolved version"
		}
	fi
	if r=$(resolve); then
		echo "$r" >"$kcache/resolved"
	fi
	[ -s "$kcache/resolved" ] || { log "cannot resolve linux-source in unstable"; exit 1; }
	read -r src_pkg src_ver <"$kcache/resolved"
fi

# --- cache key -------------------------------------------------------------
if [ "$arch" = amd64 ]; then
	# (extra is empty for the default kernel, whose key stays as it was)
	digest=$( { echo "base=tinyconfig"; echo "gcc=$(gcc -dumpfullversion)"; cat "$fragment"; [ -z "$extra" ] || printf '%s\n' "$extra"; } | sha256sum | cut -c1-12)
else
	digest=$( { echo "base=tinyconfig"; echo "arch=$arch"; echo "gcc=$($cc -dumpfullversion)"; cat "$fragment"; printf '%s\n' "$extra"; } | sha256sum | cut -c1-12)
fi
key=${src_pkg}_${src_ver}-${digest}
out=$kcache/$key

link_harness() {
	local d=$hcache/kernels/$name
	mkdir -p "$d"
	if [ "$arch" = amd64 ]; then
		ln -sfn "$out/bzImage" "$d/vmlinuz"
		# Builds before vmlinux was kept have none; the key is unchanged.
		[ ! -s "$out/vmlinux" ] || ln -sfn "$out/vmlinux" "$d/vmlinux"
	else
		ln -sfn "$out/Image" "$d/vmlinuz"
		for f in Image.gz vmlinuz.efi vmlinux; do ln -sfn "$out/$f" "$d/$f"; done
	fi
	ln -sfn "$out/config" "$d/config"
	echo "$src_pkg $src_ver $digest" >"$d/package"
}

kfile=bzImage
[ "$arch" = amd64 ] || kfile=vmlinuz.efi
if [ -s "$out/$kfile" ] && [ -s "$out/config" ] && [ -s "$out/build-seconds" ]; then
	link_harness
	log "cached: $out (built in $(cat "$out/build-seconds")s)"
	exit 0
fi

# --- fetch and unpack the source -------------------------------------------
start=$(date +%s)
src=$kcache/src/${src_pkg}_${src_ver}
if [ ! -s "$src/Makefile" ]; then
	dl=$(mktemp -d "$kcache/dl.XXXXXX")
	trap 'rm -rf "$dl"' EXIT
	log "fetching $src_pkg $src_ver from Debian unstable"
	chmod 755 "$dl" # apt's _apt user writes here
	(cd "$dl" && apt-get "${apt_opts[@]}" -qq download "$src_pkg=$src_ver" 2>/dev/null) || { log "apt-get download $src_pkg=$src_ver failed"; exit 1; }
	dpkg-deb -x "$dl"/*.deb "$dl/x"
	tarball=$(ls "$dl"/x/usr/src/"$src_pkg".tar.* | head -1)
	rm -rf "$src.tmp"
	mkdir -p "$src.tmp"
	nice -n "$nicelvl" tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	rm -rf "$src"
	mv "$src.tmp" "$src"
	rm -rf "$dl"
	trap - EXIT
fi

# The kernel must write the kexec markers the scenarios look for (added
# upstream in 6.15-6.16): refuse an older source rather than build a kernel
# the scenarios would fail on for an unclear reason.
grep -q 'ima_measure_kexec_event("kexec_load")' "$src/security/integrity/ima/ima_kexec.c" &&
	grep -rq 'ima_measure_kexec_event("kexec_execute")' "$src/security/integrity/ima/" ||
	{ log "$src_pkg $src_ver has no kexec_load/kexec_execute IMA markers"; exit 1; }

# --- configure and build (out of tree) ---------------------------------------
obj=$kcache/obj/$key
# arm64: the object tree of the last arm64 build (another variant, same
# source) seeds this one, so that only what the config change touches is
# rebuilt (kbuild tracks config symbols per file).
seed=$kcache/obj/seed-$arch
if [ "$arch" != amd64 ] && [ ! -d "$obj" ] && [ -d "$seed" ] && [ "$(cat "$seed/.source" 2>/dev/null)" = "$src" ]; then
	mv "$seed" "$obj"
	log "seeded the object tree from the previous $arch build"
fi
mkdir -p "$obj"
make -s -C "$src" O="$obj" "${makeargs[@]}" tinyconfig >"$obj/config.log" 2>&1
{ cat "$fragment"; [ -z "$extra" ] || printf '%s\n' "$extra"; } >"$obj/fragment"
cat "$obj/fragment" >>"$obj/.config"
make -s -C "$src" O="$obj" "${makeargs[@]}" olddefconfig >>"$obj/config.log" 2>&1
# Every y/n the fragment asks for must have survived olddefconfig (a missing
# dependency silently drops an option).
bad=0
while IFS= read -r line; do
	case $line in CONFIG_*=*) ;; *) continue ;; esac
	opt=${line%%=*} want=${line#*=}
	if [ "$want" = n ]; then
		grep -qx "$opt=[ym]" "$obj/.config" && { log "config: $opt still set"; bad=1; }
	else
		grep -qx "$opt=$want" "$obj/.config" || { log "config: $opt=$want did not stick ($(grep "^$opt=\|# $opt " "$obj/.config" || echo absent))"; bad=1; }
	fi
done <"$obj/fragment"
[ $bad = 0 ] || exit 1

log "building $key with $jobs jobs (nice $nicelvl)"
cstart=$(date +%s)
if ! nice -n "$nicelvl" make -C "$src" O="$obj" "${makeargs[@]}" -j"$jobs" "${targets[@]}" >"$obj/build.log" 2>&1; then
	tail -40 "$obj/build.log" >&2
	log "build failed; full log in $obj/build.log"
	exit 1
fi
end=$(date +%s)

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
if [ "$arch" = amd64 ]; then
	cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
	cp "$obj/vmlinux" "$out.tmp/vmlinux" # the ELF form (vmlinux package tests)
else
	for f in Image Image.gz vmlinuz.efi; do cp "$obj/arch/arm64/boot/$f" "$out.tmp/$f"; done
	cp "$obj/vmlinux" "$out.tmp/vmlinux"
fi
cp "$obj/.config" "$out.tmp/config"
echo "$src_pkg $src_ver" >"$out.tmp/package"
echo "$((end - cstart))" >"$out.tmp/compile-seconds"
echo "$((end - start))" >"$out.tmp/build-seconds" # fetch + unpack + configure + compile
rm -rf "$out"
mv "$out.tmp" "$out"
# The x86 object tree is large and only speeds up a rebuild of the same
# key; the arm64 one is kept to seed the other variant. Source trees of
# other versions (1.8 GB each) will not be built again.
if [ "$arch" = amd64 ]; then
	rm -rf "$obj"
else
	rm -rf "$seed"
	echo "$src" >"$obj/.source"
	mv "$obj" "$seed"
fi
for d in "$kcache"/src/*; do
	[ "$d" = "$src" ] || rm -rf "$d"
done
link_harness
log "built $out in $((end - start))s (compile $((end - cstart))s, $jobs jobs)"
