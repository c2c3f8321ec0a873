#!/bin/bash
# Runs go test -race -short on every package that starts goroutines (found
# by grepping its .go files for a go statement), so a package that gains a
# goroutine is covered without editing this script. Then one short QEMU
# scenario (RACE_SCENARIO, default TestHandover61to61: swtpm, QEMU, the
# serial decoder and the result collection run concurrently on the host)
# under the race detector; RACE_SCENARIO=none skips it, RACE_PACKAGES=none
# the package pass. Both run; either failing fails the script. The scenario boots a
# guest: on a shared machine run this script under the QEMU lock
# (flock /tmp/gokexec-qemu.lock scripts/race.sh).
set -u
cd "$(dirname "$0")/.."
pkgs=$(grep -rlE --include='*.go' '(^|[[:space:]])go (func|[A-Za-z_][A-Za-z0-9_.]*\()' . |
	grep -v '^\./build/' | xargs -n1 dirname | sort -u | sed 's|^\.|github.com/gokexec/gokexec|')
[ -n "$pkgs" ] || { echo "race: no packages with goroutines"; exit 0; }
echo "race: $(echo $pkgs | wc -w) packages:" $pkgs
rc=0
if [ "${RACE_PACKAGES:-}" != none ]; then
	go test -race -short -count=1 $pkgs || rc=$?
fi
scenario=${RACE_SCENARIO:-TestHandover61to61}
if [ "$scenario" != none ]; then
	echo "race: QEMU scenario $scenario under -race"
	go test -race -count=1 -timeout 20m ./integration -run "^${scenario}\$" -v || rc=$?
fi
exit $rc
