package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/epoch"
	"github.com/portfwd/portfwd/upnp"
)

// upnpGateway is a gateway reached over UPnP IGD: one WAN*Connection
// service of one root device. It is safe for concurrent use: the igd
// client is, and the address and status it remembers are under mu.
type upnpGateway struct {
	location string
	root     *upnp.Root
	ref      igd.ServiceRef
	c        *igd.Client
	local    netip.Addr
	st       *store

	mu      sync.Mutex
	extIP   netip.Addr
	status  string
	problem string // why it is not connected, as last seen; "" when it is
}

// Discovery's verdicts on a gateway, best first: it answers with a
// connected external address; it answers, but is not connected (address
// 0.0.0.0, a status other than Connected); it does not tell its address
// (the request failed). Every gateway whose description parses is kept,
// the failing ones ranked last: listing and adding may still work.
const (
	healthFailing = iota
	healthNotConnected
	healthConnected
)

// probeUPnP fetches the description at location, then asks each candidate
// connection service (best-ranked first, all at once) for its external
// address and status, and picks the best: connected with a public address
// first, then connected, then one that answers, then by rank. A service
// whose address request fails is kept all the same when no other does
// better, with the failure as its problem: only a description that cannot
// be read, or that has no connection service, is an error.
func probeUPnP(ctx context.Context, o *Options, st *store, location string) (*upnpGateway, int, error) {
	soap := &upnp.Client{HTTP: o.HTTPClient, Timeout: o.RequestTimeout}
	rctx := ctx
	if o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, o.RequestTimeout)
		defer cancel()
	}
	log := o.logger()
	log.Debug("upnp: fetching the description", "url", location)
	start := time.Now()
	root, err := upnp.FetchDescription(rctx, o.HTTPClient, location)
	if err != nil {
		log.Debug("upnp: description failed", "url", location, "took", time.Since(start).Round(time.Microsecond), "err", err)
		return nil, 0, fmt.Errorf("UPnP description at %s: %w", location, err)
	}
	log.Debug("upnp: description", "url", location, "took", time.Since(start).Round(time.Microsecond),
		"device", root.Device.FriendlyName, "model", root.Device.ModelName, "url_base", root.URLBase)
	refs := igd.ConnectionServices(root)
	if len(refs) == 0 {
		return nil, 0, fmt.Errorf("UPnP device at %s (%s) has no WANIPConnection or WANPPPConnection service: it is not an Internet gateway", location, root.Device.FriendlyName)
	}
	type probe struct {
		g      *upnpGateway
		health int
		public bool
	}
	probes := make([]probe, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		c := igd.NewClient(ref, soap)
		c.Logger = o.logger()
		g := &upnpGateway{location: location, root: root, ref: ref, c: c, st: st}
		probes[i].g = g
		wg.Go(func() {
			ip, status, problem := g.probe(rctx)
			g.mu.Lock()
			g.extIP, g.status, g.problem = ip, status, problem
			g.mu.Unlock()
			switch {
			case problem == "":
				probes[i].health = healthConnected
				probes[i].public = Classify(ip) == AddrPublic
			case ip.IsValid():
				probes[i].health = healthNotConnected
			}
		})
	}
	wg.Wait()
	// Ties go to the better-ranked service (the first).
	best := 0
	for i, p := range probes {
		b := probes[best]
		if p.health > b.health || (p.health == b.health && p.public && !b.public) {
			best = i
		}
	}
	g := probes[best].g
	if h := hostOf(g.ref.ControlURL); h.IsValid() {
		g.local = localAddrFor(h)
	}
	o.logger().Debug("UPnP gateway probed", "control", g.ref.ControlURL, "health", probes[best].health, "problem", g.problem)
	return g, probes[best].health, nil
}

// probe reads the service's external address and status. problem says
// why it is not connected, or which request failed; "" when connected.
// GetStatusInfo is optional: a router without it counts as connected when
// it has an address.
func (g *upnpGateway) probe(ctx context.Context) (ip netip.Addr, status, problem string) {
	ip, err := g.c.GetExternalIPAddress(ctx)
	if err != nil {
		return netip.Addr{}, "", "GetExternalIPAddress failed: " + igd.Explain(err)
	}
	if st, err := g.c.GetStatusInfo(ctx); err == nil {
		status = st.ConnectionStatus
	}
	switch {
	case ip.IsUnspecified():
		problem = "the router reports no external address (0.0.0.0): its Internet connection is down or not set up yet"
	case status != "" && !strings.EqualFold(status, "Connected"):
		problem = fmt.Sprintf("the router says its Internet connection is %s", status)
	}
	return ip, status, problem
}

