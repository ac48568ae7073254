// Package bench holds portfwd's lab benchmarks: they build the NAT lab of
// package natlab and time portfwd against the reference peers (miniupnpc's
// upnpc, libnatpmp's natpmpc, miniupnpd) doing the same work, and print a
// table. They are not part of the ordinary test run: scripts/bench.sh runs
// them (PORTFWD_BENCH=1) inside a fresh network namespace.
//
// TestLabBenchGateway drives miniupnpd and portfwd's gateway with one load
// generator (bench/loadgen) and reads one client's pair rates against the
// floor of the same path: an echo server on the router, which answers each
// request with itself and does nothing else. It also prints the kernel's
// RCU mode, which decides what an nftables element deletion costs.
//
// TestLabBenchChained measures the double-NAT chaining of the gateway
// (gateway/upstream): what a chained add costs over a local one, against
// the round trip to the router above, and chained add+delete pairs per
// second, in natlab's two-level lab (StartDouble).
package bench
