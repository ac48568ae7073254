package ssdp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// Responder is the device side of SSDP: it answers M-SEARCH requests and
// announces its advertisements with NOTIFY, on the internal interfaces only.
type Responder struct {
	// Adverts are the advertisements to answer and announce, typically
	// DeviceAdverts of the root device and of each embedded device.
	Adverts []Advertisement

	// Location returns the description URL as seen from the interface a
	// request came in on, local being that interface's address. An empty
	// result means that interface cannot be served; it is skipped.
	Location func(local netip.Addr) string

	// Server is the SERVER header, "OS/version UPnP/1.1 product/version".
	// Empty means a default naming portfwd.
	Server string

	// MaxAge is the advertised lifetime (CACHE-CONTROL max-age). 0 means
	// 1800s, the minimum UDA 1.1 recommends.
	MaxAge time.Duration

	// NotifyInterval is the time between two rounds of ssdp:alive; keep it
	// well under MaxAge. 0 means 900s.
	NotifyInterval time.Duration

	// Interfaces names the internal interfaces to serve. It is required:
	// requests arriving on any other interface, the WAN above all, are
	// never answered, and nothing is announced there.
	Interfaces []string

	// Port is the UDP port listened on and announced to. 0 means 1900.
	Port int

	// Group is the multicast group. The zero Addr means 239.255.255.250.
	Group netip.Addr

	// BootID and ConfigID are sent as BOOTID.UPNP.ORG and
	// CONFIGID.UPNP.ORG. UDA 1.1 wants BootID to grow at each restart (the
	// start time in seconds does) and ConfigID to change with the
	// description.
	BootID, ConfigID int

	// MaxMX caps the MX of a multicast search. Before answering one, the
	// responder waits a random time in [0, min(MX, MaxMX)) seconds, so that
	// the answers of many devices do not arrive all at once. 0 means 5 (UDA
	// 1.1 treats larger MX values as 5); a negative value answers at once.
	// Unicast searches are always answered at once.
	MaxMX int

	// SourceBurst bounds what one requester can make the responder send,
	// against reflection attacks (a spoofed source makes the device flood
	// the victim with answers many times the size of the search). Each
	// source may receive SourceBurst bytes of answers, and then as many
	// bytes as it sends in searches plus a trickle over time
	// (budgetRefill, 128 bytes a second): past a small burst, the
	// responder amplifies nothing beyond that trickle, and a control point
	// that searches every half minute for hours is still answered in full.
	// A source quiet for a minute starts afresh. 0 means DefaultSourceBurst; negative, no limit (tests).
	SourceBurst int

	// Quirks make the responder misbehave as some real devices do, for
	// testing control points (portfwd gateway --quirks); all off by
	// default.
	Quirks ResponderQuirks

	// Logger receives the responder's logs; nil means none.
	Logger *slog.Logger
}

// ResponderQuirks are deliberate departures from UDA 1.1 that real
// devices are known for. Each is documented with its sources in
// docs/quirks.md.
type ResponderQuirks struct {
	// SameVersionOnly answers a search for a type only at the version
	// advertised, never a lower one (UDA 1.1 requires lower versions to be
	// answered): an IGD:2 device stays silent to IGD:1 searches.
	SameVersionOnly bool
	// OtherPort sends each answer from a fresh ephemeral port instead of
	// the SSDP port, as libupnp 1.6 stacks (TP-Link ER605, Sagemcom Home
	// Hub 3000) do.
	OtherPort bool
	// FullMX answers every search (unicast ones too) only after its whole
	// MX, clamped to [1, 5] s: the latest a device may answer.
	FullMX bool
	// UnicastOnly ignores searches sent to the multicast group and sends
	// no NOTIFY: only a search sent to the device's own address is
	// answered, as when multicast is broken on the LAN.
	UnicastOnly bool
}

// DefaultSourceBurst is the default Responder.SourceBurst: room for one
// ssdp:all answer of a typical IGD (about 3 KiB) and a few targeted ones.
const DefaultSourceBurst = 8 << 10

const (
	defaultMaxAge         = 1800 * time.Second
	defaultNotifyInterval = 900 * time.Second
	defaultMaxMX          = 5
	// notifyCopies and notifyGap: each announcement goes out twice, a short
	// time apart, since UDP multicast is lossy (UDA 1.1 suggests
	// sending each message more than once).
	notifyCopies = 2
	notifyGap    = 100 * time.Millisecond
	// maxPending bounds the answers waiting for their MX delay, so that a
	// flood of searches cannot pile up goroutines.
	maxPending = 64
)

// responder is the running state of one Serve call.
type responder struct {
	cfg     Responder
	log     *slog.Logger
	p       *ipv4.PacketConn
	group   *net.UDPAddr
	host    string // HOST header of the NOTIFYs
	ifaces  []*net.Interface
	byIndex map[int]*net.Interface
	pending chan struct{} // semaphore of delayed answers
	wg      sync.WaitGroup
	budgets *sourceBudgets // nil without a limit
}

