package portmap

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/portfwd/portfwd/pcp"
	"golang.org/x/net/ipv6"
)

// announcementGroup6 is where PCP servers announce over IPv6 (RFC 6887
// §14.1.3): the link-local all-nodes group, on the client port 5350.
var announcementGroup6 = netip.AddrPortFrom(netip.IPv6LinkLocalAllNodes(), pcp.ClientPort)

// openAnnouncementSocket6 opens a socket on port 5350 of every IPv6
// address, joined to ff02::1 on every interface that is up and can
// multicast (loopback aside), to hear the PCP ANNOUNCEs a router sends
// over IPv6 when it restarts. A link-local group address cannot be bound
// without naming one interface, so the socket is bound to [::] and what
// it reads is checked as an announcement (parseAnnouncement) and by its
// source. Several listeners may share the port. The caller closes it.
func openAnnouncementSocket6(ctx context.Context) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	addr := netip.AddrPortFrom(netip.IPv6Unspecified(), announcementGroup6.Port()).String()
	pc, err := lc.ListenPacket(ctx, "udp6", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s for PCP announcements over IPv6: %w", addr, err)
	}
	p := ipv6.NewPacketConn(pc)
	group := &net.UDPAddr{IP: announcementGroup6.Addr().AsSlice()}
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
			// Every IPv6 interface is in ff02::1 already; joining says
			// so to this socket, and an error changes nothing.
			p.JoinGroup(&ifi, group)
		}
	}
	return pc, nil
}

// gatewayHost is the address the gateway is known by: the PCP server's,
// or the host of the firewall service's control URL (with its zone, the
// interface, when link-local).
func (p *Pinholer) gatewayHost() netip.Addr {
	if p.method == PCP {
		return p.pcpServer.Addr()
	}
	u, err := url.Parse(p.controlURL)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(u.Hostname())
	return a
}

// listenAnnouncements6 signals wake whenever the gateway sends a PCP
// ANNOUNCE over IPv6 (a restart: it may have lost the pinhole), until ctx
// ends. The gateway's addresses are those routerAddrs6Of gives for it, as
// for the watcher's router. Announcements from any other address are not the
// gateway's news. Failure to open the socket leaves the periodic
// renewals.
func (k *PinholeKeeper) listenAnnouncements6(ctx context.Context, wake chan<- struct{}) {
	host := k.p.gatewayHost()
	if !host.IsValid() {
		return
	}
	pc, err := openAnnouncementSocket6(ctx)
	if err != nil {
		k.p.log.Info("keep: not listening for PCP announcements over IPv6", "err", err)
		return
	}
	defer pc.Close()
	addrs := routerAddrs6Of(host, defaultRoutes6())
	readParsedAnnouncements(ctx, pc, func(a announcement) {
		if a.version != pcp.Version || !fromAny(a, addrs) {
			return
		}
		k.p.log.Debug("keep: PCP announcement over IPv6", "from", a.from, "epoch", strconv.FormatUint(uint64(a.epoch), 10))
		select {
		case wake <- struct{}{}:
		default: // a renewal is already due
		}
	})
}
