#!/usr/bin/env bash
# Mutation checks (issue 23): apply each deliberate fault in
# scripts/mutations/*.patch to a scratch copy of the committed tree (never
# to this tree), run the unit tests and one short QEMU scenario there, and
# print a table fault -> red/green. Every row must be red: a green row is a
# fault the suite would let land.
#
# A mutation is one small patch file (unified diff, -p1, against the
# repository root), whose first line starting with "#" says what the fault
# is. When the code it patches moves, regenerate it: edit the file in a
# scratch copy and `diff -u a/FILE b/FILE`; the script reports a patch that
# no longer applies as "stale" (which counts as a failure of this script).
#
# Usage: scripts/mutate.sh [PATTERN]   (only patches whose name matches)
# Environment:
#   MUTATE_REV       the revision to copy (default HEAD)
#   MUTATE_SCENARIO  always (default) | ifgreen (only when the unit tests
#                    stayed green) | never
#   MUTATE_RUN       the scenario (default 'TestHandover61to61$')
#   GOKEXEC_QEMU_LOCK  the lock every QEMU boot takes (default
#                    /tmp/gokexec-qemu.lock); set it to "" when the caller
#                    already holds it.
# Unit tests: go test -short over every package except the QEMU ones
# (integration's unit tests of its checks included), plus the loader's
# swtpm tests, which -short skips.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
rev=$(git rev-parse --verify "${MUTATE_REV:-HEAD}^{commit}") || exit 2
mode=${MUTATE_SCENARIO:-always}
scenario=${MUTATE_RUN:-'TestHandover61to61$'}
lock=${GOKEXEC_QEMU_LOCK-/tmp/gokexec-qemu.lock}
pattern=${1:-}
cache=$(readlink -f build/cache)
work=$(mktemp -d /tmp/gokexec-mutate.XXXXXX)
trap 'rm -rf "$work"' EXIT

# scratch REV DIR: a copy of the committed tree with the shared kernel cache.
scratch() {
	mkdir -p "$2"
	git archive "$1" | tar -x -C "$2"
	mkdir -p "$2/build"
	ln -s "$cache" "$2/build/cache"
}

unit() { # DIR LOG
	(
		cd "$1" || exit 2
		pkgs=$(go list ./... | grep -v -e '/integration$' -e '/qemu$' -e '/packaging$')
		rc=0 # all three run, so the table can name every test that failed
		go test -short -count=1 $pkgs || rc=1
		go test -short -count=1 ./integration -run 'HopCheck|Evmctl' || rc=1
		go test -count=1 ./loader -run 'Finalize' || rc=1
		exit $rc
	) >"$2" 2>&1
}

scen() { # DIR LOG
	(
		cd "$1" || exit 2
		export GOKEXEC_ARTIFACTS="$1/build/artifacts"
		if [ -n "$lock" ]; then
			timeout 900 flock "$lock" go test -count=1 -v ./integration -run "$scenario"
		else
			timeout 900 go test -count=1 -v ./integration -run "$scenario"
		fi
	) >"$2" 2>&1
}

verdict() { [ "$1" = 0 ] && echo green || echo red; }

# fails LOG: the failing tests of a unit log, one "pkg.Test" or "pkg
# [build failed]" a line, sorted.
fails() {
	awk '
		/^--- FAIL: / { t[$3] = 1 }
		/^FAIL\t/ { pkg = $2; k = 0; for (n in t) { print pkg "." n; k++ }; if (k == 0) print pkg " [failed]"; delete t }
	' "$1" | sort -u
}

