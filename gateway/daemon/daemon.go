package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/nft"
	"github.com/portfwd/portfwd/internal/netroute"
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
	// httpMaxRequestsPerConn bounds the requests on one kept-alive
	// connection (a browser on the admin page, a control point that
	// keeps its connection).
	httpMaxRequestsPerConn = 100
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
// UPnP servers (upnpserve.go), NAT-PMP and PCP (pmp.go), and the admin
// server (admin.go).
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

	// quirks are the deliberate misbehaviours asked for (quirks.go), with
	// personality's; forgotten holds the keys of the mappings forget
	// deleted, whose events are told to nobody.
	quirks      Quirks
	personality *Personality
	forgotten   sync.Map // gateway.Key -> struct{}

	unsubscribe func()
	closeOnce   sync.Once
	closeErr    error
	serving     sync.Mutex // held by Serve: it runs once
	served      bool
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
	if err := d.setupQuirks(); err != nil {
		return nil, err
	}
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
	d.setupUpstream()
	uctx, cancel := context.WithTimeout(ctx, startTimeout)
	if err := d.wan.ext.update(uctx); err != nil {
		log.Warn("no external address yet; reporting none until it is learned", "source", d.wan.ext.source(), "err", err)
	}
	cancel()
	if err := d.checkQuirksPublic(); err != nil {
		return nil, err
	}

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
	d.quirkPolicy(&policy)
	gcfg := gateway.Config{Backend: d.backend, Policy: policy, ExternalAddr: d.wan.ext.Get, Logger: log, Audit: d.audit.Record,
		SameHost: d.sameLANHost, SameHostNow: d.sameLANHostNow, HostAddrs: d.lanHostAddrs, OwnAddr: netroute.IsLocalAddr}
	// While New restores the saved leases (nothing is served yet), the
	// probe is narrowed to the ports some socket holds (boundPorts), one
	// reading for all of them; once serving, every port about to be given
	// is probed, so that a service started a moment ago is never missed.
	var restoring atomic.Bool
	restoring.Store(true)
	if canProbePorts {
		bound := newBoundPorts()
		gcfg.PortInUse = func(p gateway.Protocol, port uint16) bool {
			if restoring.Load() && !bound.mayBeServed(p, port) {
				return false
			}
			return portServed(p, port, d.probeAddrs())
		}
	}
	if d.store != nil {
		gcfg.Store = d.store // not a typed nil in the interface
	}
	if d.wan.up != nil {
		gcfg.Upstream = d.wan.up
	}
	gcfg.ExternalPool, _ = parsePool(d.cfg.NATPMP.PCPExternalPool) // validated
	// Rebuilding empties the maps, so nothing forwards until the leases
	// are back in them: serve meanwhile rather than after (a million
	// elements take seconds). Without it they stayed installed, and New
	// reconciles them before serving, changing only what differs.
	gcfg.ApplyInBackground = d.cfg.NFT.RebuildOnStart && d.cfg.resolvedBackend() == BackendNFT
	d.core, err = gateway.New(ctx, gcfg)
	restoring.Store(false)
	if err != nil {
		return nil, err
	}
	if d.wan.up != nil {
		d.wan.up.Attach(d.core)
	}
	if pool := gcfg.ExternalPool; len(pool) > 0 {
		log.Info("PCP mappings are spread over the external address pool, each subscriber on one of its addresses",
			"addresses", len(pool), "first", pool[0], "last", pool[len(pool)-1])
	}

	d.seedStale(ctx)

	d.uuid = cfg.Device.UUID
	if d.uuid == "" && d.store != nil {
		d.uuid = d.store.UUID()
	}
	if d.uuid == "" {
		d.uuid = gateway.NewUUID()
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

// Core returns the mapping table, for the admin page.
func (d *Daemon) Core() *gateway.Core { return d.core }

// UUID returns the device UUID.
func (d *Daemon) UUID() string { return d.uuid }

// catch recovers a panic in a callback of the daemon's, so that it costs
// one event, never the daemon.
func (d *Daemon) catch(what string) {
	if p := recover(); p != nil {
		d.metrics.error(errKindPanic)
		d.log.Error("panic in "+what+"; carrying on", "panic", p, "stack", string(debug.Stack()))
	}
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
	if d.wan.up != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.wan.up.Run(ctx) }()
	}
	if d.wan.addrWatch != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.followAddresses(ctx) }()
	}
	if d.quirks.Forgetful > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); d.forgetEvery(ctx, d.quirks.Forgetful) }()
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
		if d.hasIPv6LAN() {
			// IPv6 control points (pinholes) discover on ff02::c/ff05::c.
			// Without it the gateway still serves IPv4: not fatal.
			run("SSDP responder (IPv6)", func() error {
				if err := d.upnpSide.responder.ServeIPv6(ctx); err != nil && ctx.Err() == nil {
					d.log.Warn("no SSDP over IPv6; IPv6 control points must be given the description URL", "err", err)
				}
				return nil
			})
		}
	}
	if d.nftb != nil {
		// A firewall reload (fw4, nft flush ruleset) takes our rules with
		// it: they are put back ~200 ms after it, not at the next request.
		run("nftables reload watch", func() error {
			if err := d.nftb.WatchReloads(ctx); err != nil {
				d.log.Warn("firewall reloads will be repaired at the next mapping or pinhole operation only", "err", err)
			}
			return nil
		})
	}
	if d.pmpSide.server != nil {
		// It announces at once that the gateway (re)started: clients whose
		// mappings were lost see the epoch go back and make them again.
		run("NAT-PMP/PCP server", func() error { return d.pmpSide.server.ServePacketConn(ctx, d.pmpSide.conn) })
		if d.pmpSide.conn6 != nil {
			run("PCP server (IPv6)", func() error { return d.pmpSide.server.ServePCPIPv6(ctx, d.pmpSide.conn6) })
		}
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
	d.logQuirks()

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
	if d.pmpSide.conn6 != nil {
		d.pmpSide.conn6.Close()
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
	d.unseedStale(ctx)
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