func (g *upnpGateway) Method() Method        { return UPnP }
func (g *upnpGateway) Addr() string          { return g.ref.ControlURL }
func (g *upnpGateway) LocalAddr() netip.Addr { return g.local }
func (g *upnpGateway) host() netip.Addr      { return hostOf(g.ref.ControlURL) }
func (g *upnpGateway) state() *store         { return g.st }

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

// Info always returns the description's details; the actions are best
// effort (many routers lack one or another), and a failing
// GetExternalIPAddress is reported in Problem.
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
	ip, err := g.c.GetExternalIPAddress(ctx)
	if err == nil {
		info.ExternalIP = ip
	} else {
		info.Problem = "GetExternalIPAddress failed: " + igd.Explain(err)
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
	switch {
	case info.Problem != "":
	case ip.IsUnspecified():
		info.Problem = "the router reports no external address (0.0.0.0): its Internet connection is down or not set up yet"
	case info.ConnectionStatus != "" && !strings.EqualFold(info.ConnectionStatus, "Connected"):
		info.Problem = fmt.Sprintf("the router says its Internet connection is %s", info.ConnectionStatus)
	default:
		info.Connected = true
	}
	g.mu.Lock()
	if err == nil {
		g.extIP = ip
	}
	g.status, g.problem = info.ConnectionStatus, info.Problem
	g.mu.Unlock()
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

// lookup reads the entry at key. A router that answers neither with the
// entry nor with 714 (some answer 402, others lack the action) cannot be
// asked: errNoLookup.
func (g *upnpGateway) lookup(ctx context.Context, key Key) (Mapping, error) {
	pm, err := g.entry(ctx, key)
	if err != nil {
		return Mapping{}, err
	}
	return g.fromIGD(pm), nil
}

// entry reads the entry at key with GetSpecificPortMappingEntry. When the
// router cannot answer that (a fault other than 714, or an HTTP 500 with
// no UPnPError, which hides whether the entry exists), the table is
// walked instead, as a careful client does: an entry found there is the
// answer; when the walk fails or does not find it (some routers end their
// table early, so that proves nothing), the answer is errNoLookup.
func (g *upnpGateway) entry(ctx context.Context, key Key) (igd.PortMapping, error) {
	pm, err := g.c.GetSpecificPortMappingEntry(ctx, key.RemoteHost, key.ExternalPort, string(key.Protocol))
	code := upnp.ErrorCode(err)
	switch {
	case err == nil:
		return pm, nil
	case code == igd.CodeNoSuchEntryInArray:
		return igd.PortMapping{}, fmt.Errorf("%s: %w: %w", key, errNoEntry, err)
	case code == 0 && !upnp.IsBareFault(err):
		return igd.PortMapping{}, err // the router could not be reached
	}
	all, werr := g.c.ListPortMappings(ctx, nil)
	if werr != nil {
		return igd.PortMapping{}, fmt.Errorf("%w (GetSpecificPortMappingEntry: %v; listing: %v)", errNoLookup, err, werr)
	}
	for _, m := range all {
		if m.ExternalPort == key.ExternalPort && strings.EqualFold(m.Protocol, string(key.Protocol)) && m.RemoteHost == key.RemoteHost {
			return m, nil
		}
	}
	// Absent from a walk is no proof: some routers end their table early.
	return igd.PortMapping{}, fmt.Errorf("%w (GetSpecificPortMappingEntry: %v; %s is not in the router's list)", errNoLookup, err, key)
}

// sameMapping reports whether the entry cur is the mapping pm asks for, so
// that adding pm again renews it rather than replacing anything.
func sameMapping(cur Mapping, pm igd.PortMapping) bool {
	return sameAddr(cur.InternalClient, pm.InternalClient) && cur.InternalPort == pm.InternalPort &&
		cur.Enabled == pm.Enabled && cur.Description == pm.Description && cur.RemoteHost == pm.RemoteHost
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(strings.TrimSpace(a))
	y, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	return x.Unmap() == y.Unmap()
}

func (g *upnpGateway) Add(ctx context.Context, r Request) (Mapping, error) {
	m, _, err := g.mapPort(ctx, r)
	return m, err
}

// mapPort makes the mapping r asks for without replacing another. The
// external port is looked up first (GetSpecificPortMappingEntry) because
// routers replace silently: miniupnpd answers AddPortMapping for a port
// this host already maps by re-pointing that mapping, whatever its
// internal port, and AddAnyPortMapping likewise. So a taken port is
// refused here (naming the holder), replaced only with r.Replace, and with
// r.Any another port is looked for the same careful way. Only when the
// router cannot be asked does the add go out unchecked.
func (g *upnpGateway) mapPort(ctx context.Context, r Request) (Mapping, []clock, error) {
	pm, err := g.toIGD(r)
	if err != nil {
		return Mapping{}, nil, err
	}
	key := Key{Protocol: r.Protocol, ExternalPort: pm.ExternalPort, RemoteHost: pm.RemoteHost}
	cur, lerr := g.lookup(ctx, key)
	checked := lerr == nil || errors.Is(lerr, errNoEntry)
	if lerr != nil && !checked && !errors.Is(lerr, errNoLookup) {
		return Mapping{}, nil, lerr
	}
	held := lerr == nil
	if held && !r.Replace {
		if kept := keptBy(g.st, UPnP, g.Addr(), key); kept != nil {
			return Mapping{}, nil, existsError(UPnP, key, cur, kept)
		}
	}
	var made igd.PortMapping
	switch {
	case held && sameMapping(cur, pm):
		made, err = g.c.AddMapping(ctx, pm, igd.AddOptions{})
	case held && r.Replace:
		if derr := g.c.DeletePortMapping(ctx, cur.RemoteHost, cur.ExternalPort, string(cur.Protocol)); derr != nil &&
			upnp.ErrorCode(derr) != igd.CodeNoSuchEntryInArray {
			return Mapping{}, nil, fmt.Errorf("replacing the mapping at %s: %w", key, refused(derr))
		}
		made, err = g.c.AddMapping(ctx, pm, igd.AddOptions{})
	case held && r.Any:
		made, err = g.addOnFreePort(ctx, pm, nil)
	case held:
		return Mapping{}, nil, existsError(UPnP, key, cur, nil)
	case checked:
		made, err = g.c.AddMapping(ctx, pm, igd.AddOptions{})
		if err != nil && r.Any && anotherPortMayDo(err, pm, g.local) {
			made, err = g.addOnFreePort(ctx, pm, err)
		}
	default:
		// The router cannot tell what holds the port: as upnpc does, ask
		// and let it refuse.
		made, err = g.c.AddMapping(ctx, pm, igd.AddOptions{Any: r.Any})
	}
	if err != nil {
		return Mapping{}, nil, g.explainAdd(err, pm)
	}
	m, err := g.readBack(ctx, made, pm)
	return m, nil, err
}

// anotherPortMayDo reports whether a refusal of pm's port may not hold
// for another port: 729 (the router uses the port itself) or 718 for a
// port nobody holds when the mapping is for this host. A 718 for another
// host with no holder is secure mode, which no port changes.
func anotherPortMayDo(err error, pm igd.PortMapping, local netip.Addr) bool {
	switch upnp.ErrorCode(err) {
	case igd.CodeConflictWithOtherMechanisms:
		return true
	case igd.CodeConflictInMappingEntry:
		var ce *igd.ConflictError
		if errors.As(err, &ce) && ce.Free {
			return !local.IsValid() || sameAddr(pm.InternalClient, local.String())
		}
		return true
	}
	return false
}

// freePortTries bounds how many ports addOnFreePort looks at.
const freePortTries = 64

// addOnFreePort adds pm on the first port after pm.ExternalPort that the
// router says nobody holds, checking each before asking for it, so that no
// existing mapping is replaced. first is the refusal of pm.ExternalPort
// itself, if it was asked for.
func (g *upnpGateway) addOnFreePort(ctx context.Context, pm igd.PortMapping, first error) (igd.PortMapping, error) {
	last := first
	port := pm.ExternalPort
	for range freePortTries {
		port = nextPort(port)
		try := pm
		try.ExternalPort = port
		_, lerr := g.lookup(ctx, Key{Protocol: Protocol(pm.Protocol), ExternalPort: port, RemoteHost: pm.RemoteHost})
		switch {
		case lerr == nil:
			continue // held: not ours to take
		case errors.Is(lerr, errNoLookup):
			return g.c.AddMapping(ctx, pm, igd.AddOptions{Any: true})
		case !errors.Is(lerr, errNoEntry):
			return igd.PortMapping{}, lerr
		}
		made, err := g.c.AddMapping(ctx, try, igd.AddOptions{})
		if err == nil {
			return made, nil
		}
		if !anotherPortMayDo(err, try, g.local) {
			return igd.PortMapping{}, err
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("every one of them holds a mapping")
	}
	return igd.PortMapping{}, fmt.Errorf("port %d/%s and the %d ports after it are taken; ask for another port: %w",
		pm.ExternalPort, pm.Protocol, freePortTries, last)
}

// nextPort is the port after p, wrapping from 65535 to 1024 so as to stay
// clear of well-known ports.
func nextPort(p uint16) uint16 {
	if p == 65535 {
		return 1024
	}
	return p + 1
}

// explainAdd turns a refusal of pm into a *RefusedError. A 718 for a port
// that nothing holds, asked for another host, is secure mode: the router
// lets a host map ports only to itself, which a "port taken" message would
// hide.
func (g *upnpGateway) explainAdd(err error, pm igd.PortMapping) error {
	var ce *igd.ConflictError
	if errors.As(err, &ce) && ce.Free {
		code := igd.CodeConflictInMappingEntry
		if g.local.IsValid() && !sameAddr(pm.InternalClient, g.local.String()) {
			return &RefusedError{Method: UPnP, Code: code, Err: err, Text: fmt.Sprintf(
				"the router refused to map port %d/%s to %s with error 718 (ConflictInMappingEntry), although no mapping holds that port: "+
					"it runs in secure mode, where a host may only map ports to itself, and this host is %s. "+
					"Run portfwd on %s itself, or turn secure mode off on the router (miniupnpd: secure_mode=no)",
				pm.ExternalPort, pm.Protocol, pm.InternalClient, g.local, pm.InternalClient)}
		}
		return &RefusedError{Method: UPnP, Code: code, Err: err, Text: fmt.Sprintf(
			"the router refused port %d/%s with error 718 (ConflictInMappingEntry), although no mapping holds that port: "+
				"the router uses it for something else (a static forward, its own services); choose another external port, or allow any (--any)",
			pm.ExternalPort, pm.Protocol)}
	}
	return refused(err)
}

// readBack reads the mapping just made (made: as asked, with the port and
// lease the add settled on) from the router and returns it as the router
// holds it. A field the router ignored is an *IgnoredError (in a
// *RefusedError), with the mapping as it is; a lease or a description the
// router changed is a note. When the router cannot be asked, the mapping
// is returned as requested, with ReadBack false and a note saying so.
func (g *upnpGateway) readBack(ctx context.Context, made, asked igd.PortMapping) (Mapping, error) {
	got, err := g.lookup(ctx, Key{Protocol: Protocol(strings.ToUpper(made.Protocol)), ExternalPort: made.ExternalPort, RemoteHost: made.RemoteHost})
	if err != nil {
		m := g.fromIGD(made)
		if errors.Is(err, errNoEntry) {
			return m, &RefusedError{Method: UPnP, Err: &IgnoredError{Mapping: m, Field: "mapping", Asked: "made", Got: "absent"},
				Text: fmt.Sprintf("the router accepted the mapping of port %d/%s but does not hold it when asked right after; it may refuse such mappings without saying so (check its UPnP settings)",
					made.ExternalPort, made.Protocol)}
		}
		if ctx.Err() != nil {
			return m, ctx.Err()
		}
		m.addNote(fmt.Sprintf("the router would not read the mapping back (%v): its details are as requested", err))
		return m, nil
	}
	got.ReadBack = true
	ignored := func(field, asked, holds, consequence string) error {
		e := &IgnoredError{Mapping: got, Field: field, Asked: asked, Got: holds}
		return &RefusedError{Method: UPnP, Err: e, Text: e.Error() + consequence}
	}
	switch {
	case asked.Enabled != got.Enabled && !asked.Enabled:
		return got, ignored("enabled", "no", "yes", fmt.Sprintf(
			": the port is still open. This router cannot disable a mapping (miniupnpd ignores NewEnabled); delete it instead (portfwd delete %d/%s)",
			got.ExternalPort, strings.ToLower(string(got.Protocol))))
	case asked.Enabled != got.Enabled:
		return got, ignored("enabled", "yes", "no", ": the port is closed")
	case !sameAddr(asked.InternalClient, got.InternalClient):
		return got, ignored("internal client", asked.InternalClient, got.InternalClient, "")
	case asked.InternalPort != got.InternalPort:
		return got, ignored("internal port", fmt.Sprint(asked.InternalPort), fmt.Sprint(got.InternalPort), "")
	case asked.RemoteHost != got.RemoteHost:
		return got, ignored("remote host", fmt.Sprintf("%q", asked.RemoteHost), fmt.Sprintf("%q", got.RemoteHost), "")
	case asked.Description != got.Description && !(got.Description != "" && strings.HasPrefix(asked.Description, got.Description)):
		return got, ignored("description", fmt.Sprintf("%q", asked.Description), fmt.Sprintf("%q", got.Description), "")
	}
	if asked.Description != got.Description {
		got.addNote(fmt.Sprintf("the router shortened the description to %q", got.Description))
	}
	got.addNote(leaseNote(asked.LeaseDuration, got.Lease, got.Permanent))
	return got, nil
}

// leaseNote says how the lease granted differs from the one asked for
// (0: permanent).
func leaseNote(asked, granted time.Duration, permanent bool) string {
	switch {
	case asked == 0 && !permanent:
		return fmt.Sprintf("asked for a permanent mapping; the router granted a lease of %v (renew it before then, or use portfwd keep)", granted)
	case asked != 0 && permanent:
		return fmt.Sprintf("asked for a lease of %v; the router holds the mapping permanently (delete it when no longer needed)", asked)
	case asked != 0 && (granted < asked-2*time.Second || granted > asked+2*time.Second):
		return fmt.Sprintf("asked for a lease of %v; the router granted %v", asked, granted)
	}
	return ""
}

func (g *upnpGateway) renew(ctx context.Context, m Mapping, r Request) (Mapping, []clock, error) {
	pm, err := g.toIGD(r)
	if err != nil {
		return Mapping{}, nil, err
	}
	pm.ExternalPort = m.ExternalPort
	key := Key{Protocol: r.Protocol, ExternalPort: pm.ExternalPort, RemoteHost: pm.RemoteHost}
	// What holds the port now: ours, renewed below; nothing (the router
	// lost it), made again; or another mapping, which is not ours to
	// replace.
	cur, lerr := g.lookup(ctx, key)
	switch {
	case lerr == nil && !sameMapping(cur, pm):
		return Mapping{}, nil, existsError(UPnP, key, cur, nil)
	case lerr != nil && !errors.Is(lerr, errNoEntry) && !errors.Is(lerr, errNoLookup):
		return Mapping{}, nil, lerr
	}
	made, err := g.c.AddMapping(ctx, pm, igd.AddOptions{})
	if err != nil {
		return Mapping{}, nil, g.explainAdd(err, pm)
	}
	nm, err := g.readBack(ctx, made, pm)
	return nm, nil, err
}

func (g *upnpGateway) Edit(ctx context.Context, key Key, c Change) (Mapping, error) {
	old, err := g.entry(ctx, key)
	if err != nil {
		return Mapping{}, refused(err)
	}
	m := c.apply(g.fromIGD(old))
	want := igd.PortMapping{
		RemoteHost: m.RemoteHost, ExternalPort: m.ExternalPort, Protocol: string(m.Protocol),
		InternalPort: m.InternalPort, InternalClient: m.InternalClient, Enabled: m.Enabled,
		Description: m.Description, LeaseDuration: m.Lease,
	}
	if c.Lease == nil && !m.Permanent {
		// Keep the lease the entry had, in whole seconds.
		want.LeaseDuration = m.Lease.Round(time.Second)
	}
	if nk := (Key{Protocol: m.Protocol, ExternalPort: m.ExternalPort, RemoteHost: m.RemoteHost}); nk.ExternalPort != key.ExternalPort || nk.Protocol != key.Protocol {
		// Moving to another port: what is there must not be replaced
		// unless asked to.
		cur, lerr := g.lookup(ctx, nk)
		switch {
		case lerr == nil && !c.Replace:
			return Mapping{}, existsError(UPnP, nk, cur, keptBy(g.st, UPnP, g.Addr(), nk))
		case lerr == nil:
			if derr := g.c.DeletePortMapping(ctx, cur.RemoteHost, cur.ExternalPort, string(cur.Protocol)); derr != nil &&
				upnp.ErrorCode(derr) != igd.CodeNoSuchEntryInArray {
				return Mapping{}, fmt.Errorf("replacing the mapping at %s: %w", nk, refused(derr))
			}
		case !errors.Is(lerr, errNoEntry) && !errors.Is(lerr, errNoLookup):
			return Mapping{}, lerr
		}
	}
	made, err := g.c.ReplaceMapping(ctx, old, want)
	if err != nil {
		var ee *igd.EditError
		if errors.As(err, &ee) && ee.Restored {
			if re, ok := g.explainAdd(ee.Err, want).(*RefusedError); ok {
				re.Text += "; the mapping was left as it was"
				re.Err = err
				return Mapping{}, re
			}
		}
		return Mapping{}, refused(err)
	}
	return g.readBack(ctx, made, want)
}

func (g *upnpGateway) Delete(ctx context.Context, key Key) error {
	if err := g.c.DeletePortMapping(ctx, key.RemoteHost, key.ExternalPort, string(key.Protocol)); err != nil {
		return refused(err)
	}
	return nil
}

func (g *upnpGateway) DeleteRange(ctx context.Context, proto Protocol, start, end uint16) ([]Mapping, error) {
	pms, err := g.c.RemoveRange(ctx, start, end, string(proto))
	out := make([]Mapping, len(pms))
	for i, pm := range pms {
		out[i] = g.fromIGD(pm)
	}
	if err != nil {
		var re *igd.RangeError
		if errors.As(err, &re) {
			return out, &RefusedError{Method: UPnP, Code: upnp.ErrorCode(err), Err: err,
				Text: strings.TrimPrefix(err.Error(), "igd: ") + "; the router keeps them (other hosts' mappings, in secure mode)"}
		}
		return out, refused(err)
	}
	return out, nil
}

func (g *upnpGateway) read(ctx context.Context, list bool) (reading, error) {
	var r reading
	ip, err := g.ExternalIP(ctx)
	if err != nil && !isRefusal(err) {
		return r, err
	}
	r.ext, r.extOK = ip, err == nil
	if st, err := g.c.GetStatusInfo(ctx); err == nil {
		r.status = st.ConnectionStatus
		if st.Uptime > 0 {
			r.clocks = append(r.clocks, clock{rule: epoch.Uptime, value: uint32(min(st.Uptime/time.Second, 1<<32-1))})
		}
	}
	if list {
		l, err := g.List(ctx, nil)
		if err == nil {
			r.list, r.listed = l, true
		}
	}
	return r, nil
}

func (g *upnpGateway) eventURL() (string, string) {
	if g.ref.Service.EventSubURL == "" {
		return "", "the router's description has no event URL for its connection service"
	}
	u, err := g.root.Resolve(g.ref.Service.EventSubURL)
	if err != nil {
		return "", fmt.Sprintf("event URL %q: %v", g.ref.Service.EventSubURL, err)
	}
	return u, ""
}

// refused turns a UPnP fault into a *RefusedError carrying the code and the
// sentence igd.Explain gives for it; other errors pass through.
func refused(err error) error {
	if code := upnp.ErrorCode(err); code != 0 {
		return &RefusedError{Method: UPnP, Code: code, Text: igd.Explain(err), Err: err}
	}
	return err
}

func isRefusal(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// existsError is the refusal to replace cur, found at key.
func existsError(method Method, key Key, cur Mapping, kept *Process) error {
	return RefuseExisting(method, key, cur, kept)
}

// RefuseExisting returns the refusal Add and Edit give when existing, found
// at key (or, on NAT-PMP and PCP, at existing's own key for the same
// internal port), would be replaced: a *RefusedError wrapping an
// *ExistsError, with the sentence for the user. Gateway implementations
// outside this package use it to refuse the same way.
func RefuseExisting(method Method, key Key, existing Mapping, keptBy *Process) error {
	cur := existing
	e := &ExistsError{Key: key, Existing: cur, KeptBy: keptBy}
	advice := "; to replace it, add --replace; or choose another external port, or delete it first"
	if cur.ExternalPort != key.ExternalPort {
		advice = "; to replace it, add --replace; or delete it first"
	}
	return &RefusedError{Method: method, Text: e.Error() + advice, Err: e}
}

// keptBy returns the live process keeping the mapping at key open
// according to the store, other than this one, or nil.
func keptBy(st *store, method Method, gw string, key Key) *Process {
	if st == nil {
		return nil
	}
	recs, err := st.records(method, gw, func(r Record) bool { return r.Key() == Key{Protocol: key.Protocol, ExternalPort: key.ExternalPort} })
	if err != nil {
		return nil
	}
	for _, r := range recs {
		if r.Keeper != nil && r.Keeper.PID != os.Getpid() && r.Keeper.Alive() {
			return r.Keeper
		}
	}
	return nil
}
