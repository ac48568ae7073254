package netroute

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureRoutes is the table in testdata/route_le.txt and route_be.txt.
var fixtureRoutes = []Route{
	{Iface: "wlan0", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.168.1.1"), Flags: FlagUp | FlagGateway, Metric: 600},
	{Iface: "eth0", Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.77.0.1"), Flags: FlagUp | FlagGateway, Metric: 100},
	{Iface: "eth0", Dst: netip.MustParsePrefix("10.77.0.0/24"), Gateway: netip.IPv4Unspecified(), Flags: FlagUp, Metric: 100},
	{Iface: "wlan0", Dst: netip.MustParsePrefix("192.168.1.0/24"), Gateway: netip.IPv4Unspecified(), Flags: FlagUp, Metric: 600, MTU: 1500},
	{Iface: "docker0", Dst: netip.MustParsePrefix("172.17.0.0/16"), Gateway: netip.IPv4Unspecified(), Flags: FlagUp},
	{Iface: "eth0", Dst: netip.MustParsePrefix("203.0.113.7/32"), Gateway: netip.MustParseAddr("10.77.0.1"), Flags: FlagUp | FlagGateway | FlagHost, Metric: 100},
	{Iface: "lo", Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.IPv4Unspecified(), Flags: FlagUp | FlagReject},
}

func TestParseProcNetRouteByteOrders(t *testing.T) {
	for _, tt := range []struct {
		file  string
		order binary.ByteOrder
	}{
		{"route_le.txt", binary.LittleEndian},
		{"route_be.txt", binary.BigEndian},
	} {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseProcNetRoute(readFixture(t, tt.file), tt.order)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(fixtureRoutes) {
				t.Fatalf("%d routes, want %d: %+v", len(got), len(fixtureRoutes), got)
			}
			for i := range got {
				if got[i] != fixtureRoutes[i] {
					t.Errorf("route %d = %+v, want %+v", i, got[i], fixtureRoutes[i])
				}
			}
		})
	}
}

func TestParseProcNetRouteKernelSample(t *testing.T) {
	routes, err := parseProcNetRoute(readFixture(t, "route_kernel_sample.txt"), binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	gw, ifname, err := DefaultGatewayFrom(routes)
	if err != nil || gw != netip.MustParseAddr("192.0.2.1") || ifname != "eth0" {
		t.Errorf("DefaultGatewayFrom = %v, %q, %v; want 192.0.2.1 on eth0", gw, ifname, err)
	}
	if len(routes) != 2 || routes[1].Dst != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("routes = %+v", routes)
	}
}

func TestParseProcNetRouteNative(t *testing.T) {
	// ParseProcNetRoute reads the file in this machine's byte order.
	le := binary.NativeEndian.Uint16([]byte{1, 0}) == 1
	file := map[bool]string{true: "route_le.txt", false: "route_be.txt"}[le]
	got, err := ParseProcNetRoute(readFixture(t, file))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != fixtureRoutes[0] {
		t.Errorf("ParseProcNetRoute(%s)[0] = %+v, want %+v", file, got, fixtureRoutes[0])
	}
}