rows=()
fail=0
# The baseline must be green, or the rows below prove nothing. Its unit
# tests run first; its scenario runs before the first mutation's scenario
# (with MUTATE_SCENARIO=ifgreen, only if some mutation needs one).
base="$work/baseline"
scratch "$rev" "$base"
unit "$base" "$work/baseline.unit.log"; bu=$?
fails "$work/baseline.unit.log" >"$work/baseline.fails"
echo "mutate: baseline $(git rev-parse --short "$rev"): unit $(verdict $bu)" >&2
if [ "$bu" != 0 ]; then
	# Failures that have nothing to do with the faults (a shared cache,
	# another engineer's work in progress) are subtracted from every row:
	# a fault is red when it makes some other test fail.
	echo "mutate: the baseline's unit tests are red; these failures are not counted against any fault:" >&2
	sed 's/^/  /' "$work/baseline.fails" >&2
	[ -s "$work/baseline.fails" ] || { tail -30 "$work/baseline.unit.log" >&2; fail=1; }
fi
bs=skipped
base_scen() {
	[ "$bs" = skipped ] || return 0
	scen "$base" "$work/baseline.scen.log"; bs=$(verdict $?)
	echo "mutate: baseline scenario $bs" >&2
	if [ "$bs" = red ]; then
		tail -30 "$work/baseline.scen.log" >&2
		fail=1
	fi
}

for p in scripts/mutations/*.patch; do
	name=$(basename "$p" .patch)
	[ -n "$pattern" ] && [[ "$name" != *$pattern* ]] && continue
	what=$(grep -m1 '^#' "$p" | sed 's/^# *//')
	dir="$work/$name"
	scratch "$rev" "$dir"
	if ! patch -s -p1 -d "$dir" --dry-run <"$p" >/dev/null 2>&1 || ! patch -s -p1 -d "$dir" <"$p" >/dev/null 2>&1; then
		rows+=("$name|$what|stale|-|STALE")
		fail=1
		rm -rf "$dir"
		continue
	fi
	# A mutation that does not compile proves nothing: retarget it.
	if ! (cd "$dir" && go vet ./... >"$work/$name.build.log" 2>&1); then
		rows+=("$name|$what|broken|-|BROKEN|$(head -c 70 "$work/$name.build.log" | tr '\n|' '  ')|")
		fail=1
		rm -rf "$dir"
		continue
	fi
	start=$(date +%s)
	unit "$dir" "$work/$name.unit.log"
	fails "$work/$name.unit.log" | comm -23 - "$work/baseline.fails" >"$work/$name.fails"
	u=green
	[ -s "$work/$name.fails" ] && u=red
	s=skipped
	if [ "$mode" = always ] || { [ "$mode" = ifgreen ] && [ "$u" = green ]; }; then
		base_scen
		scen "$dir" "$work/$name.scen.log"; s=$(verdict $?)
	fi
	overall=RED
	if [ "$u" = green ] && [ "$s" != red ]; then
		overall=GREEN
		fail=1
	fi
	# The first failing test of each half, to show what caught the fault.
	# The tests that failed (top-level names), to show what caught the fault.
	uwhy=$(sed 's|^github.com/gokexec/gokexec/||' "$work/$name.fails" | paste -sd, - | sed 's/,/, /g' | cut -c1-200)
	swhy=$(grep -A1 -m1 'hand-over check' "$work/$name.scen.log" 2>/dev/null | tail -1 | sed 's/^[[:space:]]*//' | cut -c1-120)
	[ -n "$swhy" ] || swhy=$(grep -m1 -E '_test\.go:[0-9]+: .*(want|not|differ)' "$work/$name.scen.log" 2>/dev/null | sed 's/^[[:space:]]*//' | cut -c1-120)
	rows+=("$name|$what|$u|$s|$overall ($(($(date +%s) - start)) s)|${uwhy//|/ }|${swhy//|/ }")
	echo "mutate: $name: unit $u, scenario $s" >&2
	[ -n "${MUTATE_KEEP:-}" ] || rm -rf "$dir"
done

rm -rf "$base"
echo
echo "baseline $(git rev-parse --short "$rev"): unit tests $(verdict $bu)$([ -s "$work/baseline.fails" ] && echo " (not counted: $(paste -sd, "$work/baseline.fails"))"), scenario $bs"
echo
echo "| fault | what | unit tests | scenario ($scenario) | suite | caught by (unit) | caught by (scenario) |"
echo "|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
	echo "| ${r//|/ | } |"
done
exit $fail
