package portmap

import (
	"github.com/portfwd/portfwd/ssdp"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func a6(s string) netip.Addr { return netip.MustParseAddr(s) }

// The default address of a pinhole is a stable global one: temporary
// (privacy) addresses rotate and break the pinhole, deprecated ones are on
// their way out, ULAs are not reachable from the Internet, link-local and
// tentative ones cannot be used at all.
func TestChooseAddr6(t *testing.T) {
	stable := HostAddr6{Addr: a6("2001:db8:77::2"), Iface: "eth0", FlagsKnown: true}
	temp := HostAddr6{Addr: a6("2001:db8:77::a1b2"), Iface: "eth0", Temporary: true, FlagsKnown: true}
	depr := HostAddr6{Addr: a6("2001:db8:77::3"), Iface: "eth0", Deprecated: true, FlagsKnown: true}
	ula := HostAddr6{Addr: a6("fd00::2"), Iface: "eth0", FlagsKnown: true}
	ll := HostAddr6{Addr: a6("fe80::2"), Iface: "eth0", FlagsKnown: true}
	tent := HostAddr6{Addr: a6("2001:db8:77::4"), Iface: "eth0", Tentative: true, FlagsKnown: true}
	wifi := HostAddr6{Addr: a6("2001:db8:88::2"), Iface: "wlan0", FlagsKnown: true}
	tests := []struct {
		name  string
		addrs []HostAddr6
		iface string
		want  netip.Addr
		why   string
	}{
		{"stable over temporary", []HostAddr6{temp, stable}, "", stable.Addr, "1 temporary address(es) skipped"},
		{"stable over deprecated", []HostAddr6{depr, stable}, "", stable.Addr, "stable global address"},
		{"global over ULA", []HostAddr6{ula, temp}, "", temp.Addr, "temporary address"},
		{"ULA as the last resort", []HostAddr6{ll, ula}, "", ula.Addr, "not reachable from the Internet"},
		{"tentative is unusable", []HostAddr6{tent, depr}, "", depr.Addr, "deprecated"},
		{"the interface towards the gateway", []HostAddr6{stable, wifi}, "wlan0", wifi.Addr, "wlan0"},
		{"flags unknown", []HostAddr6{{Addr: a6("2001:db8::9"), Iface: "en0"}}, "", a6("2001:db8::9"), "unknown"},
	}
	for _, tc := range tests {
		got, why, err := ChooseAddr6(tc.addrs, tc.iface)
		if err != nil || got.Addr != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: got %v (%q, %v), want %v (%q)", tc.name, got.Addr, why, err, tc.want, tc.why)
		}
	}
	if _, _, err := ChooseAddr6([]HostAddr6{ll, tent, {Addr: a6("::1")}}, ""); err == nil || !strings.Contains(err.Error(), "no global IPv6 address") {
		t.Errorf("no usable address: %v", err)
	}
}

func TestOwnAddr6(t *testing.T) {
	addrs := []HostAddr6{{Addr: a6("2001:db8:77::2"), Iface: "eth0"}, {Addr: a6("2001:db8:77::4"), Tentative: true}}
	if h, err := OwnAddr6(addrs, a6("2001:db8:77:0:0:0:0:2")); err != nil || h.Iface != "eth0" {
		t.Errorf("own address spelled long: %v, %v", h, err)
	}
	if _, err := OwnAddr6(addrs, a6("2001:db8:77::99")); err == nil || !strings.Contains(err.Error(), "not an address of this host") {
		t.Errorf("another host's address: %v", err)
	}
	if _, err := OwnAddr6(addrs, a6("2001:db8:77::4")); err == nil || !strings.Contains(err.Error(), "duplicate address detection") {
		t.Errorf("tentative address: %v", err)
	}
}

func TestParseIPv6Routes(t *testing.T) {
	const table = `20010db8007700000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
`
	gw, err := ParseIPv6Routes([]byte(table))
	if err != nil || gw != a6("fe80::1%eth0") {
		t.Errorf("ParseIPv6Routes = %v, %v; want fe80::1%%eth0", gw, err)
	}
	global := strings.Replace(table, "fe800000000000000000000000000001", "20010db8007700000000000000000001", 1)
	if gw, err := ParseIPv6Routes([]byte(global)); err != nil || gw != a6("2001:db8:77::1") {
		t.Errorf("global next hop: %v, %v", gw, err)
	}
	if _, err := ParseIPv6Routes([]byte(strings.SplitN(table, "\n", 2)[0])); err == nil {
		t.Error("a table without a default route gave a gateway")
	}
	for _, junk := range []string{"", "x y z", strings.Repeat("0", 32) + " 00 a b zz c d e f g"} {
		if _, err := ParseIPv6Routes([]byte(junk)); err == nil {
			t.Errorf("junk %q gave a gateway", junk)
		}
	}
}

func FuzzParseIPv6Routes(f *testing.F) {
	f.Add([]byte("00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gw, err := ParseIPv6Routes(b)
		if err == nil && (!gw.Is6() || gw.IsUnspecified()) {
			t.Fatalf("gateway %v", gw)
		}
	})
}

