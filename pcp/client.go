package pcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/portfwd/portfwd/internal/retransmit"
)

// Client retransmission defaults.
//
// RFC 6887 §8.1.1 has a client wait IRT = 3 s for the first reply, then
// twice as long each time up to MRT = 1024 s, for ever (MRC = MRD = 0).
// Those numbers suit a server deep in a carrier's network. The PCP server
// this package talks to is the first-hop router, which answers in
// milliseconds or not at all, and whose NAT-PMP side on the same port asks
// for a 250 ms first wait (RFC 6886 §3.1); tailscale's portmapper gives PCP
// and NAT-PMP 250 ms in all to answer. A 3-second first wait would make an
// interactive command hang for no gain, so the client starts at 250 ms and
// doubles, with the RFC's ±10% randomization and cap. Sending a request
// again is harmless, because the nonce makes a MAP idempotent: the server
// answers the copy with the same mapping. The number of attempts is bounded
// (unlike the RFC's endless retransmission, which assumes a daemon keeping
// its mappings alive); bound a call sooner with its context.
const (
	DefaultInitialTimeout = 250 * time.Millisecond
	DefaultMaxTimeout     = 1024 * time.Second // RFC 6887's MRT
	DefaultMaxTries       = 9                  // about 2 minutes in all
)

// readBufSize holds any PCP message, and so the NAT-PMP reply of a
// NAT-PMP-only gateway too.
const readBufSize = MaxPacketLen

// A Client talks PCP to one server, normally the default gateway. Set
// Gateway, then call its methods; the other fields have usable zero values.
// A Client is safe for concurrent use: every request is its own exchange
// on its own socket. It keeps the epoch record of one server, so Gateway
// must not change after first use (make another Client instead), and a
// Client must not be copied after first use.
type Client struct {
	// Gateway is the PCP server, such as 192.168.1.1:5351. Port 0 means
	// ServerPort. Required.
	Gateway netip.AddrPort

	// ClientAddr is written in every request as the client's address.
	// The server compares it with the packet's source address and answers
	// ADDRESS_MISMATCH if they differ (RFC 6887 §8.1), so it must be the
	// address the request leaves from. The zero value means the local
	// address of the socket, which is right unless something rewrites
	// packets on this host; tests set it to provoke the mismatch.
	ClientAddr netip.Addr

	// Dial, if set, opens the socket a request is sent on, connected to
	// the gateway: network is "udp4" or "udp6" and address the gateway.
	// It must return a socket connected to that address, so that only the
	// gateway's replies arrive (the check RFC 6887 §8.3 asks of clients).
	// Nil means net.Dialer's DialContext. Tests use it to send from inside
	// a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// InitialTimeout is how long to wait for a reply to the first attempt
	// (the RFC's IRT); each retransmission waits about twice as long as
	// the one before, up to MaxTimeout (MRT). Zero means the defaults.
	InitialTimeout, MaxTimeout time.Duration

	// MaxTries is how many times a request is sent before giving up with
	// ErrNoResponse. Zero means DefaultMaxTries.
	MaxTries int

	// Logger receives debug logs of retransmissions and ignored packets.
	// Nil means no logging.
	Logger *slog.Logger

	epoch epochTracker
}

// MapRequest describes a mapping for Client.Map.
type MapRequest struct {
	// Protocol is TCP or UDP, usually; AllProtocols (with InternalPort 0)
	// asks for every protocol and port.
	Protocol Protocol
	// InternalPort is the port the service listens on, on this host (or
	// on ThirdParty).
	InternalPort uint16
	// SuggestedExternalPort and SuggestedExternalAddr are the external
	// port and address wanted; zero values mean no preference. The server
	// may assign others unless PreferFailure is set.
	SuggestedExternalPort uint16
	SuggestedExternalAddr netip.Addr
	// Lifetime is how long the mapping should last, rounded up to whole
	// seconds. The server may grant less (or more). It must be positive:
	// Delete deletes.
	Lifetime time.Duration
	// Nonce names the mapping's owner; the zero value means a random one,
	// returned in MapResult. Keep it: refreshing or deleting the mapping
	// needs it (portmap's state store keeps it across processes).
	Nonce Nonce
	// PreferFailure asks the server to fail with CANNOT_PROVIDE_EXTERNAL
	// rather than assign another external port than the suggested one
	// (RFC 6887 §13.2). It needs a suggested port.
	PreferFailure bool
	// Filters, if any, restrict which remote peers may use the mapping
	// (RFC 6887 §13.3). A server that cannot filter refuses the request
	// (UNSUPP_OPTION) rather than open the port to everyone.
	Filters []Filter
	// ThirdParty, if valid, makes the mapping for that internal host
	// instead of this one (RFC 6887 §13.1). Home routers usually refuse.
	ThirdParty netip.Addr
}

