package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/internal/stun"
)

// externalAddr keeps the gateway's current external address, from the
// source the configuration names, and tells what it means.
type externalAddr struct {
	cfg     ExternalAddressConfig
	iface   string // the external interface, for SourceInterface
	log     *slog.Logger
	lookup  func(ctx context.Context) (netip.Addr, error)
	refresh time.Duration

	mu   sync.Mutex
	addr netip.Addr
	// public is the router above's public address while mappings are
	// chained to it (double NAT): what LAN clients are told.
	public   netip.Addr
	chaining bool // an upstream Manager will chain mappings (see describe)
	lastErr  string
	looked   bool // the first lookup (New's) is done
	onChange []func(netip.Addr)
}

func newExternalAddr(cfg ExternalAddressConfig, external []string, log *slog.Logger) *externalAddr {
	e := &externalAddr{cfg: cfg, log: log, refresh: time.Duration(cfg.Refresh)}
	switch cfg.Source {
	case SourceFixed:
		a := netip.MustParseAddr(cfg.IP) // checked by Validate
		e.lookup = func(context.Context) (netip.Addr, error) { return a, nil }
	case SourceSTUN:
		server, _ := stunServerAddr(cfg.STUNServer)
		e.lookup = func(ctx context.Context) (netip.Addr, error) {
			ap, err := stunQuery(ctx, server)
			return ap.Addr(), err
		}
		if e.refresh <= 0 {
			e.refresh = DefaultSTUNRefresh
		}
	default:
		e.iface = external[0]
		e.lookup = func(context.Context) (netip.Addr, error) { return interfaceIPv4(e.iface) }
		if e.refresh <= 0 {
			e.refresh = DefaultInterfaceRefresh
		}
	}
	return e
}

// Get returns the current external address, or the zero Addr when it is
// unknown or, with RefusePrivateExternal, not public.
func (e *externalAddr) Get() netip.Addr {
	a, _ := e.current()
	if p := e.chainedPublic(); p.IsValid() {
		a = p
	}
	if e.cfg.RefusePrivateExternal && addrclass.Of(a) != addrclass.Public {
		return netip.Addr{}
	}
	return a
}

// chainedPublic returns the router above's public address while mappings
// are chained to it, else the zero Addr.
func (e *externalAddr) chainedPublic() netip.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.public
}

// setPublic records the router above's public address (the zero Addr
// when chaining stops) and reports whether what clients are told changed.
func (e *externalAddr) setPublic(a netip.Addr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := e.public != a
	e.public = a
	return changed
}

// Raw returns the address as learned, whatever its class, and the last
// error met learning it.
func (e *externalAddr) current() (netip.Addr, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr, e.lastErr
}

// refusing returns why mappings are refused, or nil: with
// RefusePrivateExternal, while the external address is not public.
func (e *externalAddr) refusing() error {
	if !e.cfg.RefusePrivateExternal {
		return nil
	}
	a := e.Get()
	if !a.IsValid() {
		a, _ = e.current()
	}
	if c := addrclass.Of(a); c != addrclass.Public {
		return fmt.Errorf("mappings are refused while the external address (%v) is %s, because refuse_private_external is set", a, c)
	}
	return nil
}

// OnChange registers f to be called with each new address learned after
// the first lookup, including the first address learned when that lookup
// failed: both are news for the LAN. f runs on the goroutine that learned
// the address.
func (e *externalAddr) OnChange(f func(netip.Addr)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onChange = append(e.onChange, f)
}

// update learns the address once and reports whether it changed.
func (e *externalAddr) update(ctx context.Context) error {
	a, err := e.lookup(ctx)
	e.mu.Lock()
	old, first := e.addr, !e.looked
	e.looked = true
	if err != nil {
		e.lastErr = err.Error()
		e.mu.Unlock()
		return err
	}
	a = a.Unmap()
	e.addr, e.lastErr = a, ""
	subs := e.onChange
	e.mu.Unlock()
	if a == old {
		return nil
	}
	e.describe(a, old)
	if !first {
		for _, f := range subs {
			f(a)
		}
	}
	return nil
}