func TestPinholeLease(t *testing.T) {
	for _, tc := range []struct {
		method Method
		asked  time.Duration
		want   time.Duration
		note   bool
	}{
		{UPnP, 0, DefaultPinholeLease, false},
		{UPnP, 10 * time.Minute, 10 * time.Minute, false},
		{UPnP, 48 * time.Hour, 24 * time.Hour, true},
		{UPnP, 300 * time.Millisecond, time.Second, false},
		{PCP, 48 * time.Hour, 48 * time.Hour, false}, // the server clamps, and says so in its answer
	} {
		got, note := pinholeLease(tc.method, tc.asked)
		if got != tc.want || (note != "") != tc.note {
			t.Errorf("pinholeLease(%s, %v) = %v, %q", tc.method, tc.asked, got, note)
		}
	}
}

// A pinhole is a Mapping with Family IPv6 and an ID, and no translation.
func TestPinholeRecordMapping(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := PinholeRecord{Method: UPnP, ID: "7", Protocol: TCP, InternalClient: a6("2001:db8:77::2"), InternalPort: 8080,
		RemoteHost: a6("2001:db8:113::2"), RemotePort: 4000, Expires: now.Add(90 * time.Second)}
	m := r.Mapping(now)
	if m.Family != IPv6 || m.ID != "7" || m.ExternalAddr != r.InternalClient || m.ExternalPort != 8080 || m.InternalClient != "2001:db8:77::2" ||
		m.RemoteHost != "2001:db8:113::2" || m.RemotePort != 4000 || m.Lease != 90*time.Second || !m.Enabled {
		t.Errorf("Mapping = %+v", m)
	}
	if m := r.Mapping(now.Add(time.Hour)); m.Lease != 0 {
		t.Errorf("an expired pinhole's lease = %v", m.Lease)
	}
}

// Pinholes are kept in the state directory beside the port mappings, and
// an older portfwd that reads the file ignores them.
func TestPinholeRecordsPersist(t *testing.T) {
	dir := t.TempDir()
	p := &Pinholer{method: UPnP, controlURL: "http://[2001:db8:77::1]:5000/ctl/IP6FCtl", st: newStore(dir, nil)}
	rec := PinholeRecord{Method: UPnP, Gateway: p.Addr(), ID: "3", Protocol: UDP, InternalClient: a6("2001:db8:77::2"), InternalPort: 5000,
		Made: time.Now(), Expires: time.Now().Add(time.Hour)}
	if _, err := p.put(rec); err != nil {
		t.Fatal(err)
	}
	if got, ok := p.sameTuple(PinholeRecord{Method: UPnP, Protocol: UDP, InternalClient: rec.InternalClient, InternalPort: 5000}); !ok || got.ID != "3" {
		t.Errorf("sameTuple = %+v, %v", got, ok)
	}
	m, err := p.Find(UDP, 5000, netip.Addr{})
	if err != nil || m.ID != "3" {
		t.Errorf("Find = %+v, %v", m, err)
	}
	if _, err := p.Find(TCP, 5000, netip.Addr{}); err == nil {
		t.Error("Find of another protocol succeeded")
	}
	recs, err := RememberedPinholes(dir)
	if err != nil || len(recs) != 1 || recs[0].ID != "3" {
		t.Errorf("RememberedPinholes = %+v, %v", recs, err)
	}
	// A renewal that got a new ID replaces the record.
	rec2 := rec
	rec2.ID = "4"
	if _, err := p.update("3", rec2); err != nil {
		t.Fatal(err)
	}
	if recs, _ := RememberedPinholes(dir); len(recs) != 1 || recs[0].ID != "4" {
		t.Errorf("after the ID changed: %+v", recs)
	}
	if err := p.Adopt("not-a-number"); err == nil {
		t.Error("Adopt accepted a non-numeric UPnP ID")
	}
}

// A link-local LOCATION gets the zone of the interface the answer came in
// on (RFC 6874's %25 in a URL): the device cannot know it.
func TestZoneLocation(t *testing.T) {
	for _, tc := range []struct{ loc, iface, want string }{
		{"http://[fe80::1]:5000/rootDesc.xml", "eth0", "http://[fe80::1%25eth0]:5000/rootDesc.xml"},
		{"http://[fe80::1%25wlan0]:5000/rootDesc.xml", "eth0", "http://[fe80::1%25wlan0]:5000/rootDesc.xml"},
		{"http://[2001:db8:77::1]:5000/rootDesc.xml", "eth0", "http://[2001:db8:77::1]:5000/rootDesc.xml"},
		{"http://[fe80::1]:5000/rootDesc.xml", "", "http://[fe80::1]:5000/rootDesc.xml"},
	} {
		if got := zoneLocation(ssdp.Response{Location: tc.loc, Interface: tc.iface}); got != tc.want {
			t.Errorf("zoneLocation(%q, %q) = %q, want %q", tc.loc, tc.iface, got, tc.want)
		}
	}
}

func TestGrantedNote(t *testing.T) {
	if n := grantedNote(10*time.Second, 2*time.Minute); n != "the router granted a lease of 2m0s instead of 10s" {
		t.Errorf("note %q", n)
	}
	if n := grantedNote(time.Hour, time.Hour); n != "" {
		t.Errorf("note %q for the lease asked", n)
	}
}