// MapResult is a mapping as the server granted it.
type MapResult struct {
	// Nonce is the mapping's nonce: the one given in MapRequest, or the
	// one chosen for it. Refresh and Delete need it.
	Nonce        Nonce
	Protocol     Protocol
	InternalPort uint16
	// ExternalPort and ExternalAddr are where the world reaches the
	// mapping. They may differ from the suggested ones.
	ExternalPort uint16
	ExternalAddr netip.Addr
	// Lifetime is how long the server keeps the mapping. Refresh it after
	// about half of that (RFC 6887 §11.2.1).
	Lifetime time.Duration
	// ThirdParty is the internal host of a third-party mapping, or the
	// zero Addr.
	ThirdParty netip.Addr
	// Epoch is the server's epoch time in the response.
	Epoch uint32
	// Rebooted reports that this response's epoch showed the server lost
	// its mappings since the client's previous response from it: any other
	// mapping made through this server must be made again.
	Rebooted bool
}

// PeerRequest describes an outbound flow for Client.Peer: the mapping the
// flow from InternalPort to RemoteAddr:RemotePort uses.
type PeerRequest struct {
	Protocol              Protocol
	InternalPort          uint16
	SuggestedExternalPort uint16
	SuggestedExternalAddr netip.Addr
	RemotePort            uint16
	RemoteAddr            netip.Addr
	// Lifetime is how long the flow's mapping should last at least; PEER
	// can lengthen a mapping but neither shorten nor delete it.
	Lifetime   time.Duration
	Nonce      Nonce
	ThirdParty netip.Addr
}

// PeerResult is the mapping of an outbound flow as the server reports it.
type PeerResult struct {
	MapResult
	RemotePort uint16
	RemoteAddr netip.Addr
}

// Map asks the server to forward r.Protocol traffic arriving on an external
// port to r.InternalPort on this host (or on r.ThirdParty), and returns the
// mapping granted. Calling Map again with the same nonce, protocol and
// internal port refreshes the mapping (Refresh does that).
func (c *Client) Map(ctx context.Context, r MapRequest) (MapResult, error) {
	if err := checkMapping(OpMap, r.Protocol, r.InternalPort, r.Lifetime); err != nil {
		return MapResult{}, err
	}
	if r.PreferFailure && r.SuggestedExternalPort == 0 {
		return MapResult{}, errors.New("pcp: MAP: PreferFailure needs a SuggestedExternalPort: without one there is nothing to prefer")
	}
	nonce := r.Nonce
	if nonce.IsZero() {
		nonce = NewNonce()
	}
	var opts []Option
	if r.ThirdParty.IsValid() {
		opts = append(opts, ThirdPartyOption(r.ThirdParty))
	}
	if r.PreferFailure {
		opts = append(opts, PreferFailureOption())
	}
	for _, f := range r.Filters {
		opts = append(opts, FilterOption(f))
	}
	rep, err := c.exchange(ctx, Request{
		Op:       OpMap,
		Lifetime: lifetimeSeconds(r.Lifetime),
		Map: &MapPayload{
			Nonce:        nonce,
			Protocol:     r.Protocol,
			InternalPort: r.InternalPort,
			ExternalPort: r.SuggestedExternalPort,
			ExternalAddr: r.SuggestedExternalAddr,
		},
		Options: opts,
	})
	if err != nil {
		return MapResult{}, err
	}
	m, err := c.mapResult(rep, r.ThirdParty)
	if err != nil {
		return MapResult{}, err
	}
	if r.PreferFailure && m.ExternalPort != r.SuggestedExternalPort {
		c.logger().Warn("pcp: the server ignored PREFER_FAILURE and mapped another port",
			"gateway", c.gateway().String(), "suggested", r.SuggestedExternalPort, "granted", m.ExternalPort)
	}
	return m, nil
}