// Serve joins the SSDP group on each of r.Interfaces, announces r.Adverts
// (ssdp:alive) at once and every NotifyInterval, and answers M-SEARCH
// requests that came in on one of r.Interfaces with unicast replies to the
// requester's source address and port. The ingress interface is read from
// the packet's IP_PKTINFO, so a search sent to the router's WAN address is
// ignored even though the socket listens on every address.
//
// Searches for ssdp:all, upnp:rootdevice, a uuid, or a device or service
// type are answered; a search for an older version of a type the device has
// is answered too, with the version searched for echoed in ST and USN.
//
// When ctx ends, Serve announces ssdp:byebye for every advertisement,
// closes its socket and returns nil. It returns an error when it cannot
// start, or when its socket fails for good.
func (r *Responder) Serve(ctx context.Context) error {
	s, err := r.start(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	readErr := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		readErr <- s.readLoop(ctx)
	}()

	s.log.Info("ssdp: responder serving", "interfaces", r.Interfaces, "port", s.group.Port, "adverts", len(s.cfg.Adverts))
	s.announceTwice(ctx, NTSAlive)
	tick := time.NewTicker(s.cfg.NotifyInterval)
	defer tick.Stop()
	var stopErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-readErr:
			if err == nil {
				err = errors.New("ssdp: responder socket closed")
			}
			stopErr = err
			break loop
		case <-tick.C:
			s.announceTwice(ctx, NTSAlive)
		}
	}
	// Byebye goes out even though ctx is done: it is the last word, and
	// UDP sends do not block.
	s.announce(NTSByeBye)
	s.announce(NTSByeBye)
	cancel()
	s.p.Close()
	s.wg.Wait()
	s.log.Info("ssdp: responder stopped")
	return stopErr
}

// start checks r, fills in its defaults, opens the socket and joins the
// group on every interface.
func (r *Responder) start(ctx context.Context) (*responder, error) {
	s := &responder{cfg: *r, log: r.Logger, pending: make(chan struct{}, maxPending), byIndex: make(map[int]*net.Interface)}
	c := &s.cfg
	if len(c.Interfaces) == 0 {
		return nil, errors.New("ssdp: responder has no Interfaces: name the internal (LAN) interfaces to serve; SSDP must never be answered on the WAN side")
	}
	if c.Location == nil {
		return nil, errors.New("ssdp: responder has no Location func: it must return the description URL for a local address")
	}
	if len(c.Adverts) == 0 {
		return nil, errors.New("ssdp: responder has no Adverts: use DeviceAdverts for the root device and each embedded device")
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if c.Server == "" {
		c.Server = userAgent
	}
	if c.MaxAge <= 0 {
		c.MaxAge = defaultMaxAge
	}
	if c.NotifyInterval <= 0 {
		c.NotifyInterval = defaultNotifyInterval
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if !c.Group.IsValid() {
		c.Group = netip.MustParseAddr(DefaultGroup)
	}
	if !c.Group.Is4() || !c.Group.IsMulticast() {
		return nil, fmt.Errorf("ssdp: responder Group %s is not an IPv4 multicast address; leave it unset for %s", c.Group, DefaultGroup)
	}
	if c.MaxMX == 0 {
		c.MaxMX = defaultMaxMX
	}
	if c.SourceBurst == 0 {
		c.SourceBurst = DefaultSourceBurst
	}
	if c.SourceBurst > 0 {
		s.budgets = newSourceBudgets(c.SourceBurst)
	}
	s.group = net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.Group, uint16(c.Port)))
	s.host = s.group.String()

	for _, name := range c.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("ssdp: responder interface %q: %w", name, err)
		}
		if ifi.Flags&net.FlagMulticast == 0 {
			return nil, fmt.Errorf("ssdp: responder interface %q is not multicast-capable (ip link set %s multicast on)", name, name)
		}
		s.ifaces = append(s.ifaces, ifi)
		s.byIndex[ifi.Index] = ifi
	}

	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(c.Port))
	if err != nil {
		return nil, fmt.Errorf("ssdp: responder listening on UDP port %d: %w", c.Port, err)
	}
	s.p = ipv4.NewPacketConn(pc)
	if err := s.p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		pc.Close()
		return nil, fmt.Errorf("ssdp: responder needs IP_PKTINFO to tell the interface a search came in on: %w", err)
	}
	if err := s.p.SetMulticastTTL(multicastTTL); err != nil {
		pc.Close()
		return nil, fmt.Errorf("ssdp: responder setting multicast TTL: %w", err)
	}
	for _, ifi := range s.ifaces {
		if err := s.p.JoinGroup(ifi, &net.UDPAddr{IP: s.group.IP}); err != nil {
			pc.Close()
			return nil, fmt.Errorf("ssdp: joining %s on %q (is it up, with an IPv4 address?): %w", c.Group, ifi.Name, err)
		}
	}
	return s, nil
}

