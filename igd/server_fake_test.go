package igd

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/httpx/httpxtest"

	"github.com/portfwd/portfwd/upnp"
)

// fakeService is a map-backed Service with the semantics of a real
// gateway table: one mapping per protocol and external port, 718 when
// another client holds the port, and, in secure mode, 606 for changes to
// another client's mapping. It records what the Server passed it.
type fakeService struct {
	mu sync.Mutex

	ext      netip.Addr
	extErr   error
	status   string
	uptime   time.Duration
	lastErr  string
	link     LinkProperties
	counters LinkCounters
	secure   bool
	updateID uint32

	table  []PortMapping // in index order
	owners map[Key]netip.Addr

	// fail scripts an error for the next call of a method, by name.
	fail map[string]error
	// panicOn makes a method panic, by name.
	panicOn string

	// last holds the arguments of the last call, by method name.
	last map[string]fakeCall

	// fw is the WANIPv6FirewallControl side (server_firewall_test.go).
	fw *fakeFirewall
}

// fakeCall is what one method received.
type fakeCall struct {
	client     netip.Addr
	mapping    PortMapping
	remoteHost string
	port       uint16
	proto      string
	start, end uint16
	manage     bool
	index, max int
}

func newFake() *fakeService {
	return &fakeService{
		ext:    netip.MustParseAddr("203.0.113.7"),
		status: "Connected",
		uptime: 90 * time.Minute,
		link:   LinkProperties{AccessType: "Cable", UpBps: 20_000_000, DownBps: 100_000_000, Status: "Up"},
		owners: make(map[Key]netip.Addr),
		fail:   make(map[string]error),
		last:   make(map[string]fakeCall),
		fw:     newFakeFirewall(),
	}
}

// enter records a call and returns the scripted error for it, if any.
func (f *fakeService) enter(method string, c fakeCall) error {
	if f.panicOn == method {
		panic("fake service: scripted panic in " + method)
	}
	f.last[method] = c
	if err, ok := f.fail[method]; ok {
		delete(f.fail, method)
		return err
	}
	return nil
}

func (f *fakeService) find(port uint16, proto string) int {
	return slices.IndexFunc(f.table, func(m PortMapping) bool {
		return m.ExternalPort == port && m.Protocol == proto
	})
}

func (f *fakeService) mayChange(client netip.Addr, i int) bool {
	return !f.secure || f.owners[f.table[i].Key()] == client
}

func (f *fakeService) ExternalIPAddress(context.Context) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOn == "ExternalIPAddress" {
		panic("fake service: scripted panic in ExternalIPAddress")
	}
	return f.ext, f.extErr
}

func (f *fakeService) ConnectionStatus(context.Context) (string, time.Duration, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.uptime, f.lastErr
}

func (f *fakeService) LinkProperties(context.Context) (LinkProperties, LinkCounters) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.link, f.counters
}

func (f *fakeService) AddPortMapping(_ context.Context, client netip.Addr, m PortMapping) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddPortMapping", fakeCall{client: client, mapping: m}); err != nil {
		return err
	}
	return f.addLocked(client, m)
}

func (f *fakeService) addLocked(client netip.Addr, m PortMapping) error {
	if f.secure && m.InternalClient != client.String() {
		return &upnp.Error{Code: CodeActionNotAuthorized}
	}
	if i := f.find(m.ExternalPort, m.Protocol); i >= 0 {
		if f.table[i].InternalClient != m.InternalClient {
			return &upnp.Error{Code: CodeConflictInMappingEntry}
		}
		f.table[i] = m
		f.updateID++
		return nil
	}
	f.table = append(f.table, m)
	f.owners[m.Key()] = client
	f.updateID++
	return nil
}

func (f *fakeService) AddAnyPortMapping(_ context.Context, client netip.Addr, m PortMapping) (uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddAnyPortMapping", fakeCall{client: client, mapping: m}); err != nil {
		return 0, err
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = 1024
	}
	for range 1000 {
		if i := f.find(m.ExternalPort, m.Protocol); i < 0 || f.table[i].InternalClient == m.InternalClient {
			return m.ExternalPort, f.addLocked(client, m)
		}
		m.ExternalPort++
	}
	return 0, &upnp.Error{Code: CodeNoPortMapsAvailable}
}

func (f *fakeService) DeletePortMapping(_ context.Context, client netip.Addr, remoteHost string, port uint16, proto string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeletePortMapping", fakeCall{client: client, remoteHost: remoteHost, port: port, proto: proto}); err != nil {
		return err
	}
	i := f.find(port, proto)
	if i < 0 {
		return &upnp.Error{Code: CodeNoSuchEntryInArray}
	}
	if !f.mayChange(client, i) {
		return &upnp.Error{Code: CodeActionNotAuthorized}
	}
	delete(f.owners, f.table[i].Key())
	f.table = slices.Delete(f.table, i, i+1)
	f.updateID++
	return nil
}