// Refresh renews the mapping prev, which Map or Refresh returned, for
// lifetime (zero means prev.Lifetime): the same request with the same
// nonce, suggesting the external port and address granted last time, as
// RFC 6887 §11.2.1 asks so that a server that lost its state can give them
// back. The result may still differ from prev: check it.
func (c *Client) Refresh(ctx context.Context, prev MapResult, lifetime time.Duration) (MapResult, error) {
	if prev.Nonce.IsZero() {
		return MapResult{}, errors.New("pcp: refresh: the mapping has no nonce; pass the MapResult that Map returned")
	}
	if lifetime == 0 {
		lifetime = prev.Lifetime
	}
	return c.Map(ctx, MapRequest{
		Protocol:              prev.Protocol,
		InternalPort:          prev.InternalPort,
		SuggestedExternalPort: prev.ExternalPort,
		SuggestedExternalAddr: prev.ExternalAddr,
		Lifetime:              lifetime,
		Nonce:                 prev.Nonce,
		ThirdParty:            prev.ThirdParty,
	})
}

// Delete deletes this host's proto mapping of internalPort. nonce must be
// the nonce of the request that made the mapping: a server refuses any
// other with NOT_AUTHORIZED (RFC 6887 §11.3), which is what keeps
// other hosts' programs from deleting it. A program that deletes the
// mapping of an earlier process must have kept its nonce (portmap's state
// store does).
//
// Deleting a mapping that does not exist succeeds by the RFC; miniupnpd
// 2.3 answers NO_RESOURCES instead.
func (c *Client) Delete(ctx context.Context, proto Protocol, internalPort uint16, nonce Nonce) error {
	if nonce.IsZero() {
		return errors.New("pcp: delete: no nonce: the server only deletes a mapping for the nonce that created it; keep MapResult.Nonce (across processes too)")
	}
	if proto == AllProtocols && internalPort != 0 {
		return fmt.Errorf("pcp: delete: internal port %d with all protocols; give a protocol, or port 0", internalPort)
	}
	rep, err := c.exchange(ctx, Request{
		Op:  OpMap,
		Map: &MapPayload{Nonce: nonce, Protocol: proto, InternalPort: internalPort},
	})
	if err != nil {
		return err
	}
	return rep.err()
}

// Peer creates or extends the mapping of an outbound flow and reports it:
// its external address and port as remote peers see them, and how long the
// server keeps it without traffic (RFC 6887 §12). Applications use it to
// learn their external address and to send fewer keep-alives.
func (c *Client) Peer(ctx context.Context, r PeerRequest) (PeerResult, error) {
	if err := checkMapping(OpPeer, r.Protocol, r.InternalPort, r.Lifetime); err != nil {
		return PeerResult{}, err
	}
	if r.Protocol == AllProtocols {
		return PeerResult{}, errors.New("pcp: PEER: a flow has one protocol; give TCP or UDP")
	}
	if !r.RemoteAddr.IsValid() {
		return PeerResult{}, errors.New("pcp: PEER: RemoteAddr is not set; give the address of the remote peer")
	}
	nonce := r.Nonce
	if nonce.IsZero() {
		nonce = NewNonce()
	}
	var opts []Option
	if r.ThirdParty.IsValid() {
		opts = append(opts, ThirdPartyOption(r.ThirdParty))
	}
	rep, err := c.exchange(ctx, Request{
		Op:       OpPeer,
		Lifetime: lifetimeSeconds(r.Lifetime),
		Peer: &PeerPayload{
			MapPayload: MapPayload{
				Nonce:        nonce,
				Protocol:     r.Protocol,
				InternalPort: r.InternalPort,
				ExternalPort: r.SuggestedExternalPort,
				ExternalAddr: r.SuggestedExternalAddr,
			},
			RemotePort: r.RemotePort,
			RemoteAddr: r.RemoteAddr,
		},
		Options: opts,
	})
	if err != nil {
		return PeerResult{}, err
	}
	if rep.resp.Result == ResultSuccess {
		// mapResult reads the MAP fields; a PEER response has them too.
		rep.resp.Map = &rep.resp.Peer.MapPayload
	}
	m, err := c.mapResult(rep, r.ThirdParty)
	if err != nil {
		return PeerResult{}, err
	}
	return PeerResult{MapResult: m, RemotePort: rep.resp.Peer.RemotePort, RemoteAddr: rep.resp.Peer.RemoteAddr}, nil
}

