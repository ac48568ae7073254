#!/usr/bin/env bash
# Runs portfwd's tests: `go test -race -count=1` on ./... or on the packages
# and flags given, e.g. scripts/test.sh ./internal/natlab -run TestRouterNone -v
#
# As root (needed by the NAT lab tests) the whole run happens inside a fresh,
# empty network namespace with only loopback, so no test, however buggy, can
# send a packet to the machine's real network. The lab builds its own
# namespaces inside that one: `ip netns exec` gives the run a private mount
# namespace, and namespaces created there are visible only within it, which
# is why everything runs in this single invocation.
#
# Without root the tests run directly and the lab tests skip, unless
# PORTFWD_LAB_REQUIRED=1 (set by .ci/run) makes them fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
	set -- ./...
fi

if [ "$(id -u)" != 0 ]; then
	echo "test.sh: not root, so no private network namespace and no NAT lab (its tests skip)" >&2
	exec go test -race -count=1 "$@"
fi

command -v ip >/dev/null || { echo "test.sh: 'ip' (iproute2) is missing; run scripts/install-lab-deps.sh" >&2; exit 1; }
ns="pftest-$$"
if ! ip netns add "$ns"; then
	if [ "${PORTFWD_LAB_REQUIRED:-}" = 1 ]; then
		echo "test.sh: cannot create a network namespace, and PORTFWD_LAB_REQUIRED=1" >&2
		exit 1
	fi
	echo "test.sh: cannot create a network namespace here; running without one (the lab tests will skip)" >&2
	exec go test -race -count=1 "$@"
fi
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" bash -c 'ip link set lo up && exec go test -race -count=1 "$@"' test.sh "$@"
