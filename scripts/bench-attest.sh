#!/usr/bin/env bash
# Attestation-server benchmarks (issue 16), side by side in one run:
#   1. incremental verification: 1,000 new entries from the checkpoint of a
#      1,000,000-entry history (target: at most 5 ms), beside a full run of
#      the same list (ima BenchmarkIncremental1kAfter1M);
#   2. machines per second: MACHINES machines (default 1000), each with a
#      10,000-entry list, verified by one `imalog verify --machines`
#      process, and by `evmctl ima_measurement` run once per machine
#      (cmd/imalog BenchmarkMachines).
# The machines are shared and noisy: compare the two figures of one run.
# INC_TIMES sets the incremental iterations (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v evmctl >/dev/null || { echo "bench-attest: evmctl missing (scripts/setup.sh installs ima-evm-utils)" >&2; exit 1; }
machines=${MACHINES:-1000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test ./ima -run '^$' -bench '^BenchmarkIncremental1kAfter1M$/(incremental|floor)' -benchtime "${INC_TIMES:-100}x" -count=1 -timeout 30m | tee "$out"
go test ./ima -run '^$' -bench '^BenchmarkIncremental1kAfter1M$/full' -benchtime 1x -count=1 -timeout 30m | tee -a "$out"
GOKEXEC_BENCH_MACHINES=$machines go test ./cmd/imalog -run '^$' -bench '^BenchmarkMachines$' -benchtime 1x -count=1 -timeout 120m | tee -a "$out"
awk '
/Incremental1kAfter1M\/incremental/ { inc = $3 / 1e6 }
/Incremental1kAfter1M\/full/        { full = $3 / 1e6 }
/Incremental1kAfter1M\/floor/       { ifl = $3 / 1e6 }
/Machines\/imalog-one-process/      { for (i = 1; i < NF; i++) if ($(i+1) == "machines/s") im = $i }
/Machines\/evmctl-per-machine/      { for (i = 1; i < NF; i++) if ($(i+1) == "machines/s") ev = $i }
/Machines\/floor-in-process/        { for (i = 1; i < NF; i++) if ($(i+1) == "machines/s") fl = $i }
END {
	if (inc) printf "incremental: %.2f ms for 1,000 new entries after 1,000,000 (target <= 5 ms); full run %.0f ms (%.0fx)\n", inc, full, full / inc
	if (inc && ifl) printf "incremental: hashing floor of the 1,000 entries %.2f ms; incremental %.2fx the floor (target <= 1.5)\n", ifl, inc / ifl
	if (im && ev) printf "machines: imalog %.1f/s in one process, evmctl %.1f/s once per machine (%.1fx)\n", im, ev, im / ev
	if (im && fl) printf "machines: hashing floor %.1f/s (read, parse, sha1+sha256 replay, one goroutine per CPU); imalog %.2fx the floor (target >= 0.7)\n", fl, im / fl
}' "$out"
