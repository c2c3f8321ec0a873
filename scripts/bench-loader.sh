#!/usr/bin/env bash
# Whole-process cost of planning a load on the host, without any kexec
# syscall: runs
#   gokexec -l KERNEL --initrd INITRD --dry-run --json \
#     --memmap plan/testdata/iomem-qemu-q35-1g-deb61.txt --ima-log LIST
# RUNS times under /usr/bin/time -v and prints the medians of wall time,
# user and system CPU time and peak RSS, then compares the peak RSS with the
# DESIGN.md section 7 target "bytes loaded + 16 MiB" (bytes loaded = the sum
# of the plan's segment buffer sizes, read from the JSON plan).
#
# --dry-run never calls kexec_load/kexec_file_load, so this is safe on any
# host. The comparison with `kexec -c -l` needs a real load and belongs in a
# QEMU guest (docs/BENCHMARKS-loader.md).
#
# Environment:
#   RUNS      number of timed runs (default 9)
#   KERNEL    kernel image (default build/cache/kernels/deb61-amd64/vmlinuz)
#   INITRD_MB size of the random initrd in MiB (default 30)
#   ENTRIES   ima-ng entries in the measurement list (default 5000)
#   IMA_LIST  an existing binary measurement list to use instead (ENTRIES is
#             then ignored)
#   GOKEXEC   a prebuilt gokexec binary (default: build a static stripped one)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

RUNS=${RUNS:-9}
KERNEL=${KERNEL:-$here/build/cache/kernels/deb61-amd64/vmlinuz}
INITRD_MB=${INITRD_MB:-30}
ENTRIES=${ENTRIES:-5000}
MEMMAP=$here/plan/testdata/iomem-qemu-q35-1g-deb61.txt

if [ ! -x /usr/bin/time ]; then
	echo "bench-loader: /usr/bin/time missing (apt-get install -y time)" >&2
	exit 1
fi
if [ ! -f "$KERNEL" ]; then
	echo "bench-loader: no kernel at $KERNEL (run scripts/setup.sh or set KERNEL)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/gokexec-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -z "${GOKEXEC:-}" ]; then
	GOKEXEC=$work/gokexec
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$GOKEXEC" ./cmd/gokexec
fi
echo "gokexec: $GOKEXEC ($(stat -c %s "$GOKEXEC") bytes)"

# The initrd: random bytes, so nothing downstream can take a shortcut.
head -c "$((INITRD_MB << 20))" /dev/urandom >"$work/initrd"

# The measurement list, built with the ima package itself (ima.NewFileEntry,
# ima.AppendList) by a throw-away module that points at this checkout.
if [ -n "${IMA_LIST:-}" ]; then
	cp "$IMA_LIST" "$work/ima.list"
else
mkdir -p "$work/gen"
cat >"$work/gen/main.go" <<'EOF'
package main

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"github.com/gokexec/gokexec/ima"
)

func main() {
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		panic(err)
	}
	d := sha256.Sum256([]byte("boot_aggregate"))
	e, err := ima.NewFileEntry(10, "ima-ng", "boot_aggregate", d[:], crypto.SHA256, nil)
	if err != nil {
		panic(err)
	}
	es := []ima.Entry{e}
	for i := 0; i < n; i++ {
		d := sha256.Sum256([]byte(fmt.Sprint(i)))
		e, err := ima.NewFileEntry(10, "ima-ng", fmt.Sprintf("/usr/lib/x86_64-linux-gnu/file-%05d.so", i), d[:], crypto.SHA256, nil)
		if err != nil {
			panic(err)
		}
		es = append(es, e)
	}
	if err := os.WriteFile(os.Args[1], ima.AppendList(nil, es, binary.LittleEndian), 0o644); err != nil {
		panic(err)
	}
}
EOF
cat >"$work/gen/go.mod" <<EOF
module benchgen

go 1.22

require github.com/gokexec/gokexec v0.0.0
replace github.com/gokexec/gokexec => $here
EOF
(cd "$work/gen" && GOFLAGS=-mod=mod go run . "$work/ima.list" "$ENTRIES")
fi

args=(-l "$KERNEL" --initrd "$work/initrd" --dry-run --json --memmap "$MEMMAP" --ima-log "$work/ima.list")
echo "command: gokexec ${args[*]}"
echo "inputs: kernel $(stat -c %s "$KERNEL") B, initrd $(stat -c %s "$work/initrd") B, IMA list $(stat -c %s "$work/ima.list") B"

# One untimed run: checks the command works, warms the page cache and gives
# the plan whose segment sizes define "bytes loaded".
"$GOKEXEC" "${args[@]}" >"$work/plan.json"
loaded=$(jq '[.segments[].bufsz] | add' "$work/plan.json")
segs=$(jq -r '[.segments[] | "\(.name)=\(.bufsz)"] | join(" ")' "$work/plan.json")
echo "bytes loaded: $loaded ($segs)"

: >"$work/samples"
for i in $(seq "$RUNS"); do
	/usr/bin/time -v -o "$work/time.$i" "$GOKEXEC" "${args[@]}" >/dev/null
	awk -F': ' '
		/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
		/User time/ { user = $2 }
		/System time/ { sys = $2 }
		/Maximum resident set size/ { rss = $2 }
		END { printf "%.3f %.3f %.3f %d\n", wall, user, sys, rss }' "$work/time.$i" >>"$work/samples"
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wall=$(cut -d' ' -f1 "$work/samples" | median)
user=$(cut -d' ' -f2 "$work/samples" | median)
sys=$(cut -d' ' -f3 "$work/samples" | median)
rss=$(cut -d' ' -f4 "$work/samples" | median)
rss_max=$(cut -d' ' -f4 "$work/samples" | sort -n | tail -1)

echo "runs: $RUNS"
echo "median wall: ${wall}s  user: ${user}s  sys: ${sys}s"
echo "median peak RSS: ${rss} KiB (largest ${rss_max} KiB)"
budget_kib=$(((loaded + (16 << 20)) / 1024))
echo "target (bytes loaded + 16 MiB): ${budget_kib} KiB"
if [ "$rss_max" -le "$budget_kib" ]; then
	echo "peak RSS within target: $((budget_kib - rss_max)) KiB to spare"
else
	echo "peak RSS over target by $((rss_max - budget_kib)) KiB"
fi
