package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// upnpGateway is a gateway reached over UPnP IGD: one WAN*Connection
// service of one root device.
type upnpGateway struct {
	location string
	root     *upnp.Root
	ref      igd.ServiceRef
	c        *igd.Client
	local    netip.Addr

	mu     sync.Mutex
	extIP  netip.Addr
	status string
}

// probeUPnP fetches the description at location, then asks each candidate
// connection service (best-ranked first, all at once) for its status and
// external address, and picks the best one that answers: connected with a
// public address first, then connected, then by rank. preferred is true
// when that best one is connected: discovery need not wait for another.
func probeUPnP(ctx context.Context, o *Options, location string) (Gateway, bool, error) {
	soap := &upnp.Client{HTTP: o.HTTPClient, Timeout: o.RequestTimeout}
	rctx := ctx
	if o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, o.RequestTimeout)
		defer cancel()
	}
	root, err := upnp.FetchDescription(rctx, o.HTTPClient, location)
	if err != nil {
		return nil, false, fmt.Errorf("UPnP description at %s: %w", location, err)
	}
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		return nil, false, fmt.Errorf("UPnP device at %s (%s) has no WANIPConnection or WANPPPConnection service: it is not an Internet gateway", location, root.Device.FriendlyName)
	}
	type probe struct {
		g         *upnpGateway
		ok, pref  bool
		public    bool
		lastError error
	}
	probes := make([]probe, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		g := &upnpGateway{location: location, root: root, ref: ref, c: igd.NewClient(ref, soap)}
		probes[i].g = g
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip, err := g.c.GetExternalIPAddress(rctx)
			if err != nil {
				probes[i].lastError = err
				return
			}
			st, serr := g.c.GetStatusInfo(rctx)
			g.extIP = ip
			if serr == nil {
				g.status = st.ConnectionStatus
			}
			// A router without GetStatusInfo counts as connected when it
			// has an address: the action is optional in practice.
			connected := (serr != nil || strings.EqualFold(st.ConnectionStatus, "Connected")) && !ip.IsUnspecified()
			probes[i].ok = true
			probes[i].pref = connected
			probes[i].public = connected && Classify(ip) == AddrPublic
		}()
	}
	wg.Wait()
	// The best service: connected with a public address, then connected,
	// then anything that answered; ties go to the better-ranked service.
	score := func(p probe) int {
		s := 0
		if p.pref {
			s += 2
		}
		if p.public {
			s++
		}
		return s
	}
	best := -1
	for i, p := range probes {
		if p.ok && (best < 0 || score(p) > score(probes[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil, false, fmt.Errorf("UPnP gateway at %s answered no GetExternalIPAddress: %w", location, probes[0].lastError)
	}
	g := probes[best].g
	if h := hostOf(g.ref.ControlURL); h.IsValid() {
		g.local = localAddrFor(h)
	}
	return g, probes[best].pref, nil
}

func (g *upnpGateway) Method() Method        { return UPnP }
func (g *upnpGateway) Addr() string          { return g.ref.ControlURL }
func (g *upnpGateway) LocalAddr() netip.Addr { return g.local }

func (g *upnpGateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	ip, err := g.c.GetExternalIPAddress(ctx)
	if err != nil {
		return netip.Addr{}, refused(err)
	}
	g.mu.Lock()
	g.extIP = ip
	g.mu.Unlock()
	return ip, nil
}

func (g *upnpGateway) cachedIP() netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.extIP
}

func (g *upnpGateway) Info(ctx context.Context) (Info, error) {
	d := g.root.Device
	info := Info{
		Method: UPnP, FriendlyName: d.FriendlyName, Manufacturer: d.Manufacturer, ManufacturerURL: d.ManufacturerURL,
		ModelName: d.ModelName, ModelNumber: d.ModelNumber, ModelDescription: d.ModelDescription,
		SerialNumber: d.SerialNumber, UDN: d.UDN, Location: g.location,
		ControlURL: g.ref.ControlURL, ServiceType: g.ref.ServiceType,
	}
	if d.PresentationURL != "" {
		if u, err := g.root.Resolve(d.PresentationURL); err == nil {
			info.PresentationURL = u
		}
	}
	g.root.Walk(func(_ []*upnp.Device, s *upnp.Service) bool {
		info.Services = append(info.Services, s.ServiceType)
		return true
	})
	// The rest is best effort: many routers lack one action or another.
	if ip, err := g.ExternalIP(ctx); err == nil {
		info.ExternalIP = ip
	}
	if st, err := g.c.GetStatusInfo(ctx); err == nil {
		info.ConnectionStatus, info.Uptime = st.ConnectionStatus, st.Uptime
		info.UptimeSeconds = int64(st.Uptime / time.Second)
	}
	if ct, _, err := g.c.GetConnectionTypeInfo(ctx); err == nil {
		info.ConnectionType = ct
	}
	if g.ref.CommonControlURL != "" {
		if lp, err := g.c.GetCommonLinkProperties(ctx, g.ref.CommonControlURL); err == nil {
			info.LinkType, info.LinkStatus = lp.AccessType, lp.Status
			info.UpstreamBps, info.DownstreamBps = lp.UpBps, lp.DownBps
		}
	}
	if ctx.Err() != nil {
		return info, ctx.Err()
	}
	return info, nil
}

func (g *upnpGateway) fromIGD(pm igd.PortMapping) Mapping {
	return Mapping{
		Protocol: Protocol(strings.ToUpper(pm.Protocol)), ExternalPort: pm.ExternalPort,
		InternalClient: pm.InternalClient, InternalPort: pm.InternalPort, Enabled: pm.Enabled,
		Description: pm.Description, RemoteHost: pm.RemoteHost, Lease: pm.LeaseDuration,
		Permanent: pm.LeaseDuration == 0, ExternalAddr: g.cachedIP(), Method: UPnP,
	}
}

func (g *upnpGateway) List(ctx context.Context, progress func(int)) ([]Mapping, error) {
	pms, err := g.c.ListPortMappings(ctx, progress)
	out := make([]Mapping, len(pms))
	for i, pm := range pms {
		out[i] = g.fromIGD(pm)
	}
	if err != nil {
		return out, refused(err)
	}
	return out, nil
}

func (g *upnpGateway) toIGD(r Request) (igd.PortMapping, error) {
	client := r.InternalClient
	if !client.IsValid() {
		client = g.local
	}
	if !client.IsValid() {
		return igd.PortMapping{}, errors.New("cannot tell this host's LAN address: give the internal client with --client")
	}
	ext := r.ExternalPort
	if ext == 0 {
		ext = r.InternalPort
	}
	return igd.PortMapping{
		RemoteHost: r.RemoteHost, ExternalPort: ext, Protocol: string(r.Protocol),
		InternalPort: r.InternalPort, InternalClient: client.String(), Enabled: !r.Disabled,
		Description: r.Description, LeaseDuration: r.Lease,
	}, nil
}

func (g *upnpGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	pm, err := g.toIGD(r)
	if err != nil {
		return Mapping{}, err
	}
	made, err := g.c.AddMapping(ctx, pm, igd.AddOptions{Any: r.Any})
	if err != nil {
		return Mapping{}, refused(err)
	}
	return g.fromIGD(made), nil
}

func (g *upnpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	old, err := g.c.GetSpecificPortMappingEntry(ctx, key.RemoteHost, key.ExternalPort, string(key.Protocol))
	if err != nil {
		return Mapping{}, refused(err)
	}
	m := c.apply(g.fromIGD(old))
	want := igd.PortMapping{
		RemoteHost: m.RemoteHost, ExternalPort: m.ExternalPort, Protocol: string(m.Protocol),
		InternalPort: m.InternalPort, InternalClient: m.InternalClient, Enabled: m.Enabled,
		Description: m.Description, LeaseDuration: m.Lease,
	}
	made, err := g.c.ReplaceMapping(ctx, old, want)
	if err != nil {
		return Mapping{}, refused(err)
	}
	return g.fromIGD(made), nil
}

func (g *upnpGateway) Delete(ctx context.Context, key Key) error {
	if err := g.c.DeletePortMapping(ctx, key.RemoteHost, key.ExternalPort, string(key.Protocol)); err != nil {
		return refused(err)
	}
	return nil
}

func (g *upnpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) (int, error) {
	n, err := g.c.DeleteRange(ctx, start, end, string(proto))
	if err != nil {
		return n, refused(err)
	}
	return n, nil
}

// refused turns a UPnP fault into a *RefusedError carrying the code and the
// sentence igd.Explain gives for it; other errors pass through.
func refused(err error) error {
	if code := upnp.ErrorCode(err); code != 0 {
		return &RefusedError{Method: UPnP, Code: code, Text: igd.Explain(err), Err: err}
	}
	return err
}