// readLoop reads requests until the socket is closed (nil) or fails
// persistently (the error).
func (s *responder) readLoop(ctx context.Context) error {
	buf := make([]byte, maxDatagram)
	failures := 0
	for {
		n, cm, src, err := s.p.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			if failures++; failures >= 100 {
				return fmt.Errorf("ssdp: responder reading: %w", err)
			}
			s.log.Debug("ssdp: responder read error", "err", err)
			continue
		}
		failures = 0
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort()
		s.handle(ctx, buf[:n], cm, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// handle answers one datagram if it is a search, from a served interface,
// for something advertised.
func (s *responder) handle(ctx context.Context, b []byte, cm *ipv4.ControlMessage, from netip.AddrPort) {
	if cm == nil {
		return // no IP_PKTINFO: the ingress interface is unknown, so never answer
	}
	ifi, ok := s.byIndex[cm.IfIndex]
	if !ok {
		s.log.Debug("ssdp: ignoring datagram from an interface not served", "from", from, "ifindex", cm.IfIndex)
		return
	}
	if m, err := ParseMessage(b); err == nil && m.Method != MethodSearch {
		// NOTIFYs of other devices, and this one's own (multicast loopback
		// is left on so that control points on the router itself see
		// them), land here all the time: not worth a log line.
		return
	}
	st, mx, err := ParseSearch(b)
	if err != nil {
		s.log.Debug("ssdp: ignoring malformed search", "from", from, "interface", ifi.Name, "err", err)
		return
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	dst = dst.Unmap()
	multicast := dst.IsMulticast()
	if multicast && s.cfg.Quirks.UnicastOnly {
		s.log.Debug("ssdp: ignoring a multicast search (quirk ssdp-silent)", "from", from, "st", st)
		return
	}
	ads := answers(s.cfg.Adverts, st)
	if s.cfg.Quirks.SameVersionOnly {
		ads = sameVersion(ads, s.cfg.Adverts)
	}
	if len(ads) == 0 {
		return
	}
	local := dst
	if multicast || !local.IsValid() {
		if local, err = interfaceIPv4(ifi, from.Addr()); err != nil {
			s.log.Debug("ssdp: cannot answer", "from", from, "interface", ifi.Name, "err", err)
			return
		}
	}
	loc := s.cfg.Location(local)
	if loc == "" {
		s.log.Debug("ssdp: no Location for interface", "interface", ifi.Name, "local", local)
		return
	}
	var msgs [][]byte
	for _, a := range ads {
		msgs = append(msgs, AppendResponse(nil, s.response(a, loc)))
	}
	if s.budgets != nil {
		n := s.budgets.allow(from.Addr(), len(b), msgs, time.Now())
		if n < len(msgs) {
			s.log.Debug("ssdp: answers beyond the requester's budget dropped (reflection guard)", "from", from, "st", st, "answers", len(msgs), "sent", n)
		}
		if msgs = msgs[:n]; len(msgs) == 0 {
			return
		}
	}
	var delay time.Duration
	switch {
	case s.cfg.Quirks.FullMX:
		delay = time.Duration(min(max(mx, 1), defaultMaxMX)) * time.Second
	case multicast:
		delay = s.delay(mx)
	}
	select {
	case s.pending <- struct{}{}:
	default:
		s.log.Debug("ssdp: too many searches pending, dropping one", "from", from, "st", st)
		return
	}
	s.log.Debug("ssdp: answering", "from", from, "interface", ifi.Name, "st", st, "answers", len(msgs), "delay", delay)
	cmOut := &ipv4.ControlMessage{IfIndex: ifi.Index, Src: local.AsSlice()}
	to := net.UDPAddrFromAddrPort(from)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.pending }()
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		if s.cfg.Quirks.OtherPort {
			s.sendFromOtherPort(msgs, local, to)
			return
		}
		for _, m := range msgs {
			if _, err := s.p.WriteTo(m, cmOut, to); err != nil {
				s.log.Debug("ssdp: sending answer", "to", to, "err", err)
			}
		}
	}()
}

// sendFromOtherPort sends answers from a fresh socket on an ephemeral port
// of local (quirk ssdp-other-port).
func (s *responder) sendFromOtherPort(msgs [][]byte, local netip.Addr, to *net.UDPAddr) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		s.log.Debug("ssdp: opening a socket for an answer from another port", "err", err)
		return
	}
	defer c.Close()
	for _, m := range msgs {
		if _, err := c.WriteTo(m, to); err != nil {
			s.log.Debug("ssdp: sending answer", "to", to, "err", err)
		}
	}
}

