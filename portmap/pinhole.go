package portmap

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/pcp"
	"github.com/portfwd/portfwd/ssdp"
	"github.com/portfwd/portfwd/upnp"
)

// IPv6 pinholes.
//
// On IPv6 there is no NAT: a LAN host's address is itself public, and home
// routers drop inbound connections to it unless a pinhole, an inbound
// firewall rule, allows them. Two protocols open one: UPnP IGD:2's
// WANIPv6FirewallControl:1 (AddPinhole, UpdatePinhole, DeletePinhole) and
// a PCP MAP sent over IPv6 (the router answers with the host's own address
// and port: no translation). A pinhole is a Mapping with Family IPv6 and
// an ID.
//
// The pinhole is for the address the request comes from: miniupnpd
// answers 606 to an AddPinhole whose InternalClient is not the SOAP
// request's source, and PCP answers ADDRESS_MISMATCH. So the Pinholer
// binds its SOAP and PCP sockets to the chosen address instead of merely
// writing it in the request; without that the kernel may pick a temporary
// or a unique local source address, which is how miniupnp issues #600 and
// #731 come about.
//
// Neither protocol can list pinholes, so what this host opened is kept in
// the state directory: List reads it from there, not from the router.

// Family is a mapping's address family.
type Family string

const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// DefaultPinholeLease is the lease asked for when a PinholeRequest gives
// none.
const DefaultPinholeLease = time.Hour

// PinholeOptions configure FindPinholer.
type PinholeOptions struct {
	// Methods limits the protocols: UPnP, PCP, or both (empty), UPnP first.
	Methods []Method
	// GatewayURL is the IGD's root description URL; SSDP is skipped. Its
	// host should be IPv6: miniupnpd refuses AddPinhole sent over IPv4
	// (606), so the service's IPv6 URL is searched for when it is not.
	GatewayURL string
	// PCPServer is the PCP server; zero means the IPv6 default router, or
	// the IGD's host.
	PCPServer netip.AddrPort
	// Interfaces limits SSDP to these interfaces.
	Interfaces []string
	// RequestTimeout bounds each request (default 3 s).
	RequestTimeout time.Duration
	// StateDir and NoState are as in Options: pinholes are recorded there.
	StateDir string
	NoState  bool
	Logger   *slog.Logger
	// Addrs lists this host's IPv6 addresses; nil means HostAddrs6. Tests
	// set it.
	Addrs func() ([]HostAddr6, error)
}

func (o *PinholeOptions) wants(m Method) bool {
	return len(o.Methods) == 0 || slices.Contains(o.Methods, m)
}

func (o *PinholeOptions) timeout() time.Duration {
	if o.RequestTimeout > 0 {
		return o.RequestTimeout
	}
	return 3 * time.Second
}