func (f *fakeService) DeletePortMappingRange(_ context.Context, client netip.Addr, start, end uint16, proto string, manage bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeletePortMappingRange", fakeCall{client: client, start: start, end: end, proto: proto, manage: manage}); err != nil {
		return err
	}
	n := len(f.table)
	f.table = slices.DeleteFunc(f.table, func(m PortMapping) bool {
		del := m.Protocol == proto && m.ExternalPort >= start && m.ExternalPort <= end &&
			(manage || f.owners[m.Key()] == client)
		if del {
			delete(f.owners, m.Key())
		}
		return del
	})
	if len(f.table) == n {
		return &upnp.Error{Code: CodePortMappingNotFound}
	}
	f.updateID++
	return nil
}

func (f *fakeService) GetGenericPortMappingEntry(_ context.Context, client netip.Addr, index int) (PortMapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetGenericPortMappingEntry", fakeCall{client: client, index: index}); err != nil {
		return PortMapping{}, err
	}
	if index >= len(f.table) {
		return PortMapping{}, &upnp.Error{Code: CodeSpecifiedArrayIndexInvalid}
	}
	return f.table[index], nil
}

func (f *fakeService) GetSpecificPortMappingEntry(_ context.Context, client netip.Addr, remoteHost string, port uint16, proto string) (PortMapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetSpecificPortMappingEntry", fakeCall{client: client, remoteHost: remoteHost, port: port, proto: proto}); err != nil {
		return PortMapping{}, err
	}
	i := f.find(port, proto)
	if i < 0 {
		return PortMapping{}, &upnp.Error{Code: CodeNoSuchEntryInArray}
	}
	return f.table[i], nil
}

func (f *fakeService) GetListOfPortMappings(_ context.Context, client netip.Addr, start, end uint16, proto string, manage bool, max int) ([]PortMapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetListOfPortMappings", fakeCall{client: client, start: start, end: end, proto: proto, manage: manage, max: max}); err != nil {
		return nil, err
	}
	var out []PortMapping
	for _, m := range f.table {
		if m.Protocol == proto && m.ExternalPort >= start && m.ExternalPort <= end && (manage || f.owners[m.Key()] == client) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b PortMapping) int { return int(a.ExternalPort) - int(b.ExternalPort) })
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}

func (f *fakeService) RequestConnection(_ context.Context, client netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("RequestConnection", fakeCall{client: client})
}

func (f *fakeService) ForceTermination(_ context.Context, client netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("ForceTermination", fakeCall{client: client})
}

func (f *fakeService) PortMappingNumberOfEntries(context.Context) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.table)
}

func (f *fakeService) SystemUpdateID(context.Context) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updateID
}

// script makes the next call of method fail with err.
func (f *fakeService) script(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

// lastCall returns what method last received, and whether it was called.
func (f *fakeService) lastCall(method string) (fakeCall, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.last[method]
	return c, ok
}

// calls returns the names of the methods called so far.
func (f *fakeService) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.last))
}

func (f *fakeService) mappings() []PortMapping {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.table)
}

// testUUID is a fixed root UUID: the description must be stable for it.
const testUUID = "uuid:3c2e5c4a-9d1b-4f2e-8a7c-0b1d2e3f4a5b"

// newTestServer serves a Server for cfg (with the fake and the test UUID
// unless cfg says otherwise) on 127.0.0.1.
func newTestServer(t testing.TB, version int, f *fakeService, edit func(*ServerConfig)) (*httpxtest.Server, *Server) {
	t.Helper()
	cfg := ServerConfig{Service: f, Version: version, UUID: testUUID, FriendlyName: "test gateway",
		Logger: slogDiscard()}
	if f != nil {
		cfg.FirewallControl = f.fw
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httpxtest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, s
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// discover fetches the description like a control point and returns the
// best connection service's client.
func discover(t testing.TB, srv *httpxtest.Server) (*Client, []ServiceRef) {
	t.Helper()
	root, err := upnp.FetchDescription(context.Background(), srv.Client(), srv.URL+DescriptionPath)
	if err != nil {
		t.Fatal(err)
	}
	refs := ConnectionServices(root)
	if len(refs) == 0 {
		t.Fatal("ConnectionServices found no connection service in the server's description")
	}
	return NewClient(refs[0], &upnp.Client{HTTP: srv.Client()}), refs
}

// soapCall calls action at path of srv with args, as a raw UPnP control
// point would.
func soapCall(t testing.TB, srv *httpxtest.Server, path, serviceType, action string, args ...string) (upnp.Args, error) {
	t.Helper()
	if len(args)%2 != 0 {
		t.Fatalf("soapCall: odd number of name/value strings")
	}
	var in upnp.Args
	for i := 0; i < len(args); i += 2 {
		in = append(in, upnp.Arg{Name: args[i], Value: args[i+1]})
	}
	c := &upnp.Client{HTTP: srv.Client()}
	return c.Call(context.Background(), srv.URL+path, serviceType, action, in)
}
