package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lean SOAP client reads answers on kept-alive connections and on
// connections the server closes after each answer (as miniupnpd does),
// and tells a fault's UPnP code from a success.
func TestSoapWire(t *testing.T) {
	for _, closeEach := range []bool{false, true} {
		var conns atomic.Int32
		hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			action := r.Header.Get("SOAPAction")
			if closeEach {
				w.Header().Set("Connection", "close")
			}
			if strings.Contains(string(b), "<NewPortMappingIndex>3<") {
				w.WriteHeader(500)
				io.WriteString(w, `<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>713</errorCode></UPnPError></detail></s:Fault></s:Body></s:Envelope>`)
				return
			}
			name := action[strings.Index(action, "#")+1 : len(action)-1]
			io.WriteString(w, `<s:Envelope><s:Body><u:`+name+`Response><NewExternalPort>1</NewExternalPort></u:`+name+`Response></s:Body></s:Envelope>`)
		}))
		hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		hs.Start()
		c, err := newSoapWire(hs.URL+"/ctl/IPConn", "urn:schemas-upnp-org:service:WANIPConnection:1", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.addPortMapping("TCP", 20000, 8080, "10.0.0.2", "bench"); err != nil {
			t.Fatalf("close %v: add: %v", closeEach, err)
		}
		if err := c.deletePortMapping("TCP", 20000); err != nil {
			t.Fatalf("close %v: delete: %v", closeEach, err)
		}
		n := 0
		for ; n < 10; n++ {
			if err := c.getGeneric(n); err != nil {
				var f *soapFault
				if !errors.As(err, &f) || f.code != 713 || f.status != 500 {
					t.Fatalf("close %v: entry %d: %v, want fault 713", closeEach, n, err)
				}
				break
			}
		}
		if n != 3 {
			t.Errorf("close %v: the walk read %d entries, want 3", closeEach, n)
		}
		want := int32(1)
		if closeEach {
			want = 6
		}
		if got := conns.Load(); got != want {
			t.Errorf("close %v: %d connections for 6 requests, want %d", closeEach, got, want)
		}
		c.close()
		hs.Close()
	}
}
