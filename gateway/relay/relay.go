package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/internal/netroute"
)

// Defaults for the zero Config fields.
const (
	DefaultUDPIdleTimeout  = 60 * time.Second
	DefaultMaxConnsPerRule = 1024
	DefaultDialTimeout     = 10 * time.Second
)

// Config configures a Relay. The zero value listens on all IPv4 addresses
// with the defaults above.
type Config struct {
	// BindAddr is the local address external ports are bound on;
	// 0.0.0.0 when zero. An IPv6 address binds IPv6 sockets.
	BindAddr netip.Addr
	// PinholeAddrs are the IPv6 addresses pinholes are listened on (the
	// router's external IPv6 addresses); every IPv6 address (::) when
	// empty. See AddPinhole.
	PinholeAddrs []netip.Addr
	// UDPIdleTimeout ends a UDP session after this long without a
	// datagram in either direction.
	UDPIdleTimeout time.Duration
	// MaxConnsPerRule bounds the concurrent TCP connections or UDP
	// sessions of each rule.
	MaxConnsPerRule int
	// DialTimeout bounds connecting to the internal host.
	DialTimeout time.Duration
	// Logger receives operational messages; slog.Default() when nil.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if !c.BindAddr.IsValid() {
		c.BindAddr = netip.IPv4Unspecified()
	}
	c.BindAddr = c.BindAddr.Unmap()
	if c.UDPIdleTimeout <= 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.MaxConnsPerRule <= 0 {
		c.MaxConnsPerRule = DefaultMaxConnsPerRule
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// PortInUseError is returned by Add when the external port is already
// bound on the gateway, by another program or another daemon.
type PortInUseError struct {
	Protocol gateway.Protocol
	Port     uint16
	Err      error // the bind error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("external port %d/%s is in use on the gateway itself: choose another external port, or stop the local service that uses it", e.Port, e.Protocol)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// Relay forwards ports in user space. It implements gateway.Backend and is
// safe for concurrent use.
type Relay struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	fwds   map[key]*forward
	pins   map[key]*pinhole
	closed bool
}

type key struct {
	proto gateway.Protocol
	port  uint16
}

var _ gateway.Backend = (*Relay)(nil)

// New returns a Relay with no rules.
func New(cfg Config) *Relay {
	cfg = cfg.withDefaults()
	return &Relay{
		cfg:  cfg,
		log:  cfg.Logger.With("backend", "relay"),
		fwds: map[key]*forward{},
		pins: map[key]*pinhole{},
	}
}

// Name implements gateway.Backend.
func (r *Relay) Name() string { return "relay" }

// Add implements gateway.Backend. It binds the external port, or, when the
// protocol and port are already relayed, points the existing listener at
// the new rule and ends the flows of the old one.
func (r *Relay) Add(ctx context.Context, rule gateway.Rule) error {
	rule, err := r.normalize(rule)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("relay: closed")
	}
	k := key{rule.Protocol, rule.ExternalPort}
	if f := r.fwds[k]; f != nil {
		f.replace(rule)
		return nil
	}
	f, err := r.listen(ctx, r.cfg.BindAddr, rule, 0)
	if err != nil {
		return err
	}
	r.fwds[k] = f
	f.start()
	f.log.Info("relaying")
	return nil
}

// Delete implements gateway.Backend: it closes the external port and every
// flow of the rule, and returns once they are gone (or ctx is done), by
// which time the port is free again.
func (r *Relay) Delete(ctx context.Context, rule gateway.Rule) error {
	r.mu.Lock()
	k := key{rule.Protocol, rule.ExternalPort}
	f := r.fwds[k]
	delete(r.fwds, k)
	r.mu.Unlock()
	if f == nil {
		return nil
	}
	return f.stop(ctx)
}

