#!/usr/bin/env bash
# Builds (or finds cached) the two arm64 test kernels the arm64 scenarios
# boot, both cross-built from Debian unstable's linux-source-* like the x86
# test kernel (scripts/build-kernel.sh, which does the work):
#   restore-arm64   IMA_KEXEC off: restores a list from /chosen (gokexec's
#                   kexec_load hand-over); zboot payload gzip
#   imakexec-arm64  IMA_KEXEC on: hands its list over itself at
#                   kexec_file_load; zboot payload zstd
# Part of the test setup only (the demo never waits for it). Arguments are
# passed on (--offline). Needs gcc-aarch64-linux-gnu.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
for v in restore imakexec; do
	bash "$here/scripts/build-kernel.sh" --arch arm64 --variant "$v" "$@"
done
