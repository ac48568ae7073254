// Package webuitest provides an in-memory portmap.Gateway for tests of the
// web UI and of anything else built on portmap: a router's mapping table
// with leases that really run down, answering the way a UPnP IGDv2 router
// (miniupnpd) does, with the same refusal sentences portmap gives for a
// real router's faults. Tests change the table "behind the client's back"
// with SetMappings and SetExternalIP, and slow a call down or make it fail
// with SetHook.
//
// It sends nothing anywhere: there is no network behind it.
package webuitest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/upnp"
)

// Options configure a Gateway. The zero value is a connected UPnP router
// with the public-looking (but documentation-range) external address
// 203.0.113.1, this host at 192.168.1.10, and an empty table.
type Options struct {
	// Method is portmap.UPnP (default) or portmap.NATPMP. A NAT-PMP gateway
	// cannot list, as the real protocol cannot.
	Method portmap.Method
	// Addr is the gateway's identifier; default
	// "http://192.168.1.1:5000/ctl/IPConn" for UPnP, "192.168.1.1:5351" for NAT-PMP.
	Addr string
	// ExternalIP defaults to 203.0.113.1.
	ExternalIP netip.Addr
	// LocalAddr is this host's LAN address; default 192.168.1.10.
	LocalAddr netip.Addr
	// Info is returned by Info (Method, ExternalIP and Location filled in
	// when empty); default a miniupnpd-like device description.
	Info portmap.Info
	// Mappings is the initial table; Lease counts from Start.
	Mappings []portmap.Mapping
}

// entry is one row of the table. expires is zero for a permanent entry.
type entry struct {
	m       portmap.Mapping
	expires time.Time
}

// Gateway is an in-memory router. It is safe for concurrent use.
type Gateway struct {
	method portmap.Method
	addr   string
	local  netip.Addr
	info   portmap.Info

	mu    sync.Mutex
	ext   netip.Addr
	table []entry
	hook  func(ctx context.Context, op string) error
	calls map[string]int
}

// New returns a gateway configured by o.
func New(o Options) *Gateway {
	if o.Method == "" {
		o.Method = portmap.UPnP
	}
	if o.Addr == "" {
		o.Addr = "http://192.168.1.1:5000/ctl/IPConn"
		if o.Method == portmap.NATPMP {
			o.Addr = "192.168.1.1:5351"
		}
	}
	if !o.ExternalIP.IsValid() {
		o.ExternalIP = netip.MustParseAddr("203.0.113.1")
	}
	if !o.LocalAddr.IsValid() {
		o.LocalAddr = netip.MustParseAddr("192.168.1.10")
	}
	if o.Info.Method == "" {
		if o.Method == portmap.UPnP {
			o.Info = portmap.Info{
				FriendlyName: "Fake Router", Manufacturer: "portfwd", ModelName: "webuitest",
				ModelNumber: "1", UDN: "uuid:00000000-0000-0000-0000-000000000001",
				Location: strings.TrimSuffix(o.Addr, "/ctl/IPConn") + "/rootDesc.xml", ControlURL: o.Addr,
				ServiceType: "urn:schemas-upnp-org:service:WANIPConnection:2", ConnectionStatus: "Connected",
				ConnectionType: "IP_Routed", Uptime: time.Hour, UptimeSeconds: 3600,
			}
		} else {
			o.Info = portmap.Info{Server: o.Addr}
		}
		o.Info.Method = o.Method
	}
	g := &Gateway{method: o.Method, addr: o.Addr, local: o.LocalAddr, info: o.Info, ext: o.ExternalIP, calls: map[string]int{}}
	g.SetMappings(o.Mappings)
	return g
}

