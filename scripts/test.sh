#!/usr/bin/env bash
# The project's whole test suite: installs what it needs (scripts/setup.sh),
# then runs every Go test, the QEMU + swtpm integration scenarios included
# (independent guests two at a time), then, for the full suite, the packages
# with goroutines under the race detector (scripts/race.sh) and every fuzz
# target for a short time on top of its seed corpus (scripts/fuzz.sh), and a
# benchmark smoke run that prints the DESIGN §7 figures (scripts/bench-smoke.sh).
# Extra `go test` flags after the script name (e.g. -run, -v) run only that
# go test, without the race and fuzz passes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh test
export GOKEXEC_ARTIFACTS=${GOKEXEC_ARTIFACTS:-$here/build/artifacts}
start=$(date +%s)
go vet ./...
go test -timeout 80m -count=1 "$@" ./...
if [ $# -eq 0 ]; then
	bash scripts/race.sh
	bash scripts/fuzz.sh
	bash scripts/bench-smoke.sh
fi
echo "test.sh: wall time $(($(date +%s) - start)) s"
