// Package retransmit is the request loop of portfwd's UDP clients, NAT-PMP
// (package natpmp) and PCP (package pcp): send a request to a server on a
// connected socket, wait for an answer, send it again when the wait runs
// out, until an answer comes, the attempts run out, or the context ends.
// The two protocols differ only in their schedules (RFC 6886 §3.1 doubles
// from 250 ms; RFC 6887 §8.1.1 doubles with ±10 % randomization and a cap)
// and in what answers a request, which the callers pass in.
package retransmit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrRefused is returned when the server's host answered with ICMP port
// unreachable: nothing listens there, and retrying is pointless (RFC 6886
// §3.1 says to stop at once). It wraps syscall.ECONNREFUSED.
var ErrRefused = fmt.Errorf("the server's host refused the request (ICMP port unreachable): %w", syscall.ECONNREFUSED)

// Exhausted is returned when every attempt went unanswered.
type Exhausted struct {
	Tries  int
	Waited time.Duration // the waits added up
}

func (e *Exhausted) Error() string {
	return fmt.Sprintf("no answer to %d attempts over %v", e.Tries, e.Waited)
}

// Options describe an exchange.
type Options struct {
	// Tries is how many times the request is sent.
	Tries int
	// Wait returns how long to wait for an answer after each send; it is
	// called once per send, before it.
	Wait func() time.Duration
	// BufSize bounds the packets read.
	BufSize int
	// Name prefixes the debug lines: "natpmp", "pcp".
	Name string
	// Logger receives a debug line per retransmission and per packet
	// ignored. Nil means none.
	Logger *slog.Logger
}

// Exchange sends req on conn, a socket connected to the server (so that
// only the server's packets arrive, the source check both RFCs ask of
// clients), until match accepts one of the packets read. match is given
// each packet and when the first copy of the request was sent (the
// earliest the server can have read its clock for the answer); it returns
// false for a packet to ignore.
//
// It returns nil once match accepted a packet; ctx's error when ctx ended
// first; ErrRefused when the server's host refused; *Exhausted when the
// attempts ran out; or the socket's error.
func Exchange(ctx context.Context, conn net.Conn, req []byte, o Options, match func(b []byte, firstSent time.Time) bool) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Wake a blocked Read when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, syscall.ECONNREFUSED):
			return ErrRefused
		}
		return err
	}
	buf := make([]byte, o.BufSize)
	var waited time.Duration
	var firstSent time.Time
	for try := 1; try <= o.Tries; try++ {
		wait := o.Wait()
		if try == 1 {
			firstSent = time.Now()
		}
		if _, err := conn.Write(req); err != nil {
			return fail(err)
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		// Checked after setting the deadline: had ctx ended before, the
		// AfterFunc's deadline may just have been overwritten.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				break
			}
			if err != nil {
				return fail(err)
			}
			if match(buf[:n], firstSent) {
				return nil
			}
			log.Debug(o.Name+": ignoring a packet that does not answer the request", "len", n)
		}
		waited += wait
		log.Debug(o.Name+": no reply, retransmitting", "try", try, "waited", wait)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &Exhausted{Tries: o.Tries, Waited: waited}
}
