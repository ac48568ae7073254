package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/ssdp"
)

// Options configure discovery. The zero value searches every protocol on
// every interface and uses the default route's gateway for NAT-PMP and PCP.
type Options struct {
	// Methods limits the protocols tried; empty means all.
	Methods []Method
	// GatewayURL is a UPnP root description URL: when set, SSDP is skipped.
	GatewayURL string
	// NATPMPServer is the NAT-PMP and PCP server (they share a port) to
	// use instead of the default route's gateway.
	NATPMPServer netip.AddrPort
	// Interfaces limits SSDP multicast to these interfaces.
	Interfaces []string
	// Wait collects every gateway until the context ends, instead of
	// returning as soon as the first usable one answers.
	Wait bool
	// Progress, when set, is called as discovery advances.
	Progress func(Progress)
	// RequestTimeout bounds each HTTP/SOAP request (default 3 s).
	RequestTimeout time.Duration
	// HTTPClient is used for descriptions and SOAP; nil means a client
	// that never uses a proxy.
	HTTPClient *http.Client
	// StateDir is the client's state directory: where the mappings made
	// over NAT-PMP and PCP are remembered (a later process deletes them by
	// external port; PCP also needs their nonces), where Keepers record
	// the mappings they hold (so that one that crashed is cleaned up after
	// at the next start), and where the last UPnP gateway found is cached.
	// Empty means DefaultStateDir(), which every portfwd process of the
	// user shares; the directory is safe for concurrent use by many
	// processes. Set it to a directory of your own to keep an
	// application's records apart.
	StateDir string
	// NoState keeps nothing on disk: records live in memory, for the
	// gateways of one Discover only.
	NoState bool
	// NoCache disables the discovery cache.
	NoCache bool
	Logger  *slog.Logger

	// SSDPUnicast adds unicast M-SEARCH destinations (host:1900 of a known
	// router, or a test responder on loopback).
	SSDPUnicast []netip.AddrPort
	// NoMulticast skips SSDP multicast (only SSDPUnicast is searched).
	NoMulticast bool
	// NoDefaultGateway stops discovery from using the default route's
	// gateway (unicast M-SEARCH, NAT-PMP and PCP).
	NoDefaultGateway bool
}

// Progress reports discovery as it advances.
type Progress struct {
	// Message is a one-line description ("searching (SSDP, NAT-PMP)...").
	Message string
	// Found is the number of gateways found so far.
	Found int
}

// natpmpGrace is how long discovery keeps waiting for a UPnP answer after a
// NAT-PMP or PCP gateway answered: UPnP can list and describe mappings, NAT-PMP
// cannot, so when a router speaks both we want the UPnP side. LAN routers
// answer SSDP within a few milliseconds; this only costs time on routers
// that speak NAT-PMP alone.
const natpmpGrace = 300 * time.Millisecond

