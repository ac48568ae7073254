//go:build linux

package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// addrWatcher reports changes of the host's IPv4 addresses as they happen:
// a netlink route socket subscribed to RTNLGRP_IPV4_IFADDR receives an
// RTM_NEWADDR or RTM_DELADDR message for every address added, removed or
// changed, on any interface. Nothing is polled.
type addrWatcher struct {
	c *netlink.Conn
}

// addrEventsSupported says whether this platform has an addrWatcher.
const addrEventsSupported = true

// openAddrWatcher subscribes to the address changes of the network
// namespace netns (a file descriptor of /run/netns/NAME or /proc/PID/ns/net;
// 0 means the namespace of the calling thread, what the daemon uses).
func openAddrWatcher(netns int) (*addrWatcher, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_IPV4_IFADDR, NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("cannot subscribe to address changes over netlink: %w", err)
	}
	return &addrWatcher{c: c}, nil
}

// Close releases the socket; a next that is waiting returns.
func (w *addrWatcher) Close() error { return w.c.Close() }

// errAddrEventsLost reports that the kernel dropped address events because
// they were not read fast enough (ENOBUFS): the caller must re-read the
// state it cares about, since any change may have been among them.
var errAddrEventsLost = errors.New("address events were lost (the netlink socket overflowed)")

// next waits for the next batch of address events. It returns
// errAddrEventsLost after an overflow (the watcher keeps working), and
// ctx's error once ctx ends.
func (w *addrWatcher) next(ctx context.Context) ([]addrEvent, error) {
	stop := context.AfterFunc(ctx, func() { w.c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msgs, err := w.c.Receive()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, unix.ENOBUFS) {
			return nil, errAddrEventsLost
		}
		if err != nil {
			return nil, fmt.Errorf("reading address changes from netlink: %w", err)
		}
		var out []addrEvent
		for _, m := range msgs {
			if ev, ok := parseAddrMessage(uint16(m.Header.Type), m.Data); ok {
				out = append(out, ev)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

// parseAddrMessage decodes an RTM_NEWADDR or RTM_DELADDR message: a struct
// ifaddrmsg (family, prefix length, flags, scope, interface index) and
// attributes, of which IFA_LOCAL is the interface's own address and
// IFA_ADDRESS the same or, on a point-to-point link, the peer's. Other
// messages, other families and truncated ones are not events.
func parseAddrMessage(typ uint16, b []byte) (addrEvent, bool) {
	if typ != unix.RTM_NEWADDR && typ != unix.RTM_DELADDR {
		return addrEvent{}, false
	}
	if len(b) < unix.SizeofIfAddrmsg || b[0] != unix.AF_INET {
		return addrEvent{}, false
	}
	bits := int(b[1])
	ev := addrEvent{Index: int(binary.NativeEndian.Uint32(b[4:8])), Deleted: typ == unix.RTM_DELADDR}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofIfAddrmsg:])
	if err != nil {
		return addrEvent{}, false
	}
	var local, address netip.Addr
	for ad.Next() {
		switch ad.Type() {
		case unix.IFA_LOCAL:
			local, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.IFA_ADDRESS:
			address, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.IFA_LABEL:
			ev.Label = ad.String()
		}
	}
	if ad.Err() != nil {
		return addrEvent{}, false
	}
	a := local
	if !a.IsValid() {
		a = address
	}
	if !a.Is4() || bits > 32 {
		return addrEvent{}, false
	}
	ev.Prefix = netip.PrefixFrom(a, bits)
	return ev, true
}
