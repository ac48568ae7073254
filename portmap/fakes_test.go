package portmap

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/natpmp"
	"github.com/portfwd/portfwd/pcp"
)

// handlerTransport serves HTTP requests with a handler, in memory: no
// socket, no background goroutine, so that a client under testing/synctest
// sees time advance while it waits for nothing but timers.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	// The request goes through its wire form, as a server would read it
	// (canonical header names, a body of its Content-Length).
	var wire bytes.Buffer
	if err := r.Write(&wire); err != nil {
		return nil, err
	}
	sr, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		return nil, err
	}
	sr = sr.WithContext(r.Context())
	sr.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, sr)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// pcpRouter is a router that speaks PCP and NAT-PMP on one UDP socket on
// 127.0.0.1, with one mapping table, nonces enforced as RFC 6887 §11.3
// asks, and an epoch the test can move.
type pcpRouter struct {
	addr netip.AddrPort

	mu    sync.Mutex
	ext   netip.Addr
	boot  time.Time
	base  uint32
	maps  map[pcpKey]pcpEntry
	asked []uint16 // the external port suggested by each MAP that creates or refreshes
}

type pcpKey struct {
	proto    uint8
	internal uint16
}

type pcpEntry struct {
	ext   uint16
	nonce pcp.Nonce
}

func startPCPRouter(t *testing.T) *pcpRouter {
	r := &pcpRouter{ext: netip.MustParseAddr("198.51.100.9"), boot: time.Now(), base: 7000, maps: map[pcpKey]pcpEntry{}}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			src := from.(*net.UDPAddr).AddrPort()
			var resp []byte
			if pcp.IsPCP(buf[:n]) {
				resp, _ = pcp.HandlePacket(ctx, buf[:n], src.Addr(), pcpHandler{r}, r.epoch(), pcp.ServerOptions{MinLifetime: 1})
			} else {
				resp, _ = natpmp.HandlePacket(ctx, buf[:n], src.Addr(), r, r.epoch())
			}
			if resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() { cancel(); pc.Close(); <-done })
	return r
}

func (r *pcpRouter) epoch() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.base + uint32(time.Since(r.boot)/time.Second)
}

// jump moves the epoch by d seconds, as a router replaced by another, or
// restarted long ago, shows.
func (r *pcpRouter) jump(d uint32) {
	r.mu.Lock()
	r.base += d
	r.mu.Unlock()
}

func (r *pcpRouter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.maps)
}

func (r *pcpRouter) ExternalAddress(context.Context, netip.Addr) (netip.Addr, natpmp.ResultCode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ext, natpmp.Success
}

// Map is NAT-PMP's: no nonce.
func (r *pcpRouter) Map(_ context.Context, _ netip.Addr, proto natpmp.Protocol, internal, ext uint16, life uint32) (uint16, uint32, natpmp.ResultCode) {
	g, code := r.mapPCP(pcp.MapContext{Protocol: pcp.Protocol(proto), InternalPort: internal, SuggestedExternalPort: ext, Lifetime: life}, false)
	if code != pcp.ResultSuccess {
		return 0, 0, natpmp.OutOfResources
	}
	return g.ExternalPort, g.Lifetime, natpmp.Success
}

// pcpHandler is r seen as a pcp.Handler (its Map has PCP's signature).
type pcpHandler struct{ *pcpRouter }

func (h pcpHandler) Map(_ context.Context, req pcp.MapContext) (pcp.MapGrant, pcp.ResultCode) {
	return h.mapPCP(req, true)
}

func (h pcpHandler) Peer(context.Context, pcp.PeerContext) (pcp.MapGrant, pcp.ResultCode) {
	return pcp.MapGrant{}, pcp.ResultUnsuppOpcode
}

func (r *pcpRouter) mapPCP(req pcp.MapContext, nonces bool) (pcp.MapGrant, pcp.ResultCode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := pcpKey{uint8(req.Protocol), req.InternalPort}
	cur, exists := r.maps[k]
	if nonces && exists && cur.nonce != req.Nonce {
		return pcp.MapGrant{}, pcp.ResultNotAuthorized
	}
	if req.Lifetime == 0 {
		delete(r.maps, k)
		return pcp.MapGrant{}, pcp.ResultSuccess
	}
	r.asked = append(r.asked, req.SuggestedExternalPort)
	ext := req.SuggestedExternalPort
	if exists && cur.ext == ext {
		r.maps[k] = pcpEntry{ext, req.Nonce}
		return pcp.MapGrant{ExternalPort: ext, ExternalAddr: r.ext, Lifetime: req.Lifetime}, pcp.ResultSuccess
	}
	for taken := true; taken; {
		taken = false
		for kk, e := range r.maps {
			if e.ext == ext && kk != k {
				taken = true
			}
		}
		if taken {
			if req.PreferFailure {
				return pcp.MapGrant{}, pcp.ResultCannotProvideExternal
			}
			ext++
		}
	}
	r.maps[k] = pcpEntry{ext, req.Nonce}
	return pcp.MapGrant{ExternalPort: ext, ExternalAddr: r.ext, Lifetime: req.Lifetime}, pcp.ResultSuccess
}
