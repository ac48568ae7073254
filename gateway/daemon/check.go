package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/gateway/nft"
	"github.com/portfwd/portfwd/internal/addrclass"
)

// Finding is one result of Check: a sentence, and whether it is a problem
// that would keep the gateway from starting or from forwarding.
type Finding struct {
	Problem bool
	Text    string
}

func (f Finding) String() string {
	if f.Problem {
		return "problem: " + f.Text
	}
	return "ok: " + f.Text
}

// Check validates cfg and tests what the daemon will need, without
// starting it or changing anything: the interfaces, the external address,
// access to the backend (for nft, the forward-chain problems nft.Check
// reports, such as a forward chain with policy drop and no
// `ct status dnat accept`; for relay, that external ports can be bound),
// the ports of the servers and the state directory. A configuration with
// no problem yields only findings with Problem false.
func Check(ctx context.Context, cfg Config) []Finding {
	var out []Finding
	ok := func(format string, a ...any) { out = append(out, Finding{Text: fmt.Sprintf(format, a...)}) }
	bad := func(format string, a ...any) {
		out = append(out, Finding{Problem: true, Text: fmt.Sprintf(format, a...)})
	}

	if err := cfg.Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("configuration: %v", e)
		}
		return out
	}
	ok("configuration is valid")
	for _, line := range cfg.PolicySummary() {
		ok("policy: %s", line)
	}
	if err := probeInstance(&cfg); err != nil {
		bad("%v", err)
	} else {
		what := "the state directory"
		if cfg.resolvedBackend() == BackendNFT {
			what += " or nft table inet " + cfg.NFT.Table
		}
		ok("no other portfwd gateway uses %s", what)
	}

	for _, name := range cfg.Interfaces.Internal {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			bad("internal interface %s does not exist", name)
			continue
		}
		addrs, err := interfaceIPv4s(name)
		switch {
		case err != nil || len(addrs) == 0:
			bad("internal interface %s has no IPv4 address: UPnP and NAT-PMP are served on its addresses", name)
		case ifi.Flags&net.FlagUp == 0:
			bad("internal interface %s is down", name)
		default:
			ok("internal interface %s: %s", name, joinAddrs(addrs))
		}
		if cfg.UPnP.Enabled && cfg.UPnP.SSDP && ifi.Flags&net.FlagMulticast == 0 {
			bad("internal interface %s cannot do multicast, so SSDP discovery cannot work there: enable it (ip link set %s multicast on) or set upnp.ssdp = false", name, name)
		}
	}
	if problems := roleProblems(&cfg); len(problems) > 0 {
		for _, p := range problems {
			if cfg.Interfaces.Force {
				ok("interfaces.force is set, so the gateway starts anyway, although: %s", p)
			} else {
				bad("%s; pass --force (interfaces.force) if this is really what you mean", p)
			}
		}
	} else if len(cfg.Interfaces.Internal) > 0 {
		ok("interface roles: the internal interfaces carry no default route and no public address, and the default route leaves through the external side")
	}
	for _, name := range cfg.Interfaces.External {
		if strings.HasSuffix(name, "*") {
			ok("external interfaces matching %s", name)
			continue
		}
		if _, err := net.InterfaceByName(name); err != nil {
			bad("external interface %s does not exist (yet?): mappings only apply to traffic arriving on it", name)
		} else {
			ok("external interface %s exists", name)
		}
	}

	ext := newExternalAddr(cfg.ExternalAddress, cfg.Interfaces.External, discardLogger())
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := ext.update(actx)
	cancel()
	if err != nil {
		bad("cannot learn the external address from %s: %v", ext.source(), err)
	} else {
		a, _ := ext.current()
		c := addrclass.Of(a)
		switch {
		case c == addrclass.Public:
			ok("external address %s (%s, from %s)", a, c, ext.source())
		case cfg.ExternalAddress.RefusePrivateExternal:
			bad("external address %s is %s and refuse_private_external is set, so every mapping would be refused: %s", a, c, c.Warning())
		default:
			ok("external address %s (%s, from %s); note: %s", a, c, ext.source(), c.Warning())
		}
	}

	out = append(out, upstreamFinding(cfg))

	switch backend := cfg.resolvedBackend(); backend {
	case BackendNFT:
		nc := nft.Config{Table: cfg.NFT.Table, ExternalInterfaces: cfg.Interfaces.External}
		if cfg.NFT.Hairpin {
			nc.InternalInterfaces = cfg.Interfaces.Internal
		}
		problems, err := nft.Check(ctx, nc)
		switch {
		case err != nil:
			bad("cannot inspect nftables (the nft backend needs root or CAP_NET_ADMIN; --backend relay needs neither): %v", err)
		case len(problems) == 0:
			ok("nftables: forwarded connections will be accepted (no forward chain drops DNATed traffic, ip_forward is on)")
		default:
			for _, p := range problems {
				bad("nftables: %s", p)
			}
		}
		if cfg.IPv6.Pinholes && !internalIPv6(&cfg) {
			ok("IPv6 pinholes: the internal interfaces have no global or unique-local IPv6 address, so there is no IPv6 LAN to open pinholes for")
		} else if cfg.IPv6.Pinholes {
			nc.ForwardTable, nc.ForwardChain = cfg.NFT.ForwardTable, cfg.NFT.ForwardChain
			oks, problems, err := nft.CheckPinholes(ctx, nc)
			if err != nil {
				bad("cannot inspect nftables for IPv6 pinholes: %v", err)
			}
			for _, s := range oks {
				ok("nftables: %s", s)
			}
			for _, p := range problems {
				bad("nftables: %s", p)
			}
		}
	case BackendRelay:
		d := &Daemon{cfg: cfg, log: discardLogger()}
		d.wan.ext = ext
		bind, _ := d.relayBind()
		if err := tryBind("tcp4", netip.AddrPortFrom(bind, 0)); err != nil {
			bad("relay backend cannot bind external ports on %s: %v", bind, err)
		} else {
			ok("relay backend can bind external ports on %s", bind)
		}
		if cfg.IPv6.Pinholes {
			if addrs, _ := d.relayPinholeAddrs(); len(addrs) > 0 {
				ok("relay backend: IPv6 pinholes are relayed from %v (the external interface's IPv6 addresses) at each pinhole's port; peers reach them there, not at the LAN host's own address", addrs)
				for _, a := range addrs {
					if err := tryBind("tcp6", netip.AddrPortFrom(a, 0)); err != nil {
						bad("relay backend cannot bind IPv6 pinholes on %s: %v", a, err)
					}
				}
			} else {
				ok("relay backend: no external interface with a global IPv6 address: IPv6 pinholes are relayed from every IPv6 address, LAN side included, until one has one")
			}
		}
		if os.Geteuid() != 0 {
			if start := unprivilegedPortStart(); start > 1 {
				ok("relay backend: without root, external ports below %d cannot be mapped (net.ipv4.ip_unprivileged_port_start)", start)
			}
		}
	case BackendMemory:
		ok("memory backend: mappings are recorded but no traffic is forwarded")
	}

	if cfg.UPnP.Enabled {
		for _, name := range cfg.Interfaces.Internal {
			addrs, _ := interfaceIPv4s(name)
			for _, a := range addrs {
				ap := netip.AddrPortFrom(a, uint16(cfg.UPnP.HTTPPort))
				if err := tryBind("tcp4", ap); err != nil {
					bad("UPnP HTTP port %s: %v (is the gateway, or miniupnpd, already running?)", ap, err)
				} else {
					ok("UPnP HTTP port %s is free", ap)
				}
			}
		}
	}
	if cfg.NATPMP.Enabled {
		ap := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(cfg.NATPMP.Port))
		if err := tryBind("udp4", ap); err != nil {
			bad("NAT-PMP port UDP %d: %v (is the gateway, or miniupnpd, already running?)", cfg.NATPMP.Port, err)
		} else {
			ok("NAT-PMP port UDP %d is free", cfg.NATPMP.Port)
		}
	}
	if cfg.Admin.Address != "" {
		ap := netip.MustParseAddrPort(cfg.Admin.Address)
		if err := tryBind("tcp", ap); err != nil {
			bad("admin address %s: %v", ap, err)
		} else {
			ok("admin address %s is free", ap)
		}
	}

	if cfg.StateDir == "" {
		ok("no state directory: leases will not survive a restart")
	} else if err := checkWritable(cfg.StateDir); err != nil {
		bad("state directory %s: %v", cfg.StateDir, err)
	} else {
		ok("state directory %s is writable", cfg.StateDir)
	}
	return out
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func interfaceIPv4s(name string) ([]netip.Addr, error) {
	l := &lanPeers{}
	return l.addrsOf(name)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// tryBind binds ap and closes it at once.
func tryBind(network string, ap netip.AddrPort) error {
	var err error
	if strings.HasPrefix(network, "udp") {
		var pc net.PacketConn
		if pc, err = net.ListenPacket(network, ap.String()); err == nil {
			pc.Close()
		}
	} else {
		var ln net.Listener
		if ln, err = net.Listen(network, ap.String()); err == nil {
			ln.Close()
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EADDRINUSE):
		return errors.New("in use by another program")
	case errors.Is(err, syscall.EACCES):
		return errors.New("needs privileges (a port below 1024: run as root or grant CAP_NET_BIND_SERVICE)")
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return errors.New("not an address of this host")
	}
	return err
}

// unprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start (Linux),
// 1024 when it cannot be read.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// checkWritable checks that dir exists or can be created, and takes a file.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(filepath.Clean(name))
}

// internalIPv6 reports whether an internal interface has a global or
// unique-local IPv6 address: only then are there IPv6 pinholes to serve,
// and their nftables findings matter.
func internalIPv6(cfg *Config) bool {
	for _, name := range cfg.Interfaces.Internal {
		if len(ipv6AddrsOf(name)) > 0 {
			return true
		}
	}
	return false
}
