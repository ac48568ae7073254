package reach

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// maxListenerConns caps the connections the temporary TCP listener serves
// at once; a scanner hitting the freshly opened port cannot pile up
// goroutines.
const maxListenerConns = 16

// listener is the temporary program on the internal port that answers the
// probe line with this check's token, and nothing else.
type listener struct {
	probe, reply []byte
	log          *slog.Logger

	mu   sync.Mutex
	seen []netip.AddrPort // sources that presented the token

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closer io.Closer
}

// listen opens the temporary listener for proto on host:port (all
// addresses when host is the zero Addr). It fails with an error wrapping
// syscall.EADDRINUSE when another program holds the port.
func listen(proto string, host netip.Addr, port uint16, token string, log *slog.Logger) (*listener, error) {
	h := ""
	if host.IsValid() {
		h = host.String()
	}
	addr := net.JoinHostPort(h, strconv.Itoa(int(port)))
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{probe: probeLine(token), reply: replyLine(token), log: log, cancel: cancel}
	switch proto {
	case TCP:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			cancel()
			return nil, err
		}
		l.closer = ln
		l.wg.Add(1)
		go l.serveTCP(ctx, ln)
	case UDP:
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			cancel()
			return nil, err
		}
		l.closer = pc
		l.wg.Add(1)
		go l.serveUDP(pc)
	default:
		cancel()
		return nil, errors.New("reach: unknown protocol " + proto)
	}
	return l, nil
}

// Close stops the listener and waits for its goroutines.
func (l *listener) Close() {
	l.cancel()
	l.closer.Close()
	l.wg.Wait()
}

// Seen returns the sources that presented the token, in order.
func (l *listener) Seen() []netip.AddrPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]netip.AddrPort(nil), l.seen...)
}

func (l *listener) record(a net.Addr) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	l.log.Debug("reach: the probe reached the listener", "from", ap)
	l.mu.Lock()
	l.seen = append(l.seen, ap)
	l.mu.Unlock()
}

func (l *listener) serveTCP(ctx context.Context, ln net.Listener) {
	defer l.wg.Done()
	slots := make(chan struct{}, maxListenerConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: Accept errors are
			// rare and the check lasts seconds, so a short pause keeps
			// this from spinning.
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close()
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-slots }()
			l.answerTCP(ctx, c)
		}()
	}
}

// answerTCP reads one line and answers it if it is this check's probe.
func (l *listener) answerTCP(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(AnswerTimeout))
	buf := make([]byte, len(l.probe))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, l.probe) {
		return
	}
	l.record(c.RemoteAddr())
	c.Write(l.reply)
}

func (l *listener) serveUDP(pc net.PacketConn) {
	defer l.wg.Done()
	buf := make([]byte, 512)
	// A socket that keeps failing (it should not: unconnected UDP sockets
	// do not report ICMP errors) ends the loop instead of spinning.
	for failures := 0; failures < 100; {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			failures++
			continue
		}
		if bytes.Equal(buf[:n], l.probe) {
			l.record(from)
			pc.WriteTo(l.reply, from)
		}
	}
}
