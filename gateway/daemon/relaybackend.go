package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/relay"
)

// relayBackend is the relay backend bound to the external interface's
// address, which it follows: a relay listens on one address, and sockets
// bound to an address the interface no longer has accept nothing. When the
// address changes (rebind), the relay's sockets are closed and every rule
// is bound again on the new address. Flows through the old address end
// with it.
type relayBackend struct {
	log *slog.Logger

	mu  sync.Mutex
	cfg relay.Config // cfg.BindAddr is the current address
	r   *relay.Relay
}

var _ gateway.Backend = (*relayBackend)(nil)

func newRelayBackend(cfg relay.Config, log *slog.Logger) *relayBackend {
	return &relayBackend{log: log, cfg: cfg, r: relay.New(cfg)}
}

func (b *relayBackend) Name() string { return "relay" }

func (b *relayBackend) Add(ctx context.Context, r gateway.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Add(ctx, r)
}

func (b *relayBackend) Delete(ctx context.Context, r gateway.Rule) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Delete(ctx, r)
}

func (b *relayBackend) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Flush(ctx)
}

func (b *relayBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Close()
}

// bindAddr returns the address the relay listens on.
func (b *relayBackend) bindAddr() netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.BindAddr
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
	rules := b.r.Rules()
	if err := b.r.Close(); err != nil {
		b.log.Warn("relay backend: closing the sockets on the old address", "address", b.cfg.BindAddr, "err", err)
	}
	old := b.cfg.BindAddr
	b.cfg.BindAddr = addr
	b.r = relay.New(b.cfg)
	var errs []error
	for _, rule := range rules {
		if err := b.r.Add(ctx, rule); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", rule, err))
		}
	}
	b.log.Info("relay backend: external ports moved to the new external interface address", "address", addr, "was", old, "rules", len(rules)-len(errs))
	if len(errs) > 0 {
		return fmt.Errorf("relay backend: %d of %d ports could not be bound on %v: %w", len(errs), len(rules), addr, errors.Join(errs...))
	}
	return nil
}
