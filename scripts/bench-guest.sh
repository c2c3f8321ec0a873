#!/usr/bin/env bash
# In-guest comparison of gokexec -c -l against kexec-tools' kexec -c -l on
# the same Debian kernel and initrd (DESIGN §7), inside a QEMU guest: real
# kexec_load calls happen only there. Prints medians and per-round ratios.
# GOKEXEC_BENCH_CPUS (vCPUs per guest, default 1), GOKEXEC_BENCH_ROUNDS
# (-c -l rounds, default 7) and GOKEXEC_BENCH_EXEC_ROUNDS (-e guests per
# IMA policy, default 5; 0 skips -e) pass through.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
GOKEXEC_BENCH=1 go test -count=1 -run TestLoaderVsKexecTools -v -timeout 80m ./integration/ | grep -v '^=== RUN'
