package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// method is one protocol spoken to the router above.
type method interface {
	// name is "pcp", "natpmp" or "upnp"; server names the router above.
	name() string
	server() string
	// probe checks that the router above answers and returns its public
	// address, and whether its answer shows that it lost its state.
	probe(ctx context.Context) (public netip.Addr, lost bool, err error)
	// mapHalf makes or refreshes the mapping of internalPort (the local
	// external port) on the router above.
	mapHalf(ctx context.Context, r halfRequest) (halfGrant, error)
	// unmap deletes it; deleting what is not there succeeds.
	unmap(ctx context.Context, proto gateway.Protocol, internalPort, publicPort uint16, nonce [12]byte) error
}

type halfRequest struct {
	proto        gateway.Protocol
	internalPort uint16
	want         uint16 // suggested public port
	exact        bool
	lifetime     time.Duration
	nonce        [12]byte
	description  string
}

type halfGrant struct {
	public   netip.AddrPort
	lifetime time.Duration // 0: permanent
	lost     bool          // the answer shows the router above lost its state
}

// errGivenBack marks the refusal of an exact request whose other grant was
// deleted again at once: nothing is left above to delete later.
var errGivenBack = errors.New("given back")

// notGivenBackError is the refusal of an exact request whose other grant
// could not be deleted again: the router above may still hold it.
type notGivenBackError struct{ err error }

func (e *notGivenBackError) Error() string { return "giving it back failed: " + e.err.Error() }
func (e *notGivenBackError) Unwrap() error { return e.err }

// givenBack describes an exact request granted another port; delErr is
// how giving it back went.
func givenBack(delErr error, want, got uint16) error {
	err := fmt.Errorf("asked for port %d, granted %d", want, got)
	if delErr == nil {
		return fmt.Errorf("%w (%w)", err, errGivenBack)
	}
	return fmt.Errorf("%w; %w", err, &notGivenBackError{delErr})
}

// upErr wraps a method's error with its kind and server.
func upErr(m method, kind, err error) error {
	return &gateway.UpstreamError{Kind: kind, Server: m.server() + " (" + m.name() + ")", Err: err}
}

// dialFrom returns a Dial function for UDP clients that sends from local
// (the external interface's address) and, where allowed, only through
// iface (SO_BINDTODEVICE): the router above is asked only through the
// external interface, never a LAN one.
func dialFrom(local netip.Addr, iface string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		d := net.Dialer{Control: bindToDevice(iface)}
		if local.IsValid() {
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
		}
		return d.DialContext(ctx, network, address)
	}
}

func bindToDevice(iface string) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if iface == "" {
			return nil
		}
		c.Control(func(fd uintptr) {
			// Best effort: without CAP_NET_RAW the bound local address
			// and the route to the router above still keep the request
			// on the external interface.
			_ = setBindToDevice(int(fd), iface)
		})
		return nil
	}
}

// pcpMethod speaks PCP (RFC 6887) to the router above.
type pcpMethod struct {
	c   *pcp.Client
	pmp *natpmp.Client // for the public address only
}

func newPCP(gw netip.Addr, local netip.Addr, iface string) *pcpMethod {
	return &pcpMethod{c: &pcp.Client{
		Gateway:    netip.AddrPortFrom(gw, pcp.ServerPort),
		Dial:       dialFrom(local, iface),
		MaxTries:   3,
		MaxTimeout: time.Second,
	}, pmp: &natpmp.Client{Gateway: netip.AddrPortFrom(gw, natpmp.ServerPort), MaxTries: 2}}
}

func (p *pcpMethod) name() string   { return "pcp" }
func (p *pcpMethod) server() string { return p.c.Gateway.String() }

func (p *pcpMethod) probe(ctx context.Context) (netip.Addr, bool, error) {
	if _, err := p.c.Announce(ctx); err != nil {
		return netip.Addr{}, false, p.classify(err)
	}
	lost := p.c.LostState()
	p.c.ClearLostState()
	// PCP has no "external address" request. NAT-PMP's, which PCP servers
	// such as miniupnpd answer on the same port, is asked first; failing
	// that, a MAP of a high port with PREFER_FAILURE, deleted at once (RFC
	// 6887 §11.6). Not a low port without PREFER_FAILURE: miniupnpd then
	// searches every port its rules deny before answering.
	if ea, err := p.pmp.ExternalAddress(ctx); err == nil && ea.Addr.IsValid() {
		return ea.Addr, lost, nil
	}
	n := pcp.NewNonce()
	const probePort = 65535
	r, err := p.c.Map(ctx, pcp.MapRequest{Protocol: pcp.UDP, InternalPort: probePort, SuggestedExternalPort: probePort,
		PreferFailure: true, Lifetime: 30 * time.Second, Nonce: n})
	if err != nil {
		return netip.Addr{}, lost, p.classify(err)
	}
	_ = p.c.Delete(ctx, pcp.UDP, probePort, n)
	return r.ExternalAddr.Unmap(), lost || r.Rebooted, nil
}