func (o *PinholeOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (o *PinholeOptions) stateDir() string {
	return (&Options{StateDir: o.StateDir, NoState: o.NoState}).stateDir()
}

// PinholeRequest describes a pinhole to open.
type PinholeRequest struct {
	Protocol Protocol
	Port     uint16
	// Client is the address the pinhole is for; it must be one of this
	// host's. Zero means this host's stable global address (ChooseAddr6).
	Client netip.Addr
	// RemoteHost and RemotePort restrict the pinhole to one peer; zero
	// values mean any.
	RemoteHost netip.Addr
	RemotePort uint16
	// Lease is asked for; zero means DefaultPinholeLease. UPnP allows
	// 1 s to 24 h (longer is clamped, with a note).
	Lease time.Duration
	// Description is kept in this host's records (neither protocol
	// carries one for pinholes).
	Description string
}

// PinholeRecord is a pinhole this host remembers opening.
type PinholeRecord struct {
	Method         Method     `json:"method"`
	Gateway        string     `json:"gateway"`
	ID             string     `json:"id"`
	Protocol       Protocol   `json:"protocol"`
	InternalClient netip.Addr `json:"internal_client"`
	InternalPort   uint16     `json:"internal_port"`
	RemoteHost     netip.Addr `json:"remote_host,omitzero"`
	RemotePort     uint16     `json:"remote_port,omitempty"`
	Description    string     `json:"description,omitempty"`
	Nonce          pcp.Nonce  `json:"nonce,omitzero"`
	Lease          int64      `json:"lease_seconds"`
	Made           time.Time  `json:"made"`
	Expires        time.Time  `json:"expires"`
	Keeper         *Process   `json:"keeper,omitempty"`
}

// Mapping returns the pinhole as a Mapping (Family IPv6), with the lease
// left at now.
func (r PinholeRecord) Mapping(now time.Time) Mapping {
	m := Mapping{
		Family: IPv6, ID: r.ID, Method: r.Method, Protocol: r.Protocol,
		ExternalAddr: r.InternalClient, ExternalPort: r.InternalPort,
		InternalClient: r.InternalClient.String(), InternalPort: r.InternalPort,
		RemotePort: r.RemotePort, Description: r.Description, Enabled: true,
		Lease: max(r.Expires.Sub(now), 0).Round(time.Second),
	}
	if r.RemoteHost.IsValid() {
		m.RemoteHost = r.RemoteHost.String()
	}
	return m
}

// Pinholer opens, renews and closes IPv6 pinholes on one gateway. Make it
// with FindPinholer.
type Pinholer struct {
	method      Method
	controlURL  string // UPnP
	serviceType string
	pcpServer   netip.AddrPort // PCP
	o           PinholeOptions
	st          *store
	log         *slog.Logger
	mu          sync.Mutex
	pcpClients  map[netip.Addr]*pcp.Client // by source address, keeping each one's epoch; under mu
}

// Method is the protocol the pinholes are opened with: UPnP or PCP.
func (p *Pinholer) Method() Method { return p.method }

// Addr is the gateway: the firewall service's control URL (UPnP) or the
// PCP server's address.
func (p *Pinholer) Addr() string {
	if p.method == UPnP {
		return p.controlURL
	}
	return p.pcpServer.String()
}

// ErrNoPinholeGateway is returned by FindPinholer when no gateway offers
// pinholes.
var ErrNoPinholeGateway = errors.New("no gateway offering IPv6 pinholes was found")

// FindPinholer finds the gateway that opens pinholes: an IGD with
// WANIPv6FirewallControl:1, found over SSDP on ff02::c/ff05::c (or at
// GatewayURL), else a PCP server (PCPServer, the IPv6 default router, or
// the IGD's host). Routers configured as IGD:1 (OpenWrt's default) offer
// pinholes over PCP only. ctx bounds the search.
func FindPinholer(ctx context.Context, o PinholeOptions) (*Pinholer, error) {
	p := &Pinholer{o: o, st: newStore(o.stateDir(), o.Logger), log: o.logger(), pcpClients: map[netip.Addr]*pcp.Client{}}
	var problems []string
	var igdHost netip.Addr
	if o.wants(UPnP) {
		url, st, host, err := p.findFirewallService(ctx)
		igdHost = host
		if err == nil {
			p.method, p.controlURL, p.serviceType = UPnP, url, st
			return p, nil
		}
		problems = append(problems, "UPnP: "+err.Error())
	}
	if o.wants(PCP) {
		server := o.PCPServer
		if !server.IsValid() {
			gw, err := defaultRouter6()
			switch {
			case err == nil:
				server = netip.AddrPortFrom(gw, pcp.ServerPort)
			case igdHost.IsValid() && igdHost.Is6():
				server = netip.AddrPortFrom(igdHost, pcp.ServerPort)
			default:
				problems = append(problems, "PCP: "+err.Error())
			}
		}
		if server.IsValid() {
			if server.Port() == 0 {
				server = netip.AddrPortFrom(server.Addr(), pcp.ServerPort)
			}
			if server.Addr().Is4() || server.Addr().Is4In6() {
				return nil, fmt.Errorf("the PCP server %v is an IPv4 address; a pinhole is asked for over IPv6: give the router's IPv6 address", server)
			}
			p.method, p.pcpServer = PCP, server
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w (%s)", ErrNoPinholeGateway, strings.Join(problems, "; "))
}

// findFirewallService returns the control URL of the WANIPv6FirewallControl
// service at its IPv6 address.
func (p *Pinholer) findFirewallService(ctx context.Context) (url, serviceType string, host netip.Addr, err error) {
	hc := &http.Client{Timeout: p.o.timeout(), Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	try := func(location string) (string, string, error) {
		root, err := upnp.FetchDescription(ctx, hc, location)
		if err != nil {
			return "", "", err
		}
		var svc *upnp.Service
		root.Walk(func(_ []*upnp.Device, s *upnp.Service) bool {
			if strings.EqualFold(strings.TrimSpace(s.ServiceType), igd.ServiceWANIPv6FirewallControl) {
				svc = s
				return false
			}
			return true
		})
		if svc == nil {
			return "", "", fmt.Errorf("the IGD at %s has no WANIPv6FirewallControl service (an IGD:1 router, such as OpenWrt's default, offers pinholes over PCP only)", location)
		}
		u, err := root.Resolve(svc.ControlURL)
		if err != nil {
			return "", "", err
		}
		return u, strings.TrimSpace(svc.ServiceType), nil
	}
	if p.o.GatewayURL != "" {
		host = hostOf(p.o.GatewayURL)
		u, st, err := try(p.o.GatewayURL)
		if err != nil {
			return "", "", host, err
		}
		if h := hostOf(u); h.Is6() && !h.Is4In6() {
			return u, st, host, nil
		}
		// miniupnpd 2.3.1 refuses AddPinhole over IPv4 with 606: the
		// sender, ::ffff:a.b.c.d, is never the IPv6 InternalClient. Look
		// for the same service at its IPv6 address.
		p.log.Debug("portmap: the firewall service's URL is IPv4; searching its IPv6 URL", "url", u)
	}
	sctx, cancel := context.WithTimeout(ctx, p.o.timeout())
	defer cancel()
	var found, foundST string
	var errs []error
	serr := ssdp.Search(sctx, ssdp.SearchOptions{
		Targets:    []string{igd.ServiceWANIPv6FirewallControl, ssdp.STIGDv2, ssdp.STIGDv1},
		Interfaces: p.o.Interfaces, Family: ssdp.IPv6Only, Logger: p.o.Logger,
	}, func(r ssdp.Response) bool {
		h := hostOf(r.Location)
		if !h.Is6() || h.Is4In6() {
			return true
		}
		u, st, err := try(zoneLocation(r))
		if err != nil {
			errs = append(errs, err)
			return true
		}
		found, foundST, host = u, st, h
		return false
	})
	if found != "" {
		return found, foundST, host, nil
	}
	if len(errs) > 0 {
		return "", "", host, errors.Join(errs...)
	}
	if p.o.GatewayURL != "" {
		return "", "", host, fmt.Errorf("%s is an IPv4 URL and no IGD answered over IPv6 (ff02::c): routers open pinholes only to the address a request comes from, so give the IGD's IPv6 URL", p.o.GatewayURL)
	}
	if serr != nil && !errors.Is(serr, context.DeadlineExceeded) && ctx.Err() == nil {
		return "", "", host, serr
	}
	return "", "", host, errors.New("no IGD answered an SSDP search on ff02::c/ff05::c")
}

// zoneLocation gives a link-local LOCATION the zone of the interface the
// answer came in on: a device cannot know the zone, and without it the
// address cannot be reached.
func zoneLocation(r ssdp.Response) string {
	h := hostOf(r.Location)
	if !h.IsLinkLocalUnicast() || h.Zone() != "" || r.Interface == "" {
		return r.Location
	}
	lit := "[" + h.String() + "]"
	return strings.Replace(r.Location, lit, "["+h.String()+"%25"+r.Interface+"]", 1)
}

// chooseClient resolves a request's address: the one given, checked to be
// this host's, or the stable global one on the interface towards the
// gateway. It returns a sentence saying which and why.
func (p *Pinholer) chooseClient(want netip.Addr) (HostAddr6, string, error) {
	list := p.o.Addrs
	if list == nil {
		list = HostAddrs6
	}
	addrs, err := list()
	if err != nil {
		return HostAddr6{}, "", fmt.Errorf("listing this host's IPv6 addresses: %w", err)
	}
	if want.IsValid() {
		if !want.Is6() || want.Is4In6() {
			return HostAddr6{}, "", fmt.Errorf("%v is not an IPv6 address; a pinhole is for one of this host's IPv6 addresses", want)
		}
		h, err := OwnAddr6(addrs, want)
		if err != nil {
			return HostAddr6{}, "", err
		}
		why := fmt.Sprintf("%v of %s, as asked", h.Addr, h.Iface)
		if isULA(h.Addr) || h.Addr.IsLinkLocalUnicast() {
			why += " (not reachable from the Internet)"
		}
		return h, why, nil
	}
	iface := ""
	if gw := hostOf(p.controlURL); gw.IsValid() {
		if l := localAddrFor(gw); l.IsValid() {
			for _, a := range addrs {
				if a.Addr == l {
					iface = a.Iface
				}
			}
		}
	} else if p.pcpServer.IsValid() {
		if z := p.pcpServer.Addr().Zone(); z != "" {
			iface = z
		}
	}
	return ChooseAddr6(addrs, iface)
}

// firewall returns a FirewallClient whose requests leave from src.
func (p *Pinholer) firewall(src netip.Addr) *igd.FirewallClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice(), Zone: src.Zone()}}
	hc := &http.Client{Timeout: p.o.timeout(), Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableKeepAlives: true}}
	return &igd.FirewallClient{SOAP: &upnp.Client{HTTP: hc}, ControlURL: p.controlURL, ServiceType: p.serviceType, Logger: p.o.Logger}
}

