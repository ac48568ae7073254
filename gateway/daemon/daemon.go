package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/gateway/nft"
	"github.com/portfwd/portfwd/gateway/relay"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/internal/netroute"
	"github.com/portfwd/portfwd/pmp"
	"github.com/portfwd/portfwd/ssdp"
	"github.com/portfwd/portfwd/upnp"
)

// Timeouts of the HTTP servers. SOAP requests and descriptions are small
// and LAN clients are fast; the bounds keep a slow or idle client from
// holding a connection.
const (
	httpReadHeaderTimeout = 3 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 10 * time.Second
	// httpIdleTimeout closes a kept-alive connection fast: control points
	// make one request at a time, and miniupnpd closes after each.
	httpIdleTimeout    = 5 * time.Second
	httpMaxHeaderBytes = 8 << 10
	// shutdownTimeout bounds the whole shutdown: requests under way, the
	// core finishing its operations, a flush of the backend.
	shutdownTimeout = 10 * time.Second
	// startTimeout bounds learning the external address at start.
	startTimeout = 10 * time.Second
)

// Daemon is a running gateway. New builds it with every socket open; Serve
// runs it. Its accessors are for the command that started it (the demo
// prints its URLs) and for the admin page mounted on AdminMux.
//
// Its state is grouped by concern, as its files are: the core and what
// keeps it (store, audit trail, backend), the external side (wan.go), the
// UPnP servers (upnp.go), NAT-PMP and PCP (pmp.go), and the admin server
// (adminui.go).
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	start   time.Time

	// instance holds the locks of the state directory and the nft table
	// (see instance.go).
	instance *instanceLock

	store *gateway.FileStore // nil without a state directory
	audit *auditLog
	// refusals logs refused requests at the default level, bounded.
	refusals *refusalLog
	backend  gateway.Backend
	nftb     *nft.Backend // the backend when it is nft, for Destroy
	core     *gateway.Core
	uuid     string
	// epoch is the origin of NAT-PMP's epoch (see natpmpEpoch).
	epoch time.Time
	// lan tells the LAN's hosts from others, for the UPnP listeners.
	lan *lanPeers

	wan       wanSide
	upnpSide  upnpSide
	pmpSide   pmpSide
	adminSide adminSide

	unsubscribe func()
	closeOnce   sync.Once
	closeErr    error
	serving     sync.Mutex // held by Serve: it runs once
	served      bool
}

// wanSide is what the daemon knows of its external side, and follows.
type wanSide struct {
	ext *externalAddr
	// addrChanged is when the external address last changed, for PCP's
	// epoch (see pcpEpoch); nil until it does.
	addrChanged atomic.Pointer[time.Time]
	// relay is the relay backend when it follows the external interface's
	// address (see relayBackend); nil otherwise.
	relay *relayBackend
	// addrWatch reports address changes as they happen (Linux); nil when
	// nothing needs them or they are unavailable. wake carries them to the
	// external address's refresh loop.
	addrWatch *addrWatcher
	wake      chan struct{}
	// probeMu guards probeList, the addresses probeAddrs gives, read at
	// probeAt.
	probeMu   sync.Mutex
	probeList []netip.Addr
	probeAt   time.Time
}

// upnpSide is the UPnP IGD: the SOAP service over the core, its HTTP
// listeners, GENA eventing and SSDP.
type upnpSide struct {
	svc       *upnpService
	igd       *igd.Server
	publisher *upnp.Publisher
	http      []*httpListener
	limits    *connLimiter // of the HTTP servers, all addresses together
	responder *ssdp.Responder
}

// pmpSide is UDP 5351: NAT-PMP and PCP, with their announcements.
type pmpSide struct {
	conn   net.PacketConn
	server *pmp.Server
}

// adminSide is the admin server: /metrics, /healthz and, with admin.ui,
// the admin page.
type adminSide struct {
	mux  *http.ServeMux
	ln   net.Listener
	srv  *http.Server
	page *admin.Server
}

// httpListener is the UPnP HTTP server on one internal address.
type httpListener struct {
	iface string
	addr  netip.AddrPort
	ln    net.Listener
	srv   *http.Server
}

// Run builds the daemon for cfg and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	return d.Serve(ctx)
}

