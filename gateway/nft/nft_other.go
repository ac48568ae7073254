//go:build !linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/portfwd/portfwd/gateway"
)

// DefaultTable is the name of the inet table the backend owns when
// Config.Table is empty.
const DefaultTable = "portfwd"

// Config configures a Backend. See the Linux build for field documentation.
type Config struct {
	Table              string
	ExternalInterfaces []string
	InternalInterfaces []string
	NetNS              int
	ForwardTable       string
	ForwardChain       string
	Logger             *slog.Logger
}

// Backend is unavailable outside Linux; New always fails.
type Backend struct{}

var _ gateway.Backend = (*Backend)(nil)

var errNotLinux = fmt.Errorf("nft: nftables exists only on Linux: use the relay backend here: %w", errors.ErrUnsupported)

// New fails: nftables exists only on Linux.
func New(ctx context.Context, cfg Config) (*Backend, error) { return nil, errNotLinux }

// Check fails: nftables exists only on Linux.
func Check(ctx context.Context, cfg Config) ([]string, error) { return nil, errNotLinux }

func (b *Backend) Name() string                                      { return "nft" }
func (b *Backend) Add(ctx context.Context, r gateway.Rule) error     { return errNotLinux }
func (b *Backend) Delete(ctx context.Context, r gateway.Rule) error  { return errNotLinux }
func (b *Backend) Flush(ctx context.Context) error                   { return errNotLinux }
func (b *Backend) Destroy(ctx context.Context) error                 { return errNotLinux }
func (b *Backend) Close() error                                      { return nil }
func (b *Backend) Rules(ctx context.Context) ([]gateway.Rule, error) { return nil, errNotLinux }

// WatchReloads fails: nftables exists only on Linux.
func (b *Backend) WatchReloads(ctx context.Context) error { return errNotLinux }

// CheckPinholes fails: nftables exists only on Linux.
func CheckPinholes(ctx context.Context, cfg Config) (ok, problems []string, err error) {
	return nil, nil, errNotLinux
}

// PinholeTarget: no pinholes outside Linux.
func (b *Backend) PinholeTarget() (string, bool) { return "nowhere (not Linux)", false }
