package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// addrEvent is one change of an IPv4 address of the host, as the kernel
// reports it (see addrWatcher).
type addrEvent struct {
	// Index is the interface's index.
	Index int
	// Label is the address's label: the interface's name, or an alias
	// such as "eth0:1".
	Label   string
	Prefix  netip.Prefix
	Deleted bool
}

// interfaceName returns the name of the interface ev concerns: looked up
// by index while the interface exists, else taken from the label (the
// addresses of an interface being deleted are reported after it is gone).
func (ev addrEvent) interfaceName() string {
	if ifi, err := net.InterfaceByIndex(ev.Index); err == nil {
		return ifi.Name
	}
	name, _, _ := strings.Cut(ev.Label, ":")
	return name
}

// matchInterface reports whether the interface name is one of patterns,
// where a trailing "*" matches a prefix, as in interfaces.external.
func matchInterface(name string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// followAddrEvents reads w until ctx ends or w fails, and calls changed
// after each batch of events of which concerns accepts at least one, and
// after events were lost (any of them may have mattered). It returns nil
// when ctx ends and the watcher's error otherwise, after which the caller
// is back to reading addresses periodically.
func followAddrEvents(ctx context.Context, w *addrWatcher, concerns func(addrEvent) bool, changed func(evs []addrEvent)) error {
	for {
		evs, err := w.next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errAddrEventsLost) {
			changed(nil)
			continue
		}
		if err != nil {
			return err
		}
		var ours []addrEvent
		for _, ev := range evs {
			if concerns(ev) {
				ours = append(ours, ev)
			}
		}
		if len(ours) > 0 {
			changed(ours)
		}
	}
}
