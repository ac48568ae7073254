package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/httpserve"
	"github.com/portfwd/portfwd/ssdp"
	"github.com/portfwd/portfwd/upnp"
)

// upnpSide is the UPnP IGD: the SOAP service over the core, its HTTP
// listeners, GENA eventing and SSDP.
type upnpSide struct {
	svc       *upnpService
	igd       *igd.Server
	publisher *upnp.Publisher
	http      []*httpListener
	limits    *connLimiter // of the HTTP servers, all addresses together
	responder *ssdp.Responder
	// events are the services' event paths ("" for a service not
	// served), which a personality's layout may move.
	events struct{ conn, common, l3f string }
}

// upnpLayout returns the personality's layout, or nil for portfwd's own
// paths.
func (d *Daemon) upnpLayout() *igd.Layout {
	if !QuirksBuilt || d.personality == nil {
		// The router build has no personalities: the constant leaves
		// their layouts (and their map's 7 KB of initialisation) out.
		return nil
	}
	l, ok := personalityLayouts[d.personality.Slug]
	if !ok {
		return nil
	}
	return &l
}

// httpListener is the UPnP HTTP server on one internal address.
type httpListener struct {
	iface string
	addr  netip.AddrPort
	ln    net.Listener
	srv   *httpserve.Server
}

// setupUPnP builds the IGD server, its event publisher and SSDP responder,
// and opens an HTTP listener on every IPv4 address of every internal
// interface.
func (d *Daemon) setupUPnP(ctx context.Context) error {
	cfg := &d.cfg
	version := 2
	if cfg.UPnP.ForceIGDv1 {
		version = 1
	}
	d.upnpSide.svc = &upnpService{
		core: d.core, ext: d.wan.ext, metrics: d.metrics, v1: version == 1, start: d.start,
		bitsUp: cfg.Device.BitrateUp, bitsDown: cfg.Device.BitrateDown, quirks: d.quirks,
	}
	if len(cfg.Interfaces.External) > 0 {
		d.upnpSide.svc.wanIf = cfg.Interfaces.External[0]
	}
	scfg := igd.ServerConfig{
		Service:          d.upnpSide.svc,
		Version:          version,
		UUID:             d.uuid,
		FriendlyName:     cfg.Device.FriendlyName,
		Manufacturer:     cfg.Device.Manufacturer,
		ManufacturerURL:  cfg.Device.ManufacturerURL,
		ModelName:        cfg.Device.ModelName,
		ModelNumber:      cfg.Device.ModelNumber,
		ModelDescription: cfg.Device.ModelDescription,
		ModelURL:         cfg.Device.ModelURL,
		SerialNumber:     cfg.Device.SerialNumber,
		PresentationURL:  cfg.Device.PresentationURL,
		ServerHeader:     d.serverHeader(),
		Logger:           d.log,
		OnRequest:        func(action string, code int) { d.metrics.request("upnp", action, code) },
		OnFault:          d.onUPnPFault,
		Layout:           d.upnpLayout(),
	}
	ev := &d.upnpSide.events
	ev.conn, ev.common, ev.l3f = igd.WANIPConnectionEventPath, igd.WANCommonInterfaceConfigEventPath, igd.Layer3ForwardingEventPath
	if l := scfg.Layout; l != nil {
		ev.conn, ev.common, ev.l3f = l.Connection.Event, "", ""
		if l.Common != nil {
			ev.common = l.Common.Event
		}
		if l.L3F != nil {
			ev.l3f = l.L3F.Event
		}
	}
	if version != 1 && scfg.Layout == nil {
		ev.l3f = ""
	}
	if version >= 2 {
		// IPv6 pinholes (WANIPv6FirewallControl:1): IGDv2 only, as
		// miniupnpd's force_igd_desc_v1 drops it too.
		scfg.FirewallControl = &firewallService{core: d.core, filtering: cfg.IPv6.Firewall, metrics: d.metrics}
	}
	if cfg.UPnP.Events {
		d.upnpSide.publisher = upnp.NewPublisher(upnp.PublisherConfig{
			Services:   d.eventedServices(version),
			Moderation: 200 * time.Millisecond,
			Logger:     d.log,
		})
		scfg.Events = d.upnpSide.publisher
	}
	srv, err := igd.NewServer(scfg)
	if err != nil {
		return fmt.Errorf("building the UPnP IGD server: %w", err)
	}
	d.upnpSide.igd = srv

	d.upnpSide.limits = newConnLimiter(httpMaxPerAddr, httpConnLimit(), d.log)
	port := cfg.UPnP.HTTPPort
	for _, name := range cfg.Interfaces.Internal {
		addrs, err := d.lan.addrsOf(name)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			hl, err := d.listenHTTP(ctx, name, netip.AddrPortFrom(a, uint16(port)))
			if err != nil {
				return err
			}
			// With port 0, every address gets the port the first one got.
			port = int(hl.addr.Port())
			d.upnpSide.http = append(d.upnpSide.http, hl)
		}
	}
	// IPv6: the same server on the interface's global and unique-local
	// addresses, for IPv6 control points and their pinholes (which must
	// be asked for over IPv6: over IPv4 the requester is not the host's
	// IPv6 address, and secure mode answers 606, as miniupnpd does).
	for _, name := range cfg.Interfaces.Internal {
		for _, a := range ipv6AddrsOf(name) {
			hl, err := d.listenHTTP(ctx, name, netip.AddrPortFrom(a, uint16(port)))
			if err != nil {
				d.log.Warn("no UPnP over IPv6 on this address", "interface", name, "addr", a, "err", err)
				continue
			}
			d.upnpSide.http = append(d.upnpSide.http, hl)
		}
	}
	if cfg.UPnP.SSDP {
		for _, name := range cfg.Interfaces.Internal {
			if ifi, err := net.InterfaceByName(name); err == nil && ifi.Flags&net.FlagMulticast == 0 {
				return fmt.Errorf("internal interface %s cannot do multicast, so SSDP discovery cannot work there: enable it (ip link set %s multicast on) or turn SSDP off (upnp.ssdp = false, --no-ssdp)", name, name)
			}
		}
		d.upnpSide.responder = &ssdp.Responder{
			Adverts:        advertsOf(srv.Root()),
			Location:       d.descriptionURLFor,
			NotifyInterval: time.Duration(cfg.UPnP.NotifyInterval),
			Interfaces:     cfg.Interfaces.Internal,
			BootID:         int(d.start.Unix()),
			ConfigID:       srv.ConfigID(),
			// One gateway per LAN: the random MX delay exists to spread the
			// answers of many devices, and control points with short waits
			// (python-miniupnpc waits 200 ms with MX 1) would miss a late one.
			MaxMX:  -1,
			Server: d.serverHeader(),
			Quirks: ssdp.ResponderQuirks{
				SameVersionOnly: d.quirks.IGD2Only,
				OtherPort:       d.quirks.SSDPOtherPort,
				FullMX:          d.quirks.SSDPSlow,
				UnicastOnly:     d.quirks.SSDPSilent,
			},
			Logger: d.log,
		}
	}
	return nil
}

