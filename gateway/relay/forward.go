package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portfwd/portfwd/gateway"
)

// maxDatagram is the largest UDP payload; session buffers are this big so
// that no datagram is ever truncated.
const maxDatagram = 65535

// forward relays one external port: its listener (TCP) or socket (UDP),
// and the flows going through it.
type forward struct {
	cfg  Config
	log  *slog.Logger
	rule atomic.Pointer[gateway.Rule] // swapped by replace
	// remotePort, when not 0, is the only source port admitted (a
	// pinhole's RemotePort).
	remotePort uint16

	ln *net.TCPListener // TCP rules
	pc *net.UDPConn     // UDP rules

	ctx    context.Context // done when the forward stops
	cancel context.CancelFunc
	slots  chan struct{} // one token per live flow, MaxConnsPerRule deep
	wg     sync.WaitGroup
	warned atomic.Int64 // unix nanos of the last "limit reached" warning

	mu       sync.Mutex
	stopping bool
	flows    map[*tcpFlow]struct{}
	sessions map[netip.AddrPort]*session
}

func newForward(cfg Config, log *slog.Logger, rule gateway.Rule) *forward {
	ctx, cancel := context.WithCancel(context.Background())
	f := &forward{
		cfg:      cfg,
		log:      log.With("external", fmt.Sprintf("%d/%s", rule.ExternalPort, rule.Protocol)),
		ctx:      ctx,
		cancel:   cancel,
		slots:    make(chan struct{}, cfg.MaxConnsPerRule),
		flows:    map[*tcpFlow]struct{}{},
		sessions: map[netip.AddrPort]*session{},
	}
	f.rule.Store(&rule)
	return f
}

func (f *forward) start() {
	f.wg.Add(1)
	if f.ln != nil {
		go f.acceptLoop()
	} else {
		go f.readLoop()
	}
}

// replace points the forward at a new rule. Live flows belong to the old
// one (another target, or a source the new rule may not allow) and end.
func (f *forward) replace(rule gateway.Rule) {
	if old := f.rule.Swap(&rule); *old == rule {
		return
	}
	f.log.Info("rule replaced", "rule", rule.String())
	f.mu.Lock()
	flows, sessions := f.flows, f.sessions
	f.flows, f.sessions = map[*tcpFlow]struct{}{}, map[netip.AddrPort]*session{}
	f.mu.Unlock()
	for fl := range flows {
		fl.close()
	}
	for _, s := range sessions {
		s.conn.Close()
	}
}

// stop closes the port and every flow, then waits for the goroutines.
func (f *forward) stop(ctx context.Context) error {
	f.mu.Lock()
	f.stopping = true
	flows, sessions := f.flows, f.sessions
	f.flows, f.sessions = nil, nil
	f.mu.Unlock()
	f.cancel()
	if f.ln != nil {
		f.ln.Close()
	} else {
		f.pc.Close()
	}
	for fl := range flows {
		fl.close()
	}
	for _, s := range sessions {
		s.conn.Close()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		f.log.Info("stopped relaying")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay: waiting for the flows of %s to end: %w", f.rule.Load(), ctx.Err())
	}
}

// admits reports whether rule lets peer in: its remote host (and, for a
// pinhole, remote port) filter.
func (f *forward) admits(rule *gateway.Rule, peer netip.AddrPort) bool {
	if rule.RemoteHost.IsValid() && peer.Addr() != rule.RemoteHost {
		return false
	}
	return f.remotePort == 0 || peer.Port() == f.remotePort
}

// acquire takes a flow slot, or says why not.
func (f *forward) acquire() bool {
	select {
	case f.slots <- struct{}{}:
		return true
	default:
	}
	now := time.Now().UnixNano()
	if last := f.warned.Load(); now-last > int64(10*time.Second) && f.warned.CompareAndSwap(last, now) {
		f.log.Warn("flow limit reached: refusing new flows until some end", "limit", f.cfg.MaxConnsPerRule)
	}
	return false
}

func (f *forward) release() { <-f.slots }

// backoff sleeps after an unexpected accept or read error (out of file
// descriptors, say) so that the loop does not spin; it reports false when
// the forward is stopping.
func (f *forward) backoff(err error, delay *time.Duration) bool {
	*delay = min(max(2*(*delay), 5*time.Millisecond), time.Second)
	f.log.Warn("socket error, retrying", "err", err, "in", *delay)
	select {
	case <-time.After(*delay):
		return true
	case <-f.ctx.Done():
		return false
	}
}

// ---- TCP ----

// tcpFlow is one relayed TCP connection: the client's and ours to the
// internal host.
type tcpFlow struct {
	client *net.TCPConn
	cancel context.CancelFunc // aborts the dial

	mu     sync.Mutex
	server *net.TCPConn
	closed bool
}

func (fl *tcpFlow) close() {
	fl.cancel()
	fl.mu.Lock()
	fl.closed = true
	server := fl.server
	fl.mu.Unlock()
	fl.client.Close()
	if server != nil {
		server.Close()
	}
}

// setServer records the dialed connection, or reports that the flow was
// closed while dialing.
func (fl *tcpFlow) setServer(c *net.TCPConn) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed {
		return false
	}
	fl.server = c
	return true
}

