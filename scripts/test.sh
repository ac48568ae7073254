#!/usr/bin/env bash
# Runs portfwd's tests: `go test -race -count=1` on ./... or on the packages
# and flags given, e.g. scripts/test.sh ./internal/natlab -run TestRouterNone -v
#
# The router build (portfwd-gateway, as scripts/release.sh makes it) differs
# by build tags in the packages whose code has a gatewayonly variant; test
# it with
#
#   bash scripts/test.sh -tags gatewayonly,nethttpomithttp2 ./internal/httpx/... ./internal/httpserve/ ./upnp/ ./igd/ ./gateway/... ./cmd/portfwd-gateway/
#
# First, while the network is there, it downloads every module the tests
# need (test-only ones such as chromedp included). Then it runs the tests
# offline (GOPROXY=off) inside a fresh, empty network namespace that has
# only loopback, so no test, however buggy, can send a packet to the
# machine's real network:
#
#   - as root, a namespace made with `ip netns`, inside which the NAT lab
#     builds its own namespaces (`ip netns exec` gives the run a private
#     mount namespace, and namespaces created there are visible only within
#     it, which is why everything runs in this single invocation);
#   - as a normal user, a namespace inside an unprivileged user namespace
#     (unshare), with no privileges left: the lab tests skip, each saying
#     what it lacks. Where user namespaces are disabled, the tests run in
#     the machine's own namespace (they use loopback and addresses they
#     make themselves), with a notice.
#
# PORTFWD_LAB_REQUIRED=1 (set by .ci/run) makes every test that lacks
# something it needs (root, a program, the shared corpus) fail instead of
# skip.
#
# -race needs cgo and a C compiler (gcc and libc6-dev on Debian;
# scripts/install-lab-deps.sh installs them). Without them the tests run
# without -race and say so. PORTFWD_RACE=1 makes their absence an error,
# PORTFWD_RACE=0 turns -race off.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
	set -- ./...
fi

note() { echo "test.sh: $*" >&2; }

# lookpath finds a program in PATH or in the sbin directories, which a
# normal user's PATH may lack.
lookpath() {
	command -v "$1" 2>/dev/null && return
	local d
	for d in /usr/sbin /sbin /usr/bin /bin; do
		[ -x "$d/$1" ] && { echo "$d/$1"; return; }
	done
	return 1
}

command -v go >/dev/null || { note "go is not installed; install Go $(sed -n 's/^go //p' go.mod) (see README)"; exit 1; }

# Every module the tests import, downloaded now: inside the namespace there
# is no network.
if ! go list -test -deps ./... >/dev/null; then
	note "could not get the Go modules the tests need (above); the module proxy must be reachable once, for the first run"
	exit 1
fi
export GOPROXY=off

race=-race
case "${PORTFWD_RACE:-}" in
0)
	race=""
	note "PORTFWD_RACE=0: running without the race detector"
	;;
*)
	cc="$(go env CC)"
	cc="${cc%% *}"
	why=""
	if [ "$(go env CGO_ENABLED)" != 1 ]; then
		why="cgo is disabled (CGO_ENABLED=$(go env CGO_ENABLED))"
	elif ! command -v "$cc" >/dev/null; then
		why="there is no C compiler ($cc)"
	fi
	if [ -n "$why" ]; then
		if [ "${PORTFWD_RACE:-}" = 1 ]; then
			note "-race needs cgo and a C compiler, but $why, and PORTFWD_RACE=1; install gcc and libc6-dev (scripts/install-lab-deps.sh does)"
			exit 1
		fi
		race=""
		export CGO_ENABLED=0 # nothing else needs cgo
		note "running WITHOUT the race detector: $why; install gcc and libc6-dev (scripts/install-lab-deps.sh does) to get -race"
	fi
	;;
esac

run_plain() { exec go test $race -count=1 "$@"; }

ip="$(lookpath ip || true)"
if [ "$(id -u)" != 0 ]; then
	note "not root: no NAT lab (its tests skip, or fail with PORTFWD_LAB_REQUIRED=1)"
	if [ -n "$ip" ] && command -v unshare >/dev/null && command -v setpriv >/dev/null &&
		unshare --user --map-current-user --net --keep-caps "$ip" link set lo up 2>/dev/null; then
		# lo up needs the namespace's capabilities; the tests run without
		# them, as the normal user they are.
		exec unshare --user --map-current-user --net --keep-caps bash -c \
			'"$1" link set lo up && shift && exec setpriv --inh-caps=-all --ambient-caps=-all -- go test "$@"' \
			test.sh "$ip" $race -count=1 "$@"
	fi
	note "cannot make a private network namespace as a normal user (no unshare/setpriv/ip, or user namespaces disabled): running in this machine's network namespace"
	run_plain "$@"
fi

[ -n "$ip" ] || { note "'ip' (iproute2) is missing; run scripts/install-lab-deps.sh"; exit 1; }
ns="pftest-$$"
if ! "$ip" netns add "$ns"; then
	if [ "${PORTFWD_LAB_REQUIRED:-}" = 1 ]; then
		note "cannot create a network namespace, and PORTFWD_LAB_REQUIRED=1"
		exit 1
	fi
	note "cannot create a network namespace here; running without one (the lab tests will skip)"
	run_plain "$@"
fi
trap '"$ip" netns del "$ns" 2>/dev/null || true' EXIT
"$ip" netns exec "$ns" bash -c '"$1" link set lo up && shift && exec go test "$@"' test.sh "$ip" $race -count=1 "$@"
