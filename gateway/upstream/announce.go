package upstream

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// announcePort is where PCP ANNOUNCEs (RFC 6887 §14.1.3) and NAT-PMP
// address announcements (RFC 6886 §3.2.1) arrive, multicast to 224.0.0.1.
const announcePort = 5350

// announceHold is the least time between two re-creations of every half
// triggered by announcements (RFC 6887 §14.1.3 spaces a server's own
// announcements further apart).
const announceHold = 500 * time.Millisecond

// listenAnnouncements watches the external interface for the router
// above's announcements: after a restart it sends a PCP ANNOUNCE (miniupnpd
// sends one once it is ready to forward), after an address change a
// NAT-PMP announcement. Either makes every half be made again at once.
// Only packets from the router above, on the external interface, count:
// the gateway's own announcements go out of the LAN interfaces.
func (u *Manager) listenAnnouncements(ctx context.Context) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			_ = setReusePort(int(fd))
			if u.cfg.Interface != "" {
				_ = setBindToDevice(int(fd), u.cfg.Interface)
			}
		})
		return nil
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort("0.0.0.0", "5350"))
	if err != nil {
		u.log.Warn("cannot listen for the router above's announcements; its restarts are noticed at the next check only",
			"port", announcePort, "check_interval", u.cfg.CheckInterval, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer pc.Close()
	buf := make([]byte, 1100)
	// Another host on the CGNAT segment could send look-alike packets
	// from the gateway's address: at most one re-creation of every half
	// per announceHold, so a flood costs the router above little.
	var last time.Time
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort().Addr().Unmap()
		gw, gerr := u.gatewayAddr()
		if gerr != nil || src != gw || n < 2 || ua.Port != 5351 {
			continue
		}
		if now := time.Now(); now.Sub(last) < announceHold {
			continue
		} else {
			last = now
		}
		switch {
		case buf[0] == 2 && buf[1] == 0x80: // PCP ANNOUNCE response
			u.log.Info("the router above announced a restart (PCP ANNOUNCE); making every mapping's half again", "from", netip.AddrPortFrom(src, ua.AddrPort().Port()))
			u.noticeRestart("restart")
		case buf[0] == 0 && buf[1] == 128: // NAT-PMP external address announcement
			u.log.Info("the router above announced its address (NAT-PMP); checking every mapping's half", "from", src)
			u.noticeRestart("announcement")
		}
	}
}