// listenHTTP opens the UPnP HTTP server's listener on addr.
func (d *Daemon) listenHTTP(ctx context.Context, iface string, addr netip.AddrPort) (*httpListener, error) {
	var lc net.ListenConfig
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := lc.Listen(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("UPnP HTTP server on %s (%s): %w (is another UPnP daemon, such as miniupnpd, running? change upnp.http_port otherwise)", addr, iface, err)
	}
	got, _ := netip.ParseAddrPort(ln.Addr().String())
	return &httpListener{
		iface: iface,
		addr:  got,
		ln:    &lanListener{Listener: ln, allow: d.lan.allowed, limits: d.upnpSide.limits, log: d.log},
		srv: &httpserve.Server{
			Handler:            wrapQuirks(d.upnpSide.igd, d.quirks, d.log, d.metrics),
			ConnState:          d.upnpSide.limits.connState,
			ReadHeaderTimeout:  httpReadHeaderTimeout,
			ReadTimeout:        httpReadTimeout,
			WriteTimeout:       httpWriteTimeout,
			IdleTimeout:        httpIdleTimeout,
			MaxHeaderBytes:     httpMaxHeaderBytes,
			MaxRequestsPerConn: httpMaxRequestsPerConn,
			Logger:             d.log,
		},
	}, nil
}

// descriptionURLFor returns the description URL on the listener of local,
// for SSDP answers on the interface holding it.
func (d *Daemon) descriptionURLFor(local netip.Addr) string {
	for _, h := range d.upnpSide.http {
		if h.addr.Addr() == local {
			return "http://" + h.addr.String() + d.descriptionPath()
		}
	}
	return ""
}

// DescriptionURLs returns the root description URL on every internal
// address, the URL a client may be given instead of SSDP discovery.
func (d *Daemon) DescriptionURLs() []string {
	var out []string
	for _, h := range d.upnpSide.http {
		out = append(out, "http://"+h.addr.String()+d.descriptionPath())
	}
	return out
}

// descriptionPath is where the IGD server serves its root description.
func (d *Daemon) descriptionPath() string {
	p, _ := d.upnpSide.igd.Paths()
	return p
}

