// Package natlab builds a NAT lab for tests out of Linux network namespaces:
// a LAN host, a router doing NAT with nftables, and a WAN host, wired with
// two veth pairs.
//
//	 LAN host                 router                        WAN host
//	eth0 10.77.0.2 ──── lan0 10.77.0.1   wan0 203.0.113.1 ──── eth0 203.0.113.2 (+ .3)
//	default via .1           miniupnpd, NAT                    STUN responder
//	                         default via 203.0.113.2
//
// By default the router runs miniupnpd, the reference UPnP IGD / NAT-PMP /
// PCP daemon, so portfwd's clients can be tested against a real peer; with
// Router "none" it only does NAT, and the test starts portfwd's own gateway
// there. The WAN host has no route to the LAN: only the router's NAT can
// connect the two sides.
//
// Nothing of the lab exists in the test's own namespace: the veths are
// created directly inside the lab namespaces, so no lab packet (SSDP
// multicast, NAT-PMP, STUN) can reach a real interface. Run the whole test
// binary inside an empty namespace too, as .ci/run does, and even a bug
// cannot reach the machine's network.
//
// Servers and clients of the lab (ServeTCP, DialTCP, the STUN responder)
// run inside the test process: their sockets are created in the lab's
// namespaces, see Listen. Commands run through `ip netns exec` (Cmd, Run,
// Start).
//
// Start skips the test when the lab cannot be built (not root, tools
// missing) unless PORTFWD_LAB_REQUIRED=1, which turns that into a failure
// (see package internal/testenv). With -short, Start always skips: the lab
// belongs to the full suite, and `go test -short` runs the unit tests
// alone.
//
// # Quirks the lab works around
//
// miniupnpd 2.3 puts TEST-NET-3 (203.0.113.0/24), RFC 1918 and CGNAT space
// in its list of reserved addresses: with such an address on its WAN
// interface it logs "Port forwarding is impossible" and fails every mapping,
// and rejects ext_ip= with it at startup. The STUN path is the exception: a
// public address learned over STUN is not checked, and forwarding is
// enabled when all four requests of the RFC 3489 NAT test come back with the
// same mapping. So the WAN host runs a STUN responder (package stun) on two
// addresses and two ports, and miniupnpd is configured with
// ext_perform_stun. miniupnpd exits when STUN fails at startup, so the
// responder is up before it starts.
//
// miniupnpd opens syslog with LOG_CONS. Without a syslog daemon (containers,
// CI) glibc writes every message to /dev/console, which may be a slow serial
// port: one mapping took seconds. The lab bind-mounts /dev/null over
// /dev/console in the private mount namespace `ip netns exec` gives
// miniupnpd; with -d, its log still goes to stderr, into RunDir.
//
// miniupnpd's PID file and lease file and the minissdpd socket path
// (a filesystem path, shared between network namespaces) are per lab, so
// two labs run side by side; a second miniupnpd with the default PID file
// would exit with "already running".
//
// miniupnpc 2.2 treats a discovered IGD whose external address is reserved
// (TEST-NET or CGNAT alike) as "not connected": `upnpc -l` finds the lab's
// IGD over SSDP and stops. `upnpc -i` ignores that; with -u (no discovery)
// there is no check. `natpmpc -a` takes the public port first.
package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/stun"
	"github.com/portfwd/portfwd/internal/testenv"
)

// Router kinds for Options.Router.
const (
	RouterMiniupnpd = "miniupnpd"
	RouterNone      = "none"
)

// Host names accepted where a method takes a host.
const (
	HostLAN    = "lan"
	HostRouter = "rtr"
	HostWAN    = "wan"
	HostISP    = "isp" // the router above the home router, in a double-NAT lab (StartDouble)
)

// Interface names, the same in every lab.
const (
	HostIf      = "eth0" // the LAN host's and the WAN host's interface
	RouterLANIf = "lan0"
	RouterWANIf = "wan0"
)

