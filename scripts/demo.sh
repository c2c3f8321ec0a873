#!/usr/bin/env bash
# The main job: boot Debian 6.1 under QEMU + swtpm, kexec into Debian 6.12
# with gokexec handing the IMA measurement list over, and check the second
# kernel's list against the TPM with imalog. Exit status: imalog verify's.
#
# It installs only what the demo boots (scripts/setup.sh demo: QEMU x86,
# swtpm, Debian's two cloud kernels, and the CA certificates go needs to
# fetch modules on a minimal Debian). The apt packages come first; then,
# while the kernels download, the Go programs the demo runs are compiled,
# with the flags the demo builds its guest binaries with, so the demo itself
# finds them in Go's build cache.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
start=$(date +%s)
bin=$here/build/demo-bin
mkdir -p "$bin"
bash scripts/setup.sh demo packages
echo "demo.sh: apt packages ready after $(($(date +%s) - start)) s" >&2
bash scripts/setup.sh demo kernels &
setup=$!
(
	go build -o "$bin/" ./demo ./cmd/imalog
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w' -o "$bin/guest/" ./qemu/agent ./cmd/gokexec
) &
build=$!
rc=0
wait "$setup" || rc=$?
wait "$build" || { echo "demo.sh: go build failed" >&2; exit 1; }
[ "$rc" = 0 ] || { echo "demo.sh: scripts/setup.sh demo failed (exit $rc)" >&2; exit "$rc"; }
echo "demo.sh: set-up and build took $(($(date +%s) - start)) s" >&2
set +e
"$bin/demo" "$@"
rc=$?
echo "demo.sh: $(($(date +%s) - start)) s in all" >&2
exit "$rc"