// pcpClient returns the PCP client whose requests leave from src.
func (p *Pinholer) pcpClient(src netip.Addr) *pcp.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.pcpClients[src]; ok {
		return c
	}
	c := &pcp.Client{
		Gateway: p.pcpServer,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice(), Zone: src.Zone()}}
			return d.DialContext(ctx, network, address)
		},
		MaxTries: 4,
		Logger:   p.o.Logger,
	}
	p.pcpClients[src] = c
	return c
}

func ianaProto(pr Protocol) (uint16, error) {
	switch pr {
	case TCP:
		return igd.ProtoTCP, nil
	case UDP:
		return igd.ProtoUDP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: use TCP or UDP", pr)
}

// Open opens a pinhole and records it. The Mapping is as the router
// acknowledged it: neither protocol can read a pinhole back, so there is
// no ReadBack; the Note says which address was used and why.
func (p *Pinholer) Open(ctx context.Context, r PinholeRequest) (Mapping, error) {
	if r.Port == 0 {
		return Mapping{}, errors.New("a pinhole needs a port (1-65535)")
	}
	proto, err := ianaProto(r.Protocol)
	if err != nil {
		return Mapping{}, err
	}
	if r.RemoteHost.IsValid() && (!r.RemoteHost.Is6() || r.RemoteHost.Is4In6()) {
		return Mapping{}, fmt.Errorf("remote host %v is not an IPv6 address", r.RemoteHost)
	}
	host, why, err := p.chooseClient(r.Client)
	if err != nil {
		return Mapping{}, err
	}
	lease, leaseNote := pinholeLease(p.method, r.Lease)
	rec := PinholeRecord{
		Method: p.method, Gateway: p.Addr(), Protocol: r.Protocol,
		InternalClient: host.Addr.WithZone(""), InternalPort: r.Port,
		RemoteHost: r.RemoteHost, RemotePort: r.RemotePort, Description: r.Description,
	}
	// The same tuple again is a refresh: PCP needs the nonce that made
	// it (miniupnpd refuses another one for the same port), and UPnP's
	// AddPinhole returns the existing pinhole's ID.
	prev, _ := p.sameTuple(rec)
	rec, granted, err := p.open(ctx, rec, proto, lease, prev.Nonce)
	if err != nil {
		return Mapping{}, err
	}
	if _, err := p.update(prev.ID, rec); err != nil {
		return Mapping{}, err
	}
	m := rec.Mapping(rec.Made)
	m.Lease = granted
	m.addNote("for "+why, leaseNote, grantedNote(lease, granted))
	return m, nil
}

// grantedNote says when the router granted another lease than asked (a
// PCP server clamps to its own bounds: miniupnpd's min_lifetime is 120 s).
func grantedNote(asked, granted time.Duration) string {
	if granted == asked || granted == 0 {
		return ""
	}
	return fmt.Sprintf("the router granted a lease of %v instead of %v", granted, asked)
}

// pinholeLease applies the default and UPnP's 1 s..24 h range.
func pinholeLease(method Method, asked time.Duration) (time.Duration, string) {
	if asked <= 0 {
		return DefaultPinholeLease, ""
	}
	if method == UPnP {
		if asked > igd.MaxPinholeLease {
			return igd.MaxPinholeLease, fmt.Sprintf("a UPnP pinhole lasts at most 24h: asked for 24h instead of %v", asked)
		}
		if asked < time.Second {
			return time.Second, ""
		}
	}
	return asked, ""
}

// open makes the pinhole on the router (AddPinhole, or a PCP MAP with
// nonce, new when zero) and returns the record filled in, with the lease
// the router granted.
func (p *Pinholer) open(ctx context.Context, rec PinholeRecord, proto uint16, lease time.Duration, nonce pcp.Nonce) (PinholeRecord, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*p.o.timeout())
	defer cancel()
	now := time.Now()
	switch p.method {
	case UPnP:
		id, err := p.firewall(rec.InternalClient).AddPinhole(rctx, igd.Pinhole{
			RemoteHost: rec.RemoteHost, RemotePort: rec.RemotePort,
			InternalClient: rec.InternalClient, InternalPort: rec.InternalPort,
			Protocol: proto, Lease: lease,
		})
		if err != nil {
			return rec, 0, refused(err)
		}
		rec.ID = strconv.Itoa(int(id))
	case PCP:
		req := pcp.MapRequest{
			Protocol: pcp.Protocol(proto), InternalPort: rec.InternalPort,
			SuggestedExternalPort: rec.InternalPort, SuggestedExternalAddr: rec.InternalClient,
			Lifetime: lease, Nonce: nonce,
		}
		if rec.RemoteHost.IsValid() {
			req.Filters = []pcp.Filter{{Prefix: netip.PrefixFrom(rec.RemoteHost, 128), Port: rec.RemotePort}}
		}
		res, err := p.pcpClient(rec.InternalClient).Map(rctx, req)
		if err != nil {
			return rec, 0, refusedPCP(err)
		}
		// Report what the router did: a firewall gives the host's own
		// address and port back; anything else is a translation (NPTv6,
		// NAT66), not a pinhole.
		if res.ExternalAddr.WithZone("") != rec.InternalClient || res.ExternalPort != rec.InternalPort {
			p.pcpClient(rec.InternalClient).Delete(rctx, res.Protocol, res.InternalPort, res.Nonce)
			return rec, 0, fmt.Errorf("the PCP server mapped [%v]:%d to [%v]:%d: it translates IPv6 addresses instead of opening a pinhole, and the mapping was deleted again",
				rec.InternalClient, rec.InternalPort, res.ExternalAddr, res.ExternalPort)
		}
		rec.Nonce = res.Nonce
		rec.ID = "pcp-" + hex.EncodeToString(res.Nonce[:4])
		lease = res.Lifetime
	default:
		return rec, 0, fmt.Errorf("no pinhole gateway")
	}
	rec.Lease = int64(lease / time.Second)
	rec.Made, rec.Expires = now, now.Add(lease)
	return rec, lease, nil
}

