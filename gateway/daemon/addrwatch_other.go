//go:build !linux

package daemon

import (
	"context"
	"errors"
)

// addrWatcher has no implementation outside Linux: the daemon reads the
// external address again every Refresh instead.
type addrWatcher struct{}

const addrEventsSupported = false

var errAddrEventsLost = errors.New("address events were lost")

func openAddrWatcher(int) (*addrWatcher, error) {
	return nil, errors.New("address change events are only available on Linux (netlink)")
}

func (w *addrWatcher) Close() error { return nil }

func (w *addrWatcher) next(ctx context.Context) ([]addrEvent, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