func (p *pcpMethod) mapHalf(ctx context.Context, r halfRequest) (halfGrant, error) {
	proto := pcp.TCP
	if r.proto == gateway.UDP {
		proto = pcp.UDP
	}
	res, err := p.c.Map(ctx, pcp.MapRequest{
		Protocol:              proto,
		InternalPort:          r.internalPort,
		SuggestedExternalPort: r.want,
		Lifetime:              r.lifetime,
		Nonce:                 pcp.Nonce(r.nonce),
		PreferFailure:         r.exact,
	})
	if err != nil {
		return halfGrant{}, p.classify(err)
	}
	if r.exact && res.ExternalPort != r.want {
		// A server that ignores PREFER_FAILURE: give the port back.
		err := p.c.Delete(ctx, proto, r.internalPort, pcp.Nonce(r.nonce))
		return halfGrant{}, upErr(p, gateway.ErrUpstreamConflict, givenBack(err, r.want, res.ExternalPort))
	}
	return halfGrant{public: netip.AddrPortFrom(res.ExternalAddr.Unmap(), res.ExternalPort), lifetime: res.Lifetime, lost: res.Rebooted}, nil
}

func (p *pcpMethod) unmap(ctx context.Context, proto gateway.Protocol, internalPort, _ uint16, nonce [12]byte) error {
	pp := pcp.TCP
	if proto == gateway.UDP {
		pp = pcp.UDP
	}
	err := p.c.Delete(ctx, pp, internalPort, pcp.Nonce(nonce))
	var re *pcp.ResultError
	if errors.As(err, &re) && re.Code == pcp.ResultNoResources {
		return nil // miniupnpd's answer to a delete of what it does not hold
	}
	if err != nil {
		return p.classify(err)
	}
	return nil
}

func (p *pcpMethod) classify(err error) error {
	var re *pcp.ResultError
	if !errors.As(err, &re) {
		return upErr(p, gateway.ErrUpstreamDown, err)
	}
	switch re.Code {
	case pcp.ResultCannotProvideExternal:
		return upErr(p, gateway.ErrUpstreamConflict, err)
	case pcp.ResultNotAuthorized, pcp.ResultAddressMismatch:
		return upErr(p, gateway.ErrUpstreamRefused, err)
	case pcp.ResultNoResources, pcp.ResultUserExQuota:
		return upErr(p, gateway.ErrUpstreamExhausted, err)
	}
	return upErr(p, gateway.ErrUpstreamDown, err)
}

// natpmpMethod speaks NAT-PMP (RFC 6886) to the router above. NAT-PMP
// cannot insist on a port: an exact request whose grant differs is given
// back and reported as a conflict.
type natpmpMethod struct {
	c   *natpmp.Client
	mu  sync.Mutex
	pub netip.Addr // the public address, from the last probe
}

func newNATPMP(gw netip.Addr) *natpmpMethod {
	return &natpmpMethod{c: &natpmp.Client{Gateway: netip.AddrPortFrom(gw, natpmp.ServerPort), MaxTries: 3}}
}

func (n *natpmpMethod) name() string   { return "natpmp" }
func (n *natpmpMethod) server() string { return n.c.Gateway.String() }

func (n *natpmpMethod) probe(ctx context.Context) (netip.Addr, bool, error) {
	ea, err := n.c.ExternalAddress(ctx)
	if err != nil {
		return netip.Addr{}, false, n.classify(err)
	}
	lost := n.c.LostState()
	n.c.ClearLostState()
	n.mu.Lock()
	n.pub = ea.Addr
	n.mu.Unlock()
	return ea.Addr, lost, nil
}

func (n *natpmpMethod) mapHalf(ctx context.Context, r halfRequest) (halfGrant, error) {
	proto := natpmp.TCP
	if r.proto == gateway.UDP {
		proto = natpmp.UDP
	}
	res, err := n.c.Map(ctx, proto, r.internalPort, r.want, r.lifetime)
	if err != nil {
		return halfGrant{}, n.classify(err)
	}
	if r.exact && res.ExternalPort != r.want {
		err := n.c.Unmap(ctx, proto, r.internalPort)
		return halfGrant{}, upErr(n, gateway.ErrUpstreamConflict, givenBack(err, r.want, res.ExternalPort))
	}
	n.mu.Lock()
	pub := n.pub
	n.mu.Unlock()
	if !pub.IsValid() {
		ea, err := n.c.ExternalAddress(ctx)
		if err != nil {
			return halfGrant{}, n.classify(err)
		}
		pub = ea.Addr
	}
	return halfGrant{public: netip.AddrPortFrom(pub, res.ExternalPort), lifetime: res.Lifetime, lost: res.Rebooted}, nil
}

func (n *natpmpMethod) unmap(ctx context.Context, proto gateway.Protocol, internalPort, _ uint16, _ [12]byte) error {
	pp := natpmp.TCP
	if proto == gateway.UDP {
		pp = natpmp.UDP
	}
	if err := n.c.Unmap(ctx, pp, internalPort); err != nil {
		return n.classify(err)
	}
	return nil
}

func (n *natpmpMethod) classify(err error) error {
	var re *natpmp.ResultError
	if !errors.As(err, &re) {
		return upErr(n, gateway.ErrUpstreamDown, err)
	}
	switch re.Code {
	case natpmp.NotAuthorized:
		return upErr(n, gateway.ErrUpstreamRefused, err)
	case natpmp.OutOfResources:
		return upErr(n, gateway.ErrUpstreamExhausted, err)
	}
	return upErr(n, gateway.ErrUpstreamDown, err)
}
