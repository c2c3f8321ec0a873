#!/bin/bash
# Runs go test -race -short on every package that starts goroutines (found
# by grepping its .go files for a go statement), so a package that gains a
# goroutine is covered without editing this script.
set -u
cd "$(dirname "$0")/.."
pkgs=$(grep -rlE --include='*.go' '(^|[[:space:]])go (func|[A-Za-z_][A-Za-z0-9_.]*\()' . |
	grep -v '^\./build/' | xargs -n1 dirname | sort -u | sed 's|^\.|github.com/gokexec/gokexec|')
[ -n "$pkgs" ] || { echo "race: no packages with goroutines"; exit 0; }
echo "race: $(echo $pkgs | wc -w) packages:" $pkgs
exec go test -race -short -count=1 $pkgs