// Ports of the lab's services.
const (
	MiniupnpdHTTPPort = 5000 // rootDesc.xml and SOAP on the router's LAN address
	NATPMPPort        = 5351 // NAT-PMP and PCP on the router's LAN address
	STUNPort          = 3478 // STUN on the WAN host; the alternate port is STUNPort+1
)

// EnvRequired names the environment variable that turns "lab unavailable"
// from a skip into a failure. CI sets it to 1 so the lab tests cannot pass
// by being skipped.
const EnvRequired = testenv.EnvRequired

// Options configure a lab. The zero value is a lab with miniupnpd.
type Options struct {
	// Prefix names the namespaces (Prefix-lan, Prefix-rtr, Prefix-wan). It
	// must be unique among running labs, at most 10 letters, digits or
	// underscores. Default: a few letters of the test name, the process ID
	// and a random suffix.
	Prefix string
	// Router is RouterMiniupnpd (default) or RouterNone: NAT and a forward
	// chain that accepts DNAT-ed connections (`ct status dnat accept`), no
	// daemon, for testing portfwd's own gateway on the router.
	Router string
	// DoubleNAT gives the router a carrier-grade NAT address on its WAN side
	// (100.64.0.1/24, WAN host 100.64.0.2) instead of a public-looking one,
	// as behind an ISP's CGNAT: the external address a client reads from the
	// router (UPnP GetExternalIPAddress, NAT-PMP, PCP) is then 100.64.0.1,
	// which portfwd must recognise and warn about.
	//
	// miniupnpd 2.3.1 still forwards, because the STUN responder reports
	// the address it sees, 100.64.0.1, passes the NAT test, and miniupnpd
	// does not check a STUN-learned address against its reserved list.
	// Without STUN (PerformSTUN false in MiniupnpdConf) it logs "Reserved /
	// private IP address 100.64.0.1 on ext interface wan0: Port forwarding
	// is impossible" and a client learns nothing: GetExternalIPAddress
	// returns an empty address, NAT-PMP answers result 3 (network failure),
	// AddPortMapping fails with 501.
	DoubleNAT bool
	// Quiet runs miniupnpd as a daemon without -d, so that it logs nothing
	// (its syslog goes to /dev/null): debug logging costs it time per
	// request, and benchmarks compare it with debug off. Its log and the
	// STUN verdict check are then unavailable, and Lab.Miniupnpd is the
	// parent process that exits after forking; MiniupnpdPID finds the
	// daemon.
	Quiet bool
	// MiniupnpdConf, if set, may change miniupnpd's configuration before it
	// is written. The nftables table and chain names must stay as they are:
	// the lab creates those objects.
	MiniupnpdConf func(*Conf)
	// IPv6 makes the lab dual-stack: routed IPv6 with no NAT66, inbound
	// new connections dropped unless a pinhole allows them, miniupnpd with
	// IPv6 on (see ipv6.go and Addrs6). Not with DoubleNAT.
	IPv6 bool
}

// Lab is a running lab. Its fields are read-only.
type Lab struct {
	LAN, Router, WAN string // namespace names
	ISP              string // the ISP router's namespace in a double-NAT lab (StartDouble), else ""

	LANIP       netip.Addr // the LAN host
	RouterLANIP netip.Addr // the router's LAN address: the gateway clients talk to
	RouterWANIP netip.Addr // the router's external address
	WANIP       netip.Addr // the WAN host
	WANIP2      netip.Addr // the WAN host's second address (STUN's alternate)
	LANPrefix   netip.Prefix
	WANPrefix   netip.Prefix
	Addrs6      // zero unless Options.IPv6

	// RunDir holds the lab's files: miniupnpd.conf, router.nft, logs, PID
	// and lease files. It is removed at teardown unless the test failed.
	RunDir string
	// Conf is miniupnpd's configuration; nil with Router "none".
	Conf *Conf
	// Miniupnpd is the daemon's process; nil with Router "none".
	Miniupnpd *Process
	// StartupTime is how long Start took.
	StartupTime time.Duration

	opts     Options
	ip, nft  string
	ns       map[string]*os.File // open namespace handles, by host
	created  []string            // namespaces this lab created, to delete
	stopSTUN func()
	spawn    *spawner

	mu    sync.Mutex
	seq   int
	procs []*Process
	cmds  []*exec.Cmd // made by Cmd, killed at teardown if still running
}

