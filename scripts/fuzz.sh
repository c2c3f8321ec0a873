#!/bin/bash
# Runs every fuzz target in the repository for a short time on top of its
# committed seed corpus (testdata/fuzz/<Target>/). Targets are found by
# grepping for "func FuzzXxx(" in *_test.go files, so a target added by
# anyone is picked up without editing this script.
#
#   FUZZTIME   time per target (default 10s)
#   FUZZJOBS   fuzzing workers per target (default 2, the CI machine's cores)
#   FUZZMIN    time to minimize a new input (default 5s; the default 60s can
#              stall a short run on a large seed)
#
# Exit status: non-zero if any target fails (its failing input is written
# under the package's testdata/fuzz/<Target>/ by go test, as usual).
set -u
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
FUZZJOBS=${FUZZJOBS:-2}
FUZZMIN=${FUZZMIN:-5s}
fail=0
n=0
start=$(date +%s)
# "dir target" pairs, sorted for a stable order.
pairs=$(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(' . |
	sed -E 's|^\./||; s|/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($| \1|' | sort -u)
while read -r dir target; do
	[ -n "$dir" ] || continue
	n=$((n + 1))
	t0=$(date +%s)
	run() { go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMIN" -parallel "$FUZZJOBS" "./$dir" 2>&1; }
	# go test -fuzz can end a run with "context deadline exceeded" when the
	# time runs out while a worker is still busy (no input failed, none is
	# written). Such a run is tried once more; a run that writes a failing
	# input, or fails in any other way, is a failure.
	deadline_only() { grep -q 'context deadline exceeded' <<<"$1" && ! grep -q 'Failing input written' <<<"$1"; }
	if out=$(run); then
		echo "ok   ./$dir $target ($(($(date +%s) - t0))s)"
	elif deadline_only "$out" && out=$(run); then
		echo "ok   ./$dir $target ($(($(date +%s) - t0))s, second run: the first ended on go test's fuzz deadline with no failing input)"
	else
		echo "FAIL ./$dir $target"
		echo "$out" | tail -40
		fail=1
	fi
done <<<"$pairs"
echo "fuzz: $n targets in $(($(date +%s) - start))s"
exit $fail
