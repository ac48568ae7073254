package reach

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func checker(probes ...string) *Checker {
	return &Checker{Probes: probes, ListenAddr: loopback, Timeout: 10 * time.Second}
}

func TestCheckerReachable(t *testing.T) {
	for _, proto := range []string{TCP, UDP} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			base := startProbe(t, &ProbeServer{})
			port := freePort(t, proto)
			res, err := checker(base).Check(context.Background(), strings.ToUpper(proto), port, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := netip.AddrPortFrom(loopback, port)
			if !res.Reachable || !res.Verified || !res.Answered || res.Code != "" || res.Listener != ListenerTemporary ||
				res.Address != want || res.ExternalPort != port || res.Probe != base || res.Protocol != proto {
				t.Fatalf("got %+v, want verified reachable at %v through %s", res, want, base)
			}
			if res.Peer.Addr() != loopback {
				t.Errorf("the listener saw the probe from %v, want %v", res.Peer, loopback)
			}
			if !strings.Contains(res.Reason, "got the token back") {
				t.Errorf("reason %q", res.Reason)
			}
			// The temporary listener is gone after the check.
			if proto == TCP {
				if c, err := net.Dial("tcp4", want.String()); err == nil {
					c.Close()
					t.Error("the temporary listener still accepts after Check returned")
				}
			}
		})
	}
}

func TestCheckerExternalPortClosed(t *testing.T) {
	base := startProbe(t, &ProbeServer{})
	in, ext := freePort(t, TCP), freePort(t, TCP)
	res, err := checker(base).Check(context.Background(), TCP, in, ext)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reachable || res.Answered || res.Code != CodeRefused || res.Address.Port() != ext ||
		!strings.Contains(res.Reason, "connection refused") {
		t.Fatalf("got %+v, want refused on port %d", res, ext)
	}
}

// TestCheckerExistingService: with a program already on the port, a TCP
// check proves only that something answered, and says so.
func TestCheckerExistingService(t *testing.T) {
	base := startProbe(t, &ProbeServer{})
	port := serveTCP(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n") })
	res, err := checker(base).Check(context.Background(), TCP, port, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reachable || res.Verified || !res.Answered || res.Listener != ListenerExisting || res.Code != CodeMismatch {
		t.Fatalf("got %+v, want reachable, unverified, existing listener", res)
	}
	if !strings.Contains(res.Reason, "not portfwd's listener") || !strings.Contains(res.Reason, "can't be proven") {
		t.Errorf("reason %q does not say ownership can't be proven", res.Reason)
	}
}

func TestCheckerExistingUDPService(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
	base := startProbe(t, &ProbeServer{ConnectTimeout: 300 * time.Millisecond})
	res, err := checker(base).Check(context.Background(), UDP, port, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reachable || res.Listener != ListenerExisting || res.Code != CodeTimeout ||
		!strings.Contains(res.Reason, "another program holds UDP port") {
		t.Fatalf("got %+v, want not reachable, explaining the port is taken", res)
	}
}

// TestCheckerWrongProgramBehindTheForward: the external port leads to a
// program other than the temporary listener.
func TestCheckerWrongProgramBehindTheForward(t *testing.T) {
	base := startProbe(t, &ProbeServer{})
	ext := serveTCP(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-router\r\n") })
	res, err := checker(base).Check(context.Background(), TCP, freePort(t, TCP), ext)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reachable || !res.Answered || res.Listener != ListenerTemporary || res.Code != CodeMismatch ||
		!strings.Contains(res.Reason, "another program or host") {
		t.Fatalf("got %+v, want answered by another program", res)
	}
}

func TestCheckerTriesProbesInTurn(t *testing.T) {
	down := "http://" + netip.AddrPortFrom(loopback, freePort(t, TCP)).String()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"disk on fire"}`, http.StatusInternalServerError)
	}))
	defer broken.Close()
	good := startProbe(t, &ProbeServer{})
	res, err := checker("not a url", down, broken.URL, good).Check(context.Background(), TCP, freePort(t, TCP), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Probe != good || !res.Reachable {
		t.Fatalf("got %+v, want reachable through %s", res, good)
	}
}

func TestCheckerAllProbesDown(t *testing.T) {
	down := "http://" + netip.AddrPortFrom(loopback, freePort(t, TCP)).String()
	limited := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":"too many checks from 127.0.0.1"}`)
	}))
	defer limited.Close()
	_, err := checker(down, limited.URL).Check(context.Background(), TCP, freePort(t, TCP), 0)
	var se *StatusError
	if !errors.Is(err, ErrNoProbe) || !errors.As(err, &se) || se.Status != http.StatusTooManyRequests ||
		!strings.Contains(err.Error(), "too many checks") || !strings.Contains(err.Error(), down) {
		t.Fatalf("got %v, want ErrNoProbe naming both failures", err)
	}
	if _, err := checker().Check(context.Background(), TCP, 8080, 0); !errors.Is(err, ErrNoProbe) {
		t.Errorf("no probes configured: %v, want ErrNoProbe", err)
	}
}

// TestCheckerFollowsNoRedirect: a probe list entry cannot send the check
// elsewhere.
func TestCheckerFollowsNoRedirect(t *testing.T) {
	good := startProbe(t, &ProbeServer{})
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, good+Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	_, err := checker(redirect.URL).Check(context.Background(), TCP, freePort(t, TCP), 0)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTemporaryRedirect {
		t.Fatalf("got %v, want the redirect reported as a failure", err)
	}
}

func TestCheckerBadArguments(t *testing.T) {
	c := checker("http://127.0.0.1:1")
	if _, err := c.Check(context.Background(), "sctp", 80, 0); err == nil {
		t.Error("protocol sctp accepted")
	}
	if _, err := c.Check(context.Background(), TCP, 0, 80); err == nil {
		t.Error("internal port 0 accepted")
	}
}

// TestListenerAnswersOnlyItsToken: strangers get nothing from the
// temporary listener, and are not recorded as the probe.
func TestListenerAnswersOnlyItsToken(t *testing.T) {
	other := "fedcba9876543210fedcba9876543210"
	t.Run("tcp", func(t *testing.T) {
		l, port := tokenListener(t, TCP, testToken)
		addr := netip.AddrPortFrom(loopback, port).String()
		for _, send := range [][]byte{probeLine(other), replyLine(testToken), []byte("GET / HTTP/1.0\r\n\r\n")} {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(send)
			got, _ := io.ReadAll(c)
			c.Close()
			if len(got) != 0 {
				t.Errorf("sent %q, got %q, want nothing", send, got)
			}
		}
		if seen := l.Seen(); len(seen) != 0 {
			t.Errorf("recorded %v for strangers", seen)
		}
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(probeLine(testToken))
		if got, _ := io.ReadAll(c); string(got) != string(replyLine(testToken)) {
			t.Errorf("the probe got %q, want the reply line", got)
		}
	})
	t.Run("udp", func(t *testing.T) {
		l, port := tokenListener(t, UDP, testToken)
		c, err := net.Dial("udp4", netip.AddrPortFrom(loopback, port).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 512)
		for _, send := range [][]byte{probeLine(other), replyLine(testToken), []byte("x")} {
			c.Write(send)
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				t.Errorf("sent %q, got %q, want nothing", send, buf[:n])
			}
		}
		if seen := l.Seen(); len(seen) != 0 {
			t.Errorf("recorded %v for strangers", seen)
		}
		c.Write(probeLine(testToken))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != string(replyLine(testToken)) {
			t.Errorf("the probe got %q, %v; want the reply line", buf[:n], err)
		}
	})
}
