package natpmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/portfwd/portfwd/internal/epoch"
	"github.com/portfwd/portfwd/internal/retransmit"
)

// Client defaults (RFC 6886 §3.1).
const (
	DefaultInitialTimeout = 250 * time.Millisecond
	DefaultMaxTries       = 9
)

// RecommendedLifetime is the mapping lifetime RFC 6886 §3.3 recommends.
const RecommendedLifetime = 2 * time.Hour

// readBufSize is large enough for any NAT-PMP reply and for the PCP reply a
// PCP-only gateway sends back.
const readBufSize = 1100

// A Client talks NAT-PMP to one gateway. Set Gateway, then call its
// methods; the other fields have usable zero values. A Client is safe for
// concurrent use, but it sends one request at a time and queues the others,
// because RFC 6886 §3.1 asks clients not to load small routers with
// concurrent requests. A Client keeps the epoch record of one gateway, so
// Gateway must not change after first use (make another Client instead),
// and a Client must not be copied after first use.
type Client struct {
	// Gateway is the router's LAN address, such as 192.168.1.1:5351.
	// Port 0 means ServerPort. NAT-PMP is IPv4 only. Required.
	Gateway netip.AddrPort

	// InitialTimeout is how long to wait for the reply to the first
	// attempt; each retransmission waits twice as long as the one before.
	// Zero means DefaultInitialTimeout.
	InitialTimeout time.Duration

	// MaxTries is how many times a request is sent before giving up with
	// ErrNoResponse. Zero means DefaultMaxTries, with which a request to
	// a silent gateway takes about two minutes; bound calls with the
	// context instead of lowering this when you need an answer sooner.
	MaxTries int

	// Logger receives debug logs of retransmissions and ignored packets.
	// Nil means no logging.
	Logger *slog.Logger

	initOnce sync.Once
	turn     chan struct{} // holds a token while an exchange is under way
	epoch    epoch.Tracker // the zero value follows NAT-PMP's rule
}

// ExternalAddress is the answer to an external address request.
type ExternalAddress struct {
	Addr netip.Addr
	// Epoch is the gateway's seconds since start of epoch.
	Epoch uint32
	// Rebooted reports that this reply's epoch showed the gateway lost
	// its mappings since the client's previous reply from it.
	Rebooted bool
}

// Mapping is a port mapping as the gateway granted it.
type Mapping struct {
	Protocol     Protocol
	InternalPort uint16
	// ExternalPort is the port the gateway opened, which need not be the
	// one suggested. Renewals should suggest this port (RFC 6886 §3.3).
	ExternalPort uint16
	// Lifetime is how long the gateway keeps the mapping; it may be shorter
	// (or, with some routers, longer) than requested. Renew after half.
	Lifetime time.Duration
	Epoch    uint32
	// Rebooted reports that this reply's epoch showed the gateway lost
	// its mappings since the client's previous reply from it: any other
	// mapping made through this gateway must be made again.
	Rebooted bool
}

// ExternalAddress asks the gateway for its external IPv4 address.
func (c *Client) ExternalAddress(ctx context.Context) (ExternalAddress, error) {
	resp, rebooted, err := c.exchange(ctx, Request{Op: OpExternalAddress})
	if err != nil {
		return ExternalAddress{}, err
	}
	if resp.Result != Success {
		return ExternalAddress{}, &ResultError{Op: OpExternalAddress, Code: resp.Result}
	}
	if resp.ExternalAddr.IsUnspecified() {
		return ExternalAddress{}, fmt.Errorf("natpmp: external address request to %s: %w", c.gateway(), ErrNoExternalAddress)
	}
	return ExternalAddress{Addr: resp.ExternalAddr, Epoch: resp.Epoch, Rebooted: rebooted}, nil
}