// describe logs a new address and what its class means for mappings.
func (e *externalAddr) describe(a, old netip.Addr) {
	class := addrclass.Of(a)
	attrs := []any{"address", a, "class", class.String(), "source", e.source()}
	if old.IsValid() {
		attrs = append(attrs, "was", old)
	}
	if class == addrclass.Public {
		e.log.Info("external address", attrs...)
		return
	}
	what := "forwarding anyway: mappings work from wherever this address is reachable"
	if e.chaining && (class == addrclass.Private || class == addrclass.CGNAT) {
		what = "looking for the router above through the external interface, to chain every mapping to it (upstream)"
	}
	if e.cfg.RefusePrivateExternal {
		what = "refusing mappings until it is public (refuse_private_external is set)"
	}
	e.log.Warn("external address is not public: "+class.Warning()+"; "+what, attrs...)
}

func (e *externalAddr) source() string {
	switch e.cfg.Source {
	case SourceFixed:
		return "fixed"
	case SourceSTUN:
		return "stun " + e.cfg.STUNServer
	}
	return "interface " + e.iface
}

// run keeps the address current until ctx ends: it is read again at once
// whenever wake receives (the daemon's netlink watcher signals a change of
// the external interface's addresses there), and every e.refresh in any
// case, which is all there is where address events are unavailable and a
// safety net elsewhere. A fixed address cannot change and is not re-read.
func (e *externalAddr) run(ctx context.Context, wake <-chan struct{}) {
	if e.cfg.Source == SourceFixed {
		return
	}
	t := time.NewTicker(e.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := e.update(uctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			e.log.Warn("cannot learn the external address; keeping the last one", "source", e.source(), "err", err)
			failing = true
		case err == nil && failing:
			e.log.Info("external address learned again", "source", e.source())
			failing = false
		}
	}
}

// interfaceIPv4 returns the first global IPv4 address of the named
// interface, or failing that its first IPv4 address.
func interfaceIPv4(name string) (netip.Addr, error) {
	prefixes, err := netroute.InterfaceAddrs(name)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, p := range prefixes {
		if a := p.Addr(); a.IsGlobalUnicast() {
			return a, nil
		}
	}
	if len(prefixes) > 0 {
		return prefixes[0].Addr(), nil
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address (yet?)", name)
}

// stunQuery asks a STUN server (host:port) for this host's address as the
// server sees it, with an RFC 5389 Binding request retransmitted after
// 250 ms, 500 ms, 1 s... until ctx ends.
func stunQuery(ctx context.Context, server string) (netip.AddrPort, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", server)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stun: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var tid [12]byte
	rand.Read(tid[:])
	req := stun.NewBindingRequest(tid, 0)
	pkt := req.Append(nil)
	buf := make([]byte, 1500)
	wait := 250 * time.Millisecond
	for {
		if _, err := c.Write(pkt); err != nil {
			return netip.AddrPort{}, fmt.Errorf("stun: sending to %s: %w", server, err)
		}
		deadline := time.Now().Add(wait)
		c.SetReadDeadline(deadline)
		for {
			n, err := c.Read(buf)
			if ctx.Err() != nil {
				return netip.AddrPort{}, fmt.Errorf("stun: no answer from %s: %w", server, ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("stun: %s: %w", server, err)
			}
			m, err := stun.Parse(buf[:n])
			if err != nil || m.ID != req.ID {
				continue // not an answer to this request
			}
			if m.Type != stun.BindingSuccess {
				code, reason, _ := m.ErrorCode()
				return netip.AddrPort{}, fmt.Errorf("stun: %s answered %v %d %s", server, m.Type, code, strings.TrimSpace(reason))
			}
			ap, err := m.MappedAddress()
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("stun: %s: %w", server, err)
			}
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
		}
		wait = min(2*wait, 4*time.Second)
	}
}
