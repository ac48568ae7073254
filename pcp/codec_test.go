package pcp

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// capturedPacket is one payload from a natlab hex dump.
type capturedPacket struct {
	title    string // the "### ..." line
	response bool
	payload  []byte
}

// readHexCapture parses the natlab hex-dump format: a "### title" line
// followed by "offset  hex bytes  |ascii|" lines.
func readHexCapture(t *testing.T, path string) []capturedPacket {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []capturedPacket
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "### "):
			title := strings.TrimPrefix(line, "### ")
			pkts = append(pkts, capturedPacket{title: title, response: strings.Contains(title, "response")})
		case strings.TrimSpace(line) == "":
		default:
			if len(pkts) == 0 {
				t.Fatalf("%s: data before the first ### title: %q", path, line)
			}
			hexPart, _, _ := strings.Cut(line, "|")
			fields := strings.Fields(hexPart)
			if len(fields) < 2 {
				t.Fatalf("%s: cannot read line %q", path, line)
			}
			for _, f := range fields[1:] { // fields[0] is the offset
				b, err := hex.DecodeString(f)
				if err != nil || len(b) != 1 {
					t.Fatalf("%s: bad byte %q in line %q", path, f, line)
				}
				pkts[len(pkts)-1].payload = append(pkts[len(pkts)-1].payload, b[0])
			}
		}
	}
	return pkts
}

// tsharkPacket is Wireshark's decoding of one PCP packet: its field names
// mapped to their values (the number in parentheses for enumerations).
type tsharkPacket map[string]string

var tsharkEnum = regexp.MustCompile(`\((\d+)\)$`)

// readTshark collects the "Port Control Protocol" sections of a tshark -V
// dump. Bit fields ("0... .... = R: Request") are keyed by their name, and
// the reserved fields, which repeat, are left out.
func readTshark(t *testing.T, path string) []tsharkPacket {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []tsharkPacket
	in := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Port Control Protocol"):
			pkts = append(pkts, tsharkPacket{})
			in = true
		case in && strings.HasPrefix(line, "    "):
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			if !ok {
				continue // "Map Request", a heading
			}
			if _, name, bits := strings.Cut(k, " = "); bits {
				k = name
			}
			if k == "Reserved" {
				continue
			}
			if m := tsharkEnum.FindStringSubmatch(v); m != nil {
				v = m[1]
			}
			pkts[len(pkts)-1][k] = v
		default:
			in = false
		}
	}
	return pkts
}

func (p tsharkPacket) num(t *testing.T, key string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(p.str(t, key), 10, 32)
	if err != nil {
		t.Fatalf("tshark %q: %v", key, err)
	}
	return n
}

func (p tsharkPacket) str(t *testing.T, key string) string {
	t.Helper()
	s, ok := p[key]
	if !ok {
		t.Fatalf("tshark decoding has no %q: %v", key, p)
	}
	return s
}

func (p tsharkPacket) addr(t *testing.T, key string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(p.str(t, key))
	if err != nil {
		t.Fatalf("tshark %q: %v", key, err)
	}
	return a.Unmap()
}