// Map asks the gateway to forward proto traffic arriving on an external port
// to internalPort on this host, for lifetime (rounded up to whole seconds).
// suggestedExternalPort is the external port wanted, 0 for any; the gateway
// may grant another. Calling Map again for the same internal port renews the
// mapping. To delete a mapping use Unmap, not a zero lifetime.
func (c *Client) Map(ctx context.Context, proto Protocol, internalPort, suggestedExternalPort uint16, lifetime time.Duration) (Mapping, error) {
	op := Opcode(proto)
	if !op.isMap() {
		return Mapping{}, fmt.Errorf("natpmp: cannot map %s: NAT-PMP maps only UDP and TCP", proto)
	}
	if internalPort == 0 {
		return Mapping{}, fmt.Errorf("natpmp: %s: internal port 0 cannot be mapped; give the port your service listens on", op)
	}
	if lifetime <= 0 {
		return Mapping{}, fmt.Errorf("natpmp: %s: lifetime %v must be positive (use Unmap to delete a mapping)", op, lifetime)
	}
	resp, rebooted, err := c.exchange(ctx, Request{
		Op:                    op,
		InternalPort:          internalPort,
		SuggestedExternalPort: suggestedExternalPort,
		Lifetime:              lifetimeSeconds(lifetime),
	})
	if err != nil {
		return Mapping{}, err
	}
	if resp.Result != Success {
		return Mapping{}, &ResultError{Op: op, Code: resp.Result}
	}
	if resp.ExternalPort == 0 || resp.Lifetime == 0 {
		return Mapping{}, fmt.Errorf("natpmp: %s: the router reported success but granted no mapping (external port %d, lifetime %ds); try again or suggest another port",
			op, resp.ExternalPort, resp.Lifetime)
	}
	return Mapping{
		Protocol:     proto,
		InternalPort: resp.InternalPort,
		ExternalPort: resp.ExternalPort,
		Lifetime:     time.Duration(resp.Lifetime) * time.Second,
		Epoch:        resp.Epoch,
		Rebooted:     rebooted,
	}, nil
}

// Unmap deletes this host's proto mapping for internalPort. Deleting a
// mapping that does not exist succeeds. RFC 6886 §3.1 allows giving up on a
// deletion sooner than on a request, since the mapping expires anyway: a
// short context deadline is fine here.
func (c *Client) Unmap(ctx context.Context, proto Protocol, internalPort uint16) error {
	op := Opcode(proto)
	if !op.isMap() {
		return fmt.Errorf("natpmp: cannot unmap %s: NAT-PMP maps only UDP and TCP", proto)
	}
	if internalPort == 0 {
		return fmt.Errorf("natpmp: %s: internal port 0 means every mapping; use UnmapAll for that", op)
	}
	return c.unmap(ctx, op, internalPort)
}

// UnmapAll deletes every proto mapping the gateway holds for this host. RFC
// 6886 §3.4 suggests doing so after acquiring a new address, to drop
// mappings a previous owner of the address left behind.
func (c *Client) UnmapAll(ctx context.Context, proto Protocol) error {
	op := Opcode(proto)
	if !op.isMap() {
		return fmt.Errorf("natpmp: cannot unmap %s: NAT-PMP maps only UDP and TCP", proto)
	}
	return c.unmap(ctx, op, 0)
}

func (c *Client) unmap(ctx context.Context, op Opcode, internalPort uint16) error {
	// RFC 6886 §3.4: lifetime 0 deletes, and the suggested external port
	// must be 0.
	resp, _, err := c.exchange(ctx, Request{Op: op, InternalPort: internalPort})
	if err != nil {
		return err
	}
	if resp.Result != Success {
		return &ResultError{Op: op, Code: resp.Result}
	}
	return nil
}

// Epoch returns what the client knows of the gateway's epoch.
func (c *Client) Epoch() EpochState { return c.epoch.ClientState() }

// LostState reports whether a reply since the last ClearLostState showed
// that the gateway rebooted or otherwise lost its mappings. A keep-alive
// loop that sees it should, after a random delay of up to 5 seconds (RFC
// 6886 §3.7), re-create its mappings one at a time and then ClearLostState.
func (c *Client) LostState() bool { return c.epoch.ClientState().LostState }

// ClearLostState resets the flag LostState reports, once the caller has
// re-created its mappings.
func (c *Client) ClearLostState() { c.epoch.ClearLost() }

// ObserveEpoch feeds the client an epoch heard from the gateway outside a
// request exchange, such as in an address announcement (RFC 6886 §3.2.1),
// and reports whether it shows the gateway lost its state. The caller must
// have checked that the packet came from the gateway.
func (c *Client) ObserveEpoch(epoch uint32) (lost bool) {
	now := time.Now()
	return c.epoch.ObserveSpan(epoch, now, now)
}

// lifetimeSeconds converts d to the protocol's whole seconds, rounding up so
// that a positive lifetime never becomes 0 (which would delete the mapping).
func lifetimeSeconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

func (c *Client) init() {
	c.initOnce.Do(func() { c.turn = make(chan struct{}, 1) })
}

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// gateway returns Gateway with the default port filled in.
func (c *Client) gateway() netip.AddrPort {
	gw := netip.AddrPortFrom(c.Gateway.Addr().Unmap(), c.Gateway.Port())
	if gw.Port() == 0 {
		gw = netip.AddrPortFrom(gw.Addr(), ServerPort)
	}
	return gw
}