// New validates cfg, opens the lease store and the backend, restores the
// saved leases into the core, learns the external address and opens every
// socket. Nothing is answered until Serve. If New fails, everything it
// opened is closed again; installed rules are left as they were.
func New(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway configuration: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Daemon{cfg: cfg, log: log, metrics: newMetrics(), start: time.Now(), refusals: newRefusalLog(log)}
	// First of all, before anything shared is touched (the nft table, the
	// journal): make sure no other gateway runs on them.
	if d.instance, err = acquireInstance(&d.cfg, d.start); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			d.cleanup(false)
		}
	}()
	if err := d.checkRoles(); err != nil {
		return nil, err
	}

	d.wan.ext = newExternalAddr(cfg.ExternalAddress, cfg.Interfaces.External, log)
	uctx, cancel := context.WithTimeout(ctx, startTimeout)
	if err := d.wan.ext.update(uctx); err != nil {
		log.Warn("no external address yet; reporting none until it is learned", "source", d.wan.ext.source(), "err", err)
	}
	cancel()

	if cfg.StateDir != "" {
		if d.store, err = gateway.OpenFileStore(cfg.StateDir, &gateway.FileStoreOptions{Logger: log}); err != nil {
			return nil, fmt.Errorf("opening the state directory: %w", err)
		}
	} else {
		log.Warn("no state directory: leases are kept in memory only and lost on restart")
	}
	if d.audit, err = openAuditLog(cfg.StateDir, cfg.Audit, log); err != nil {
		return nil, err
	}
	if d.backend, err = d.openBackend(ctx); err != nil {
		return nil, err
	}
	policy, _ := cfg.effectivePolicy() // validated above
	gcfg := gateway.Config{Backend: d.backend, Policy: policy, ExternalAddr: d.wan.ext.Get, Logger: log, Audit: d.audit.Record}
	if canProbePorts {
		gcfg.PortInUse = func(p gateway.Protocol, port uint16) bool {
			return portServed(p, port, d.probeAddrs())
		}
	}
	if d.store != nil {
		gcfg.Store = d.store // not a typed nil in the interface
	}
	if d.core, err = gateway.New(ctx, gcfg); err != nil {
		return nil, err
	}

	d.uuid = cfg.Device.UUID
	if d.uuid == "" && d.store != nil {
		d.uuid = d.store.UUID()
	}
	if d.uuid == "" {
		d.uuid = randomUUID()
	}
	d.epoch = d.start
	if d.store != nil && !d.store.EpochOrigin().IsZero() {
		d.epoch = d.store.EpochOrigin()
	}

	if cfg.UPnP.Enabled || cfg.NATPMP.Enabled {
		if d.lan, err = newLANPeers(cfg.Interfaces.Internal); err != nil {
			return nil, err
		}
	}
	if cfg.UPnP.Enabled {
		if err := d.setupUPnP(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.NATPMP.Enabled {
		if err := d.setupNATPMP(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.setupAdmin(ctx); err != nil {
		return nil, err
	}
	d.openAddrWatch()
	d.unsubscribe = d.core.Subscribe(d.onEvent)
	d.wan.ext.OnChange(d.onAddressChange)
	return d, nil
}

// openAddrWatch subscribes to the host's address changes when something
// depends on the external interface's address: the external address read
// from it (or learned over STUN, which is asked again when it changes),
// and the relay bound to it. Without them (another OS, no netlink) the
// address is still read every refresh.
func (d *Daemon) openAddrWatch() {
	d.wan.wake = make(chan struct{}, 1)
	if d.cfg.ExternalAddress.Source == SourceFixed && d.wan.relay == nil || len(d.cfg.Interfaces.External) == 0 {
		return
	}
	w, err := openAddrWatcher(0)
	if err != nil {
		if addrEventsSupported {
			d.log.Warn("external address changes will be noticed at the next refresh only", "refresh", d.wan.ext.refresh, "err", err)
		}
		return
	}
	d.wan.addrWatch = w
}

// followAddresses acts on changes of the external interfaces' addresses
// as the kernel reports them: the external address is read (or asked from
// STUN) again at once, and the relay moves to the interface's new address.
// A watcher failure falls back to the periodic refresh.
func (d *Daemon) followAddresses(ctx context.Context) {
	external := d.cfg.Interfaces.External
	concerns := func(ev addrEvent) bool { return matchInterface(ev.interfaceName(), external) }
	err := followAddrEvents(ctx, d.wan.addrWatch, concerns, func(evs []addrEvent) {
		defer d.catch("address event")
		for _, ev := range evs {
			what := "added"
			if ev.Deleted {
				what = "removed"
			}
			d.log.Debug("external interface address "+what, "interface", ev.interfaceName(), "address", ev.Prefix)
		}
		if evs == nil {
			d.log.Info("address events were lost; reading the external address again")
		}
		if d.cfg.ExternalAddress.Source != SourceFixed {
			select {
			case d.wan.wake <- struct{}{}:
			default: // a read is already due, and will see this change
			}
		}
		if d.wan.relay != nil {
			d.followRelay(ctx)
		}
	})
	if err != nil {
		d.log.Warn("stopped following address changes; the external address is now read every refresh only", "refresh", d.wan.ext.refresh, "err", err)
	}
}

// followRelay moves the relay to the external interface's current
// address, if it has one and it is another.
func (d *Daemon) followRelay(ctx context.Context) {
	a, err := interfaceIPv4(d.cfg.Interfaces.External[0])
	if err != nil || a == d.wan.relay.bindAddr() {
		return // no address for now: the ports stay where they were
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.wan.relay.rebind(rctx, a); err != nil {
		d.metrics.error(errKindBackend)
		d.log.Error("relay backend: some ports could not move to the new address", "err", err)
	}
}

// openBackend opens the backend the configuration names.
func (d *Daemon) openBackend(ctx context.Context) (gateway.Backend, error) {
	cfg := &d.cfg
	switch cfg.resolvedBackend() {
	case BackendNFT:
		nc := nft.Config{Table: cfg.NFT.Table, ExternalInterfaces: cfg.Interfaces.External, Logger: d.log}
		if cfg.NFT.Hairpin {
			nc.InternalInterfaces = cfg.Interfaces.Internal
		}
		b, err := nft.New(ctx, nc)
		if err != nil {
			return nil, fmt.Errorf("opening the nft backend (it needs root or CAP_NET_ADMIN; --backend relay needs neither): %w", err)
		}
		d.nftb = b
		return b, nil
	case BackendRelay:
		bind, follow := d.relayBind()
		d.log.Info("relay backend: external ports are bound on " + bind.String())
		rc := relay.Config{
			BindAddr:        bind,
			UDPIdleTimeout:  time.Duration(cfg.Relay.UDPIdleTimeout),
			MaxConnsPerRule: cfg.Relay.MaxConnsPerRule,
			Logger:          d.log,
		}
		if follow {
			d.wan.relay = newRelayBackend(rc, d.log)
			return d.wan.relay, nil
		}
		return relay.New(rc), nil
	default:
		d.log.Warn("memory backend: mappings are recorded but no traffic is forwarded")
		return gateway.NewMemory(), nil
	}
}

// relayBind picks the relay's bind address: the configured one, else the
// external interface's address (which the relay then follows when it
// changes), else the fixed external address when it is one of this
// host's, else every address.
func (d *Daemon) relayBind() (addr netip.Addr, fromInterface bool) {
	cfg := &d.cfg
	if cfg.Relay.Bind != "" {
		return netip.MustParseAddr(cfg.Relay.Bind), false // validated
	}
	if ext := cfg.Interfaces.External; len(ext) > 0 {
		if a, err := interfaceIPv4(ext[0]); err == nil {
			return a, true
		}
	}
	if a, _ := d.wan.ext.current(); a.IsValid() && isLocalAddr(a) {
		return a, false
	}
	d.log.Warn("relay backend: no external interface address to bind; binding external ports on every address, LAN side included")
	return netip.IPv4Unspecified(), false
}

// probeAddrsTTL is how long the external addresses probed for the router's
// own services are reused: reading them costs a netlink dump, and they
// change seldom (a change is seen within this delay).
const probeAddrsTTL = time.Second

// probeAddrs are the addresses on which the router's own services are
// looked for: the external addresses, or, when there is none, every
// address (0.0.0.0), which errs on the side of refusing.
func (d *Daemon) probeAddrs() []netip.Addr {
	d.wan.probeMu.Lock()
	defer d.wan.probeMu.Unlock()
	if now := time.Now(); d.wan.probeAt.IsZero() || now.Sub(d.wan.probeAt) > probeAddrsTTL || now.Before(d.wan.probeAt) {
		d.wan.probeList = d.externalAddrs()
		if len(d.wan.probeList) == 0 {
			d.wan.probeList = []netip.Addr{netip.IPv4Unspecified()}
		}
		d.wan.probeAt = now
	}
	return d.wan.probeList
}

// externalAddrs are the addresses through which the Internet reaches the
// router: those of the external interfaces, and the external address.
func (d *Daemon) externalAddrs() []netip.Addr {
	var out []netip.Addr
	for _, name := range d.cfg.Interfaces.External {
		if strings.HasSuffix(name, "*") {
			ifs, _ := net.Interfaces()
			for _, ifi := range ifs {
				if strings.HasPrefix(ifi.Name, strings.TrimSuffix(name, "*")) {
					ps, _ := netroute.InterfaceAddrs(ifi.Name)
					for _, p := range ps {
						out = append(out, p.Addr())
					}
				}
			}
			continue
		}
		ps, _ := netroute.InterfaceAddrs(name)
		for _, p := range ps {
			out = append(out, p.Addr())
		}
	}
	if a := d.wan.ext.Get(); a.IsValid() {
		out = append(out, a)
	}
	return out
}

// isLocalAddr reports whether a is an address of this host.
func isLocalAddr(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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
		bitsUp: cfg.Device.BitrateUp, bitsDown: cfg.Device.BitrateDown,
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
		Logger:           d.log,
		OnRequest:        func(action string, code int) { d.metrics.request("upnp", action, code) },
		OnFault:          d.onUPnPFault,
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
			Logger: d.log,
		}
	}
	return nil
}

// listenHTTP opens the UPnP HTTP server's listener on addr.
func (d *Daemon) listenHTTP(ctx context.Context, iface string, addr netip.AddrPort) (*httpListener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", addr.String())
	if err != nil {
		return nil, fmt.Errorf("UPnP HTTP server on %s (%s): %w (is another UPnP daemon, such as miniupnpd, running? change upnp.http_port otherwise)", addr, iface, err)
	}
	got, _ := netip.ParseAddrPort(ln.Addr().String())
	errLog := slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
	return &httpListener{
		iface: iface,
		addr:  got,
		ln:    &lanListener{Listener: ln, allow: d.lan.allowed, limits: d.upnpSide.limits, log: d.log},
		srv: &http.Server{
			Handler:           d.upnpSide.igd,
			ConnState:         d.upnpSide.limits.connState,
			ReadHeaderTimeout: httpReadHeaderTimeout,
			ReadTimeout:       httpReadTimeout,
			WriteTimeout:      httpWriteTimeout,
			IdleTimeout:       httpIdleTimeout,
			MaxHeaderBytes:    httpMaxHeaderBytes,
			ErrorLog:          errLog,
		},
	}, nil
}

// descriptionURLFor returns the description URL on the listener of local,
// for SSDP answers on the interface holding it.
func (d *Daemon) descriptionURLFor(local netip.Addr) string {
	for _, h := range d.upnpSide.http {
		if h.addr.Addr() == local {
			return "http://" + h.addr.String() + igd.DescriptionPath
		}
	}
	return ""
}

// DescriptionURLs returns the root description URL on every internal
// address, the URL a client may be given instead of SSDP discovery.
func (d *Daemon) DescriptionURLs() []string {
	var out []string
	for _, h := range d.upnpSide.http {
		out = append(out, "http://"+h.addr.String()+igd.DescriptionPath)
	}
	return out
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

// AdminAddr returns the admin server's address, or the zero AddrPort
// without one.
func (d *Daemon) AdminAddr() netip.AddrPort {
	if d.adminSide.ln == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(d.adminSide.ln.Addr().String())
	return ap
}

// AdminMux is the admin server's request router, serving /metrics and
// /healthz, and with admin.ui the admin page at "/". Code that embeds the
// daemon may mount more handlers on it before Serve.
func (d *Daemon) AdminMux() *http.ServeMux { return d.adminSide.mux }

// Core returns the mapping table, for the admin page.
func (d *Daemon) Core() *gateway.Core { return d.core }

// UUID returns the device UUID.
func (d *Daemon) UUID() string { return d.uuid }

// ExternalAddr returns the external address reported to clients (the zero
// Addr while there is none).
func (d *Daemon) ExternalAddr() netip.Addr { return d.wan.ext.Get() }

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
	m := map[string]func() []upnp.Arg{
		igd.WANIPConnectionEventPath: func() []upnp.Arg {
			return append([]upnp.Arg{{Name: "PossibleConnectionTypes", Value: "IP_Routed"}}, d.connectionVars(version)...)
		},
		igd.WANCommonInterfaceConfigEventPath: func() []upnp.Arg {
			return []upnp.Arg{{Name: "PhysicalLinkStatus", Value: d.linkStatus()}}
		},
	}
	if version == 1 {
		m[igd.Layer3ForwardingEventPath] = func() []upnp.Arg {
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
		{Name: "PortMappingNumberOfEntries", Value: strconv.Itoa(d.core.Len())},
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
// connection: the UDN of the device holding WANIPConnection, then its
// service ID.
func defaultConnectionService(root *upnp.Root) string {
	var find func(dev *upnp.Device) string
	find = func(dev *upnp.Device) string {
		for _, s := range dev.Services {
			if s.ServiceID == igd.ServiceIDWANIPConnection {
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
	if d.upnpSide.svc == nil {
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
	d.upnpSide.publisher.Notify(igd.WANIPConnectionEventPath, vars)
}

// onAddressChange tells the LAN about a new external address: PCP's
// epoch starts again, NAT-PMP and PCP announcements go out, and UPnP event
// subscribers get ExternalIPAddress. (The core reads the address through
// Config.ExternalAddr, and the nft rules match interfaces, not addresses:
// neither needs more.)
func (d *Daemon) onAddressChange(netip.Addr) {
	defer d.catch("address change")
	now := time.Now()
	d.wan.addrChanged.Store(&now)
	if d.pmpSide.server != nil {
		d.pmpSide.server.Announce()
	}
	if d.upnpSide.publisher == nil {
		return
	}
	status, _, _ := d.upnpSide.svc.ConnectionStatus(context.Background())
	ip := ""
	if a := d.wan.ext.Get(); a.Is4() {
		ip = a.String()
	}
	d.upnpSide.publisher.Notify(igd.WANIPConnectionEventPath, []upnp.Arg{
		{Name: "ExternalIPAddress", Value: ip},
		{Name: "ConnectionStatus", Value: status},
	})
	d.upnpSide.publisher.Notify(igd.WANCommonInterfaceConfigEventPath, []upnp.Arg{{Name: "PhysicalLinkStatus", Value: d.linkStatus()}})
}

// catch recovers a panic in a callback of the daemon's, so that it costs
// one event, never the daemon.
func (d *Daemon) catch(what string) {
	if p := recover(); p != nil {
		d.metrics.error(errKindPanic)
		d.log.Error("panic in "+what+"; carrying on", "panic", p, "stack", string(debug.Stack()))
	}
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
		NATPMP:          &natpmpHandler{core: d.core, ext: d.wan.ext, metrics: d.metrics, log: d.log},
		NATPMPEpoch:     d.natpmpEpoch,
		Interfaces:      d.cfg.Interfaces.Internal,
		ExternalAddress: d.wan.ext.Get,
		Logger:          d.log,
		RequestContext:  func(ctx context.Context) context.Context { ctx, _ = withPMPNote(ctx); return ctx },
		Answered:        d.onPMPAnswer,
	}
	if d.cfg.NATPMP.PCP {
		d.pmpSide.server.PCP = &pcpHandler{core: d.core, ext: d.wan.ext, metrics: d.metrics, log: d.log}
		d.pmpSide.server.PCPEpoch = d.pcpEpoch
		d.pmpSide.server.PCPOptions = pcpOptions(d.cfg.Policy)
	}
	return nil
}

// natpmpEpoch is NAT-PMP's seconds since start of epoch: the time since
// the epoch origin the store keeps, which resets only when the leases are
// lost, exactly when clients must re-create their mappings. A new external
// address does not reset it: NAT-PMP's announcements and answers carry the
// address itself.
func (d *Daemon) natpmpEpoch() uint32 { return epochSince(d.epoch) }

// pcpEpoch is PCP's epoch: NAT-PMP's, except that it also starts again
// when the external address changes, as RFC 6887 §8.5 requires. PCP's
// ANNOUNCE carries no address: its epoch going back is what makes a PCP
// client map again, and so learn the new address.
func (d *Daemon) pcpEpoch() uint32 {
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

// setupAdmin opens the admin server with /metrics and /healthz, and the
// admin page when admin.ui asks for it.
func (d *Daemon) setupAdmin(ctx context.Context) error {
	d.adminSide.mux = http.NewServeMux()
	d.adminSide.mux.HandleFunc("/metrics", d.metricsHandler)
	d.adminSide.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	if d.cfg.Admin.Address == "" {
		return nil
	}
	if d.cfg.Admin.UI {
		if err := d.setupAdminPage(); err != nil {
			return err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", d.cfg.Admin.Address)
	if err != nil {
		return fmt.Errorf("admin server on %s: %w (change admin.address, or set it empty to disable)", d.cfg.Admin.Address, err)
	}
	d.adminSide.ln = ln
	d.adminSide.srv = &http.Server{
		Handler:           d.adminSide.mux,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		// No WriteTimeout: the admin page's event stream is a long
		// response. Shutdown ends those streams first, or it would wait
		// for them.
	}
	if d.adminSide.page != nil {
		d.adminSide.srv.RegisterOnShutdown(func() { d.adminSide.page.Close() })
	}
	return nil
}

// Serve answers requests until ctx ends or a server fails, then shuts the
// daemon down (see Close) and returns the failure, if any. It may be
// called once.
func (d *Daemon) Serve(ctx context.Context) error {
	d.serving.Lock()
	if d.served {
		d.serving.Unlock()
		return errors.New("daemon: Serve called twice")
	}
	d.served = true
	d.serving.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8+len(d.upnpSide.http))
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				d.metrics.error(errKindServer)
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.wan.ext.run(ctx, d.wan.wake) }()
	if d.wan.addrWatch != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.followAddresses(ctx) }()
	}
	for _, h := range d.upnpSide.http {
		run("UPnP HTTP server on "+h.addr.String(), func() error {
			if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if d.upnpSide.responder != nil {
		run("SSDP responder", func() error { return d.upnpSide.responder.Serve(ctx) })
	}
	if d.pmpSide.server != nil {
		// It announces at once that the gateway (re)started: clients whose
		// mappings were lost see the epoch go back and make them again.
		run("NAT-PMP/PCP server", func() error { return d.pmpSide.server.ServePacketConn(ctx, d.pmpSide.conn) })
	}
	if d.adminSide.srv != nil {
		run("admin server", func() error {
			if err := d.adminSide.srv.Serve(d.adminSide.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	d.log.Info("gateway serving",
		"backend", d.backend.Name(), "external_address", d.wan.ext.Get(), "internal", d.cfg.Interfaces.Internal,
		"upnp", d.DescriptionURLs(), "natpmp", d.NATPMPAddrs(), "admin", d.AdminAddr(), "mappings", d.core.Len())
	for _, line := range d.cfg.PolicySummary() {
		d.log.Info("policy: " + line)
	}
	d.logAdminPage()

	var failure error
	select {
	case <-ctx.Done():
		d.log.Info("gateway stopping")
	case failure = <-errc:
		d.log.Error("gateway stopping after a failure", "err", failure)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer scancel()
	for _, h := range d.upnpSide.http {
		h.srv.Shutdown(sctx)
	}
	if d.adminSide.srv != nil {
		d.adminSide.srv.Shutdown(sctx)
	}
	wg.Wait() // SSDP has said byebye, NAT-PMP has stopped
	return errors.Join(failure, d.Close())
}

// Close stops the daemon without Serve's shutdown of the servers (use it
// when New succeeded but Serve is not to be called): it closes the core,
// removing every rule when Config.FlushOnExit is set, then the backend and
// the store. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.cleanup(d.cfg.FlushOnExit) })
	return d.closeErr
}

// cleanup closes whatever New opened, in reverse order.
func (d *Daemon) cleanup(flush bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, h := range d.upnpSide.http {
		h.ln.Close()
	}
	if d.adminSide.ln != nil {
		d.adminSide.ln.Close()
	}
	if d.adminSide.page != nil {
		d.adminSide.page.Close()
		if f := d.adminSide.page.TokenFile; f != "" {
			os.Remove(f) // the token dies with this run
		}
	}
	if d.pmpSide.conn != nil {
		d.pmpSide.conn.Close()
	}
	if d.wan.addrWatch != nil {
		d.wan.addrWatch.Close()
	}
	if d.unsubscribe != nil {
		d.unsubscribe()
	}
	if d.core != nil {
		if err := d.core.Close(ctx, flush); err != nil {
			errs = append(errs, fmt.Errorf("closing the mapping table: %w", err))
		}
		if flush {
			d.log.Info("removed every mapping (flush on exit)")
		}
	}
	if d.upnpSide.publisher != nil {
		d.upnpSide.publisher.Close()
	}
	if flush && d.nftb != nil {
		if err := d.nftb.Destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing the nft table: %w", err))
		}
	}
	if d.backend != nil {
		if err := d.backend.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the %s backend: %w", d.backend.Name(), err))
		}
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the state directory: %w", err))
		}
	}
	if d.audit != nil {
		d.audit.Close()
	}
	d.instance.release() // last: the next gateway may now start
	return errors.Join(errs...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
