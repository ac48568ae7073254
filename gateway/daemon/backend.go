package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/nft"
	"github.com/portfwd/portfwd/gateway/relay"
	"github.com/portfwd/portfwd/internal/netroute"
)

// openBackend opens the backend the configuration names.
func (d *Daemon) openBackend(ctx context.Context) (gateway.Backend, error) {
	cfg := &d.cfg
	switch cfg.resolvedBackend() {
	case BackendNFT:
		nc := nft.Config{Table: cfg.NFT.Table, ExternalInterfaces: cfg.Interfaces.External, Logger: d.log,
			ForwardTable: cfg.NFT.ForwardTable, ForwardChain: cfg.NFT.ForwardChain, Rebuild: cfg.NFT.RebuildOnStart}
		if cfg.NFT.Hairpin {
			nc.InternalInterfaces = cfg.Interfaces.Internal
		}
		// The pool's addresses but the gateway's own: its mappings are
		// the address-less maps' (see nft.Config.Pool).
		pool, _ := parsePool(cfg.NATPMP.PCPExternalPool) // validated
		own, _ := d.wan.ext.current()
		for _, a := range pool {
			if a != own {
				nc.Pool = append(nc.Pool, a)
			}
		}
		b, err := nft.New(ctx, nc)
		if err != nil {
			return nil, fmt.Errorf("opening the nft backend (it needs root or CAP_NET_ADMIN; --backend relay needs neither): %w", err)
		}
		d.nftb = b
		if where, shared := b.PinholeTarget(); shared {
			d.log.Info("IPv6 pinholes are accepted in " + where + " of your firewall (nft.forward_table, nft.forward_chain)")
		} else if cfg.IPv6.Pinholes && internalIPv6(cfg) {
			d.log.Warn("IPv6 pinholes are accepted in " + where + ", portfwd's own table: a drop in your forward chain still applies to them, so they work only where your policy lets that traffic through; set nft.forward_table and nft.forward_chain to a chain your forward chain jumps to (OpenWrt fw4: \"inet fw4\", \"upnp_forward\")")
		}
		return b, nil
	case BackendRelay:
		bind, follow := d.relayBind()
		d.log.Info("relay backend: external ports are bound on " + bind.String())
		rc := relay.Config{
			BindAddr:        bind,
			UDPIdleTimeout:  time.Duration(cfg.Relay.UDPIdleTimeout),
			MaxConnsPerRule: cfg.Relay.MaxConnsPerRule,
			Logger:          d.log,
		}
		var follow6 bool
		if cfg.IPv6.Pinholes {
			rc.PinholeAddrs, follow6 = d.relayPinholeAddrs()
			if len(rc.PinholeAddrs) > 0 {
				d.log.Info(fmt.Sprintf("relay backend: IPv6 pinholes are relayed from %v, the external interface's IPv6 addresses, at each pinhole's port: peers reach them there, not at the LAN host's own address", rc.PinholeAddrs))
			} else {
				d.log.Warn("relay backend: no external interface IPv6 address to relay IPv6 pinholes from; they are relayed from every IPv6 address, LAN side included, until one appears")
			}
		}
		if follow || follow6 {
			d.wan.relay = newRelayBackend(rc, d.log)
			d.wan.relay.follow4, d.wan.relay.follow6 = follow, follow6
			return d.wan.relay, nil
		}
		return relay.New(rc), nil
	default:
		d.log.Warn("memory backend: mappings are recorded but no traffic is forwarded")
		return gateway.NewMemory(), nil
	}
}

// relayBind picks the relay's bind address: the configured one, else the
// external interface's address (which the relay then follows when it
// changes), else the fixed external address when it is one of this
// host's, else every address.
func (d *Daemon) relayBind() (addr netip.Addr, fromInterface bool) {
	cfg := &d.cfg
	if cfg.Relay.Bind != "" {
		return netip.MustParseAddr(cfg.Relay.Bind), false // validated
	}
	if ext := cfg.Interfaces.External; len(ext) > 0 {
		if a, err := interfaceIPv4(ext[0]); err == nil {
			return a, true
		}
	}
	if a, _ := d.wan.ext.current(); a.IsValid() && netroute.IsLocalAddr(a) {
		return a, false
	}
	d.log.Warn("relay backend: no external interface address to bind; binding external ports on every address, LAN side included")
	return netip.IPv4Unspecified(), false
}

// relayPinholeAddrs picks the addresses the relay listens on for IPv6
// pinholes: the global IPv6 addresses of the external interfaces, which
// it follows (follow is true when there is an external interface to
// follow). None means every IPv6 address.
func (d *Daemon) relayPinholeAddrs() (addrs []netip.Addr, follow bool) {
	for _, name := range d.cfg.Interfaces.External {
		if strings.HasSuffix(name, "*") {
			continue
		}
		follow = true
		addrs = append(addrs, ipv6AddrsOf(name)...)
	}
	// sort.Slice, not slices.SortedFunc: one sort routine in the router
	// build, not one more per element type.
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	return slices.Compact(addrs), follow
}