func (p tsharkPacket) nonce(t *testing.T) Nonce {
	t.Helper()
	var n Nonce
	if err := n.UnmarshalText([]byte(p.str(t, "Mapping Nonce"))); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGoldenCapture decodes the exchange with miniupnpd captured in the
// natlab (a MAP, then its delete with the same nonce) and checks every
// field against Wireshark's decoding of the same packets, then checks that
// encoding the result gives back the wire bytes.
func TestGoldenCapture(t *testing.T) {
	pkts := readHexCapture(t, filepath.Join("testdata", "pcp_exchange.hex"))
	decoded := readTshark(t, filepath.Join("testdata", "pcp_tshark.txt"))
	if len(pkts) != 4 || len(decoded) != len(pkts) {
		t.Fatalf("%d captured packets and %d tshark decodings, want 4 of each", len(pkts), len(decoded))
	}
	for i, p := range pkts {
		ts := decoded[i]
		t.Run(fmt.Sprintf("%d %s", i, p.title), func(t *testing.T) {
			if got := ts.num(t, "Version"); got != uint64(p.payload[0]) {
				t.Fatalf("tshark version %d, wire byte %d: fixtures out of step", got, p.payload[0])
			}
			if want := map[bool]string{false: "Request", true: "Response"}[p.response]; ts.str(t, "R") != want {
				t.Fatalf("hex title %q but tshark R bit %q", p.title, ts["R"])
			}
			payload := MapPayload{
				Nonce:        ts.nonce(t),
				Protocol:     Protocol(ts.num(t, "Protocol")),
				InternalPort: uint16(ts.num(t, "Internal Port")),
			}
			if !p.response {
				r, err := ParseRequest(p.payload)
				if err != nil {
					t.Fatalf("ParseRequest(% x): %v", p.payload, err)
				}
				payload.ExternalPort = uint16(ts.num(t, "Suggested External Port"))
				payload.ExternalAddr = ts.addr(t, "Suggested External IP Address")
				want := Request{
					Op:         Opcode(ts.num(t, "Opcode")),
					Lifetime:   uint32(ts.num(t, "Requested Lifetime")),
					ClientAddr: ts.addr(t, "Client IP Address"),
					Map:        &payload,
				}
				if !reflect.DeepEqual(r, want) {
					t.Errorf("ParseRequest(% x) = %s, tshark says %s", p.payload, show(r), show(want))
				}
				if b, err := AppendRequest(nil, r); err != nil || !bytes.Equal(b, p.payload) {
					t.Errorf("AppendRequest(%s) = % x, %v; captured % x", show(r), b, err, p.payload)
				}
				return
			}
			r, err := ParseResponse(p.payload)
			if err != nil {
				t.Fatalf("ParseResponse(% x): %v", p.payload, err)
			}
			payload.ExternalPort = uint16(ts.num(t, "Assigned External Port"))
			payload.ExternalAddr = ts.addr(t, "Assigned External IP Address")
			want := Response{
				Op:       Opcode(ts.num(t, "Opcode")),
				Result:   ResultCode(ts.num(t, "Result Code")),
				Lifetime: uint32(ts.num(t, "Lifetime")),
				Epoch:    uint32(ts.num(t, "Epoch Time")),
				Map:      &payload,
			}
			if !reflect.DeepEqual(r, want) {
				t.Errorf("ParseResponse(% x) = %s, tshark says %s", p.payload, show(r), show(want))
			}
			if b, err := AppendResponse(nil, r); err != nil || !bytes.Equal(b, p.payload) {
				t.Errorf("AppendResponse(%s) = % x, %v; captured % x", show(r), b, err, p.payload)
			}
		})
	}
}

// TestFixturesMatchShared guards against testdata drifting from the lab's
// captures it was copied from.
func TestFixturesMatchShared(t *testing.T) {
	shared := testenv.Shared(t, "natlab", "captures")
	want, err := os.ReadFile(filepath.Join(shared, "pcp_exchange.hex"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("testdata", "pcp_exchange.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("testdata/pcp_exchange.hex differs from %s: copy it again", shared)
	}
	sharedTshark := readTshark(t, filepath.Join(shared, "natpmp_pcp_decoded_tshark.txt"))
	localTshark := readTshark(t, filepath.Join("testdata", "pcp_tshark.txt"))
	if len(localTshark) == 0 || fmt.Sprint(sharedTshark) != fmt.Sprint(localTshark) {
		t.Errorf("testdata/pcp_tshark.txt no longer matches the PCP frames of %s", shared)
	}
}

// show prints a Request or Response with its pointed-to payloads.
func show(v any) string {
	switch r := v.(type) {
	case Request:
		return fmt.Sprintf("{%s lifetime=%d client=%v map=%+v peer=%+v opts=%v}", r.Op, r.Lifetime, r.ClientAddr, deref(r.Map), deref(r.Peer), r.Options)
	case Response:
		return fmt.Sprintf("{%s %s lifetime=%d epoch=%d map=%+v peer=%+v opts=%v}", r.Op, r.Result, r.Lifetime, r.Epoch, deref(r.Map), deref(r.Peer), r.Options)
	}
	return fmt.Sprint(v)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

var (
	lanClient  = netip.MustParseAddr("10.77.0.2")
	v6Client   = netip.MustParseAddr("2001:db8::2")
	extAddr    = netip.MustParseAddr("203.0.113.1")
	testNonce  = Nonce{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	remotePeer = netip.MustParseAddr("198.51.100.7")
)

// Wire forms written out from the figures of RFC 6887 §7 and §11-13,
// independently of the encoder.
const (
	hexClient4  = "00000000000000000000ffff0a4d0002" // ::ffff:10.77.0.2
	hexAnnounce = "02 00 0000 00000000" + hexClient4
	hexMapV6    = "02 01 0000 00000e10 20010db8000000000000000000000002" +
		"0102030405060708090a0b0c 06 000000 1f90 0000 00000000000000000000000000000000"
	hexMapOptions = "02 01 0000 00000258" + hexClient4 +
		"0102030405060708090a0b0c 11 000000 4a39 4a9d 00000000000000000000ffff00000000" +
		"01 00 0010 00000000000000000000ffff0a4d0009" + // THIRD_PARTY 10.77.0.9
		"02 00 0000" + // PREFER_FAILURE
		"03 00 0014 00 18 01bb 00000000000000000000ffffc6336400" + // FILTER 198.51.100.0/24 :443
		"c8 00 0003 aabbcc 00" // an optional option unknown to all, padded
	hexPeer = "02 02 0000 00000078" + hexClient4 +
		"0102030405060708090a0b0c 06 000000 c350 0000 00000000000000000000ffff00000000" +
		"01bb 0000 00000000000000000000ffffc6336407"
)

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name string
		r    Request
		want string
	}{
		{"announce", Request{Op: OpAnnounce, ClientAddr: lanClient}, hexAnnounce},
		{"map from IPv6, no suggested address: ::", Request{
			Op: OpMap, Lifetime: 3600, ClientAddr: v6Client,
			Map: &MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 8080},
		}, hexMapV6},
		{"map from IPv4 with options, no suggested address: ::ffff:0.0.0.0", Request{
			Op: OpMap, Lifetime: 600, ClientAddr: lanClient,
			Map: &MapPayload{Nonce: testNonce, Protocol: UDP, InternalPort: 19001, ExternalPort: 19101},
			Options: []Option{
				ThirdPartyOption(netip.MustParseAddr("10.77.0.9")),
				PreferFailureOption(),
				FilterOption(Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}),
				{Code: 200, Data: []byte{0xaa, 0xbb, 0xcc}},
			},
		}, hexMapOptions},
		{"peer", Request{
			Op: OpPeer, Lifetime: 120, ClientAddr: lanClient,
			Peer: &PeerPayload{
				MapPayload: MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 50000},
				RemotePort: 443, RemoteAddr: remotePeer,
			},
		}, hexPeer},
		{"an unknown opcode is header and options", Request{
			Op: 9, ClientAddr: lanClient, Map: &MapPayload{Protocol: TCP},
			Options: []Option{{Code: 130}},
		}, "02 09 0000 00000000" + hexClient4 + "82 00 0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendRequest([]byte{0xff}, tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte{0xff}, mustHex(t, tt.want)...); !bytes.Equal(got, want) {
				t.Errorf("AppendRequest appended\n% x\nwant\n% x", got[1:], want[1:])
			}
		})
	}
}