func (o *Options) wants(m Method) bool {
	if len(o.Methods) == 0 {
		return true
	}
	for _, x := range o.Methods {
		if x == m {
			return true
		}
	}
	return false
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (o *Options) progress(found int, format string, a ...any) {
	if o.Progress != nil {
		o.Progress(Progress{Message: fmt.Sprintf(format, a...), Found: found})
	}
}

// candidate is a gateway found by one of the racing probes.
type candidate struct {
	gw Gateway
	// health is the probe's verdict (healthConnected, ...): gateways that
	// fail their address request are kept, ranked below the others.
	health int
	err    error
}

// preferred candidates (UPnP, connected) end the race at once: nothing
// found later can do better.
func (c candidate) preferred() bool { return c.gw.Method() == UPnP && c.health == healthConnected }

// Discover finds gateways by every protocol at once. Without Options.Wait it
// returns as soon as a usable gateway is known; with it, it returns every
// gateway found when ctx ends. The best gateway comes first. When nothing
// answers, the error wraps ErrNoGateway and says what was tried.
func Discover(ctx context.Context, o Options) ([]Gateway, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := o.logger()
	st := newStore(o.stateDir(), o.Logger)
	results := make(chan candidate, 16)
	var wg sync.WaitGroup
	var tried []string
	launch := func(what string, f func()) {
		tried = append(tried, what)
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	var defGW netip.Addr
	if !o.NoDefaultGateway && (o.GatewayURL == "" || !o.NATPMPServer.IsValid()) {
		if gw, ifname, err := netroute.DefaultGateway(); err == nil {
			defGW = gw
			log.Debug("default gateway", "addr", gw, "interface", ifname)
		} else {
			log.Debug("no default gateway", "err", err)
		}
	}

	if o.wants(UPnP) {
		if o.GatewayURL != "" {
			launch("UPnP at "+o.GatewayURL, func() {
				g, health, err := probeUPnP(ctx, &o, st, o.GatewayURL)
				if err != nil {
					results <- candidate{err: err}
					return
				}
				results <- candidate{gw: g, health: health}
			})
		} else {
			// IPv4 only: port mappings are made for this host's IPv4
			// address, which the IGD's IPv4 URL gives (an IGD found over
			// IPv6 serves the same services at an IPv6 URL, from which
			// the local address would be IPv6). Pinholes search over
			// IPv6, see FindPinholer.
			so := ssdp.SearchOptions{Interfaces: o.Interfaces, NoMulticast: o.NoMulticast, Unicast: o.SSDPUnicast, Logger: o.Logger, Family: ssdp.IPv4Only}
			if defGW.IsValid() {
				so.Unicast = append(so.Unicast, netip.AddrPortFrom(defGW, 1900))
			}
			what := "SSDP"
			if !o.NoMulticast {
				what += " multicast"
			}
			if len(so.Unicast) > 0 {
				what += fmt.Sprintf(" + unicast to %v", so.Unicast)
			}
			launch(what, func() { searchUPnP(ctx, &o, st, so, results) })
			if !o.NoCache && defGW.IsValid() {
				if loc := st.cachedLocation(defGW); loc != "" {
					launch("UPnP at "+loc+" (cached)", func() {
						g, health, err := probeUPnP(ctx, &o, st, loc)
						if err != nil {
							// A stale hint is not worth reporting: SSDP runs anyway.
							log.Debug("cached gateway did not answer", "location", loc, "err", err)
							return
						}
						results <- candidate{gw: g, health: health}
					})
				}
			}
		}
	}
	if o.wants(NATPMP) {
		server := o.NATPMPServer
		if !server.IsValid() && o.GatewayURL == "" && defGW.IsValid() {
			server = netip.AddrPortFrom(defGW, 5351)
		}
		if server.IsValid() {
			launch("NAT-PMP at "+server.String(), func() {
				g, health, err := probeNATPMP(ctx, &o, st, server)
				if err != nil {
					results <- candidate{err: err}
					return
				}
				results <- candidate{gw: g, health: health}
			})
		}
	}
	if o.wants(PCP) {
		// PCP shares NAT-PMP's server port; its ANNOUNCE is the probe.
		server := o.NATPMPServer
		if !server.IsValid() && o.GatewayURL == "" && defGW.IsValid() {
			server = netip.AddrPortFrom(defGW, 5351)
		}
		if server.IsValid() {
			launch("PCP at "+server.String(), func() {
				g, health, err := probePCP(ctx, &o, st, server)
				if err != nil {
					results <- candidate{err: err}
					return
				}
				results <- candidate{gw: g, health: health}
			})
		}
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("%w: nothing to try (no default gateway, and no --gateway or --natpmp given)", ErrNoGateway)
	}
	closed := make(chan struct{})
	go func() { wg.Wait(); close(results); close(closed) }()
	// The probes still under way end with ctx; Discover returns once they
	// have, so that nothing it started outlives it.
	defer func() { cancel(); <-closed }()
	o.progress(0, "searching for gateways (%s)...", joinComma(tried))

	var found []candidate
	var errs []error
	var grace <-chan time.Time
	seen := map[string]bool{}
loop:
	for {
		select {
		case c, ok := <-results:
			if !ok {
				break loop
			}
			if c.err != nil {
				log.Debug("discovery probe failed", "err", c.err)
				errs = append(errs, c.err)
				continue
			}
			if c.gw == nil || seen[string(c.gw.Method())+c.gw.Addr()] {
				continue
			}
			seen[string(c.gw.Method())+c.gw.Addr()] = true
			found = append(found, c)
			o.progress(len(found), "found %s gateway at %s", c.gw.Method(), c.gw.Addr())
			if o.Wait {
				continue
			}
			if c.preferred() || (!o.wants(UPnP) && c.health == healthConnected) {
				break loop
			}
			if grace == nil {
				// A NAT-PMP gateway, or one that is not connected: give a
				// better one a moment before settling for it.
				grace = time.After(natpmpGrace)
			}
		case <-grace:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	if len(found) == 0 {
		if len(errs) > 0 {
			return nil, fmt.Errorf("%w (tried %s): %w", ErrNoGateway, joinComma(tried), errors.Join(errs...))
		}
		return nil, fmt.Errorf("%w (tried %s): nothing answered; is UPnP, NAT-PMP or PCP enabled on the router?", ErrNoGateway, joinComma(tried))
	}
	sortCandidates(found)
	if g, ok := found[0].gw.(*upnpGateway); ok && !o.NoCache {
		st.rememberLocation(defGW, g.location)
	}
	out := make([]Gateway, len(found))
	for i, c := range found {
		out[i] = c.gw
	}
	return out, nil
}

// sortCandidates puts connected gateways first, then those that answer
// but are not connected, then those whose address request failed; within
// each, UPnP before PCP before NAT-PMP, keeping arrival order otherwise.
func sortCandidates(cs []candidate) {
	// UPnP can list and describe; PCP is NAT-PMP's successor (nonces,
	// PREFER_FAILURE, richer errors), so it goes before NAT-PMP.
	score := func(c candidate) int {
		s := c.health * 4
		switch c.gw.Method() {
		case UPnP:
			s += 2
		case PCP:
			s++
		}
		return s
	}
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && score(cs[j]) > score(cs[j-1]); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// searchUPnP runs SSDP and probes each new description location as it
// arrives, in parallel.
func searchUPnP(ctx context.Context, o *Options, st *store, so ssdp.SearchOptions, results chan<- candidate) {
	var wg sync.WaitGroup
	defer wg.Wait()
	seen := map[string]bool{}
	err := ssdp.Search(ctx, so, func(r ssdp.Response) bool {
		if seen[r.Location] {
			return true
		}
		seen[r.Location] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c candidate
			g, health, err := probeUPnP(ctx, o, st, r.Location)
			if err != nil {
				c.err = err
			} else {
				c = candidate{gw: g, health: health}
			}
			select {
			case results <- c:
			case <-ctx.Done():
			}
		}()
		return true
	})
	if err != nil && ctx.Err() == nil {
		select {
		case results <- candidate{err: fmt.Errorf("SSDP search: %w", err)}:
		case <-ctx.Done():
		}
	}
}

// localAddrFor returns this host's address on the route to host. It uses a
// connected UDP socket, which makes the kernel pick the route and source
// address without sending anything.
func localAddrFor(host netip.Addr) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 9)))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// hostOf returns the IP address in a URL's host, if it is one.
func hostOf(rawURL string) netip.Addr {
	u, err := url.Parse(rawURL)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(u.Hostname())
	return a
}