// Start builds a lab and registers its teardown with t.Cleanup: processes
// are stopped by PID, namespaces deleted, even when the test fails. It
// skips t (or fails it, with PORTFWD_LAB_REQUIRED=1) when the machine
// cannot run the lab.
func Start(t testing.TB, opts Options) *Lab {
	t.Helper()
	began := time.Now()
	switch opts.Router {
	case "":
		opts.Router = RouterMiniupnpd
	case RouterMiniupnpd, RouterNone:
	default:
		t.Fatalf("natlab: Options.Router is %q; want %q or %q", opts.Router, RouterMiniupnpd, RouterNone)
	}
	if opts.Prefix != "" && !validPrefix.MatchString(opts.Prefix) {
		t.Fatalf("natlab: Options.Prefix %q: want 1-10 letters, digits or underscores", opts.Prefix)
	}
	if err := checkIPv6Options(opts); err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		// Not a missing requirement: -short asked for the unit tests alone.
		t.Skip("natlab: -short: the NAT lab runs in the full suite only")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the NAT lab needs root (network namespaces, nftables); run the tests as root, e.g. through scripts/test.sh")
	}
	tools := []string{"ip", "nft"}
	if opts.Router == RouterMiniupnpd {
		tools = append(tools, "miniupnpd", "sh", "mount")
	}
	paths := testenv.Programs(t, tools...)

	l := newLab(opts, paths)
	if opts.DoubleNAT {
		l.RouterWANIP = netip.MustParseAddr("100.64.0.1")
		l.WANIP = netip.MustParseAddr("100.64.0.2")
		l.WANIP2 = netip.MustParseAddr("100.64.0.3")
		l.WANPrefix = netip.MustParsePrefix("100.64.0.0/24")
	}
	if opts.IPv6 {
		l.Addrs6 = defaultAddrs6()
	}

	prefix := l.prepare(t, opts.Prefix)

	var phases []string
	phase := func(name string, since time.Time) time.Time {
		now := time.Now()
		phases = append(phases, fmt.Sprintf("%s %v", name, now.Sub(since).Round(100*time.Microsecond)))
		return now
	}
	mark := time.Now()
	l.build(t, l.topology())
	mark = phase("namespaces", mark)
	if err := l.configure(); err != nil {
		t.Fatal(err)
	}
	mark = phase("addresses+nft", mark)
	if opts.Router == RouterMiniupnpd {
		if err := l.startMiniupnpd(); err != nil {
			t.Fatal(err)
		}
		phase("miniupnpd", mark)
	}
	l.StartupTime = time.Since(began)
	t.Logf("natlab: lab %s up in %v (%s; router %s, LAN %v, router %v/%v, WAN %v, files in %s)",
		prefix, l.StartupTime.Round(time.Millisecond), strings.Join(phases, ", "), opts.Router,
		l.LANIP, l.RouterLANIP, l.RouterWANIP, l.WANIP, l.RunDir)
	return l
}

// newLab returns a Lab with the reference lab's addresses (a single NAT:
// the router's outside is the WAN /24) and the tools in paths.
func newLab(opts Options, paths map[string]string) *Lab {
	return &Lab{
		opts:        opts,
		ip:          paths["ip"],
		nft:         paths["nft"],
		ns:          map[string]*os.File{},
		LANIP:       netip.MustParseAddr("10.77.0.2"),
		RouterLANIP: netip.MustParseAddr("10.77.0.1"),
		LANPrefix:   netip.MustParsePrefix("10.77.0.0/24"),
		RouterWANIP: netip.MustParseAddr("203.0.113.1"),
		WANIP:       netip.MustParseAddr("203.0.113.2"),
		WANIP2:      netip.MustParseAddr("203.0.113.3"),
		WANPrefix:   netip.MustParsePrefix("203.0.113.0/24"),
	}
}