func TestAppendRequestErrors(t *testing.T) {
	manyFilters := make([]Option, 44) // 24 + 36 + 44*24 = 1116 bytes
	for i := range manyFilters {
		manyFilters[i] = FilterOption(Filter{Prefix: netip.PrefixFrom(remotePeer, 32), Port: uint16(i)})
	}
	mapPayload := &MapPayload{Protocol: TCP, InternalPort: 80}
	tests := []struct {
		name    string
		r       Request
		wantErr error
	}{
		{"MAP without payload", Request{Op: OpMap, ClientAddr: lanClient}, nil},
		{"PEER without payload", Request{Op: OpPeer, ClientAddr: lanClient, Map: mapPayload}, nil},
		{"over 1100 bytes", Request{Op: OpMap, ClientAddr: lanClient, Map: mapPayload, Options: manyFilters}, ErrTooLong},
		{"option data over 65535 bytes", Request{Op: OpAnnounce, Options: []Option{{Code: 200, Data: make([]byte, 70000)}}}, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendRequest([]byte("keep"), tt.r)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("AppendRequest = %v, want error %v", err, tt.wantErr)
			}
			if string(got) != "keep" {
				t.Errorf("AppendRequest failed but left % x in dst", got)
			}
		})
	}
	// One filter fewer fits.
	if _, err := AppendRequest(nil, Request{Op: OpMap, ClientAddr: lanClient, Map: mapPayload, Options: manyFilters[1:]}); err != nil {
		t.Errorf("1092-byte request: %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Request
	}{
		{"announce", hexAnnounce, Request{Op: OpAnnounce, ClientAddr: lanClient}},
		{"reserved fields are ignored", "02 00 abcd 00000000" + hexClient4, Request{Op: OpAnnounce, ClientAddr: lanClient}},
		{"map from IPv6", hexMapV6, Request{
			Op: OpMap, Lifetime: 3600, ClientAddr: v6Client,
			Map: &MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 8080, ExternalAddr: netip.IPv6Unspecified()},
		}},
		{"map with options", hexMapOptions, Request{
			Op: OpMap, Lifetime: 600, ClientAddr: lanClient,
			Map: &MapPayload{Nonce: testNonce, Protocol: UDP, InternalPort: 19001, ExternalPort: 19101, ExternalAddr: netip.IPv4Unspecified()},
			Options: []Option{
				{Code: OptionThirdParty, Data: mustHex(t, "00000000000000000000ffff0a4d0009")},
				{Code: OptionPreferFailure, Data: []byte{}},
				{Code: OptionFilter, Data: mustHex(t, "00 18 01bb 00000000000000000000ffffc6336400")},
				{Code: 200, Data: []byte{0xaa, 0xbb, 0xcc}},
			},
		}},
		{"peer", hexPeer, Request{
			Op: OpPeer, Lifetime: 120, ClientAddr: lanClient,
			Peer: &PeerPayload{
				MapPayload: MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 50000, ExternalAddr: netip.IPv4Unspecified()},
				RemotePort: 443, RemoteAddr: remotePeer,
			},
		}},
		{"an unknown mandatory option is the server's affair", hexAnnounce + "32 00 0000", Request{
			Op: OpAnnounce, ClientAddr: lanClient, Options: []Option{{Code: 50, Data: []byte{}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(mustHex(t, tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseRequest =\n%s\nwant\n%s", show(got), show(tt.want))
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	mapHdr := "02 01 0000 00000258" + hexClient4 + "0102030405060708090a0b0c 11 000000 4a39 4a9d 00000000000000000000ffff00000000"
	peerHdr := hexPeer
	filter := func(prefixLen byte, addr string) string {
		return fmt.Sprintf("03 00 0014 00 %02x 0000 %s", prefixLen, addr)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrShortPacket},
		{"one byte", "02", ErrShortPacket},
		{"R bit set", "02 81" + strings.Repeat("00", 58), ErrNotRequest},
		{"R bit set beats version", "00 80", ErrNotRequest},
		{"NAT-PMP request", "00 00", ErrUnsupportedVersion},
		{"draft version 1", "01 01 0000 00000258" + hexClient4, ErrUnsupportedVersion},
		{"version 3", "03 00 0000 00000000" + hexClient4, ErrUnsupportedVersion},
		{"shorter than the header", "02 00 0000 00000000 0000000000000000", ErrMalformedRequest},
		{"not a multiple of 4", hexAnnounce + "00 00", ErrMalformedRequest},
		{"over 1100 bytes", hexAnnounce + strings.Repeat("80 00 0000", 270), ErrMalformedRequest},
		{"unknown opcode", "02 05 0000 00000000" + hexClient4, ErrUnsupportedOpcode},
		{"opcode 127", "02 7f 0000 00000000" + hexClient4, ErrUnsupportedOpcode},
		{"MAP without payload", "02 01 0000 00000258" + hexClient4, ErrMalformedRequest},
		{"MAP payload cut short", "02 01 0000 00000258" + hexClient4 + strings.Repeat("00", 32), ErrMalformedRequest},
		{"PEER with a MAP-sized payload", "02 02 0000 00000258" + hexClient4 + strings.Repeat("00", 36), ErrMalformedRequest},
		{"option longer than the packet", mapHdr + "80 00 0010 00000000", ErrMalformedOption},
		{"THIRD_PARTY of 12 bytes", mapHdr + "01 00 000c 000000000000000000000000", ErrMalformedOption},
		{"THIRD_PARTY twice", mapHdr + "01 00 0010 00000000000000000000ffff0a4d0009 01 00 0010 00000000000000000000ffff0a4d0009", ErrMalformedOption},
		{"THIRD_PARTY with ANNOUNCE", hexAnnounce + "01 00 0010 00000000000000000000ffff0a4d0009", ErrMalformedOption},
		{"PREFER_FAILURE with data", mapHdr + "02 00 0004 00000000", ErrMalformedOption},
		{"PREFER_FAILURE twice", mapHdr + "02 00 0000 02 00 0000", ErrMalformedOption},
		{"PREFER_FAILURE with PEER", peerHdr + "02 00 0000", ErrMalformedOption},
		{"FILTER of 16 bytes", mapHdr + "03 00 0010 00000000000000000000ffff0a4d0009", ErrMalformedOption},
		{"FILTER with PEER", peerHdr + filter(24, "00000000000000000000ffffc6336400"), ErrMalformedOption},
		{"FILTER /33 on IPv4", mapHdr + filter(33, "00000000000000000000ffffc6336400"), ErrMalformedOption},
		{"FILTER /129 on IPv6", mapHdr + filter(129, "20010db8000000000000000000000000"), ErrMalformedOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest(mustHex(t, tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("ParseRequest = %v, want %v", err, tt.want)
			}
		})
	}
	// The limits themselves are fine: several FILTERs, /32 and /128.
	for _, in := range []string{
		mapHdr + filter(32, "00000000000000000000ffffc6336407") + filter(0, "00000000000000000000000000000000"),
		mapHdr + filter(128, "20010db8000000000000000000000007"),
		hexAnnounce + strings.Repeat("80 00 0000", 269), // 1100 bytes
	} {
		if _, err := ParseRequest(mustHex(t, in)); err != nil {
			t.Errorf("ParseRequest(%s…): %v", in[:40], err)
		}
	}
}

// Response wire forms, written out from RFC 6887 §7.2.
const (
	hexAnnounceResp = "02 80 00 00 00000000 00000854 000000000000000000000000"
	hexMapErrHeader = "02 81 00 02 00000708 00000854 000000000000000000000000"
	hexMapResp      = "02 81 00 00 00000e10 00000854 000000000000000000000000" +
		"0102030405060708090a0b0c 06 000000 1f90 1f90 00000000000000000000ffffcb007101" +
		"02 00 0000"
	hexPeerResp = "02 82 00 00 00000078 00000854 000000000000000000000000" +
		"0102030405060708090a0b0c 06 000000 c350 c350 00000000000000000000ffffcb007101" +
		"01bb 0000 00000000000000000000ffffc6336407"
)

func TestParseResponse(t *testing.T) {
	mapped := MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 8080, ExternalPort: 8080, ExternalAddr: extAddr}
	tests := []struct {
		name      string
		in        string
		want      Response
		roundTrip bool // whether AppendResponse gives back the input
	}{
		{"announce", hexAnnounceResp, Response{Op: OpAnnounce, Epoch: 2132}, true},
		{"map success with an option", hexMapResp, Response{
			Op: OpMap, Lifetime: 3600, Epoch: 2132, Map: &mapped,
			Options: []Option{{Code: OptionPreferFailure, Data: []byte{}}},
		}, true},
		{"peer success", hexPeerResp, Response{
			Op: OpPeer, Lifetime: 120, Epoch: 2132,
			Peer: &PeerPayload{
				MapPayload: MapPayload{Nonce: testNonce, Protocol: TCP, InternalPort: 50000, ExternalPort: 50000, ExternalAddr: extAddr},
				RemotePort: 443, RemoteAddr: remotePeer,
			},
		}, true},
		{"error cut after the header", hexMapErrHeader, Response{Op: OpMap, Result: ResultNotAuthorized, Lifetime: 1800, Epoch: 2132}, true},
		{"error cut inside the payload", hexMapErrHeader + "0102030405060708", Response{Op: OpMap, Result: ResultNotAuthorized, Lifetime: 1800, Epoch: 2132}, false},
		{"error echoing broken options drops them", strings.Replace(hexMapResp, "02 81 00 00", "02 81 00 06", 1) + "80 00 0040", Response{
			Op: OpMap, Result: ResultMalformedOption, Lifetime: 3600, Epoch: 2132, Map: &mapped,
		}, false},
		{"reserved bits are ignored", "02 80 ff 00 00000000 00000854 ffffffffffffffffffffffff", Response{Op: OpAnnounce, Epoch: 2132}, false},
		{"unknown opcode: header only", "02 85 00 04 00000708 00000854 000000000000000000000000 deadbeef", Response{
			Op: 5, Result: ResultUnsuppOpcode, Lifetime: 1800, Epoch: 2132,
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mustHex(t, tt.in)
			got, err := ParseResponse(in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseResponse =\n%s\nwant\n%s", show(got), show(tt.want))
			}
			if !tt.roundTrip {
				return
			}
			if b, err := AppendResponse(nil, got); err != nil || !bytes.Equal(b, in) {
				t.Errorf("AppendResponse = % x, %v\nwant % x", b, err, in)
			}
		})
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrShortPacket},
		{"3 bytes", "02 81 00", ErrShortPacket},
		{"NAT-PMP reply", "00 80 0001 00000854", ErrUnsupportedVersion},
		{"draft version 1", "01 81 00 01 00000000 00000854 000000000000000000000000", ErrUnsupportedVersion},
		{"a request", hexAnnounce, ErrNotResponse},
		{"shorter than the header", "02 81 00 00 00000e10 00000854", ErrShortPacket},
		{"success without payload", "02 81 00 00 00000e10 00000854 000000000000000000000000", ErrMalformedResponse},
		{"success cut inside the payload", hexMapResp[:len(hexMapResp)-30], ErrMalformedResponse},
		{"success with a broken option", hexMapResp + "80 00 0040", ErrMalformedResponse},
		{"success with stray bytes after the options", hexMapResp + "00 00", ErrMalformedResponse},
		{"success with an option's padding missing", hexMapResp + "80 00 0001 00", ErrMalformedResponse},
		{"over 1100 bytes", hexAnnounceResp + strings.Repeat("80 00 0000", 270), ErrMalformedResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResponse(mustHex(t, tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("ParseResponse = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendResponse(t *testing.T) {
	if _, err := AppendResponse(nil, Response{Op: OpMap, Lifetime: 60}); err == nil {
		t.Error("AppendResponse of a successful MAP without payload succeeded")
	}
	// An unset assigned address is sent as ::.
	got, err := AppendResponse(nil, Response{Op: OpMap, Result: ResultNoResources, Map: &MapPayload{Nonce: testNonce, Protocol: UDP}})
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, "02 81 00 08 00000000 00000000 000000000000000000000000"+
		"0102030405060708090a0b0c 11 000000 0000 0000 00000000000000000000000000000000")
	if !bytes.Equal(got, want) {
		t.Errorf("AppendResponse = % x\nwant % x", got, want)
	}
}

func TestOptions(t *testing.T) {
	t.Run("THIRD_PARTY", func(t *testing.T) {
		for _, a := range []netip.Addr{lanClient, v6Client} {
			got, err := ThirdPartyOption(a).ThirdParty()
			if err != nil || got != a {
				t.Errorf("ThirdPartyOption(%v).ThirdParty() = %v, %v", a, got, err)
			}
		}
		if _, err := (Option{Code: OptionThirdParty, Data: make([]byte, 4)}).ThirdParty(); !errors.Is(err, ErrMalformedOption) {
			t.Errorf("4-byte THIRD_PARTY: %v, want ErrMalformedOption", err)
		}
		if _, err := PreferFailureOption().ThirdParty(); !errors.Is(err, ErrMalformedOption) {
			t.Errorf("PREFER_FAILURE read as THIRD_PARTY: %v, want ErrMalformedOption", err)
		}
	})
	t.Run("FILTER", func(t *testing.T) {
		tests := []struct {
			in, want Filter
		}{
			{Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}, Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 443}},
			{Filter{Prefix: netip.MustParsePrefix("2001:db8::/32")}, Filter{Prefix: netip.MustParsePrefix("2001:db8::/32")}},
			// The address is kept as sent, not masked.
			{Filter{Prefix: netip.PrefixFrom(remotePeer, 16)}, Filter{Prefix: netip.PrefixFrom(remotePeer, 16)}},
			// IPv4-mapped prefixes travel as the IPv4 prefix they are.
			{Filter{Prefix: netip.MustParsePrefix("::ffff:198.51.100.0/120")}, Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24")}},
			// The zero Filter is "no filter": ::/0.
			{Filter{}, Filter{Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 0)}},
		}
		for _, tt := range tests {
			o := FilterOption(tt.in)
			if o.Code != OptionFilter || len(o.Data) != filterLen {
				t.Fatalf("FilterOption(%+v) = %v", tt.in, o)
			}
			got, err := o.Filter()
			if err != nil || got != tt.want {
				t.Errorf("FilterOption(%+v).Filter() = %+v, %v, want %+v", tt.in, got, err, tt.want)
			}
		}
	})
	t.Run("mandatory", func(t *testing.T) {
		for c, want := range map[OptionCode]bool{0: true, OptionThirdParty: true, OptionFilter: true, 127: true, 128: false, 255: false} {
			if c.Mandatory() != want {
				t.Errorf("OptionCode(%d).Mandatory() = %v", c, !want)
			}
		}
	})
}

func TestNonceText(t *testing.T) {
	b, err := testNonce.MarshalText()
	if err != nil || string(b) != "0102030405060708090a0b0c" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	var n Nonce
	if err := n.UnmarshalText(b); err != nil || n != testNonce {
		t.Errorf("UnmarshalText(%q) = %v, %v", b, n, err)
	}
	for _, bad := range []string{"", "0102", "0102030405060708090a0b0c0d", "zz02030405060708090a0b0c"} {
		if err := n.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded", bad)
		}
	}
	if a, b := NewNonce(), NewNonce(); a == b || a.IsZero() {
		t.Errorf("NewNonce gave %v then %v", a, b)
	}
}

func TestStringers(t *testing.T) {
	for _, tt := range []struct {
		s    fmt.Stringer
		want string
	}{
		{OpAnnounce, "ANNOUNCE"}, {OpMap, "MAP"}, {OpPeer, "PEER"}, {Opcode(9), "opcode 9"},
		{TCP, "TCP"}, {UDP, "UDP"}, {AllProtocols, "all protocols"}, {Protocol(132), "protocol 132"},
		{ResultNotAuthorized, "NOT_AUTHORIZED"}, {ResultAddressMismatch, "ADDRESS_MISMATCH"}, {ResultCode(99), "result 99"},
		{OptionThirdParty, "THIRD_PARTY"}, {OptionPreferFailure, "PREFER_FAILURE"}, {OptionFilter, "FILTER"}, {OptionCode(200), "option 200"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

// TestResultErrorMessages checks that every result code has its own
// message, and that the message tells the user something to act on.
func TestResultErrorMessages(t *testing.T) {
	seen := map[string]ResultCode{}
	for c := ResultUnsuppVersion; c <= ResultExcessiveRemotePeers; c++ {
		msg := (&ResultError{Op: OpMap, Code: c, Version: Version}).Error()
		if !strings.HasPrefix(msg, "pcp: MAP: ") || !strings.Contains(msg, c.String()) {
			t.Errorf("code %d: message %q lacks the opcode or the code's name", c, msg)
		}
		advice := (&ResultError{Code: c}).advice()
		if prev, dup := seen[advice]; dup {
			t.Errorf("codes %d and %d share the advice %q", prev, c, advice)
		}
		seen[advice] = c
	}
	mismatch := (&ResultError{Op: OpMap, Code: ResultAddressMismatch}).Error()
	for _, want := range []string{"another address than the one in it", "another NAT between this host and the router"} {
		if !strings.Contains(mismatch, want) {
			t.Errorf("ADDRESS_MISMATCH message %q does not say %q", mismatch, want)
		}
	}
	for v, want := range map[uint8]string{0: "speaks NAT-PMP but not PCP", 1: "draft of PCP", 3: "answered with version 3"} {
		if msg := (&ResultError{Op: OpAnnounce, Code: ResultUnsuppVersion, Version: v}).Error(); !strings.Contains(msg, want) {
			t.Errorf("UNSUPP_VERSION from version %d: %q does not say %q", v, msg, want)
		}
	}
	if msg := (&ResultError{Code: 200}).Error(); !strings.Contains(msg, "does not define") {
		t.Errorf("unknown code: %q", msg)
	}
}

func TestShortLifetime(t *testing.T) {
	short := map[ResultCode]bool{ResultNetworkFailure: true, ResultNoResources: true, ResultUserExQuota: true, ResultCannotProvideExternal: true}
	for c := ResultSuccess; c <= ResultExcessiveRemotePeers+1; c++ {
		if c.ShortLifetime() != short[c] {
			t.Errorf("%s.ShortLifetime() = %v", c, !short[c])
		}
		if (&ResultError{Code: c}).Transient() != short[c] {
			t.Errorf("ResultError{%s}.Transient() = %v", c, !short[c])
		}
	}
}