func TestParseProcNetRouteErrors(t *testing.T) {
	const hdr = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "empty"},
		{"header without Mask", "Iface\tDestination\tGateway\tFlags\tMetric\tMTU\n", "no Mask column"},
		{"bad destination", hdr + "eth0\tXYZ00000\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "Destination"},
		{"short address", hdr + "eth0\t0000\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "8 hex digits"},
		{"holes in the mask", hdr + "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0\n", "not contiguous"},
		{"missing fields", hdr + "eth0\t000200C0\t00000000\t0001\n", "line 2"},
		{"bad metric", hdr + "eth0\t000200C0\t00000000\t0001\t0\t0\t-1\t00FFFFFF\t0\t0\t0\n", "Metric"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseProcNetRoute([]byte(tt.data), binary.LittleEndian)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	// Blank lines are not errors.
	if r, err := parseProcNetRoute([]byte(hdr+"\n\n"), binary.LittleEndian); err != nil || len(r) != 0 {
		t.Errorf("header and blank lines: %v, %v", r, err)
	}
}

func TestDefaultGatewayFrom(t *testing.T) {
	def := func(ifname, gw string, metric uint32, flags uint16) Route {
		return Route{Iface: ifname, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr(gw), Flags: flags, Metric: metric}
	}
	tests := []struct {
		name    string
		routes  []Route
		wantGW  string
		wantIf  string
		wantErr error
	}{
		{"fixture: lowest metric wins", fixtureRoutes, "10.77.0.1", "eth0", nil},
		{"tie: first listed", []Route{def("a", "10.0.0.1", 5, 3), def("b", "10.0.0.2", 5, 3)}, "10.0.0.1", "a", nil},
		{"down route skipped", []Route{def("a", "10.0.0.1", 0, FlagGateway), def("b", "10.0.0.2", 9, 3)}, "10.0.0.2", "b", nil},
		{"reject route skipped", []Route{def("a", "10.0.0.1", 0, 3|FlagReject), def("b", "10.0.0.2", 9, 3)}, "10.0.0.2", "b", nil},
		{"no gateway address skipped", []Route{def("ppp0", "0.0.0.0", 0, 3)}, "", "", ErrNoDefaultRoute},
		{"only on-link routes", fixtureRoutes[2:], "", "", ErrNoDefaultRoute},
		{"empty table", nil, "", "", ErrNoDefaultRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw, ifname, err := DefaultGatewayFrom(tt.routes)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if gw != netip.MustParseAddr(tt.wantGW) || ifname != tt.wantIf {
				t.Errorf("DefaultGatewayFrom = %v %q, want %s %q", gw, ifname, tt.wantGW, tt.wantIf)
			}
		})
	}
}

// TestThisHostsRouteTable parses the real /proc/net/route, which checks the
// parser against whatever this kernel prints. It reads kernel state only.
func TestThisHostsRouteTable(t *testing.T) {
	if runtime.GOOS != "linux" {
		_, _, err := DefaultGateway()
		if err == nil || !strings.Contains(err.Error(), "give the gateway address explicitly") {
			t.Errorf("DefaultGateway on %s: %v, want an error asking for the address", runtime.GOOS, err)
		}
		return
	}
	data, err := os.ReadFile(procNetRoute)
	if err != nil {
		testenv.Missing(t, "cannot read %s: %v", procNetRoute, err)
	}
	if _, err := ParseProcNetRoute(data); err != nil {
		t.Fatalf("this host's route table does not parse: %v", err)
	}
	gw, ifname, err := DefaultGateway()
	if err != nil && !errors.Is(err, ErrNoDefaultRoute) {
		t.Fatal(err)
	}
	if err == nil && (!gw.Is4() || ifname == "") {
		t.Errorf("DefaultGateway = %v, %q", gw, ifname)
	}
}

func TestIPv4Prefixes(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.IPv4(192, 168, 1, 10).To4(), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.IPv4(10, 0, 0, 2), Mask: net.CIDRMask(120, 128)}, // 16-byte forms
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPNet{IP: net.IPv4(10, 1, 1, 1).To4(), Mask: net.IPMask{255, 0, 255, 0}}, // not a prefix
		&net.IPAddr{IP: net.IPv4(10, 9, 9, 9)},
	}
	got := ipv4Prefixes(addrs)
	want := []netip.Prefix{netip.MustParsePrefix("192.168.1.10/24"), netip.MustParsePrefix("10.0.0.2/24")}
	if len(got) != len(want) {
		t.Fatalf("ipv4Prefixes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ipv4Prefixes[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestUsableForMulticast(t *testing.T) {
	tests := []struct {
		flags net.Flags
		want  bool
	}{
		{net.FlagUp | net.FlagBroadcast | net.FlagMulticast | net.FlagRunning, true},
		{net.FlagBroadcast | net.FlagMulticast, false},             // down
		{net.FlagUp | net.FlagLoopback | net.FlagMulticast, false}, // loopback
		{net.FlagUp | net.FlagBroadcast, false},                    // no multicast
		{net.FlagUp | net.FlagPointToPoint | net.FlagMulticast, false},
	}
	for _, tt := range tests {
		if got := usableForMulticast(tt.flags); got != tt.want {
			t.Errorf("usableForMulticast(%v) = %v, want %v", tt.flags, got, tt.want)
		}
	}
}

func TestLocalAddrIn(t *testing.T) {
	ifs := []Interface{
		{Name: "eth0", Index: 2, Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/8")}},
		{Name: "wlan0", Index: 3, Addrs: []netip.Prefix{netip.MustParsePrefix("10.77.0.2/24"), netip.MustParsePrefix("192.168.1.20/24")}},
	}
	tests := []struct {
		gw, wantAddr, wantIf string
	}{
		{"10.77.0.1", "10.77.0.2", "wlan0"}, // the more specific subnet
		{"10.1.2.3", "10.0.0.5", "eth0"},
		{"192.168.1.1", "192.168.1.20", "wlan0"},
		{"::ffff:192.168.1.1", "192.168.1.20", "wlan0"},
		{"172.16.0.1", "", ""},
		{"10.77.0.2", "10.0.0.5", "eth0"}, // our own address on wlan0 is no gateway there
	}
	for _, tt := range tests {
		addr, ifi, err := localAddrIn(ifs, netip.MustParseAddr(tt.gw))
		if tt.wantAddr == "" {
			if !errors.Is(err, ErrNotOnLink) {
				t.Errorf("localAddrIn(%s) = %v, %v; want ErrNotOnLink", tt.gw, addr, err)
			}
			continue
		}
		if err != nil || addr != netip.MustParseAddr(tt.wantAddr) || ifi.Name != tt.wantIf {
			t.Errorf("localAddrIn(%s) = %v on %q, %v; want %s on %s", tt.gw, addr, ifi.Name, err, tt.wantAddr, tt.wantIf)
		}
	}
}

func TestInterfaceAddrsLoopback(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the loopback interface is called lo on Linux only")
	}
	got, err := InterfaceAddrs("lo")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range got {
		found = found || p == netip.MustParsePrefix("127.0.0.1/8")
	}
	if !found {
		t.Errorf("InterfaceAddrs(lo) = %v, want 127.0.0.1/8 among them", got)
	}
	if _, err := InterfaceAddrs("no-such-if0"); err == nil {
		t.Error("InterfaceAddrs of a missing interface succeeded")
	}
	ifs, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Name == "lo" || len(ifi.Addrs) == 0 {
			t.Errorf("Interfaces() lists %+v", ifi)
		}
	}
	addr, ifi, err := LocalAddrFor(netip.MustParseAddr("127.0.0.9"))
	if err != nil || addr != netip.MustParseAddr("127.0.0.1") || ifi.Name != "lo" {
		t.Errorf("LocalAddrFor(127.0.0.9) = %v on %q, %v", addr, ifi.Name, err)
	}
}

func TestIsLocalAddr(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil || len(addrs) == 0 {
		t.Skipf("this namespace lists no interface addresses (%v)", err)
	}
	own := netip.MustParsePrefix(addrs[0].String()).Addr()
	if !IsLocalAddr(own) {
		t.Errorf("IsLocalAddr(%v) = false for an address of this host's interfaces", own)
	}
	if own.Is4() && !IsLocalAddr(netip.AddrFrom16(own.As16())) {
		t.Errorf("IsLocalAddr does not unmap the IPv4-mapped form of %v", own)
	}
	if a := netip.MustParseAddr("192.0.2.254"); IsLocalAddr(a) {
		t.Errorf("IsLocalAddr(%v) = true for a documentation address no interface here has", a)
	}
}