// Flush implements gateway.Backend: it ends every port mapping and
// pinhole.
func (r *Relay) Flush(ctx context.Context) error {
	r.mu.Lock()
	fwds, pins := r.fwds, r.pins
	r.fwds, r.pins = map[key]*forward{}, map[key]*pinhole{}
	r.mu.Unlock()
	var errs []error
	for _, f := range fwds {
		errs = append(errs, f.stop(ctx))
	}
	for _, p := range pins {
		errs = append(errs, p.stop(ctx))
	}
	return errors.Join(errs...)
}

// Close implements gateway.Backend. A relay cannot outlive its process, so
// unlike the nft backend Close stops all forwarding; Add fails afterwards.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.Flush(context.Background())
}

// Rules returns the rules being relayed, sorted by protocol and port.
func (r *Relay) Rules() []gateway.Rule {
	r.mu.Lock()
	defer r.mu.Unlock()
	rules := make([]gateway.Rule, 0, len(r.fwds))
	for _, f := range r.fwds {
		rules = append(rules, *f.rule.Load())
	}
	sort.Slice(rules, func(i, j int) bool { return gateway.CompareRules(rules[i], rules[j]) < 0 })
	return rules
}

func (r *Relay) normalize(rule gateway.Rule) (gateway.Rule, error) {
	if rule.Protocol != gateway.TCP && rule.Protocol != gateway.UDP {
		return rule, fmt.Errorf("relay: rule %v: only TCP and UDP can be relayed", rule)
	}
	if rule.ExternalPort == 0 || rule.InternalPort == 0 {
		return rule, fmt.Errorf("relay: rule %v: ports must be non-zero", rule)
	}
	rule.InternalAddr = rule.InternalAddr.Unmap()
	if !rule.InternalAddr.IsValid() || rule.InternalAddr.IsUnspecified() {
		return rule, fmt.Errorf("relay: rule %v: no internal address", rule)
	}
	rule.RemoteHost = rule.RemoteHost.Unmap()
	if rule.RemoteHost.IsUnspecified() {
		rule.RemoteHost = netip.Addr{} // how some clients spell "any host"
	}
	if rule.InternalPort == rule.ExternalPort && r.isOwnAddr(rule.InternalAddr) {
		return rule, fmt.Errorf("relay: rule %v points at the relay's own port and would loop: the internal host must be another host or port", rule)
	}
	return rule, nil
}

// isOwnAddr tells whether a connection to a reaches our listeners.
func (r *Relay) isOwnAddr(a netip.Addr) bool {
	bind := r.cfg.BindAddr
	if a == bind || (a.IsLoopback() && (bind.IsLoopback() || bind.IsUnspecified())) {
		return true
	}
	return bind.IsUnspecified() && netroute.IsLocalAddr(a)
}

// listen binds the external port of rule on bind. A remotePort other
// than 0 admits only peers using that source port.
func (r *Relay) listen(ctx context.Context, bind netip.Addr, rule gateway.Rule, remotePort uint16) (*forward, error) {
	laddr := netip.AddrPortFrom(bind, rule.ExternalPort).String()
	network := "tcp4"
	if bind.Is6() {
		network = "tcp6"
	}
	if rule.Protocol == gateway.UDP {
		network = "udp" + network[3:]
	}
	f := newForward(r.cfg, r.log, rule)
	f.remotePort = remotePort
	var lc net.ListenConfig
	var err error
	if rule.Protocol == gateway.TCP {
		var ln net.Listener
		ln, err = lc.Listen(ctx, network, laddr)
		if err == nil {
			f.ln = ln.(*net.TCPListener)
		}
	} else {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(ctx, network, laddr)
		if err == nil {
			f.pc = pc.(*net.UDPConn)
		}
	}
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, &PortInUseError{Protocol: rule.Protocol, Port: rule.ExternalPort, Err: err}
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("relay: binding external port %d/%s needs privileges (ports below 1024 need CAP_NET_BIND_SERVICE or a lower net.ipv4.ip_unprivileged_port_start): %w",
			rule.ExternalPort, rule.Protocol, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("relay: bind address %v is not an address of this host: fix the relay's bind address: %w", bind, err)
	}
	return nil, fmt.Errorf("relay: listening on %s/%s: %w", laddr, rule.Protocol, err)
}