// prepare names the lab's namespaces after prefix (or a free prefix
// derived from t's name), makes its RunDir and registers its teardown,
// before anything exists, so that a half-built lab is torn down. It
// returns the prefix.
func (l *Lab) prepare(t testing.TB, prefix string) string {
	t.Helper()
	if prefix == "" {
		var err error
		if prefix, err = freePrefix(t.Name()); err != nil {
			t.Fatal(err)
		}
	}
	l.LAN, l.Router, l.WAN = prefix+"-lan", prefix+"-rtr", prefix+"-wan"
	dir, err := os.MkdirTemp("", "natlab-"+prefix+"-")
	if err != nil {
		t.Fatalf("natlab: %v", err)
	}
	l.RunDir = dir
	l.spawn = newSpawner()
	t.Cleanup(func() { l.teardown(t) })
	return prefix
}

// build creates tp's namespaces and veths, skipping t (or failing it, with
// PORTFWD_LAB_REQUIRED=1) when the machine cannot create namespaces.
func (l *Lab) build(t testing.TB, tp topology) {
	t.Helper()
	if err := l.createTopology(tp); err != nil {
		if errors.Is(err, errNoNetns) {
			unavailable(t, "%v", err)
		}
		t.Fatal(err)
	}
}

// errNoNetns marks a failure to create namespaces at all: the machine
// (an unprivileged container, say) cannot host the lab.
var errNoNetns = errors.New("cannot create network namespaces")

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_]{1,10}$`)

// freePrefix derives a prefix from the test name and the process ID, plus a
// random part for parallel labs in one process, and checks that no
// namespace uses it yet.
func freePrefix(testName string) (string, error) {
	var letters []byte
	for _, c := range strings.ToLower(strings.TrimPrefix(testName, "Test")) {
		if len(letters) == 3 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			letters = append(letters, byte(c))
		}
	}
	pid := strconv.FormatInt(int64(os.Getpid()), 36)
	for range 20 {
		n, err := rand.Int(rand.Reader, big.NewInt(36*36))
		if err != nil {
			return "", fmt.Errorf("natlab: random prefix: %w", err)
		}
		r := strconv.FormatInt(n.Int64()+36*36, 36)[1:] // always 2 digits
		p := string(letters) + pid + r
		if len(p) > 10 {
			p = p[len(p)-10:]
		}
		if _, err := os.Stat(filepath.Join(netnsDir, p+"-rtr")); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
	return "", errors.New("natlab: no free namespace prefix after 20 tries; delete stale namespaces with `ip netns del`")
}

// unavailable skips t, or fails it when the lab is required.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Missing(t, "natlab: "+format, args...)
}

// Require skips t (or fails it with PORTFWD_LAB_REQUIRED=1) unless every
// named program is installed, e.g. the reference clients upnpc and natpmpc.
// scripts/install-lab-deps.sh installs them.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	testenv.Programs(t, programs...)
}

// Namespace returns the network namespace name of host: "lan", "rtr" or
// "wan".
func (l *Lab) Namespace(host string) (string, error) {
	switch host {
	case HostLAN:
		return l.LAN, nil
	case HostRouter:
		return l.Router, nil
	case HostWAN:
		return l.WAN, nil
	case HostISP:
		if l.ISP != "" {
			return l.ISP, nil
		}
	}
	return "", fmt.Errorf("natlab: unknown host %q; want %q, %q or %q", host, HostLAN, HostRouter, HostWAN)
}

// NetNSPath returns the file that pins host's network namespace, for APIs
// that take one (setns(2), nftables.WithNetNSFd).
func (l *Lab) NetNSPath(host string) (string, error) {
	ns, err := l.Namespace(host)
	if err != nil {
		return "", err
	}
	return filepath.Join(netnsDir, ns), nil
}

func (l *Lab) nsFile(host string) (*os.File, error) {
	ns, err := l.Namespace(host)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.ns[host]; ok {
		return f, nil
	}
	f, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		return nil, fmt.Errorf("natlab: opening namespace %s: %w", ns, err)
	}
	l.ns[host] = f
	return f, nil
}

// ipBatch runs `ip [-n ns] -batch -` with the given commands.
func (l *Lab) ipBatch(ns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command(l.ip, args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) configure() error {
	sysctls := baseSysctls()
	if l.opts.IPv6 {
		if err := l.prepareIPv6(); err != nil {
			return err
		}
		delete(sysctls, "net/ipv6/conf/all/disable_ipv6")
		delete(sysctls, "net/ipv6/conf/default/disable_ipv6")
	}
	tp := l.topology()
	if err := l.configureTopology(tp, sysctls); err != nil {
		return err
	}
	if l.opts.IPv6 {
		if err := l.configureIPv6(); err != nil {
			return err
		}
	}
	return l.loadRulesets(tp)
}

// MiniupnpdURL returns the URL of miniupnpd's root description, or "" with
// Router "none".
func (l *Lab) MiniupnpdURL() string {
	if l.Conf == nil {
		return ""
	}
	return fmt.Sprintf("http://%s/rootDesc.xml", netip.AddrPortFrom(l.RouterLANIP, l.Conf.HTTPPort))
}

// NftRuleset returns the router's current nftables ruleset.
func (l *Lab) NftRuleset(t testing.TB) string {
	t.Helper()
	out, err := l.Run(t, HostRouter, l.nft, "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (l *Lab) startMiniupnpd() error {
	if err := l.startSTUN(); err != nil {
		return err
	}
	c := l.routerConf("", "", l.Router, "00000001", l.LANPrefix)
	l.miniupnpdConf6(c)
	if l.opts.MiniupnpdConf != nil {
		l.opts.MiniupnpdConf(c)
	}
	l.Conf = c
	conf := filepath.Join(l.RunDir, "miniupnpd.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o644); err != nil {
		return fmt.Errorf("natlab: %w", err)
	}
	// -d: foreground, so the PID is ours and the log goes to stderr. The
	// mount only affects the private mount namespace of `ip netns exec`;
	// without a /dev/console it is skipped.
	const wrap = `mount --bind /dev/null /dev/console 2>/dev/null; exec "$@"`
	args := []string{"-d", "-f", conf, "-P", filepath.Join(l.RunDir, "miniupnpd.pid")}
	if l.opts.Quiet {
		args = args[1:]
	}
	p, err := l.start("miniupnpd.log", HostRouter, "sh", append([]string{"-c", wrap, "miniupnpd", l.mustTool("miniupnpd")}, args...)...)
	if err != nil {
		return err
	}
	p.Name = "miniupnpd"
	l.Miniupnpd = p
	if l.opts.Quiet {
		// The parent exits once the daemon has forked: wait for the port.
		addr := netip.AddrPortFrom(l.RouterLANIP, l.Conf.HTTPPort)
		if err := l.waitTCP(HostLAN, addr, 10*time.Second, nil); err != nil {
			return fmt.Errorf("natlab: quiet miniupnpd did not start: %w", err)
		}
		return nil
	}
	if err := l.waitMiniupnpd(p); err != nil {
		return err
	}
	return l.waitMiniupnpd6(p)
}

// routerConf is the miniupnpd configuration of a lab router: listening on
// lan0 for clients (its inside network), wan0 outside, UPnP, NAT-PMP and
// PCP, secure mode, public address learned over STUN from the WAN host
// (the package doc says why). Its files in RunDir start with file ("" or
// "isp-"); who ("" or "ISP ") and ns name it in its description.
func (l *Lab) routerConf(file, who, ns, serial string, clients netip.Prefix) *Conf {
	uuid := make([]byte, 16)
	rand.Read(uuid)
	return &Conf{
		ExtIfname:         RouterWANIf,
		PerformSTUN:       true,
		STUNHost:          l.WANIP,
		STUNPort:          STUNPort,
		ListeningIP:       RouterLANIf,
		HTTPPort:          MiniupnpdHTTPPort,
		EnableUPnP:        true,
		EnableNATPMP:      true,
		SecureMode:        true,
		IPv6Disable:       true,
		MinLifetime:       120,
		MaxLifetime:       86400,
		SystemUptime:      true,
		NotifyInterval:    60,
		TableName:         "filter",
		NATTableName:      "filter",
		ForwardChain:      "miniupnpd",
		NATChain:          "prerouting_miniupnpd",
		NATPostrouteChain: "postrouting_miniupnpd",
		LeaseFile:         filepath.Join(l.RunDir, file+"upnp.leases"),
		MinissdpdSocket:   filepath.Join(l.RunDir, file+"minissdpd.sock"),
		FriendlyName:      "natlab " + who + ns,
		ManufacturerName:  "natlab",
		ModelName:         "natlab " + who + "miniupnpd",
		ModelNumber:       "1",
		Serial:            serial,
		UUID:              fmt.Sprintf("%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:]),
		Rules: []string{
			fmt.Sprintf("allow 1024-65535 %s 1024-65535", clients),
			"deny 0-65535 0.0.0.0/0 0-65535",
		},
	}
}

// MiniupnpdPID returns the running daemon's PID, from its PID file.
func (l *Lab) MiniupnpdPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(l.RunDir, "miniupnpd.pid"))
	if err != nil {
		return 0, fmt.Errorf("natlab: miniupnpd PID file: %w", err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		return 0, fmt.Errorf("natlab: miniupnpd PID file: %w", err)
	}
	return pid, nil
}

func (l *Lab) mustTool(name string) string {
	p, err := testenv.LookPath(name)
	if err != nil {
		return name // checked in Start; let exec report it
	}
	return p
}

// waitMiniupnpd waits until miniupnpd accepts HTTP connections from the
// LAN, polling every few milliseconds, and then checks that it enabled
// port forwarding.
func (l *Lab) waitMiniupnpd(p *Process) error {
	if !l.Conf.PerformSTUN {
		addr := netip.AddrPortFrom(l.RouterLANIP, l.Conf.HTTPPort)
		if err := l.waitTCP(HostLAN, addr, 10*time.Second, p); err != nil {
			p.Stop()
			return fmt.Errorf("natlab: miniupnpd did not start: %w", err)
		}
		return nil
	}
	return l.waitForwarding(p, "miniupnpd", HostLAN, netip.AddrPortFrom(l.RouterLANIP, l.Conf.HTTPPort))
}

// waitForwarding waits until the miniupnpd p (called who in errors)
// accepts HTTP connections at addr from host, polling every few
// milliseconds, and then until it logged that it enabled port forwarding.
// STUN runs before the HTTP socket opens, so the verdict is logged by
// then; the short wait only covers the log write.
func (l *Lab) waitForwarding(p *Process, who, host string, addr netip.AddrPort) error {
	if err := l.waitTCP(host, addr, 10*time.Second, p); err != nil {
		p.Stop()
		return fmt.Errorf("natlab: %s did not start: %w", who, err)
	}
	for range 200 {
		out := p.Output()
		switch {
		case strings.Contains(out, "Port forwarding is now enabled"):
			return nil
		case strings.Contains(out, "Port forwarding is now disabled"):
			return fmt.Errorf("natlab: %s disabled port forwarding after the STUN test (see %s)", who, p.Log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("natlab: %s is up but never logged \"Port forwarding is now enabled\" (see %s)", who, p.Log)
}

// WaitTCP polls until a TCP connection from host to addr succeeds, for a
// server started with Start; p, if not nil, is that server, and its exit
// ends the wait early with its output in the error.
func (l *Lab) WaitTCP(t testing.TB, host string, addr netip.AddrPort, timeout time.Duration, p *Process) {
	t.Helper()
	if err := l.waitTCP(host, addr, timeout, p); err != nil {
		t.Fatal(err)
	}
}

func (l *Lab) waitTCP(host string, addr netip.AddrPort, timeout time.Duration, p *Process) error {
	deadline := time.Now().Add(timeout)
	for {
		if p != nil {
			if exited, _ := p.Exited(); exited {
				return errExited(p)
			}
		}
		// Refused connections fail at once; the per-try limit only covers a
		// lost SYN.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		c, err := l.DialContext(ctx, host, tcpNetwork("tcp", addr.Addr()), addr.String())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("natlab: nothing accepts TCP on %v from %s after %v (last error: %v)", addr, host, timeout, err)
			if p != nil {
				return fmt.Errorf("%s; %s output (%s):\n%s", msg, p.Name, p.Log, tail(p.Output()))
			}
			return errors.New(msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startSTUN runs the STUN responder on the WAN host: both addresses, ports
// STUNPort and STUNPort+1.
func (l *Lab) startSTUN() error {
	var socks stun.Sockets
	for a, ip := range []netip.Addr{l.WANIP, l.WANIP2} {
		for p, port := range []uint16{STUNPort, STUNPort + 1} {
			pc, err := l.ListenPacket(HostWAN, "udp4", netip.AddrPortFrom(ip, port).String())
			if err != nil {
				for _, row := range socks {
					for _, c := range row {
						if c != nil {
							c.Close()
						}
					}
				}
				return fmt.Errorf("natlab: STUN responder on the WAN host: %w", err)
			}
			socks[a][p] = pc
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&stun.Server{}).Serve(ctx, socks)
	}()
	l.stopSTUN = func() { cancel(); <-done }
	return nil
}

// teardown stops everything the lab started and deletes its namespaces.
func (l *Lab) teardown(t testing.TB) {
	l.mu.Lock()
	procs := append([]*Process(nil), l.procs...)
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	if l.stopSTUN != nil {
		l.stopSTUN()
	}
	l.spawn.close()
	// Commands made by Cmd are killed by what the lab knows of them, their
	// process groups, whether or not they have entered their namespace
	// yet. Whatever else still runs in a lab namespace was started there
	// by this test (a child that left its group, a Run command's leftover
	// child): the namespaces are ours alone.
	l.killCmds()
	var paths []string
	for _, ns := range l.created {
		paths = append(paths, filepath.Join(netnsDir, ns))
	}
	if err := emptyNamespaces(paths, 5*time.Second); err != nil {
		t.Errorf("natlab: teardown: %v", err)
	}
	l.mu.Lock()
	for _, f := range l.ns {
		f.Close()
	}
	l.ns = map[string]*os.File{}
	l.mu.Unlock()
	var del []string
	for _, ns := range l.created {
		del = append(del, "netns del "+ns)
	}
	if len(del) > 0 {
		if err := l.ipBatch("", del...); err != nil {
			t.Errorf("natlab: teardown: %v", err)
		}
	}
	if t.Failed() {
		l.dumpLogs(t)
		t.Logf("natlab: test failed; lab files kept in %s", l.RunDir)
		return
	}
	os.RemoveAll(l.RunDir)
}

// dumpLogs writes the tail of every log in RunDir to t.
func (l *Lab) dumpLogs(t testing.TB) {
	logs, _ := filepath.Glob(filepath.Join(l.RunDir, "*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 4000 {
			b = append([]byte("…"), b[len(b)-4000:]...)
		}
		t.Logf("natlab: %s:\n%s", filepath.Base(p), b)
	}
}
