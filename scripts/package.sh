#!/usr/bin/env bash
# Builds the gokexec Debian package with dpkg-deb from this source tree:
#   build/package/gokexec_<version>_<arch>.deb (OUT_DIR overrides the folder)
# and prints its path. Nothing is installed on this machine.
#
# Environment:
#   VERSION             package version (default 0.1.0~git<date>.<commit>)
#   ARCH                Debian architecture / GOARCH: amd64 (default) or arm64
#   OUT_DIR             where the .deb goes (default build/package)
#   GOKEXEC_SRC         tree to build the binaries from (default: this repository)
#   SOURCE_DATE_EPOCH   file times inside the package (default: the last commit's time)
#   LINTIAN=1           run lintian on the result and print its findings
#
# The package is reproducible: same sources and SOURCE_DATE_EPOCH, same bytes
# (the QEMU guest image cache is keyed by them).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${GOKEXEC_SRC:-$here}
arch=${ARCH:-amd64}
out=${OUT_DIR:-$here/build/package}
pk=$here/packaging

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
if [ -z "${VERSION:-}" ]; then
	rev=$(git -C "$here" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	VERSION=0.1.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$rev
fi
# --version names the commit even though -buildvcs=false (reproducible).
COMMIT=${COMMIT:-$(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)}
stamp="-X github.com/gokexec/gokexec/internal/buildinfo.Version=$VERSION -X github.com/gokexec/gokexec/internal/buildinfo.Commit=$COMMIT"
for tool in dpkg-deb go gzip; do
	command -v "$tool" >/dev/null || { echo "package.sh: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN" "$root/usr/sbin" "$root/usr/bin" "$root/usr/lib/systemd/system-shutdown" \
	"$root/usr/lib/systemd/system" "$root/usr/libexec/gokexec" "$root/etc/default" \
	"$root/usr/share/man/man8" "$root/usr/share/man/man1" "$root/usr/share/doc/gokexec"

# Binaries: static, no build paths, version stamped.
(cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
	-ldflags="-s -w $stamp" -o "$root/usr/sbin/gokexec" ./cmd/gokexec)
(cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
	-ldflags="-s -w $stamp" -o "$root/usr/bin/imalog" ./cmd/imalog)

install -m 0755 "$pk/files/shutdown-hook" "$root/usr/lib/systemd/system-shutdown/gokexec"
install -m 0755 "$pk/files/load" "$root/usr/libexec/gokexec/load"
install -m 0755 "$pk/files/gokexec-as-kexec" "$root/usr/sbin/gokexec-as-kexec"
install -D -m 0644 "$pk/files/completion-gokexec" "$root/usr/share/bash-completion/completions/gokexec"
install -D -m 0644 "$pk/files/completion-imalog" "$root/usr/share/bash-completion/completions/imalog"
install -m 0644 "$pk/files/gokexec-load.service" "$root/usr/lib/systemd/system/gokexec-load.service"
install -m 0644 "$pk/files/default" "$root/etc/default/gokexec"
install -m 0644 "$pk/debian/copyright" "$root/usr/share/doc/gokexec/copyright"
# The README and the design and user notes (not the per-issue notes).
gzip -9n <"$src/README.md" >"$root/usr/share/doc/gokexec/README.md.gz"
for f in "$src"/docs/*.md; do
	gzip -9n <"$f" >"$root/usr/share/doc/gokexec/$(basename "$f").gz"
done
mkdir -p "$root/usr/share/lintian/overrides"
install -m 0644 "$pk/debian/lintian-overrides" "$root/usr/share/lintian/overrides/gokexec"

# Man pages from the binaries' own --help, rendered with a host build of
# genman (the help text does not depend on the target architecture, but the
# binaries above may be for another one: use host builds for the help too).
hb=$stage/host
mkdir -p "$hb"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$hb/genman" ./packaging/genman)
(cd "$src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="$stamp" -o "$hb/gokexec" ./cmd/gokexec)
(cd "$src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="$stamp" -o "$hb/imalog" ./cmd/imalog)
"$hb/genman" -bin "$hb/gokexec" -name gokexec -section 8 -version "$VERSION" \
	-title "load and boot another kernel, carrying the IMA measurement list" \
	-extra "$pk/gokexec.8.extra" | gzip -9n >"$stage/gokexec.8.gz"
# imalog(1): the top-level help, then each subcommand's own --help (the
# subcommands imalog's usage names; genman fails if one's help fails).
subs=$("$hb/imalog" --help | sed -n 's/^[[:space:]]*imalog \([a-z][a-z-]*\).*/\1/p' | awk '!seen[$0]++' | paste -sd, -)
"$hb/genman" -bin "$hb/imalog" -sub "$subs" -name imalog -section 1 -version "$VERSION" \
	-title "show, replay and verify IMA measurement lists" \
	-extra "$pk/imalog.1.extra" | gzip -9n >"$stage/imalog.1.gz"
sh "$pk/files/gokexec-as-kexec" --help | "$hb/genman" -name gokexec-as-kexec -section 8 -version "$VERSION" \
	-title "make gokexec the system's kexec, or undo it" | gzip -9n >"$stage/gokexec-as-kexec.8.gz"
install -m 0644 "$stage/gokexec-as-kexec.8.gz" "$root/usr/share/man/man8/gokexec-as-kexec.8.gz"
install -m 0644 "$stage/gokexec.8.gz" "$root/usr/share/man/man8/gokexec.8.gz"
install -m 0644 "$stage/imalog.1.gz" "$root/usr/share/man/man1/imalog.1.gz"

# The Debian changelog lintian expects in every binary package.
{
	echo "gokexec ($VERSION) unstable; urgency=medium"
	echo
	echo "  * Built from the gokexec source tree by scripts/package.sh."
	echo
	echo " -- gokexec developers <gokexec@users.noreply.github.com>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$root/usr/share/doc/gokexec/changelog.gz"

for f in postinst prerm postrm; do install -m 0755 "$pk/debian/$f" "$root/DEBIAN/$f"; done
install -m 0644 "$pk/debian/conffiles" "$root/DEBIAN/conffiles"
size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
	"$pk/debian/control.in" >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
	LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 0755 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$out/gokexec_${VERSION}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
if [ "${LINTIAN:-}" = 1 ]; then
	command -v lintian >/dev/null || { echo "package.sh: lintian not found (scripts/setup.sh installs it)" >&2; exit 1; }
	lintian --display-info "$deb" >&2 || true
fi
echo "$deb"
