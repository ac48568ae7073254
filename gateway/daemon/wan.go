package daemon

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portfwd/portfwd/gateway/upstream"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/upnp"
)

// wanSide is what the daemon knows of its external side, and follows.
type wanSide struct {
	ext *externalAddr
	// up chains mappings to the router above (double NAT); nil with
	// upstream = "off" or no external interface.
	up *upstream.Manager
	// addrChanged is when the external address last changed, for PCP's
	// epoch (see pcpEpoch); nil until it does.
	addrChanged atomic.Pointer[time.Time]
	// relay is the relay backend when it follows the external interface's
	// address (see relayBackend); nil otherwise.
	relay *relayBackend
	// addrWatch reports address changes as they happen (Linux); nil when
	// nothing needs them or they are unavailable. wake carries them to the
	// external address's refresh loop.
	addrWatch *addrWatcher
	wake      chan struct{}
	// probeMu guards probeList, the addresses probeAddrs gives, read at
	// probeAt.
	probeMu   sync.Mutex
	probeList []netip.Addr
	probeAt   time.Time
}

// openAddrWatch subscribes to the host's address changes when something
// depends on the external interface's address: the external address read
// from it (or learned over STUN, which is asked again when it changes),
// and the relay bound to it. Without them (another OS, no netlink) the
// address is still read every refresh.
func (d *Daemon) openAddrWatch() {
	d.wan.wake = make(chan struct{}, 1)
	if d.cfg.ExternalAddress.Source == SourceFixed && d.wan.relay == nil || len(d.cfg.Interfaces.External) == 0 {
		return
	}
	w, err := openAddrWatcher(0)
	if err != nil {
		if addrEventsSupported {
			d.log.Warn("external address changes will be noticed at the next refresh only", "refresh", d.wan.ext.refresh, "err", err)
		}
		return
	}
	d.wan.addrWatch = w
}

// followAddresses acts on changes of the external interfaces' addresses
// as the kernel reports them: the external address is read (or asked from
// STUN) again at once, and the relay moves to the interface's new address.
// A watcher failure falls back to the periodic refresh.
func (d *Daemon) followAddresses(ctx context.Context) {
	external := d.cfg.Interfaces.External
	concerns := func(ev addrEvent) bool { return matchInterface(ev.interfaceName(), external) }
	err := followAddrEvents(ctx, d.wan.addrWatch, concerns, func(evs []addrEvent) {
		defer d.catch("address event")
		for _, ev := range evs {
			what := "added"
			if ev.Deleted {
				what = "removed"
			}
			d.log.Debug("external interface address "+what, "interface", ev.interfaceName(), "address", ev.Prefix)
		}
		if evs == nil {
			d.log.Info("address events were lost; reading the external address again")
		}
		if d.cfg.ExternalAddress.Source != SourceFixed {
			select {
			case d.wan.wake <- struct{}{}:
			default: // a read is already due, and will see this change
			}
		}
		if d.wan.relay != nil {
			d.followRelay(ctx)
		}
	})
	if err != nil {
		d.log.Warn("stopped following address changes; the external address is now read every refresh only", "refresh", d.wan.ext.refresh, "err", err)
	}
}

// followRelay moves the relay to the external interface's current
// address, if it has one and it is another, and its pinholes to the
// external interfaces' IPv6 addresses, if they changed and there is one.
func (d *Daemon) followRelay(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if d.wan.relay.follow4 {
		// No address for now: the ports stay where they were.
		if a, err := interfaceIPv4(d.cfg.Interfaces.External[0]); err == nil && a != d.wan.relay.bindAddr() {
			if err := d.wan.relay.rebind(rctx, a); err != nil {
				d.metrics.error(errKindBackend)
				d.log.Error("relay backend: some ports could not move to the new address", "err", err)
			}
		}
	}
	if d.wan.relay.follow6 {
		if addrs, _ := d.relayPinholeAddrs(); len(addrs) > 0 {
			if err := d.wan.relay.rebindPinholes(rctx, addrs); err != nil {
				d.metrics.error(errKindBackend)
				d.log.Error("relay backend: some pinholes could not move to the new addresses", "err", err)
			}
		}
	}
}

// probeAddrsTTL is how long the external addresses probed for the router's
// own services are reused: reading them costs a netlink dump, and they
// change seldom (a change is seen within this delay).
const probeAddrsTTL = time.Second