// Renew extends pinhole m for lease (zero: the one it was made with):
// UpdatePinhole, or a PCP MAP with the same nonce. When the router no
// longer has it (704; miniupnpd's 402 or 501 for an unknown ID; 606 when
// a restarted router gave the ID to another host's pinhole), it opens the
// same tuple again, which the spec makes safe even if the old one still
// exists, and the Mapping's ID may change: recreated is then true.
func (p *Pinholer) Renew(ctx context.Context, m Mapping, lease time.Duration) (_ Mapping, recreated bool, err error) {
	rec, err := p.record(m.ID)
	if err != nil {
		return Mapping{}, false, err
	}
	if lease <= 0 {
		lease = time.Duration(rec.Lease) * time.Second
	}
	lease, note := pinholeLease(p.method, lease)
	proto, err := ianaProto(rec.Protocol)
	if err != nil {
		return Mapping{}, false, err
	}
	oldID, asked := rec.ID, lease
	switch p.method {
	case UPnP:
		id, _ := strconv.ParseUint(rec.ID, 10, 16)
		rctx, cancel := context.WithTimeout(ctx, 2*p.o.timeout())
		err = p.firewall(rec.InternalClient).UpdatePinhole(rctx, uint16(id), lease)
		cancel()
		if err == nil {
			now := time.Now()
			rec.Lease, rec.Made, rec.Expires = int64(lease/time.Second), now, now.Add(lease)
			break
		}
		if !igd.PinholeGone(err) {
			return Mapping{}, false, refused(err)
		}
		p.log.Info("portmap: UpdatePinhole failed; opening the pinhole again", "id", rec.ID, "err", err)
		if rec, _, err = p.open(ctx, rec, proto, lease, pcp.Nonce{}); err != nil {
			return Mapping{}, false, err
		}
		recreated = true
	case PCP:
		// The same nonce: a refresh; after a server restart it makes the
		// pinhole again.
		if rec, _, err = p.open(ctx, rec, proto, lease, rec.Nonce); err != nil {
			return Mapping{}, false, err
		}
	}
	if _, err := p.update(oldID, rec); err != nil {
		return Mapping{}, recreated, err
	}
	out := rec.Mapping(rec.Made)
	out.Lease = time.Duration(rec.Lease) * time.Second
	out.addNote(note, grantedNote(asked, out.Lease))
	if recreated && oldID != rec.ID {
		out.addNote(fmt.Sprintf("the router no longer knew pinhole %s; it was opened again as %s", oldID, rec.ID))
	}
	return out, recreated, nil
}

