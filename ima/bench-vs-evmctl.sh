#!/bin/bash
# Whole-process wall time of `imalog verify` against `evmctl ima_measurement`
# on the same 200,000-entry list and PCR files, alternating the commands in
# every round (the machine is shared: neighbours' load drifts, and a ratio
# taken within one round cancels most of it). Prints every round, then the
# medians and the median of the per-round ratios.
#
# usage: [REPLAY=1] ima/bench-vs-evmctl.sh [ROUNDS] [IMALOG...]
#   REPLAY=1 times `imalog replay --bank sha1 --bank sha256 LIST` (the same
#   replay, no comparison) instead of `imalog verify`.
#   The list and PCR files are the ones BenchmarkEvmctl200k leaves in
#   $TMPDIR/gokexec-ima-bench (go test -run XXX -bench Evmctl200k ./ima).
#   IMALOG defaults to a static build of ./cmd/imalog (CGO_ENABLED=0,
#   -trimpath -ldflags='-s -w', as scripts/bench-loader.sh builds gokexec).
set -eu
rounds=${1:-15}
shift || true
dir=${TMPDIR:-/tmp}/gokexec-ima-bench
[ -f "$dir/list" ] || { echo "no $dir/list: run go test -run XXX -bench Evmctl200k ./ima first" >&2; exit 2; }
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/imalog-static" ./cmd/imalog
	bins=("$dir/imalog-static")
fi
cd "$dir"
pcrs=(--pcrs sha1,pcr-sha1.txt --pcrs sha256,pcr-sha256.txt)
sub=(verify list "${pcrs[@]}")
[ -n "${REPLAY:-}" ] && sub=(replay --bank sha1 --bank sha256 list)
out=$(mktemp)
for ((r = 1; r <= rounds; r++)); do
	t0=$EPOCHREALTIME
	evmctl ima_measurement --ignore-violations "${pcrs[@]}" list >/dev/null 2>&1
	line="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b-a)*1000}')"
	for bin in "${bins[@]}"; do
		t0=$EPOCHREALTIME
		"$bin" "${sub[@]}" >/dev/null
		line="$line $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b-a)*1000}')"
	done
	echo "$line" | tee -a "$out"
done
med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "medians over $rounds rounds (ms); ratio = evmctl / imalog within each round:"
echo "  evmctl ima_measurement: $(cut -d' ' -f1 "$out" | med)"
for ((i = 0; i < ${#bins[@]}; i++)); do
	col=$((i + 2))
	echo "  ${bins[$i]} ${sub[0]}: $(cut -d' ' -f$col "$out" | med), ratio $(awk -v c=$col '{printf "%.2f\n", $1 / $c}' "$out" | med)"
done
rm -f "$out"
