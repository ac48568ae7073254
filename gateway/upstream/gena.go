package upstream

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/upnp"
)

// missingGrace is how long a PortMappingNumberOfEntries below the halves
// made must last to count (see handle).
const missingGrace = 200 * time.Millisecond

// genaPoll is how often watchEvents looks whether the router above is
// spoken to over UPnP (and so has events to subscribe to).
const genaPoll = time.Second

// watchEvents keeps a GENA subscription (UDA 1.1 §4) to the router above's
// WANIPConnection service while it is spoken to over UPnP, and acts on its
// events at once rather than at the next check:
//
//   - ExternalIPAddress other than the public address known: a probe now,
//     which learns the new address and re-makes the halves;
//   - PortMappingNumberOfEntries below the halves made there: some are
//     missing (deleted by someone, or lost), so every half is made again;
//   - the subscription made anew (the router above forgot it) or an
//     initial event on a known subscription (its sequence restarted): it
//     restarted, so every half is made again.
//
// The callback listens on this router's external address, and takes
// connections from the router above's address only. Where the router above
// refuses the subscription, or never calls back (an input firewall), the
// SSDP NOTIFYs, the announcements and the probe still notice what matters.
func (u *Manager) watchEvents(ctx context.Context) {
	var (
		sub     *upnp.Subscriber
		subURL  string
		retryAt time.Time
	)
	w := &genaWatch{u: u}
	stop := func() {
		if sub != nil {
			s := sub
			sub, subURL = nil, ""
			go func() {
				cctx, cancel := context.WithTimeout(context.Background(), unmapTimeout)
				defer cancel()
				s.Close(cctx)
			}()
		}
		w.reset()
	}
	defer stop()
	t := time.NewTicker(genaPoll)
	defer t.Stop()
	for {
		u.mu.Lock()
		up, _ := u.m.(*upnpMethod)
		running := up != nil && u.state == "up"
		resub := u.resub
		u.resub = false
		u.mu.Unlock()
		if resub && sub != nil {
			stop() // made anew below, at once
		}
		ev := ""
		if running {
			ev = up.eventURL()
		}
		switch {
		case ev == "" && sub != nil, ev != subURL && sub != nil:
			stop()
		case ev != "" && sub == nil && !time.Now().Before(retryAt):
			s, err := u.subscribe(ctx, up, ev, w.handle)
			if err != nil {
				u.log.Info("no events from the router above; its changes are noticed by SSDP, announcements and the check", "url", ev, "err", err)
				retryAt = time.Now().Add(u.cfg.CheckInterval)
				break
			}
			sub, subURL = s, ev
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// subscribe subscribes to ev with a callback on this router's external
// address that only the router above may call.
func (u *Manager) subscribe(ctx context.Context, p *upnpMethod, ev string, handle func(upnp.Event)) (*upnp.Subscriber, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(p.local, 0).String())
	if err != nil {
		return nil, err
	}
	s := &upnp.Subscriber{Listener: onlyFrom{Listener: ln, from: p.gw}, CallbackHost: p.local, Client: p.hc, Logger: u.log}
	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := s.Subscribe(sctx, ev, 0, handle); err != nil {
		cctx, ccancel := context.WithTimeout(context.Background(), unmapTimeout)
		s.Close(cctx)
		ccancel()
		return nil, err
	}
	u.log.Info("subscribed to the router above's events", "url", ev)
	return s, nil
}

// genaWatch reads the events of one subscription.
type genaWatch struct {
	u   *Manager
	mu  sync.Mutex
	sid string
}

func (w *genaWatch) reset() {
	w.mu.Lock()
	w.sid = ""
	w.mu.Unlock()
}

func (w *genaWatch) handle(ev upnp.Event) {
	u := w.u
	w.mu.Lock()
	var restarted string
	w.sid, restarted = upnp.RestartEvidence(w.sid, ev)
	w.mu.Unlock()
	if restarted != "" {
		u.log.Info("the router above restarted; making every mapping's half again", "why", restarted, "sid", ev.SID)
		u.noticeRestart("restart")
		return
	}
	if ev.Resync {
		u.checkNow()
	}
	for _, v := range ev.Vars {
		val := strings.TrimSpace(v.Value)
		switch v.Name {
		case "ExternalIPAddress":
			if a, err := netip.ParseAddr(val); err == nil && a.Unmap() != u.Public() {
				u.log.Info("the router above says its public address changed (UPnP event)", "now", a)
				u.checkNow()
			}
		case "PortMappingNumberOfEntries":
			n, err := strconv.Atoi(val)
			if err != nil {
				continue
			}
			if u.halvesBy("upnp") <= n {
				continue
			}
			// Looked at again a moment later: a delete here removes the
			// half above first and the mapping here just after, and the
			// event can come in between.
			time.AfterFunc(missingGrace, func() {
				if held := u.halvesBy("upnp"); n < held {
					u.log.Info("the router above holds fewer mappings than this router's halves there (UPnP event); making every half again",
						"router_above_holds", n, "halves", held)
					u.noticeRestart("missing")
				}
			})
		}
	}
}

// halvesBy counts the chained mappings whose half was made over method.
func (u *Manager) halvesBy(method string) int {
	n := 0
	for _, m := range u.chained() {
		if m.Upstream.Method == method {
			n++
		}
	}
	return n
}

// onlyFrom is a listener that takes connections from one address only.
type onlyFrom struct {
	net.Listener
	from netip.Addr
}

func (l onlyFrom) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && a.AddrPort().Addr().Unmap() == l.from {
			return c, nil
		}
		c.Close()
	}
}