// Close closes pinhole id and forgets it. A router that says it has no
// such pinhole (704, and miniupnpd's 402 for an unknown ID) leaves
// nothing to close: the record is dropped and the error is nil, with a
// note in the returned string.
func (p *Pinholer) Close(ctx context.Context, id string) (note string, err error) {
	rec, err := p.record(id)
	if err != nil {
		return "", err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*p.o.timeout())
	defer cancel()
	switch p.method {
	case UPnP:
		n, perr := strconv.ParseUint(rec.ID, 10, 16)
		if perr != nil {
			return "", fmt.Errorf("pinhole %s was not made over UPnP", id)
		}
		err = p.firewall(rec.InternalClient).DeletePinhole(rctx, uint16(n))
		if code := upnp.ErrorCode(err); code == int(igd.NoSuchEntry) || code == igd.CodeInvalidArgs {
			note = fmt.Sprintf("the router had no pinhole %s any more (UPnP error %d): it had expired or was closed", id, code)
			err = nil
		}
	case PCP:
		proto, _ := ianaProto(rec.Protocol)
		err = p.pcpClient(rec.InternalClient).Delete(rctx, pcp.Protocol(proto), rec.InternalPort, rec.Nonce)
		if pcpCode(err) == pcp.ResultNotAuthorized {
			return "", p.cutLease(rctx, rec, proto, err)
		}
		err = refusedPCP(err)
	}
	if err != nil {
		return "", refused(err)
	}
	_, err = p.st.update(func(d *stateData) error {
		d.Pinholes = slices.DeleteFunc(d.Pinholes, func(r PinholeRecord) bool { return r.Gateway == p.Addr() && r.ID == rec.ID })
		return nil
	})
	return note, err
}

