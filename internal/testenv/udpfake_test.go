package testenv

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// A UDPFake answers each datagram as its script says, and Flush returns,
// in order, every datagram sent to it before the call, however late the
// fake reads them: the ones a client sent without waiting for an answer
// included.
func TestUDPFakeAnswersAndFlushes(t *testing.T) {
	f := NewUDPFake(t, func(i int, d Datagram) [][]byte {
		if i == 0 {
			return [][]byte{append([]byte("re: "), d.Data...)}
		}
		return nil
	})
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(f.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"one", "two", "three"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "re: one" {
		t.Errorf("answer %q, %v; want the script's %q", buf[:n], err, "re: one")
	}
	got := f.Flush(t)
	if len(got) != 3 || string(got[0].Data) != "one" || string(got[2].Data) != "three" {
		t.Fatalf("Flush = %v, want the three datagrams in order", got)
	}
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if got[1].From != local || got[1].At.Before(got[0].At) {
		t.Errorf("datagram 2 from %v at %v, want from %v, after the first (%v)", got[1].From, got[1].At, local, got[0].At)
	}
	if all := f.All(); len(all) != 4 || !bytes.HasPrefix(all[3].Data, []byte("testenv-flush-")) {
		t.Errorf("All = %d datagrams, want the three and Flush's marker", len(all))
	}
}
