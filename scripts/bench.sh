#!/usr/bin/env bash
# Runs portfwd's lab benchmarks and prints their tables. As root (it builds
# network namespaces); the lab lives inside a fresh, empty namespace so no
# packet can reach a real network. PORTFWD_BENCH_RUNS sets the runs per row.
# A test name selects one table, e.g. `scripts/bench.sh TestLabBenchChained`
# (double NAT: the cost of chaining a mapping to the router above, issue 15).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (the lab uses network namespaces)" >&2; exit 1; }
bash scripts/install-lab-deps.sh
# A binary of this run's own: runs from other worktrees may be building theirs.
bin="$(mktemp /tmp/portfwd-bench.XXXXXX)"
ns="pfbench-$$"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -f "$bin"' EXIT
go test -c -o "$bin" ./bench
ip netns add "$ns"
ip netns exec "$ns" bash -c "ip link set lo up; cd bench && PORTFWD_BENCH=1 PORTFWD_LAB_REQUIRED=1 GOFLAGS=-mod=mod GOPROXY=off '$bin' -test.run '${1:-.}' -test.count=1 -test.timeout 30m"
