package daemon

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/portfwd/portfwd/pmp"
)

// pmpSide is UDP 5351: NAT-PMP and PCP, with their announcements.
type pmpSide struct {
	conn   net.PacketConn
	conn6  net.PacketConn // PCP over IPv6 (pinholes); nil without IPv6
	server *pmp.Server
}

// NATPMPAddrs returns where NAT-PMP is answered: every IPv4 address of the
// internal interfaces, with the NAT-PMP port.
func (d *Daemon) NATPMPAddrs() []netip.AddrPort {
	if d.pmpSide.conn == nil {
		return nil
	}
	local, _ := netip.ParseAddrPort(d.pmpSide.conn.LocalAddr().String())
	var out []netip.AddrPort
	for _, name := range d.cfg.Interfaces.Internal {
		addrs, _ := d.lan.addrsOf(name)
		for _, a := range addrs {
			out = append(out, netip.AddrPortFrom(a, local.Port()))
		}
	}
	return out
}

// setupNATPMP opens the socket of NAT-PMP and PCP and builds their
// server (package pmp) over the protocol adapters. It listens on every
// address; the server answers only requests that arrived on an internal
// interface, addressed to that interface, and announces on the internal
// interfaces only.
func (d *Daemon) setupNATPMP(ctx context.Context) error {
	pc, err := pmp.Listen(ctx, ":"+strconv.Itoa(d.cfg.NATPMP.Port))
	if err != nil {
		return err
	}
	d.pmpSide.conn = pc
	d.pmpSide.server = &pmp.Server{
		NATPMP:          &natpmpHandler{d.pmpAdapter()},
		NATPMPEpoch:     d.natpmpEpoch,
		Interfaces:      d.cfg.Interfaces.Internal,
		ExternalAddress: d.wan.ext.Get,
		Logger:          d.log,
		RequestContext:  func(ctx context.Context) context.Context { ctx, _ = withPMPNote(ctx); return ctx },
		Answered:        d.onPMPAnswer,
		// Requests read together commit together: one nft transaction
		// and one journal write for the batch (nil in the router build,
		// which reads one request at a time: pmpgroup_*.go).
		Group: pmpGroup(),
	}
	if d.cfg.NATPMP.PCP {
		d.pmpSide.server.PCP = &pcpHandler{d.pmpAdapter()}
		d.pmpSide.server.PCPEpoch = d.pcpEpoch
		d.pmpSide.server.PCPOptions = pcpOptions(d.cfg.Policy)
		// PCP over IPv6: MAP opens pinholes. The socket listens on every
		// IPv6 address; the server answers only the internal interfaces.
		pc6, err := pmp.ListenIPv6(ctx, "[::]:"+strconv.Itoa(local4Port(pc)))
		if err != nil {
			d.log.Warn("no PCP over IPv6 (IPv6 pinholes only through UPnP)", "err", err)
		} else {
			d.pmpSide.conn6 = pc6
		}
	}
	return nil
}

// natpmpEpoch is NAT-PMP's seconds since start of epoch: the time since
// the epoch origin the store keeps, which resets only when the leases are
// lost, exactly when clients must re-create their mappings. A new external
// address does not reset it: NAT-PMP's announcements and answers carry the
// address itself.
func (d *Daemon) natpmpEpoch() uint32 {
	if d.quirks.PMPEpochZero {
		return 0
	}
	return epochSince(d.epoch)
}

// pcpEpoch is PCP's epoch: NAT-PMP's, except that it also starts again
// when the external address changes, as RFC 6887 §8.5 requires. PCP's
// ANNOUNCE carries no address: its epoch going back is what makes a PCP
// client map again, and so learn the new address.
func (d *Daemon) pcpEpoch() uint32 {
	if d.quirks.PMPEpochZero {
		return 0
	}
	origin := d.epoch
	if t := d.wan.addrChanged.Load(); t != nil && t.After(origin) {
		origin = *t
	}
	return epochSince(origin)
}

// epochSince is the whole seconds since origin, as the epoch fields carry
// them.
func epochSince(origin time.Time) uint32 {
	s := time.Since(origin) / time.Second
	if s < 0 {
		return 0 // the clock went back past the origin
	}
	return uint32(min(s, 1<<32-1))
}

// pmpAdapter returns what the NAT-PMP and PCP adapters work with.
func (d *Daemon) pmpAdapter() pmpAdapter {
	return pmpAdapter{core: d.core, ext: d.wan.ext, metrics: d.metrics, log: d.log, noExternalIP: d.quirks.NoExternalIP,
		pinholeAddr: d.relayPinholeAddr}
}

// relayPinholeAddr is the address at which the relay backend relays
// pinholes, its first external IPv6 address; the zero Addr with another
// backend, or a relay listening on every address.
func (d *Daemon) relayPinholeAddr() netip.Addr {
	if b, ok := d.backend.(interface{ PinholeAddrs() []netip.Addr }); ok {
		for _, a := range b.PinholeAddrs() {
			if !a.IsUnspecified() {
				return a
			}
		}
	}
	return netip.Addr{}
}

// local4Port is the port the IPv4 socket got (the configured one, or the
// one picked for port 0), which the IPv6 socket takes too.
func local4Port(pc net.PacketConn) int {
	ap, _ := netip.ParseAddrPort(pc.LocalAddr().String())
	return int(ap.Port())
}
