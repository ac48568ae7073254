package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/portfwd/portfwd/ssdp"
)

// ssdpGroup is where UPnP devices multicast their NOTIFYs (UDA 1.1 §1.2).
var ssdpGroup = netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, 255, 250}), 1900)

// listenNotify watches the external interface for the router above's SSDP
// NOTIFY ssdp:alive. UPnP has no epoch: a device that restarts announces
// itself with a new BOOTID.UPNP.ORG (UDA 1.1 §1.2.2; miniupnpd sends its
// NOTIFYs once it serves, with the start time as BOOTID), so a changed
// BOOTID makes every half be made again at once, instead of at the next
// check. The first NOTIFY seen when no BOOTID is known yet (the router
// above was named by URL, or its search answer had none) asks for a check
// now: a router above that restarted reports a shorter uptime.
//
// The socket is bound to the SSDP group address, never to the wildcard
// address, so that it takes no unicast datagram from the gateway's own
// SSDP responder on the LAN side; only datagrams that arrived on the
// external interface from the router above's address, naming a
// description it serves, count.
func (u *Manager) listenNotify(ctx context.Context) {
	ifi, err := net.InterfaceByName(u.cfg.Interface)
	if err != nil {
		u.log.Warn("cannot listen for the router above's SSDP announcements; its restarts are noticed at the next check only",
			"interface", u.cfg.Interface, "err", err)
		return
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			_ = setBindToDevice(int(fd), u.cfg.Interface)
			_ = setMulticastAll(int(fd), false)
		})
		return nil
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", ssdpGroup.String())
	if err != nil {
		u.log.Warn("cannot listen for the router above's SSDP announcements; its restarts are noticed at the next check only",
			"group", ssdpGroup, "check_interval", u.cfg.CheckInterval, "err", err)
		return
	}
	defer pc.Close()
	p := ipv4.NewPacketConn(pc)
	if err := p.JoinGroup(ifi, &net.UDPAddr{IP: ssdpGroup.Addr().AsSlice()}); err != nil {
		u.log.Warn("cannot join the SSDP group on the external interface; the router above's restarts are noticed at the next check only",
			"interface", u.cfg.Interface, "err", err)
		return
	}
	if err := p.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		u.log.Warn("cannot tell the interface of SSDP announcements (IP_PKTINFO); not listening for them", "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 2048)
	for {
		n, cm, from, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok || cm == nil || cm.IfIndex != ifi.Index {
			continue
		}
		src := ua.AddrPort().Addr().Unmap()
		gw, gerr := u.gatewayAddr()
		if gerr != nil || src != gw {
			continue
		}
		r, err := ssdp.ParseResponse(buf[:n])
		if err != nil {
			if errors.Is(err, ssdp.ErrByeBye) {
				u.log.Debug("the router above says it is leaving (SSDP byebye)", "from", src)
			}
			continue
		}
		if loc, err := url.Parse(r.Location); err != nil || loc.Hostname() != gw.String() {
			continue // not a description the router above serves
		}
		u.noticeBootID(r.BootID, src)
	}
}

// noticeBootID handles a NOTIFY ssdp:alive from the router above with
// BOOTID.UPNP.ORG id (0: none).
func (u *Manager) noticeBootID(id int, from netip.Addr) {
	u.mu.Lock()
	was := u.bootID
	if was == 0 {
		if up, ok := u.m.(*upnpMethod); ok {
			was = up.searchBootID()
		}
	}
	u.bootID = id
	u.mu.Unlock()
	switch {
	case id == 0 || id == was:
	case was == 0:
		// Nothing to compare with: its uptime tells.
		u.checkNow()
	default:
		u.log.Info("the router above restarted (SSDP BOOTID.UPNP.ORG changed); making every mapping's half again",
			"from", from, "bootid_was", was, "bootid", id)
		u.mu.Lock()
		u.resub = true // it forgot our event subscription
		u.mu.Unlock()
		u.noticeRestart("restart")
	}
}

// checkNow asks Run to probe the router above at once.
func (u *Manager) checkNow() {
	u.mu.Lock()
	u.checkSoon = true
	u.mu.Unlock()
	u.poke()
}
