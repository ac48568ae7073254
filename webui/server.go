// Package webui is portfwd's web interface ("portfwd ui"): a small HTTP
// server, meant for the loopback interface, that shows the gateways
// portmap finds, the external address (with the double-NAT warning), and
// the router's mapping table, and lets the user add, edit and delete
// mappings. The pages are html/template plus a little plain JavaScript,
// embedded in the binary: no build step, no CDN. The JavaScript talks to
// the same JSON API that scripts can use (documented in docs/api.md), and
// live updates arrive as server-sent events.
//
// Security model: the server is a remote control for the router, so every
// request must prove it comes from the user who started it. A per-run
// secret token (printed in the URL) is required by every /api request, in
// the X-Portfwd-Token header for anything that changes state (a cookie is
// not enough there: browsers attach cookies to cross-site requests, custom
// headers need a CORS preflight we never grant). The Host header must name
// the address the connection arrived on, which defeats DNS rebinding, and
// an Origin header, when present, must be this server's own. The guard is
// internal/websec, the one the gateway's admin page (package gateway/admin)
// uses too; the two pages also share their style sheet (internal/webpage),
// and nothing else: the admin page belongs to the router side.
//
// The server never blocks a page on the router: discovery runs in the
// background and streams its progress, each API call talks to the router
// in its own request with a deadline, and the router is read only while a
// browser is listening for events: on the word of its own events when a
// Watcher follows them (PortmapWatcher, over portmap.Watch, is the one
// "portfwd ui" uses), and every PollInterval otherwise.
package webui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/webpage"
	"github.com/portfwd/portfwd/internal/websec"
	"github.com/portfwd/portfwd/portmap"
)

// Keeper keeps mappings open by renewing them before their lease runs out,
// for as long as the program runs (portmap's keep-alive Mapper, adapted).
// The UI shows a "keep open" switch per mapping only when one is
// configured.
type Keeper interface {
	// Keep starts keeping m open on g. It may renew once before returning;
	// the error says why the mapping cannot be kept.
	Keep(ctx context.Context, g portmap.Gateway, m portmap.Mapping) error
	// Release stops renewing the mapping at key on g; the mapping itself
	// stays until its lease ends or it is deleted.
	Release(ctx context.Context, g portmap.Gateway, key portmap.Key) error
	// Kept returns the keys of the mappings being kept open on g. It is
	// called while the server builds a response or an event, so it must
	// answer at once from memory.
	Kept(g portmap.Gateway) []portmap.Key
}

// Watcher tells when a gateway's mappings or external address may have
// changed, so that the UI need not poll (a router's event subscription,
// for example). When one is configured the server re-reads the gateway on
// each notification instead of every PollInterval.
type Watcher interface {
	// Watch calls changed whenever g's table or external address may have
	// changed, until ctx ends. An error other than ctx's makes the server
	// fall back to polling.
	Watch(ctx context.Context, g portmap.Gateway, changed func()) error
}

// Checker tests whether a mapping is reachable from outside. The UI shows
// a "check" button per mapping only when one is configured.
type Checker interface {
	// Check tests g's mapping of externalPort to internalPort; proto is
	// "TCP" or "UDP". The gateway is there to explain a failure (package
	// reach's CheckGateway asks it). The result is shown to the user as
	// JSON, or as its String() when it is a fmt.Stringer.
	Check(ctx context.Context, g portmap.Gateway, proto string, internalPort, externalPort uint16) (any, error)
}

