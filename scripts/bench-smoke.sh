#!/usr/bin/env bash
# Benchmark smoke run (issue 23): runs the DESIGN §7 benchmarks once each,
# side by side in one run, and prints the figures and ratios. Reported,
# not asserted: these machines are shared and noisy, so a single short run
# shows a regression of a factor, not of percents; the careful runs are
# scripts/bench-*.sh. Bounded: the whole run stops after BENCH_TIMEOUT
# (default 120 s) and says what it did not reach.
#   BENCHTIME  go test -benchtime (default 1x)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bt=${BENCHTIME:-1x}
deadline=$(($(date +%s) + ${BENCH_TIMEOUT:-120}))
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() { # PKG REGEX
	local left=$((deadline - $(date +%s)))
	if [ "$left" -le 5 ]; then
		echo "bench-smoke: out of time before $1 $2" >&2
		return
	fi
	timeout "$left" go test -run '^$' -bench "$2" -benchtime "$bt" -benchmem -count=1 "$1" 2>&1 |
		grep -E '^(Benchmark|--- FAIL|FAIL|panic)' | tee -a "$out"
}

start=$(date +%s)
run ./ima '^(BenchmarkVerify200k|BenchmarkHashFloor200k|BenchmarkEvmctl200k|BenchmarkImalogVerify200k)$'
run ./plan '^(BenchmarkBuildX86|BenchmarkHashFloorX86)$'
run ./ima '^BenchmarkIncremental1kAfter1M$'
run ./loader '^BenchmarkPlanDryRun$'

# ns/op of a benchmark (first match), or empty.
ns() { awk -v n="$1" '$1 ~ "^"n"(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") { print $i; exit } }' "$out"; }
ratio() { # A B: A/B with two decimals, or "n/a"
	if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo n/a; fi
}
v=$(ns BenchmarkVerify200k); f=$(ns BenchmarkHashFloor200k)
e=$(ns BenchmarkEvmctl200k); iv=$(ns BenchmarkImalogVerify200k)
pb=$(ns BenchmarkBuildX86); pf=$(ns BenchmarkHashFloorX86)
inc=$(ns BenchmarkIncremental1kAfter1M/incremental); full=$(ns BenchmarkIncremental1kAfter1M/full)
echo
echo "DESIGN §7 figures (one run of each, benchtime $bt; reported, not asserted):"
echo "  imalog verify vs evmctl ima_measurement, 200k entries: evmctl/imalog = $(ratio "$e" "$iv")x (target >= 8x)"
echo "  ima.Verify vs its hashing floor, 200k entries:          verify/floor  = $(ratio "$v" "$f")x (target <= 1.3x)"
echo "  plan.Build x86 vs hashing its inputs:                    build/floor   = $(ratio "$pb" "$pf")x"
echo "  1k new entries after a 1M history: incremental ${inc:-n/a} ns, full ${full:-n/a} ns (full/incremental $(ratio "$full" "$inc")x)"
if CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.bin" ./cmd/gokexec 2>/dev/null; then
	echo "  static stripped gokexec: $(stat -c %s "$out.bin") bytes"
	rm -f "$out.bin"
fi
echo "bench-smoke: $(($(date +%s) - start)) s"