// probeAddrs are the addresses on which the router's own services are
// looked for: the external addresses, or, when there is none, every
// address (0.0.0.0), which errs on the side of refusing.
func (d *Daemon) probeAddrs() []netip.Addr {
	d.wan.probeMu.Lock()
	defer d.wan.probeMu.Unlock()
	if now := time.Now(); d.wan.probeAt.IsZero() || now.Sub(d.wan.probeAt) > probeAddrsTTL || now.Before(d.wan.probeAt) {
		// Once each: the external address is usually also the external
		// interface's, and every address probed costs four system calls
		// per port given.
		// sort.Slice, not slices.SortedFunc: one sort routine in the
		// router build, not one more per element type.
		addrs := d.externalAddrs()
		sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
		d.wan.probeList = slices.Compact(addrs)
		if len(d.wan.probeList) == 0 {
			d.wan.probeList = []netip.Addr{netip.IPv4Unspecified()}
		}
		d.wan.probeAt = now
	}
	return d.wan.probeList
}

// externalAddrs are the addresses through which the Internet reaches the
// router: those of the external interfaces, and the external address.
func (d *Daemon) externalAddrs() []netip.Addr {
	var out []netip.Addr
	for _, name := range d.cfg.Interfaces.External {
		if strings.HasSuffix(name, "*") {
			ifs, _ := net.Interfaces()
			for _, ifi := range ifs {
				if strings.HasPrefix(ifi.Name, strings.TrimSuffix(name, "*")) {
					ps, _ := netroute.InterfaceAddrs(ifi.Name)
					for _, p := range ps {
						out = append(out, p.Addr())
					}
				}
			}
			continue
		}
		ps, _ := netroute.InterfaceAddrs(name)
		for _, p := range ps {
			out = append(out, p.Addr())
		}
	}
	if a := d.wan.ext.Get(); a.IsValid() {
		out = append(out, a)
	}
	return out
}

// ExternalAddr returns the external address reported to clients (the zero
// Addr while there is none).
func (d *Daemon) ExternalAddr() netip.Addr { return d.wan.ext.Get() }

// onAddressChange tells the LAN about a new external address: PCP's
// epoch starts again, NAT-PMP and PCP announcements go out, and UPnP event
// subscribers get ExternalIPAddress. (The core reads the address through
// Config.ExternalAddr, and the nft rules match interfaces, not addresses:
// neither needs more.)
func (d *Daemon) onAddressChange(netip.Addr) {
	defer d.catch("address change")
	now := time.Now()
	d.wan.addrChanged.Store(&now)
	if d.pmpSide.server != nil {
		d.pmpSide.server.Announce()
	}
	if d.upnpSide.publisher == nil {
		return
	}
	status, _, _ := d.upnpSide.svc.ConnectionStatus(context.Background())
	ip := ""
	if a := d.wan.ext.Get(); a.Is4() {
		ip = a.String()
	}
	d.upnpSide.publisher.Notify(d.upnpSide.events.conn, []upnp.Arg{
		{Name: "ExternalIPAddress", Value: ip},
		{Name: "ConnectionStatus", Value: status},
	})
	if d.upnpSide.events.common != "" {
		d.upnpSide.publisher.Notify(d.upnpSide.events.common, []upnp.Arg{{Name: "PhysicalLinkStatus", Value: d.linkStatus()}})
	}
}

// setupUpstream builds the Manager that chains mappings to the router
// above, unless upstream = "off" or there is no external interface to
// find it through.
func (d *Daemon) setupUpstream() {
	if d.cfg.Upstream == upstream.ModeOff || len(d.cfg.Interfaces.External) == 0 ||
		strings.HasSuffix(d.cfg.Interfaces.External[0], "*") {
		return
	}
	iface := d.cfg.Interfaces.External[0]
	d.wan.ext.chaining = true
	d.wan.up = upstream.New(upstream.Config{
		Mode:          d.cfg.Upstream,
		Protocols:     d.cfg.UpstreamProtocols,
		Interface:     iface,
		CheckInterval: time.Duration(d.cfg.UpstreamCheckInterval),
		LocalAddr: func() netip.Addr {
			a, _ := interfaceIPv4(iface)
			return a
		},
		Description: "portfwd",
		OnPublic: func(a netip.Addr) {
			if d.wan.ext.setPublic(a) {
				d.onAddressChange(d.wan.ext.Get())
			}
		},
		OnChanged: func() { d.onAddressChange(d.wan.ext.Get()) },
		Logger:    d.log,
	})
}
