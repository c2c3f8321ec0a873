#!/usr/bin/env bash
# The project's whole test suite: installs what it needs (scripts/setup.sh),
# then runs every Go test, the QEMU + swtpm integration scenarios included.
# Pass extra `go test` flags after the script name (e.g. -run, -v).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
export GOKEXEC_ARTIFACTS=${GOKEXEC_ARTIFACTS:-$here/build/artifacts}
go vet ./...
go test -timeout 80m -count=1 "$@" ./...