// Announce sends an ANNOUNCE request and returns the server's epoch time.
// It creates nothing, which makes it the cheap way to find out whether a
// gateway speaks PCP: a reply of any kind says it does, except a
// *ResultError with ResultUnsuppVersion (a NAT-PMP-only or draft-PCP
// gateway). ErrNoResponse or ErrNotSupported mean no PCP server there.
func (c *Client) Announce(ctx context.Context) (epoch uint32, err error) {
	rep, err := c.exchange(ctx, Request{Op: OpAnnounce})
	if err != nil {
		return 0, err
	}
	if err := rep.err(); err != nil {
		return 0, err
	}
	return rep.resp.Epoch, nil
}

// Epoch returns what the client knows of the server's epoch.
func (c *Client) Epoch() EpochState { return c.epoch.tracker().ClientState() }

// LostState reports whether a response since the last ClearLostState showed
// that the server rebooted or otherwise lost its mappings (RFC 6887 §8.5).
// A keep-alive loop that sees it should re-create its mappings, with
// Refresh so that they get their old ports back if still free, and then
// ClearLostState.
func (c *Client) LostState() bool { return c.epoch.tracker().ClientState().LostState }

// ClearLostState resets the flag LostState reports.
func (c *Client) ClearLostState() { c.epoch.tracker().ClearLost() }

// ObserveEpoch feeds the client an epoch heard from the server outside a
// request exchange, such as in a multicast ANNOUNCE (RFC 6887 §14.1.3), and
// reports whether it shows the server lost its state. The caller must have
// checked that the packet came from the server.
func (c *Client) ObserveEpoch(epoch uint32) (lost bool) {
	now := time.Now()
	return c.epoch.tracker().ObserveSpan(epoch, now, now)
}

// checkMapping validates what MAP and PEER requests have in common.
func checkMapping(op Opcode, proto Protocol, internalPort uint16, lifetime time.Duration) error {
	if proto == AllProtocols && internalPort != 0 {
		return fmt.Errorf("pcp: %s: internal port %d with all protocols; give a protocol, or port 0 for all ports", op, internalPort)
	}
	if lifetime <= 0 {
		if op == OpMap {
			return fmt.Errorf("pcp: %s: lifetime %v must be positive (use Delete to delete a mapping)", op, lifetime)
		}
		return fmt.Errorf("pcp: %s: lifetime %v must be positive", op, lifetime)
	}
	return nil
}

