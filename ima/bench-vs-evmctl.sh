#!/bin/bash
# Whole-process wall time of `imalog verify` against `evmctl ima_measurement`
# on the same 200,000-entry list and PCR files, and against the hashing
# floor (ima/internal/hashfloor: the hashing a sha1+sha256 verification
# needs, standard-library hashes, one goroutine, timed inside the process
# after parsing), alternating the commands in every round (the machine is
# shared: neighbours' load drifts, and a ratio taken within one round
# cancels most of it). Prints every round, then the medians, the median of
# the per-round ratios, and imalog's peak RSS. CPU time (user+system) is
# reported beside wall time: on a loaded machine imalog, which uses both
# cores, loses more wall time than evmctl (one thread) or the floor (one
# goroutine), while CPU time moves much less with the load.
#
# usage: [REPLAY=1] [BIG=N] ima/bench-vs-evmctl.sh [ROUNDS] [IMALOG...]
#   REPLAY=1 times `imalog replay --bank sha1 --bank sha256 LIST` (the same
#   replay, no comparison) instead of `imalog verify`.
#   BIG=N also writes the list N times over into one file (N=72: 2 GB),
#   and reports imalog verify's wall time and peak RSS on it.
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
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/hashfloor" ./ima/internal/hashfloor
cd "$dir"
pcrs=(--pcrs sha1,pcr-sha1.txt --pcrs sha256,pcr-sha256.txt)
sub=(verify list "${pcrs[@]}")
[ -n "${REPLAY:-}" ] && sub=(replay --bank sha1 --bank sha256 list)
out=$(mktemp)
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b-a)*1000}'; }
# childcpu sets cpu to the user+system seconds of the shell's finished
# children so far (times must run in this shell, not in a subshell).
tf=$(mktemp)
childcpu() {
	times >"$tf"
	cpu=$(tail -1 "$tf" | awk '{n = 0; for (i = 1; i <= 2; i++) {split($i, p, "m"); n += p[1] * 60 + p[2]}; printf "%.4f", n}')
}
for ((r = 1; r <= rounds; r++)); do
	t0=$EPOCHREALTIME
	evmctl ima_measurement --ignore-violations "${pcrs[@]}" list >/dev/null 2>&1
	line="$(ms "$t0" "$EPOCHREALTIME")"
	cpus=""
	for bin in "${bins[@]}"; do
		childcpu
		c0=$cpu
		t0=$EPOCHREALTIME
		"$bin" "${sub[@]}" >/dev/null
		line="$line $(ms "$t0" "$EPOCHREALTIME")"
		childcpu
		cpus="$cpus $(awk -v a="$c0" -v b="$cpu" 'BEGIN {printf "%.1f", (b-a)*1000}')"
	done
	line="$line $(./hashfloor list | cut -d' ' -f1,2)$cpus"
	echo "$line" | tee -a "$out"
done
med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
nb=${#bins[@]}
fl=$((nb + 2))
echo "medians over $rounds rounds (ms); columns: evmctl, ${bins[*]} (wall), floor wall, floor CPU, ${bins[*]} (CPU)"
echo "  evmctl ima_measurement: $(cut -d' ' -f1 "$out" | med)"
echo "  hashing floor (one goroutine, in process): $(cut -d' ' -f$fl "$out" | med) wall, $(cut -d' ' -f$((fl + 1)) "$out" | med) CPU"
for ((i = 0; i < nb; i++)); do
	col=$((i + 2))
	cc=$((fl + 2 + i))
	echo "  ${bins[$i]} ${sub[0]}: $(cut -d' ' -f$col "$out" | med) wall, $(cut -d' ' -f$cc "$out" | med) CPU;" \
		"evmctl/imalog $(awk -v c=$col '{printf "%.2f\n", $1 / $c}' "$out" | med)," \
		"imalog/floor $(awk -v c=$col -v f=$fl '{printf "%.2f\n", $c / $f}' "$out" | med) wall," \
		"$(awk -v c=$cc -v f=$((fl + 1)) '{printf "%.2f\n", $c / $f}' "$out" | med) CPU," \
		"peak RSS $(/usr/bin/time -f %M "${bins[$i]}" "${sub[@]}" 2>&1 >/dev/null | tail -1) KiB"
done
rm -f "$out" "$tf"
# Peak RSS of every input mode on the same list and values (issue 21).
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
rm -f cp.json
echo "peak RSS per mode (KiB): file $(rss "${bins[0]}" verify list "${pcrs[@]}")," \
	"stdin $(rss sh -c "exec \"\$0\" verify - $(printf '%q ' "${pcrs[@]}") <list" "${bins[0]}")," \
	"checkpoint written $(rss "${bins[0]}" verify list "${pcrs[@]}" --checkpoint cp.json)," \
	"checkpoint resumed $(rss "${bins[0]}" verify list "${pcrs[@]}" --checkpoint cp.json)," \
	"--json $(rss "${bins[0]}" verify --json list "${pcrs[@]}")"
rm -f cp.json
if [ -n "${BIG:-}" ]; then
	rm -f big
	for ((i = 0; i < BIG; i++)); do cat list >>big; done
	"${bins[0]}" replay --bank sha1 --bank sha256 --json big >big.json
	for b in sha1 sha256; do
		python3 - "$b" >pcr-big-$b.txt <<-'EOF'
			import json, sys
			r = [x for x in json.load(open("big.json"))["replay"] if x["bank"] == sys.argv[1]][0]
			for p, v in sorted(r["pcrs"].items(), key=lambda kv: int(kv[0])):
			    print("PCR-%02d: %s" % (int(p), " ".join(v[i:i + 2] for i in range(0, len(v), 2))))
		EOF
	done
	echo "$(stat -c %s big)-byte list ($BIG copies):"
	/usr/bin/time -f "  imalog verify: %e s wall, %U s user, %S s sys, peak RSS %M KiB" \
		"${bins[0]}" verify big --pcrs sha1,pcr-big-sha1.txt --pcrs sha256,pcr-big-sha256.txt | tail -1
	rm -f big big.json pcr-big-*.txt
fi