// cutLease handles a PCP delete refused with NOT_AUTHORIZED although the
// request carried the nonce that made the pinhole. miniupnpd 2.3.1 does
// that to any IPv6 pinhole it has refreshed: its nftables update_pinhole
// re-adds the rule without the description, where it keeps the nonce, so
// the nonce check of a later delete can never pass. The pinhole cannot
// be closed then; the best is to shorten it to the server's minimum
// lifetime (a refresh with the same nonce, which that version does not
// check), and to say so.
func (p *Pinholer) cutLease(ctx context.Context, rec PinholeRecord, proto uint16, refused error) error {
	res, err := p.pcpClient(rec.InternalClient).Map(ctx, pcp.MapRequest{
		Protocol: pcp.Protocol(proto), InternalPort: rec.InternalPort,
		SuggestedExternalPort: rec.InternalPort, SuggestedExternalAddr: rec.InternalClient,
		Lifetime: time.Second, Nonce: rec.Nonce,
	})
	if err != nil {
		return fmt.Errorf("the router refused to close pinhole %s (%w), and shortening it failed too: %v", rec.ID, refused, err)
	}
	now := time.Now()
	rec.Made, rec.Expires = now, now.Add(res.Lifetime)
	p.update(rec.ID, rec)
	return &RefusedError{Method: PCP, Code: int(pcp.ResultNotAuthorized), Err: refused, Text: fmt.Sprintf(
		"the router refused to close pinhole %s although the request carried the nonce that opened it (NOT_AUTHORIZED): miniupnpd 2.3.1 loses that nonce when it refreshes an IPv6 pinhole; the pinhole was shortened to the router's minimum, %v, and closes then", rec.ID, res.Lifetime)}
}

