package testenv

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// Datagram is one datagram a fake server read.
type Datagram struct {
	At   time.Time // when the fake read it
	From netip.AddrPort
	Data []byte
}

// Inbox keeps the datagrams a fake UDP server reads, for the test to look
// at: All for what has been read so far, Flush for everything sent to the
// fake before the call. The zero Inbox is empty and ready.
type Inbox struct {
	mu  sync.Mutex
	got []Datagram
}

// Add records a datagram the fake has just read (Add copies data).
func (b *Inbox) Add(from netip.AddrPort, data []byte) {
	b.mu.Lock()
	b.got = append(b.got, Datagram{At: time.Now(), From: from, Data: bytes.Clone(data)})
	b.mu.Unlock()
}

// All returns the datagrams read so far. A datagram still on its way (the
// last retransmission of a client that has just given up) may be missing:
// a test that counts what was sent uses Flush.
func (b *Inbox) All() []Datagram {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// Flush returns what the fake listening on addr has read, once it has read
// every datagram sent to it before the call (FlushUDP): a test can then
// count what a client sent, or check that it sent nothing, without
// sleeping first. The marker datagram itself is left out, but stays in All.
func (b *Inbox) Flush(t testing.TB, addr netip.AddrPort) []Datagram {
	t.Helper()
	var before []Datagram
	FlushUDP(t, addr, func(marker []byte) bool {
		got := b.All()
		i := slices.IndexFunc(got, func(d Datagram) bool { return bytes.Equal(d.Data, marker) })
		before = got[:max(i, 0)]
		return i >= 0
	})
	return before
}

// UDPFake is a scripted UDP server on 127.0.0.1 for the tests of a
// protocol's client: it records every datagram it reads (Inbox) and
// answers the i-th (counting from 0) with the datagrams reply returns, in
// order. It stops when the test ends.
type UDPFake struct {
	Inbox
	Addr netip.AddrPort
}

// NewUDPFake starts a UDPFake; reply runs on the fake's own goroutine, one
// datagram at a time.
func NewUDPFake(t testing.TB, reply func(i int, d Datagram) [][]byte) *UDPFake {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &UDPFake{Addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			f.Add(from, buf[:n])
			d := Datagram{At: time.Now(), From: from, Data: bytes.Clone(buf[:n])}
			for _, p := range reply(i, d) {
				conn.WriteToUDPAddrPort(p, from)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return f
}

// Flush is Inbox.Flush for the fake's own address.
func (f *UDPFake) Flush(t testing.TB) []Datagram {
	t.Helper()
	return f.Inbox.Flush(t, f.Addr)
}
