package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/ssdp"
	"github.com/portfwd/portfwd/upnp"
)

// upnpMethod speaks UPnP IGD to the router above (RFC 6970's other
// direction: the router above speaks only UPnP). The control point is this
// router: every SOAP call leaves from its external address, which is also
// the InternalClient of every upstream mapping, as the router above's
// secure mode requires.
type upnpMethod struct {
	gw    netip.Addr
	local netip.Addr
	iface string
	url   string // configured description URL, or "" to search
	log   *slog.Logger
	hc    *http.Client

	mu     sync.Mutex
	c      *igd.Client
	uptime time.Duration
	seen   time.Time
	bootID int    // BOOTID.UPNP.ORG of the search answer, 0 if none
	events string // the connection service's event subscription URL, "" if none
}

// eventURL returns the connection service's event subscription URL, ""
// while unknown or when it has none.
func (p *upnpMethod) eventURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events
}

// searchBootID returns the BOOTID.UPNP.ORG the router above's search
// answer carried, 0 if none.
func (p *upnpMethod) searchBootID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bootID
}

func newUPnP(gw, local netip.Addr, iface, url string, log *slog.Logger) *upnpMethod {
	d := &net.Dialer{Timeout: 2 * time.Second, Control: bindToDevice(iface)}
	if local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	// One connection per request, bound to the external interface, with no
	// proxy: upnp.ConnTransport rather than net/http's Transport, which
	// would add about 0.4 MB to portfwd-gateway for a few calls a minute.
	hc := &http.Client{Transport: &upnp.ConnTransport{DialContext: d.DialContext}}
	return &upnpMethod{gw: gw, local: local, iface: iface, url: url, log: log, hc: hc}
}

func (p *upnpMethod) name() string { return "upnp" }
func (p *upnpMethod) server() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		return p.c.ControlURL
	}
	if p.url != "" {
		return p.url
	}
	return p.gw.String()
}

// client finds the router above's connection service: at the configured
// URL, or by an SSDP search out of the external interface only (and a
// unicast one to the gateway), keeping only a description the gateway
// itself serves.
func (p *upnpMethod) client(ctx context.Context) (*igd.Client, error) {
	p.mu.Lock()
	c := p.c
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	loc := p.url
	if loc == "" {
		var found string
		err := ssdp.Search(ctx, ssdp.SearchOptions{Interfaces: []string{p.iface}, MX: 1,
			Unicast: []netip.AddrPort{netip.AddrPortFrom(p.gw, 1900)}, Resend: 300 * time.Millisecond},
			func(r ssdp.Response) bool {
				u, err := url.Parse(r.Location)
				if err != nil {
					return true
				}
				h, err := netip.ParseAddr(u.Hostname())
				if err != nil || h.Unmap() != p.gw {
					p.log.Debug("upstream: ignoring a UPnP device that is not the external interface's gateway", "location", r.Location)
					return true
				}
				found = r.Location
				p.mu.Lock()
				p.bootID = r.BootID
				p.mu.Unlock()
				return false
			})
		if found == "" {
			if err == nil {
				err = errors.New("no UPnP IGD answered on the external interface")
			}
			return nil, err
		}
		loc = found
	}
	root, err := upnp.FetchDescription(ctx, p.hc, loc)
	if err != nil {
		return nil, err
	}
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		return nil, fmt.Errorf("UPnP device at %s has no WANIPConnection or WANPPPConnection service", loc)
	}
	c = igd.NewClient(refs[0], &upnp.Client{HTTP: p.hc})
	c.Logger = p.log
	events, _ := root.Resolve(refs[0].Service.EventSubURL)
	p.mu.Lock()
	p.c, p.events = c, events
	p.mu.Unlock()
	return c, nil
}

func (p *upnpMethod) probe(ctx context.Context) (netip.Addr, bool, error) {
	c, err := p.client(ctx)
	if err != nil {
		return netip.Addr{}, false, upErr(p, gateway.ErrUpstreamDown, err)
	}
	a, err := c.GetExternalIPAddress(ctx)
	if err != nil {
		p.mu.Lock()
		p.c = nil // find it again next time: it may have moved
		p.mu.Unlock()
		return netip.Addr{}, false, upErr(p, gateway.ErrUpstreamDown, err)
	}
	// UPnP has no epoch: an uptime that went back means a restart.
	lost := false
	if st, err := c.GetStatusInfo(ctx); err == nil && st.Uptime > 0 {
		p.mu.Lock()
		if !p.seen.IsZero() && st.Uptime+2*time.Second < p.uptime+time.Since(p.seen) {
			lost = true
		}
		p.uptime, p.seen = st.Uptime, time.Now()
		p.mu.Unlock()
	}
	return a, lost, nil
}

func (p *upnpMethod) mapHalf(ctx context.Context, r halfRequest) (halfGrant, error) {
	c, err := p.client(ctx)
	if err != nil {
		return halfGrant{}, upErr(p, gateway.ErrUpstreamDown, err)
	}
	want := igd.PortMapping{ExternalPort: r.want, Protocol: r.proto.String(), InternalPort: r.internalPort,
		InternalClient: p.local.String(), Enabled: true, Description: r.description, LeaseDuration: r.lifetime.Truncate(time.Second)}
	got, err := c.AddMapping(ctx, want, igd.AddOptions{Any: !r.exact})
	if err != nil {
		return halfGrant{}, p.classify(err)
	}
	pub, err := c.GetExternalIPAddress(ctx)
	if err != nil {
		return halfGrant{}, upErr(p, gateway.ErrUpstreamDown, err)
	}
	return halfGrant{public: netip.AddrPortFrom(pub, got.ExternalPort), lifetime: got.LeaseDuration}, nil
}

func (p *upnpMethod) unmap(ctx context.Context, proto gateway.Protocol, internalPort, publicPort uint16, _ [12]byte) error {
	c, err := p.client(ctx)
	if err != nil {
		return upErr(p, gateway.ErrUpstreamDown, err)
	}
	// Delete only what is still ours: another host may hold the port now.
	cur, err := c.GetSpecificPortMappingEntry(ctx, "", publicPort, proto.String())
	if upnp.ErrorCode(err) == 714 {
		return nil
	}
	if err != nil {
		return p.classify(err)
	}
	if cur.InternalClient != p.local.String() || cur.InternalPort != internalPort {
		return nil
	}
	err = c.DeletePortMapping(ctx, "", publicPort, proto.String())
	if err != nil && upnp.ErrorCode(err) != 714 {
		return p.classify(err)
	}
	return nil
}

func (p *upnpMethod) classify(err error) error {
	var ce *igd.ConflictError
	if errors.As(err, &ce) {
		return upErr(p, gateway.ErrUpstreamConflict, err)
	}
	switch upnp.ErrorCode(err) {
	case 718, 729:
		return upErr(p, gateway.ErrUpstreamConflict, err)
	case 606, 401:
		return upErr(p, gateway.ErrUpstreamRefused, err)
	case 728:
		return upErr(p, gateway.ErrUpstreamExhausted, err)
	case 0:
		return upErr(p, gateway.ErrUpstreamDown, err)
	}
	return upErr(p, gateway.ErrUpstreamRefused, err)
}