// SetMappings replaces the table, as another program or the router's own
// admin page would. A mapping's Lease counts from now; Permanent or a zero
// Lease makes it permanent. Method and ExternalAddr are filled in.
func (g *Gateway) SetMappings(ms []portmap.Mapping) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.table = g.table[:0]
	for _, m := range ms {
		e := entry{m: m}
		if m.Lease > 0 && !m.Permanent {
			e.expires = now.Add(m.Lease)
		}
		e.m.Method, e.m.Permanent, e.m.Lease = g.method, e.expires.IsZero(), 0
		g.table = append(g.table, e)
	}
}

// Mappings returns the table as List would, without counting a call or
// running the hook.
func (g *Gateway) Mappings() []portmap.Mapping {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snapshot(time.Now())
}

// SetExternalIP changes the external address, as a reconnecting router's does.
func (g *Gateway) SetExternalIP(a netip.Addr) {
	g.mu.Lock()
	g.ext = a
	g.mu.Unlock()
}

// SetHook installs f, called with each operation's name ("ExternalIP",
// "Info", "List", "Add", "Edit", "Delete", "DeleteRange") before it runs;
// an error from f is returned by the operation. A hook that blocks until
// ctx ends makes a slow router. nil removes the hook.
func (g *Gateway) SetHook(f func(ctx context.Context, op string) error) {
	g.mu.Lock()
	g.hook = f
	g.mu.Unlock()
}

// Calls returns how many times op was called.
func (g *Gateway) Calls(op string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[op]
}

// begin counts op and runs the hook, outside the lock so that a blocking
// hook blocks only its own caller.
func (g *Gateway) begin(ctx context.Context, op string) error {
	g.mu.Lock()
	g.calls[op]++
	hook := g.hook
	g.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, op); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Method implements portmap.Gateway.
func (g *Gateway) Method() portmap.Method { return g.method }

// Addr implements portmap.Gateway.
func (g *Gateway) Addr() string { return g.addr }

// LocalAddr implements portmap.Gateway.
func (g *Gateway) LocalAddr() netip.Addr { return g.local }