// mapResult turns the reply to a MAP (or PEER, its Map set) request into a
// MapResult or an error.
func (c *Client) mapResult(rep reply, thirdParty netip.Addr) (MapResult, error) {
	if err := rep.err(); err != nil {
		return MapResult{}, err
	}
	m := rep.resp.Map
	if rep.resp.Lifetime == 0 || (m.ExternalPort == 0 && m.InternalPort != 0) || !m.ExternalAddr.IsValid() || m.ExternalAddr.IsUnspecified() {
		return MapResult{}, fmt.Errorf("pcp: %s to %s: success with external %v port %d for %ds: %w",
			rep.resp.Op, c.gateway(), m.ExternalAddr, m.ExternalPort, rep.resp.Lifetime, ErrMismatchedReply)
	}
	return MapResult{
		Nonce:        m.Nonce,
		Protocol:     m.Protocol,
		InternalPort: m.InternalPort,
		ExternalPort: m.ExternalPort,
		ExternalAddr: m.ExternalAddr,
		Lifetime:     time.Duration(rep.resp.Lifetime) * time.Second,
		ThirdParty:   thirdParty,
		Epoch:        rep.resp.Epoch,
		Rebooted:     rep.rebooted,
	}, nil
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

func (c *Client) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// gateway returns Gateway with IPv4 unmapped and the default port filled in.
func (c *Client) gateway() netip.AddrPort {
	port := c.Gateway.Port()
	if port == 0 {
		port = ServerPort
	}
	return netip.AddrPortFrom(c.Gateway.Addr().Unmap(), port)
}

// reply is the outcome of an exchange.
type reply struct {
	resp Response
	// version is the version byte of the reply: Version, or what a server
	// that does not speak PCP version 2 put there.
	version  uint8
	rebooted bool
}

// err returns the *ResultError of a failed reply, or nil.
func (r reply) err() error {
	if r.resp.Result == ResultSuccess {
		return nil
	}
	return &ResultError{
		Op:       r.resp.Op,
		Code:     r.resp.Result,
		Lifetime: time.Duration(r.resp.Lifetime) * time.Second,
		Version:  r.version,
	}
}

// exchange sends req until a reply to it arrives, and returns the reply. It
// fills in the client address.
func (c *Client) exchange(ctx context.Context, req Request) (reply, error) {
	gw := c.gateway()
	fail := func(err error) (reply, error) {
		return reply{}, fmt.Errorf("pcp: %s request to %s: %w", req.Op, gw, err)
	}
	if !gw.Addr().IsValid() {
		return reply{}, errors.New("pcp: Client.Gateway is not set; give the router's address, such as 192.168.1.1:5351")
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	network := "udp4"
	if !gw.Addr().Is4() {
		network = "udp6"
	}
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, network, gw.String())
	if err != nil {
		return fail(fmt.Errorf("cannot open a socket to the gateway: %w", err))
	}
	defer conn.Close()

	req.ClientAddr = c.ClientAddr.Unmap()
	if !req.ClientAddr.IsValid() {
		local, err := netip.ParseAddrPort(conn.LocalAddr().String())
		if err != nil || local.Addr().IsUnspecified() {
			return fail(fmt.Errorf("cannot tell this host's address from the socket (%v); set Client.ClientAddr", conn.LocalAddr()))
		}
		req.ClientAddr = local.Addr().WithZone("").Unmap()
	}
	pkt, err := AppendRequest(nil, req)
	if err != nil {
		return fail(err)
	}
	// The request as the server will read it (unset addresses become
	// unspecified ones), to match replies against.
	sent, err := ParseRequest(pkt)
	if err != nil {
		return fail(fmt.Errorf("cannot re-read own request: %w", err))
	}

	log := c.logger().With("gateway", gw.String(), "op", req.Op.String())
	tries := c.MaxTries
	if tries <= 0 {
		tries = DefaultMaxTries
	}
	sched := retransmitSchedule{initial: c.InitialTimeout, max: c.MaxTimeout}
	var rep reply
	log.Debug("pcp: request", "request", sent)
	err = retransmit.Exchange(ctx, conn, pkt,
		retransmit.Options{Tries: tries, Wait: sched.next, BufSize: readBufSize, Name: "pcp", Logger: log},
		func(b []byte, firstSent time.Time) bool {
			r, ok := c.match(sent, b, firstSent)
			if !ok {
				return false
			}
			log.Debug("pcp: reply", "reply", r.resp, "took", time.Since(firstSent).Round(time.Microsecond))
			if r.rebooted {
				log.Info("pcp: the server's epoch is not consistent with the last one: it lost its mappings", "epoch", r.resp.Epoch)
			}
			rep = r
			return true
		})
	var ex *retransmit.Exhausted
	switch {
	case err == nil:
		return rep, nil
	case errors.Is(err, retransmit.ErrRefused):
		err = ErrNotSupported
	case errors.As(err, &ex):
		err = fmt.Errorf("%w (%d attempts over %v)", ErrNoResponse, ex.Tries, ex.Waited.Round(time.Millisecond))
	}
	return fail(err)
}

// match decides whether b answers req, and if so records its epoch. It
// returns false for packets to ignore: not PCP, or a reply to another
// request (a late answer to an earlier exchange that used this port).
func (c *Client) match(req Request, b []byte, sentAt time.Time) (reply, bool) {
	if v, ok := unsupportedVersionReply(b); ok {
		// No epoch: a NAT-PMP or draft server's clock is not the one
		// RFC 6887 §8.5 is about.
		return reply{resp: Response{Op: req.Op, Result: ResultUnsuppVersion}, version: v}, true
	}
	resp, err := ParseResponse(b)
	if err != nil || resp.Op != req.Op {
		return reply{}, false
	}
	// RFC 6887 §11.3 and §12.3: a reply belongs to the request with the
	// same nonce, protocol and internal port (and remote peer, for PEER).
	// An error reply cut after the header cannot be checked, and is taken.
	switch req.Op {
	case OpMap:
		if resp.Map != nil && !sameMapping(req.Map, resp.Map) {
			return reply{}, false
		}
	case OpPeer:
		if resp.Peer != nil && (!sameMapping(&req.Peer.MapPayload, &resp.Peer.MapPayload) ||
			resp.Peer.RemotePort != req.Peer.RemotePort || resp.Peer.RemoteAddr != req.Peer.RemoteAddr) {
			return reply{}, false
		}
	}
	rebooted := c.epoch.tracker().ObserveSpan(resp.Epoch, sentAt, time.Now())
	return reply{resp: resp, version: Version, rebooted: rebooted}, true
}

func sameMapping(req, resp *MapPayload) bool {
	return req.Nonce == resp.Nonce && req.Protocol == resp.Protocol && req.InternalPort == resp.InternalPort
}

// unsupportedVersionReply recognises the UNSUPP_VERSION answer of a server
// that does not speak PCP version 2, and returns the version it speaks
// (RFC 6887 §9).
//
// Quirk: a NAT-PMP-only gateway answers a PCP request with a NAT-PMP
// Unsupported Version reply: version 0, opcode 128 (or 0, the form of RFC
// 6886 before erratum 3618), and the result 1 in a 16-bit field. A draft
// PCP server (version 1) uses PCP's layout with its own version. Both are
// a definite "no PCP here", better reported than timed out.
func unsupportedVersionReply(b []byte) (version uint8, ok bool) {
	if len(b) < 4 || b[0] == Version {
		return 0, false
	}
	if b[0] == natpmpVersion {
		return natpmpVersion, (b[1] == opResponse || b[1] == 0) && binary.BigEndian.Uint16(b[2:]) == uint16(ResultUnsuppVersion)
	}
	return b[0], b[1]&opResponse != 0 && b[3] == byte(ResultUnsuppVersion)
}

// retransmitSchedule yields the successive waits of RFC 6887 §8.1.1: RT =
// IRT (1+RAND), then RT = 2 RT (1+RAND), and past MRT, RT = MRT (1+RAND),
// with RAND uniform in [-0.1, 0.1] so that clients that lost their
// gateway together do not retry in step.
type retransmitSchedule struct {
	initial, max time.Duration
	rt           time.Duration
}

func (s *retransmitSchedule) next() time.Duration {
	irt, mrt := s.initial, s.max
	if irt <= 0 {
		irt = DefaultInitialTimeout
	}
	if mrt <= 0 {
		mrt = DefaultMaxTimeout
	}
	// RAND × d, with RAND uniform in [-0.1, 0.1].
	rnd := func(d time.Duration) time.Duration { return time.Duration((rand.Float64()*0.2 - 0.1) * float64(d)) }
	if s.rt == 0 {
		s.rt = irt + rnd(irt)
	} else {
		s.rt = 2*s.rt + rnd(s.rt)
	}
	if s.rt > mrt {
		s.rt = mrt + rnd(mrt)
	}
	return s.rt
}