// Pinholes returns the pinholes this host opened on this gateway, from
// its records (routers cannot list pinholes), expired ones left out.
func (p *Pinholer) Pinholes() ([]Mapping, error) {
	var out []Mapping
	now := time.Now()
	err := p.st.view(func(d *stateData) {
		for _, r := range d.Pinholes {
			if r.Gateway == p.Addr() && r.Expires.After(now) {
				out = append(out, r.Mapping(now))
			}
		}
	})
	return out, err
}

// Find returns the recorded pinhole for proto and port (and, if valid,
// client), or for the ID given as port's text.
func (p *Pinholer) Find(proto Protocol, port uint16, client netip.Addr) (Mapping, error) {
	ms, err := p.Pinholes()
	if err != nil {
		return Mapping{}, err
	}
	var hits []Mapping
	for _, m := range ms {
		if m.Protocol == proto && m.InternalPort == port && (!client.IsValid() || m.ExternalAddr == client.WithZone("")) {
			hits = append(hits, m)
		}
	}
	switch len(hits) {
	case 0:
		return Mapping{}, fmt.Errorf("this host has no record of a pinhole for %d/%s on %s; `portfwd list` shows the ones it opened (a pinhole made elsewhere can be closed with --id)", port, proto, p.Addr())
	case 1:
		return hits[0], nil
	}
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.ID+" ("+h.InternalClient+")")
	}
	return Mapping{}, fmt.Errorf("%d pinholes for %d/%s: %s; choose one with --id or --client", len(hits), port, proto, strings.Join(ids, ", "))
}

// Adopt records a pinhole known only by its UPnP UniqueID (made by another
// program or host's records lost), so that Close can address it.
func (p *Pinholer) Adopt(id string) error {
	if p.method != UPnP {
		return fmt.Errorf("a PCP pinhole can only be closed with the nonce that made it, which this host has no record of for %s", id)
	}
	if _, err := strconv.ParseUint(id, 10, 16); err != nil {
		return fmt.Errorf("pinhole ID %q: a UPnP pinhole ID is a number 0-65535", id)
	}
	if _, err := p.record(id); err == nil {
		return nil
	}
	host, _, err := p.chooseClient(netip.Addr{})
	if err != nil {
		return err
	}
	_, err = p.put(PinholeRecord{Method: UPnP, Gateway: p.Addr(), ID: id, InternalClient: host.Addr, Made: time.Now(), Expires: time.Now().Add(time.Minute)})
	return err
}