func (f *forward) acceptLoop() {
	defer f.wg.Done()
	var delay time.Duration
	for {
		c, err := f.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil || !f.backoff(err, &delay) {
				return
			}
			continue
		}
		delay = 0
		rule := f.rule.Load()
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !f.admits(rule, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())) {
			f.log.Debug("refusing connection from a host the rule does not allow", "peer", peer)
			reset(c)
			continue
		}
		if !f.acquire() {
			reset(c)
			continue
		}
		f.wg.Add(1)
		go f.serveTCP(c, rule)
	}
}

// reset closes c with an RST rather than a FIN, which tells the client at
// once that nobody will answer.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

func (f *forward) serveTCP(client *net.TCPConn, rule *gateway.Rule) {
	defer f.wg.Done()
	defer f.release()
	ctx, cancel := context.WithCancel(f.ctx)
	fl := &tcpFlow{client: client, cancel: cancel}
	defer fl.close()

	f.mu.Lock()
	// A rule swapped since the accept means this connection belongs to
	// the old rule, which replace has already ended.
	ok := !f.stopping && f.rule.Load() == rule
	if ok {
		f.flows[fl] = struct{}{}
	}
	f.mu.Unlock()
	if !ok {
		return
	}
	defer func() {
		f.mu.Lock()
		delete(f.flows, fl)
		f.mu.Unlock()
	}()

	target := netip.AddrPortFrom(rule.InternalAddr, rule.InternalPort)
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		if ctx.Err() == nil {
			f.log.Debug("internal host unreachable", "target", target, "err", err)
			client.SetLinger(0)
		}
		return
	}
	server := c.(*net.TCPConn)
	if !fl.setServer(server) {
		server.Close()
		return
	}
	f.log.Debug("flow open", "peer", client.RemoteAddr(), "target", target)
	splice(client, server)
}

// splice relays a and b in both directions until both have finished.
func splice(a, b *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		pipe(b, a)
		close(done)
	}()
	pipe(a, b)
	<-done
}

// pipe copies src to dst (with splice(2) on Linux). At the end of src it
// half-closes dst, so the peer sees the FIN while the other direction goes
// on; on an error it closes both, which ends the other direction too.
func pipe(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		src.Close()
		dst.Close()
		return
	}
	dst.CloseWrite()
}

// ---- UDP ----

// session is one UDP client's flow: a socket connected to the internal
// host, whose replies go back to client from the external port.
type session struct {
	client netip.AddrPort
	conn   *net.UDPConn
	last   atomic.Int64 // unix nanos of the last datagram either way
}

func (s *session) touch() { s.last.Store(time.Now().UnixNano()) }

func (f *forward) readLoop() {
	defer f.wg.Done()
	buf := make([]byte, maxDatagram)
	var delay time.Duration
	for {
		n, from, err := f.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil || !f.backoff(err, &delay) {
				return
			}
			continue
		}
		delay = 0
		s := f.session(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if s == nil {
			continue
		}
		if _, err := s.conn.Write(buf[:n]); err != nil && !errors.Is(err, net.ErrClosed) {
			f.log.Debug("sending to internal host", "target", s.conn.RemoteAddr(), "err", err)
		}
	}
}

// session returns the session of client, creating it if the rule allows
// the client and there is a slot, and marks it active. This happens under
// f.mu, where serveSession decides on expiry (so a session returned is not
// expiring) and where replace collects the sessions to end (so a session
// is either made for the new rule or ended with the old one).
func (f *forward) session(client netip.AddrPort) *session {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.sessions[client]; s != nil {
		s.touch()
		return s
	}
	rule := f.rule.Load()
	if !f.admits(rule, client) {
		return nil // silently, as a firewall would
	}
	if f.stopping || !f.acquire() {
		return nil
	}
	target := netip.AddrPortFrom(rule.InternalAddr, rule.InternalPort)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		f.release()
		f.log.Debug("internal host unreachable", "target", target, "err", err)
		return nil
	}
	s := &session{client: client, conn: c}
	s.touch()
	f.sessions[client] = s
	f.wg.Add(1)
	go f.serveSession(s)
	f.log.Debug("session open", "peer", client, "target", target)
	return s
}

// serveSession relays the internal host's replies to the client until the
// session has been idle for UDPIdleTimeout or is closed.
func (f *forward) serveSession(s *session) {
	defer f.wg.Done()
	defer f.release()
	defer s.conn.Close()
	defer func() {
		f.mu.Lock()
		if f.sessions[s.client] == s {
			delete(f.sessions, s.client)
		}
		f.mu.Unlock()
	}()
	buf := make([]byte, maxDatagram)
	for {
		deadline, expired := f.expiry(s)
		if expired {
			f.log.Debug("session idle, closing", "peer", s.client)
			return
		}
		s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // the loop checks whether the client kept it busy
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // ICMP port unreachable from the internal host: its problem, not the session's
			}
			return
		}
		s.touch()
		if _, err := f.pc.WriteToUDPAddrPort(buf[:n], s.client); err != nil && !errors.Is(err, net.ErrClosed) {
			f.log.Debug("sending to client", "peer", s.client, "err", err)
		}
	}
}

// expiry returns when s expires, or whether it has, in which case it is
// already out of the session table.
func (f *forward) expiry(s *session) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	deadline := time.Unix(0, s.last.Load()).Add(f.cfg.UDPIdleTimeout)
	if time.Now().Before(deadline) {
		return deadline, false
	}
	if f.sessions[s.client] == s {
		delete(f.sessions, s.client)
	}
	return deadline, true
}