// Server is the web UI. Set its fields before first use; it is then an
// http.Handler. Background work (discovery, polling) stops with Close.
type Server struct {
	// Options configure discovery. Its Progress callback is replaced by
	// the server's own, which streams progress to the browser.
	Options portmap.Options
	// Discover finds gateways; nil means portmap.Discover. Tests use it to
	// inject fake gateways.
	Discover func(ctx context.Context, o portmap.Options) ([]portmap.Gateway, error)
	// DiscoverTimeout bounds one discovery (default 5 s).
	DiscoverTimeout time.Duration
	// Timeout bounds each operation on the router (default 10 s); listing
	// the table and deleting many mappings get ten times as long.
	Timeout time.Duration
	// PollInterval is how often the router is re-read while a browser is
	// listening for events and no Watcher follows it (default 3 s).
	PollInterval time.Duration
	// Token is the secret every request must present. If empty, a random
	// one is made on first use; read it back from this field afterwards.
	Token string

	// Keeper, Watcher and Checker are optional; nil hides the feature.
	Keeper  Keeper
	Watcher Watcher
	Checker Checker
	// Pinholes, if set, lists the IPv6 pinholes this computer opened (from
	// the state directory: routers cannot list them); the page shows them.
	Pinholes func() ([]portmap.Mapping, error)

	Logger *slog.Logger

	once   sync.Once
	mux    *http.ServeMux
	site   *webpage.Site
	ctx    context.Context // background work; ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // asks the poller to re-read the router now

	mu          sync.Mutex
	disc        discoveryStatus
	discStarted bool
	gateways    []*gateway
	selected    *gateway
	subs        map[*subscriber]struct{}
	stopPolling context.CancelFunc
	following   *gateway // the gateway whose events the poller follows
	closed      bool
}

// gateway is a found gateway and what the server last read from it. id
// and gw never change (a later discovery of the same router keeps this
// one); the cached fields are guarded by Server.mu.
type gateway struct {
	id string
	gw portmap.Gateway

	info    *portmap.Info
	infoErr string

	ext      netip.Addr
	extErr   string
	extKnown bool
	extAt    time.Time // when the read that gave ext started

	listed      bool
	unsupported bool
	listErr     string
	listedAt    time.Time // when the last stored read started
	// mappings are from the last read that succeeded, which started at
	// readAt: their leases count from then.
	mappings []portmap.Mapping
	readAt   time.Time
}

// gatewayID is a short stable name for g: the same router keeps its ID
// across discoveries, so a selection survives "search again".
func gatewayID(g portmap.Gateway) string {
	sum := sha256.Sum256([]byte(string(g.Method()) + "\x00" + g.Addr()))
	return hex.EncodeToString(sum[:6])
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Token == "" {
			s.Token = NewToken()
		}
		s.site = webpage.New(webpage.Config{
			Token: s.Token, Who: "portfwd ui", TokenFrom: "printed by portfwd ui",
			Advice: "Open the address that portfwd ui printed in its terminal: it ends with ?token= and a secret that only that run knows.",
			Files:  assets, Render: renderPage, Logger: s.logger(),
		})
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.kick = make(chan struct{}, 1)
		s.subs = map[*subscriber]struct{}{}
		s.mux = s.routes()
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 10 * time.Second
}

func (s *Server) discoverTimeout() time.Duration {
	if s.DiscoverTimeout > 0 {
		return s.DiscoverTimeout
	}
	return 5 * time.Second
}

func (s *Server) pollInterval() time.Duration {
	if s.PollInterval > 0 {
		return s.PollInterval
	}
	return 3 * time.Second
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	s.mux.ServeHTTP(w, r)
}

// Close stops discovery and polling, ends the event streams, and waits for
// the background work to finish. Requests still running fail with a
// cancelled context.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.gone)
	}
	if s.stopPolling != nil {
		s.stopPolling()
		s.stopPolling = nil
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Serve serves the UI on ln until ctx ends, starting discovery at once so
// that the gateway is known by the time a browser arrives. It then closes
// the server and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelDebug),
		// No WriteTimeout: the event stream is a long response.
	}
	s.StartDiscovery()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	// Close first: it ends the event streams, which Shutdown would
	// otherwise wait for.
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}

// URL returns the address a browser should open for a server listening on
// addr: http://HOST:PORT/?token=TOKEN. An unspecified listen address
// (0.0.0.0, ::) is given as 127.0.0.1.
func (s *Server) URL(addr net.Addr) string {
	s.init()
	return websec.PageURL(addr, s.Token)
}

// selectedGateway returns the gateway requests act on by default.
func (s *Server) selectedGateway() *gateway {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.selected
}

// errNoGatewayYet is returned while discovery has not found anything.
var errNoGatewayYet = errors.New("no gateway yet")