// exchange sends req until a matching reply arrives and returns it, with
// whether its epoch showed the gateway lost state. It waits its turn behind
// other exchanges of the same Client.
func (c *Client) exchange(ctx context.Context, req Request) (Response, bool, error) {
	gw := c.gateway()
	if !gw.Addr().IsValid() {
		return Response{}, false, errors.New("natpmp: Client.Gateway is not set; give the router's LAN address, such as 192.168.1.1:5351")
	}
	if !gw.Addr().Is4() {
		return Response{}, false, fmt.Errorf("natpmp: gateway %s is not an IPv4 address; NAT-PMP works over IPv4 only (PCP covers IPv6)", gw.Addr())
	}
	c.init()
	// Checked first because select picks at random among ready cases.
	if ctx.Err() != nil {
		return Response{}, false, fmt.Errorf("natpmp: %s request to %s: %w", req.Op, gw, ctx.Err())
	}
	select {
	case c.turn <- struct{}{}:
		defer func() { <-c.turn }()
	case <-ctx.Done():
		return Response{}, false, fmt.Errorf("natpmp: %s request to %s: %w", req.Op, gw, ctx.Err())
	}

	// A socket connected to the gateway only receives datagrams whose
	// source is the gateway's address and port, which is the source check
	// RFC 6886 §3.2 requires; it also reports ICMP port unreachable.
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(gw))
	if err != nil {
		return Response{}, false, fmt.Errorf("natpmp: cannot reach gateway %s: %w", gw, err)
	}
	defer conn.Close()

	log := c.logger().With("gateway", gw.String(), "op", req.Op.String())
	tries := c.MaxTries
	if tries <= 0 {
		tries = DefaultMaxTries
	}
	wait := c.InitialTimeout
	if wait <= 0 {
		wait = DefaultInitialTimeout
	}
	next := func() time.Duration { // RFC 6886 §3.1: 250 ms, doubling
		w := wait
		wait *= 2
		return w
	}
	var resp Response
	var rebooted bool
	log.Debug("natpmp: request", "request", req)
	err = retransmit.Exchange(ctx, conn, AppendRequest(nil, req),
		retransmit.Options{Tries: tries, Wait: next, BufSize: readBufSize, Name: "natpmp", Logger: log},
		func(b []byte, firstSent time.Time) bool {
			r, known, ok := matchReply(req, b)
			if !ok {
				return false
			}
			log.Debug("natpmp: reply", "reply", r, "took", time.Since(firstSent).Round(time.Microsecond))
			if known {
				rebooted = c.epoch.ObserveSpan(r.Epoch, firstSent, time.Now())
				if rebooted {
					log.Info("natpmp: the gateway's epoch went back: it lost its mappings", "epoch", r.Epoch)
				}
			}
			resp = r
			return true
		})
	var ex *retransmit.Exhausted
	switch {
	case err == nil:
		return resp, rebooted, nil
	case errors.Is(err, retransmit.ErrRefused):
		err = ErrNotSupported
	case errors.As(err, &ex):
		err = fmt.Errorf("%w (%d attempts over %v)", ErrNoResponse, ex.Tries, ex.Waited)
	}
	return Response{}, false, fmt.Errorf("natpmp: %s request to %s: %w", req.Op, gw, err)
}

// matchReply decides whether b answers req. It returns the reply, whether
// the reply carries a real NAT-PMP epoch, and false when b is to be ignored:
// something that is not a NAT-PMP reply, or a reply to another request (a
// late answer to an earlier exchange that reused this port, say).
func matchReply(req Request, b []byte) (resp Response, epochKnown, ok bool) {
	resp, err := ParseResponse(b)
	if err != nil {
		// Quirk: a gateway that speaks only PCP answers a NAT-PMP request
		// with a PCP UNSUPP_VERSION reply (RFC 6887 §9): version 2, the
		// response bit, result 1 in the fourth byte. That is a definite
		// "no NAT-PMP here", better reported than timed out.
		if len(b) >= 4 && b[0] == pcpVersion && b[1]&opReply != 0 && b[3] == byte(UnsupportedVersion) {
			return Response{Op: req.Op, Result: UnsupportedVersion}, false, true
		}
		return Response{}, false, false
	}
	if resp.Result == UnsupportedVersion {
		// Its opcode is 0 or 128 whatever was asked (see ParseResponse).
		return resp, true, true
	}
	if resp.Op != req.Op {
		return Response{}, false, false
	}
	if req.Op.isMap() && resp.Result == Success && resp.InternalPort != req.InternalPort {
		return Response{}, false, false
	}
	return resp, true, true
}
