package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/relay"
)

// relayBackend is the relay backend bound to the external interface's
// address, which it follows: a relay listens on one address, and sockets
// bound to an address the interface no longer has accept nothing. When the
// address changes (rebind), the relay's sockets are closed and every rule
// is bound again on the new address. Flows through the old address end
// with it. It follows the interface's IPv6 addresses for the pinholes it
// relays likewise (rebindPinholes).
type relayBackend struct {
	log *slog.Logger
	// follow4 and follow6 tell which addresses follow the external
	// interface's: the ports' IPv4 address, the pinholes' IPv6 ones.
	follow4, follow6 bool

	mu  sync.Mutex
	cfg relay.Config // cfg.BindAddr is the current address
	r   *relay.Relay
}

var (
	_ gateway.Backend        = (*relayBackend)(nil)
	_ gateway.PinholeBackend = (*relayBackend)(nil)
)

func newRelayBackend(cfg relay.Config, log *slog.Logger) *relayBackend {
	return &relayBackend{log: log, cfg: cfg, r: relay.New(cfg)}
}

func (b *relayBackend) Name() string { return "relay" }

// do runs f on the current relay, which rebind does not replace meanwhile.
func (b *relayBackend) do(f func(r *relay.Relay) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return f(b.r)
}

func (b *relayBackend) Add(ctx context.Context, r gateway.Rule) error {
	return b.do(func(rl *relay.Relay) error { return rl.Add(ctx, r) })
}

func (b *relayBackend) Delete(ctx context.Context, r gateway.Rule) error {
	return b.do(func(rl *relay.Relay) error { return rl.Delete(ctx, r) })
}

func (b *relayBackend) Flush(ctx context.Context) error {
	return b.do(func(rl *relay.Relay) error { return rl.Flush(ctx) })
}

func (b *relayBackend) Close() error {
	return b.do(func(rl *relay.Relay) error { return rl.Close() })
}

// bindAddr returns the address the relay listens on.
func (b *relayBackend) bindAddr() netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.BindAddr
}

// AddPinhole, DeletePinhole and PinholePackets relay IPv6 pinholes on
// the external interface's IPv6 addresses (see relay.Relay.AddPinhole).
func (b *relayBackend) AddPinhole(ctx context.Context, r gateway.PinholeRule) error {
	return b.do(func(rl *relay.Relay) error { return rl.AddPinhole(ctx, r) })
}

func (b *relayBackend) DeletePinhole(ctx context.Context, r gateway.PinholeRule) error {
	return b.do(func(rl *relay.Relay) error { return rl.DeletePinhole(ctx, r) })
}

func (b *relayBackend) PinholePackets(ctx context.Context, r gateway.PinholeRule) (uint64, bool, error) {
	return 0, false, nil
}

// PinholeAddrs returns the addresses pinholes are listened on.
func (b *relayBackend) PinholeAddrs() []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.PinholeAddrs()
}

// rebind moves every relayed port to addr. The old sockets are closed
// first, so that a port can be bound again whatever the two addresses
// are. A rule that cannot be bound on the new address is reported and left
// out; the core still holds it, and it comes back with the next rebind or
// restart.
func (b *relayBackend) rebind(ctx context.Context, addr netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if addr == b.cfg.BindAddr {
		return nil
	}
	old := b.cfg.BindAddr
	cfg := b.cfg
	cfg.BindAddr = addr
	n, err := b.moveLocked(ctx, cfg)
	b.log.Info("relay backend: external ports moved to the new external interface address", "address", addr, "was", old, "rules", n)
	return err
}

// rebindPinholes moves every relayed pinhole to addrs, the external
// interface's IPv6 addresses now (every IPv6 address when empty), as
// rebind moves the ports.
func (b *relayBackend) rebindPinholes(ctx context.Context, addrs []netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Equal(addrs, b.cfg.PinholeAddrs) {
		return nil
	}
	old := b.cfg.PinholeAddrs
	cfg := b.cfg
	cfg.PinholeAddrs = slices.Clone(addrs)
	n, err := b.moveLocked(ctx, cfg)
	b.log.Info("relay backend: IPv6 pinholes moved to the external interface's IPv6 addresses", "addresses", addrs, "was", old, "relayed", n)
	return err
}

// moveLocked replaces the relay by one with cfg and adds every port and
// pinhole to it again, returning how many it relays.
func (b *relayBackend) moveLocked(ctx context.Context, cfg relay.Config) (int, error) {
	rules, pins := b.r.Rules(), b.r.Pinholes()
	if err := b.r.Close(); err != nil {
		b.log.Warn("relay backend: closing the sockets on the old addresses", "err", err)
	}
	b.cfg = cfg
	b.r = relay.New(b.cfg)
	var errs []error
	for _, rule := range rules {
		if err := b.r.Add(ctx, rule); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", rule, err))
		}
	}
	for _, p := range pins {
		if err := b.r.AddPinhole(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("pinhole %v: %w", p, err))
		}
	}
	total := len(rules) + len(pins)
	if len(errs) > 0 {
		return total - len(errs), fmt.Errorf("relay backend: %d of %d ports and pinholes could not be bound on the new addresses: %w", len(errs), total, errors.Join(errs...))
	}
	return total, nil
}