// ExternalIP implements portmap.Gateway.
func (g *Gateway) ExternalIP(ctx context.Context) (netip.Addr, error) {
	if err := g.begin(ctx, "ExternalIP"); err != nil {
		return netip.Addr{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ext, nil
}

// Info implements portmap.Gateway.
func (g *Gateway) Info(ctx context.Context) (portmap.Info, error) {
	if err := g.begin(ctx, "Info"); err != nil {
		return portmap.Info{Method: g.method}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	info := g.info
	info.ExternalIP = g.ext
	return info, nil
}

// List implements portmap.Gateway. Over NAT-PMP it fails as portmap's does.
func (g *Gateway) List(ctx context.Context, progress func(int)) ([]portmap.Mapping, error) {
	if err := g.begin(ctx, "List"); err != nil {
		return nil, err
	}
	if g.method != portmap.UPnP {
		return nil, fmt.Errorf("NAT-PMP has no way to list a router's mappings: %w", portmap.ErrNotSupported)
	}
	g.mu.Lock()
	out := g.snapshot(time.Now())
	g.mu.Unlock()
	if progress != nil {
		progress(len(out))
	}
	return out, nil
}

// snapshot drops expired entries, as routers do, and returns the rest with
// their remaining lease. g.mu is held.
func (g *Gateway) snapshot(now time.Time) []portmap.Mapping {
	g.table = slices.DeleteFunc(g.table, func(e entry) bool { return !e.expires.IsZero() && !now.Before(e.expires) })
	out := make([]portmap.Mapping, len(g.table))
	for i, e := range g.table {
		out[i] = e.m
		out[i].ExternalAddr = g.ext
		if !e.expires.IsZero() {
			// Routers report whole seconds, rounded up so that a live entry
			// never shows 0.
			out[i].Lease = e.expires.Sub(now).Truncate(time.Second) + time.Second
		}
	}
	return out
}

func (g *Gateway) find(k portmap.Key) int {
	return slices.IndexFunc(g.table, func(e entry) bool { return e.m.Key() == k })
}

// refused builds the error portmap returns for a router's UPnP fault, with
// the same sentence.
func refused(action string, code int) error {
	return refusedErr(&upnp.Error{Code: code, Description: igd.CodeName(code), HTTPStatus: 500, Action: action})
}

func refusedErr(err error) error {
	return &portmap.RefusedError{Method: portmap.UPnP, Code: upnp.ErrorCode(err), Text: igd.Explain(err), Err: err}
}

// maxLease is IGDv2's upper bound on a lease (one week).
const maxLease = 604800 * time.Second

// Add implements portmap.Gateway like AddPortMapping (AddAnyPortMapping
// with Request.Any) on an IGDv2 router: the same key for the same client
// replaces the entry (a renewal), for another client it is 718.
func (g *Gateway) Add(ctx context.Context, r portmap.Request) (portmap.Mapping, error) {
	if err := g.begin(ctx, "Add"); err != nil {
		return portmap.Mapping{}, err
	}
	action := "AddPortMapping"
	if r.Any {
		action = "AddAnyPortMapping"
	}
	if r.Protocol != portmap.TCP && r.Protocol != portmap.UDP {
		return portmap.Mapping{}, refused(action, igd.CodeInvalidArgs)
	}
	if r.InternalPort == 0 {
		return portmap.Mapping{}, refused(action, igd.CodeWildCardNotPermittedInIntPort)
	}
	if r.Lease > maxLease {
		r.Lease = maxLease // IGDv2 routers cap a lease at a week
	}
	client := r.InternalClient
	if !client.IsValid() {
		client = g.local
	}
	ext := r.ExternalPort
	if ext == 0 {
		ext = r.InternalPort
	}
	m := portmap.Mapping{
		Protocol: r.Protocol, ExternalPort: ext, InternalClient: client.String(), InternalPort: r.InternalPort,
		Enabled: !r.Disabled, Description: r.Description, RemoteHost: r.RemoteHost, Method: g.method,
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.snapshot(now)
	if g.method == portmap.NATPMP && client != g.local {
		return portmap.Mapping{}, &portmap.RefusedError{Method: portmap.NATPMP, Text: fmt.Sprintf(
			"NAT-PMP can only map ports to the host that asks (%s), not to %s: run portfwd on that host, or use UPnP", g.local, client)}
	}
	// As portmap does: the port is looked up first, and a mapping there
	// is renewed when it is the very one asked for, replaced only with
	// Replace, passed over with Any (for the next free port), and refused
	// otherwise.
	i := g.find(m.Key())
	if i >= 0 {
		cur := g.table[i].m
		same := cur.InternalClient == m.InternalClient && cur.InternalPort == m.InternalPort &&
			cur.Enabled == m.Enabled && cur.Description == m.Description && cur.RemoteHost == m.RemoteHost
		switch {
		case same:
		case r.Replace:
			g.table = slices.Delete(g.table, i, i+1)
			i = -1
		case r.Any:
			for range 64 {
				m.ExternalPort++
				if m.ExternalPort == 0 {
					m.ExternalPort = 1024
				}
				if i = g.find(m.Key()); i < 0 {
					break
				}
			}
			if i >= 0 {
				return portmap.Mapping{}, fmt.Errorf("port %d/%s and the 64 ports after it are taken; ask for another port", ext, r.Protocol)
			}
		default:
			held := g.snapshot(now)[i]
			return portmap.Mapping{}, portmap.RefuseExisting(g.method, m.Key(), held, nil)
		}
	}
	e := entry{m: m}
	if r.Lease > 0 {
		e.expires = now.Add(r.Lease)
	}
	e.m.Permanent = e.expires.IsZero()
	if i >= 0 {
		g.table[i] = e
	} else {
		g.table = append(g.table, e)
	}
	m.Lease, m.Permanent, m.ExternalAddr = r.Lease, r.Lease == 0, g.ext
	m.ReadBack = g.method == portmap.UPnP
	return m, nil
}

// Edit implements portmap.Gateway the way portmap's UPnP gateway does:
// read the entry (714 if it is missing), apply the change, and keep the
// old entry when the new one cannot be made.
func (g *Gateway) Edit(ctx context.Context, key portmap.Key, c portmap.Change) (portmap.Mapping, error) {
	if err := g.begin(ctx, "Edit"); err != nil {
		return portmap.Mapping{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.snapshot(now)
	i := g.find(key)
	if i < 0 {
		return portmap.Mapping{}, refused("GetSpecificPortMappingEntry", igd.CodeNoSuchEntryInArray)
	}
	old := g.table[i]
	e := old
	m := &e.m
	if c.ExternalPort != nil {
		m.ExternalPort = *c.ExternalPort
	}
	if c.InternalPort != nil {
		m.InternalPort = *c.InternalPort
	}
	if c.InternalClient != nil {
		m.InternalClient = c.InternalClient.String()
	}
	if c.Description != nil {
		m.Description = *c.Description
	}
	if c.Enabled != nil {
		m.Enabled = *c.Enabled
	}
	if c.Lease != nil {
		e.expires = time.Time{}
		if *c.Lease > 0 {
			e.expires = now.Add(*c.Lease)
		}
		m.Permanent = e.expires.IsZero()
	}
	if m.InternalPort == 0 {
		return portmap.Mapping{}, errors.New("igd: no internal port: give the port on the LAN host to forward to")
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = m.InternalPort
	}
	if !e.expires.IsZero() && e.expires.Sub(now) > maxLease {
		e.expires = now.Add(maxLease)
	}
	if j := g.find(m.Key()); j >= 0 && j != i && !c.Replace {
		// Another mapping holds the new key: portmap refuses to replace it.
		return portmap.Mapping{}, portmap.RefuseExisting(g.method, m.Key(), g.snapshot(now)[j], nil)
	} else if j >= 0 && j != i {
		g.table[j] = e
		g.table = slices.Delete(g.table, i, i+1)
		return g.edited(e, now), nil
	}
	g.table[i] = e
	return g.edited(e, now), nil
}

// edited is the mapping Edit returns for the new entry e. g.mu is held.
func (g *Gateway) edited(e entry, now time.Time) portmap.Mapping {
	out := e.m
	out.ExternalAddr = g.ext
	if !e.expires.IsZero() {
		out.Lease = e.expires.Sub(now).Round(time.Second)
	}
	out.ReadBack = g.method == portmap.UPnP
	return out
}

// Delete implements portmap.Gateway: 714 when there is no such mapping.
func (g *Gateway) Delete(ctx context.Context, key portmap.Key) error {
	if err := g.begin(ctx, "Delete"); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.snapshot(time.Now())
	i := g.find(key)
	if i < 0 {
		return refused("DeletePortMapping", igd.CodeNoSuchEntryInArray)
	}
	g.table = slices.Delete(g.table, i, i+1)
	return nil
}

// DeleteRange implements portmap.Gateway as portmap does: it returns the
// mappings removed, as they were.
func (g *Gateway) DeleteRange(ctx context.Context, proto portmap.Protocol, start, end uint16) ([]portmap.Mapping, error) {
	if err := g.begin(ctx, "DeleteRange"); err != nil {
		return nil, err
	}
	if start > end {
		return nil, fmt.Errorf("igd: port range %d-%d is reversed", start, end)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var gone []portmap.Mapping
	for _, m := range g.snapshot(time.Now()) {
		if m.Protocol == proto && m.ExternalPort >= start && m.ExternalPort <= end {
			gone = append(gone, m)
		}
	}
	g.table = slices.DeleteFunc(g.table, func(e entry) bool {
		return e.m.Protocol == proto && e.m.ExternalPort >= start && e.m.ExternalPort <= end
	})
	return gone, nil
}

var _ portmap.Gateway = (*Gateway)(nil)
