#!/usr/bin/env bash
# In-guest comparison of gokexec -c -l against kexec-tools' kexec -c -l on
# the same Debian kernel and initrd (DESIGN §7), inside a QEMU guest: real
# kexec_load calls happen only there. Prints medians and per-round ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
GOKEXEC_BENCH=1 go test -count=1 -run TestLoaderVsKexecTools -v -timeout 30m ./integration/ | grep -v '^=== RUN'