// Check asks the router whether traffic went through pinhole id (UPnP
// CheckPinholeWorking and GetPinholePackets). working is "yes", "no
// traffic yet" or "unknown"; miniupnpd always says "no traffic yet" and 0
// packets, because its nftables rules have no counters.
func (p *Pinholer) Check(ctx context.Context, id string) (working string, packets uint32, err error) {
	rec, err := p.record(id)
	if err != nil {
		return "", 0, err
	}
	if p.method != UPnP {
		return "unknown", 0, errors.New("PCP cannot tell whether traffic went through a pinhole")
	}
	n, _ := strconv.ParseUint(rec.ID, 10, 16)
	fw := p.firewall(rec.InternalClient)
	ok, err := fw.CheckPinholeWorking(ctx, uint16(n))
	if err != nil {
		return "unknown", 0, err
	}
	working = "no traffic yet"
	if ok {
		working = "yes"
	}
	packets, err = fw.PinholePackets(ctx, uint16(n))
	return working, packets, err
}

// FirewallStatus is the router's GetFirewallStatus (UPnP only).
func (p *Pinholer) FirewallStatus(ctx context.Context) (enabled, allowed bool, err error) {
	if p.method != UPnP {
		return false, false, errors.New("PCP has no firewall status")
	}
	host, _, err := p.chooseClient(netip.Addr{})
	if err != nil {
		return false, false, err
	}
	return p.firewall(host.Addr).FirewallStatus(ctx)
}

// LocalAddr returns the address pinholes are for by default, and why.
func (p *Pinholer) LocalAddr() (netip.Addr, string, error) {
	h, why, err := p.chooseClient(netip.Addr{})
	return h.Addr, why, err
}

func (p *Pinholer) record(id string) (PinholeRecord, error) {
	var rec PinholeRecord
	found := false
	err := p.st.view(func(d *stateData) {
		for _, r := range d.Pinholes {
			if r.Gateway == p.Addr() && r.ID == id {
				rec, found = r, true
			}
		}
	})
	if err != nil {
		return rec, err
	}
	if !found {
		return rec, fmt.Errorf("this host has no record of pinhole %s on %s", id, p.Addr())
	}
	return rec, nil
}

func (p *Pinholer) put(rec PinholeRecord) (string, error) { return p.update(rec.ID, rec) }

// sameTuple returns the record of a pinhole with rec's tuple on this
// gateway, if any.
func (p *Pinholer) sameTuple(rec PinholeRecord) (PinholeRecord, bool) {
	var prev PinholeRecord
	found := false
	p.st.view(func(d *stateData) {
		for _, r := range d.Pinholes {
			if r.Gateway == p.Addr() && r.Method == rec.Method && r.Protocol == rec.Protocol && r.InternalClient == rec.InternalClient &&
				r.InternalPort == rec.InternalPort && r.RemoteHost == rec.RemoteHost && r.RemotePort == rec.RemotePort {
				prev, found = r, true
			}
		}
	})
	return prev, found
}

// update replaces the record of oldID (or adds rec), and drops records
// expired for a day.
func (p *Pinholer) update(oldID string, rec PinholeRecord) (string, error) {
	return p.st.update(func(d *stateData) error {
		now := time.Now()
		d.Pinholes = slices.DeleteFunc(d.Pinholes, func(r PinholeRecord) bool {
			same := r.Gateway == rec.Gateway && (r.ID == oldID || r.ID == rec.ID)
			return same || (r.Keeper == nil && r.Expires.Before(now.Add(-forgetExpiredAfter)))
		})
		d.Pinholes = append(d.Pinholes, rec)
		return nil
	})
}

// RememberedPinholes returns the pinholes recorded in the state directory
// dir (every gateway), expired ones left out.
func RememberedPinholes(dir string) ([]PinholeRecord, error) {
	var out []PinholeRecord
	now := time.Now()
	err := newStore(dir, nil).view(func(d *stateData) {
		for _, r := range d.Pinholes {
			if r.Expires.After(now) {
				out = append(out, r)
			}
		}
	})
	return out, err
}
