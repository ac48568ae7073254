#!/usr/bin/env bash
# Prints the quirks matrix: portfwd's own client (discover, info, ip, add,
# list, edit, delete, keep, watch) and the reference clients upnpc and
# natpmpc against `portfwd gateway --quirks Q`, for every quirk, in the NAT
# lab, with real traffic (see docs/quirks.md). Needs root and the lab's
# tools, as the lab tests do (scripts/install-lab-deps.sh); runs through
# scripts/test.sh, so inside an empty network namespace.
#
#   bash scripts/quirks-matrix.sh            # the table, in Markdown
#   PORTFWD_QUIRKS_LAB_PREFIX=q1 bash scripts/quirks-matrix.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chmod 755 "$out"
log="$out/test.log"
if ! PORTFWD_QUIRKS_MATRIX="$out/matrix.md" PORTFWD_LAB_REQUIRED=1 PORTFWD_RACE="${PORTFWD_RACE:-0}" \
	bash scripts/test.sh ./cmd/portfwd -run '^TestLabQuirksMatrix$' -count=1 -v >"$log" 2>&1; then
	echo "quirks-matrix.sh: some cells did not behave as the matrix expects; the test's output:" >&2
	grep -E -- '--- FAIL|quirks_lab_test.go:[0-9]+: [a-z]+: ' "$log" >&2 || tail -40 "$log" >&2
	[ -f "$out/matrix.md" ] && cat "$out/matrix.md"
	exit 1
fi
cat "$out/matrix.md"
