// Package bench holds portfwd's lab benchmarks: they build the NAT lab of
// package natlab and time portfwd against the reference peers (miniupnpc's
// upnpc, libnatpmp's natpmpc, miniupnpd) doing the same work, and print a
// table. They are not part of the ordinary test run: scripts/bench.sh runs
// them (PORTFWD_BENCH=1) inside a fresh network namespace.
package bench