// sameVersion keeps the answers whose ST is advertised as it is, dropping
// those that echo a lower version than the device's.
func sameVersion(ads, advertised []Advertisement) []Advertisement {
	var out []Advertisement
	for _, a := range ads {
		for _, b := range advertised {
			if a.NT == b.NT {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// delay picks the random wait before answering a multicast search. A search
// without MX is given 1s rather than refused: UDA says to drop it, but
// answering costs little and helps sloppy clients.
func (s *responder) delay(mx int) time.Duration {
	if s.cfg.MaxMX < 0 {
		return 0
	}
	if mx <= 0 {
		mx = 1
	}
	limit := time.Duration(min(mx, s.cfg.MaxMX)) * time.Second
	return rand.N(limit)
}

func (s *responder) response(a Advertisement, loc string) Response {
	return Response{
		Location: loc,
		ST:       a.NT,
		USN:      a.USN,
		Server:   s.cfg.Server,
		MaxAge:   s.cfg.MaxAge,
		BootID:   s.cfg.BootID,
		ConfigID: s.cfg.ConfigID,
	}
}

// announceTwice sends the NOTIFYs, then again after notifyGap unless ctx
// ends first.
func (s *responder) announceTwice(ctx context.Context, nts string) {
	for i := range notifyCopies {
		if i > 0 {
			t := time.NewTimer(notifyGap)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		s.announce(nts)
	}
}

// announce multicasts one NOTIFY per advertisement on every served
// interface. The outgoing interface and source address are set per packet
// (IP_PKTINFO), so that one socket serves every interface.
func (s *responder) announce(nts string) {
	if s.cfg.Quirks.UnicastOnly {
		return
	}
	for _, ifi := range s.ifaces {
		local, err := interfaceIPv4(ifi, netip.Addr{})
		if err != nil {
			s.log.Debug("ssdp: not announcing", "interface", ifi.Name, "err", err)
			continue
		}
		loc := s.cfg.Location(local)
		if loc == "" {
			continue
		}
		cm := &ipv4.ControlMessage{IfIndex: ifi.Index, Src: local.AsSlice()}
		for _, a := range s.cfg.Adverts {
			m := AppendNotify(nil, s.response(a, loc), nts, s.host)
			if _, err := s.p.WriteTo(m, cm, s.group); err != nil {
				s.log.Debug("ssdp: sending NOTIFY", "interface", ifi.Name, "nts", nts, "err", err)
			}
		}
	}
}

// sourceBudgets keeps, per requester, how many bytes of answers it may
// still receive (see Responder.SourceBurst).
type sourceBudgets struct {
	burst int
	mu    sync.Mutex
	m     map[netip.Addr]*sourceBudget
}

type sourceBudget struct {
	bytes int
	last  time.Time
}

const (
	// budgetIdle is how long a quiet source keeps its budget; after it,
	// it starts afresh with a full burst.
	budgetIdle = time.Minute
	// maxBudgets bounds the sources tracked. Beyond it (a flood of
	// spoofed sources), unknown sources get no burst: as many bytes as
	// they send.
	maxBudgets = 4096
	// budgetRefill is the credit a source regains each second without
	// searching: a reflection through a spoofed source gains the victim
	// at most this, while a control point that searches now and then
	// (4 STs every 30 s costs ~30 B/s beyond what its searches bring in)
	// never runs dry.
	budgetRefill = 128
)

func newSourceBudgets(burst int) *sourceBudgets {
	return &sourceBudgets{burst: burst, m: make(map[netip.Addr]*sourceBudget)}
}

// allow credits src with the size of its search, and returns how many of
// msgs (in order) its budget lets through, debiting them.
func (b *sourceBudgets) allow(src netip.Addr, searched int, msgs [][]byte, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	sb := b.m[src]
	if sb != nil && now.Sub(sb.last) > budgetIdle {
		sb = nil
		delete(b.m, src)
	}
	if sb == nil {
		if len(b.m) >= maxBudgets {
			for a, x := range b.m {
				if now.Sub(x.last) > budgetIdle {
					delete(b.m, a)
				}
			}
		}
		sb = &sourceBudget{}
		if len(b.m) < maxBudgets {
			sb.bytes = b.burst
			b.m[src] = sb
		}
	}
	refill := int(now.Sub(sb.last) / time.Second * budgetRefill)
	if sb.last.IsZero() || refill < 0 {
		refill = 0
	}
	sb.last = now
	sb.bytes = min(sb.bytes+searched+refill, b.burst)
	n := 0
	for _, m := range msgs {
		if len(m) > sb.bytes {
			break
		}
		sb.bytes -= len(m)
		n++
	}
	return n
}