// advertsOf returns the SSDP advertisements of a device tree: the root
// device and each embedded one, with their service types.
func advertsOf(root *upnp.Root) []ssdp.Advertisement {
	var out []ssdp.Advertisement
	var walk func(dev *upnp.Device, isRoot bool)
	walk = func(dev *upnp.Device, isRoot bool) {
		var types []string
		for _, s := range dev.Services {
			types = append(types, s.ServiceType)
		}
		out = append(out, ssdp.DeviceAdverts(dev.UDN, dev.DeviceType, isRoot, types...)...)
		for i := range dev.Devices {
			walk(&dev.Devices[i], false)
		}
	}
	walk(&root.Device, true)
	return out
}

// eventedServices returns, for the GENA publisher, the evented state
// variables of each service by event path (read when a control point
// subscribes).
func (d *Daemon) eventedServices(version int) map[string]func() []upnp.Arg {
	ev := d.upnpSide.events
	m := map[string]func() []upnp.Arg{
		ev.conn: func() []upnp.Arg {
			return append([]upnp.Arg{{Name: "PossibleConnectionTypes", Value: "IP_Routed"}}, d.connectionVars(version)...)
		},
	}
	if ev.common != "" {
		m[ev.common] = func() []upnp.Arg {
			return []upnp.Arg{{Name: "PhysicalLinkStatus", Value: d.linkStatus()}}
		}
	}
	if version >= 2 {
		m[igd.WANIPv6FirewallControlEventPath] = func() []upnp.Arg {
			return d.upnpSide.igd.EventedVariables(context.Background(), igd.WANIPv6FirewallControlEventPath)
		}
	}
	if ev.l3f != "" {
		m[ev.l3f] = func() []upnp.Arg {
			return []upnp.Arg{{Name: "DefaultConnectionService", Value: defaultConnectionService(d.upnpSide.igd.Root())}}
		}
	}
	return m
}

// connectionVars are WANIPConnection's evented variables that change.
func (d *Daemon) connectionVars(version int) []upnp.Arg {
	status, _, _ := d.upnpSide.svc.ConnectionStatus(context.Background())
	ip := ""
	if a := d.wan.ext.Get(); a.Is4() {
		ip = a.String()
	}
	vars := []upnp.Arg{
		{Name: "ConnectionStatus", Value: status},
		{Name: "ExternalIPAddress", Value: ip},
		{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(d.core.OwnAddrLen())},
	}
	if version >= 2 {
		vars = append(vars, upnp.Arg{Name: "SystemUpdateID", Value: strconv.FormatUint(uint64(d.upnpSide.svc.updateID.Load()), 10)})
	}
	return vars
}

func (d *Daemon) linkStatus() string {
	lp, _ := d.upnpSide.svc.LinkProperties(context.Background())
	return lp.Status
}

// defaultConnectionService is Layer3Forwarding's name for the WAN
// connection: the UDN of the device holding WANIPConnection (or, under a
// personality, WANPPPConnection), then its service ID.
func defaultConnectionService(root *upnp.Root) string {
	var find func(dev *upnp.Device) string
	find = func(dev *upnp.Device) string {
		for _, s := range dev.Services {
			if _, typ, _, ok := igd.ParseServiceType(s.ServiceType); ok && (typ == "WANIPConnection" || typ == "WANPPPConnection") {
				return dev.UDN + ":WANConnectionDevice:1," + s.ServiceID
			}
		}
		for i := range dev.Devices {
			if v := find(&dev.Devices[i]); v != "" {
				return v
			}
		}
		return ""
	}
	return find(&root.Device)
}

// onEvent follows the core's table changes: metrics, SystemUpdateID, and
// the GENA event with the new entry count.
func (d *Daemon) onEvent(e gateway.Event) {
	defer d.catch("table event")
	d.metrics.event(e)
	if d.upnpSide.svc == nil || e.Mapping.ExternalAddr.IsValid() {
		// A mapping on an external pool address is not in UPnP's table
		// (see gateway.Core.Index): its subscribers hear of nothing.
		return
	}
	id := d.upnpSide.svc.updateID.Add(1)
	if d.upnpSide.publisher == nil {
		return
	}
	vars := []upnp.Arg{{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(e.Count)}}
	if !d.upnpSide.svc.v1 {
		vars = append(vars, upnp.Arg{Name: "SystemUpdateID", Value: strconv.FormatUint(uint64(id), 10)})
	}
	if _, ok := d.forgotten.LoadAndDelete(e.Mapping.Key()); ok && e.Kind == gateway.EventDeleted {
		return // quirk forgetful: the loss is told to nobody
	}
	d.upnpSide.publisher.Notify(d.upnpSide.events.conn, vars)
}
