package natpmp

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portfwd/portfwd/internal/testenv"
)

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
			pkts = append(pkts, capturedPacket{title: title, response: strings.HasPrefix(title, "response")})
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

// tsharkPacket is Wireshark's decoding of one NAT-PMP packet: its field names
// mapped to their values (the number in parentheses for enumerations).
type tsharkPacket map[string]string

var tsharkEnum = regexp.MustCompile(`\((\d+)\)$`)

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
		case strings.HasPrefix(line, "NAT Port Mapping Protocol"):
			pkts = append(pkts, tsharkPacket{})
			in = true
		case in && strings.HasPrefix(line, "    "):
			k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
			if !ok {
				t.Fatalf("%s: cannot read %q", path, line)
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
	s, ok := p[key]
	if !ok {
		t.Fatalf("tshark decoding has no %q: %v", key, p)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("tshark %q = %q: %v", key, s, err)
	}
	return n
}

// TestGoldenCapture decodes the natpmpc <-> miniupnpd exchange captured in
// the natlab and checks every field against Wireshark's decoding of the same
// packets, then checks that encoding the result gives back the wire bytes.
func TestGoldenCapture(t *testing.T) {
	pkts := readHexCapture(t, filepath.Join("testdata", "natpmp_exchange.hex"))
	decoded := readTshark(t, filepath.Join("testdata", "natpmp_tshark.txt"))
	if len(pkts) == 0 || len(pkts) != len(decoded) {
		t.Fatalf("%d captured packets but %d tshark decodings", len(pkts), len(decoded))
	}
	for i, p := range pkts {
		ts := decoded[i]
		t.Run(fmt.Sprintf("%d %s", i, p.title), func(t *testing.T) {
			if got := ts.num(t, "Version"); got != uint64(p.payload[0]) {
				t.Fatalf("tshark version %d, wire byte %d: fixtures out of step", got, p.payload[0])
			}
			wireOp := ts.num(t, "Opcode")
			if p.response != (wireOp >= 128) {
				t.Fatalf("hex title %q but tshark opcode %d", p.title, wireOp)
			}
			if !p.response {
				r, err := ParseRequest(p.payload)
				if err != nil {
					t.Fatalf("ParseRequest(% x): %v", p.payload, err)
				}
				want := Request{Op: Opcode(wireOp)}
				if want.Op.isMap() {
					want.InternalPort = uint16(ts.num(t, "Internal Port"))
					want.SuggestedExternalPort = uint16(ts.num(t, "Requested External Port"))
					want.Lifetime = uint32(ts.num(t, "Requested Port Mapping Lifetime"))
				}
				if r != want {
					t.Errorf("ParseRequest(% x) = %+v, tshark says %+v", p.payload, r, want)
				}
				if b := AppendRequest(nil, r); !bytes.Equal(b, p.payload) {
					t.Errorf("AppendRequest(%+v) = % x, captured % x", r, b, p.payload)
				}
				return
			}
			r, err := ParseResponse(p.payload)
			if err != nil {
				t.Fatalf("ParseResponse(% x): %v", p.payload, err)
			}
			want := Response{
				Op:     Opcode(wireOp - 128),
				Result: ResultCode(ts.num(t, "Result Code")),
				Epoch:  uint32(ts.num(t, "Seconds Since Start of Epoch")),
			}
			if want.Op == OpExternalAddress {
				want.ExternalAddr = netip.MustParseAddr(ts["External IP Address"])
			} else {
				want.InternalPort = uint16(ts.num(t, "Internal Port"))
				want.ExternalPort = uint16(ts.num(t, "Mapped External Port"))
				want.Lifetime = uint32(ts.num(t, "Port Mapping Lifetime"))
			}
			if r != want {
				t.Errorf("ParseResponse(% x) = %+v, tshark says %+v", p.payload, r, want)
			}
			if b := AppendResponse(nil, r); !bytes.Equal(b, p.payload) {
				t.Errorf("AppendResponse(%+v) = % x, captured % x", r, b, p.payload)
			}
		})
	}
}

// TestFixturesMatchShared guards against testdata drifting from the lab's
// captures it was copied from.
func TestFixturesMatchShared(t *testing.T) {
	shared := testenv.Shared(t, "natlab", "captures")
	want, err := os.ReadFile(filepath.Join(shared, "natpmp_exchange.hex"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("testdata", "natpmp_exchange.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("testdata/natpmp_exchange.hex differs from %s: copy it again", shared)
	}
	sharedTshark := readTshark(t, filepath.Join(shared, "natpmp_pcp_decoded_tshark.txt"))
	localTshark := readTshark(t, filepath.Join("testdata", "natpmp_tshark.txt"))
	if fmt.Sprint(sharedTshark) != fmt.Sprint(localTshark) {
		t.Errorf("testdata/natpmp_tshark.txt no longer matches the NAT-PMP frames of %s", shared)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"external address", Request{Op: OpExternalAddress, InternalPort: 1, Lifetime: 9}, "00 00"},
		{"map UDP", Request{Op: OpMapUDP, InternalPort: 0x1234, SuggestedExternalPort: 0xabcd, Lifetime: 0x01020304}, "00 01 0000 1234 abcd 01020304"},
		{"map TCP delete", Request{Op: OpMapTCP, InternalPort: 19000}, "00 02 0000 4a38 0000 00000000"},
		{"delete all", Request{Op: OpMapTCP}, "00 02 0000 0000 0000 00000000"},
		{"unknown opcode", Request{Op: 7, InternalPort: 5}, "00 07"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xff}
			got := AppendRequest(prefix, tt.req)
			want := append([]byte{0xff}, mustHex(t, tt.want)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendRequest(%+v) = % x, want % x", tt.req, got, want)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Request
		wantErr error
	}{
		{"external address", "00 00", Request{Op: OpExternalAddress}, nil},
		{"external address with trailing bytes", "00 00 ffff", Request{Op: OpExternalAddress}, nil},
		{"map TCP", "00 02 0000 4a38 2328 00000e10", Request{Op: OpMapTCP, InternalPort: 19000, SuggestedExternalPort: 9000, Lifetime: 3600}, nil},
		{"reserved field ignored", "00 01 ffff 0050 0051 00000001", Request{Op: OpMapUDP, InternalPort: 80, SuggestedExternalPort: 81, Lifetime: 1}, nil},
		{"delete all", "00 01 0000 0000 0000 00000000", Request{Op: OpMapUDP}, nil},
		{"empty", "", Request{}, ErrShortPacket},
		{"one byte", "00", Request{}, ErrShortPacket},
		{"map one byte short", "00 02 0000 4a38 2328 00000e", Request{}, ErrShortPacket},
		{"version 1", "01 00", Request{Op: OpExternalAddress}, ErrUnsupportedVersion},
		{"PCP MAP request", "02 01 0000 00000258" + strings.Repeat("00", 16), Request{Op: 1}, ErrUnsupportedVersion},
		{"unknown opcode", "00 03", Request{Op: 3}, ErrUnsupportedOpcode},
		{"opcode 127", "00 7f 0000", Request{Op: 127}, ErrUnsupportedOpcode},
		{"a response", "00 80 0000 00000854 cb007101", Request{}, ErrNotRequest},
		{"a response with another version", "02 81 0000", Request{}, ErrNotRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(mustHex(t, tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("ParseRequest(%s) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseRequest(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name string
		resp Response
		want string
	}{
		{"external address", Response{Op: OpExternalAddress, Epoch: 2132, ExternalAddr: netip.MustParseAddr("203.0.113.1")}, "00 80 0000 00000854 cb007101"},
		{"IPv4-mapped address is sent as IPv4", Response{Op: OpExternalAddress, ExternalAddr: netip.MustParseAddr("::ffff:198.51.100.7")}, "00 80 0000 00000000 c6336407"},
		{"IPv6 address is sent as 0.0.0.0", Response{Op: OpExternalAddress, ExternalAddr: netip.MustParseAddr("2001:db8::1")}, "00 80 0000 00000000 00000000"},
		{"missing address", Response{Op: OpExternalAddress, Result: NetworkFailure, Epoch: 1}, "00 80 0003 00000001 00000000"},
		{"map TCP", Response{Op: OpMapTCP, Epoch: 2132, InternalPort: 19000, ExternalPort: 9000, Lifetime: 3600}, "00 82 0000 00000854 4a38 2328 00000e10"},
		{"map UDP refused", Response{Op: OpMapUDP, Result: NotAuthorized, Epoch: 7, InternalPort: 53}, "00 81 0002 00000007 0035 0000 00000000"},
		{"unsupported version is the header only", Response{Op: OpMapTCP, Result: UnsupportedVersion, Epoch: 9, InternalPort: 1}, "00 82 0001 00000009"},
		{"unknown opcode is the header only", Response{Op: 9, Result: UnsupportedOpcode, Epoch: 9}, "00 89 0005 00000009"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendResponse([]byte{0xee}, tt.resp)
			want := append([]byte{0xee}, mustHex(t, tt.want)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendResponse(%+v) = % x, want % x", tt.resp, got, want)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Response
		wantErr error
	}{
		{"external address", "00 80 0000 00000854 cb007101", Response{Op: OpExternalAddress, Epoch: 2132, ExternalAddr: netip.MustParseAddr("203.0.113.1")}, nil},
		{"external address with trailing bytes", "00 80 0000 00000001 0a000001 ff", Response{Op: OpExternalAddress, Epoch: 1, ExternalAddr: netip.MustParseAddr("10.0.0.1")}, nil},
		{"address ignored on error", "00 80 0003 00000005 01020304", Response{Op: OpExternalAddress, Result: NetworkFailure, Epoch: 5}, nil},
		{"map UDP", "00 81 0000 00000002 1f90 1f91 00001c20", Response{Op: OpMapUDP, Epoch: 2, InternalPort: 8080, ExternalPort: 8081, Lifetime: 7200}, nil},
		{"map refused keeps the internal port", "00 82 0002 00000002 1f90 0000 00000000", Response{Op: OpMapTCP, Result: NotAuthorized, Epoch: 2, InternalPort: 8080}, nil},
		{"unsupported version, opcode 128 (erratum 3618)", "00 80 0001 00000010", Response{Op: OpExternalAddress, Result: UnsupportedVersion, Epoch: 16}, nil},
		{"unsupported version, opcode 0 (RFC figure)", "00 00 0001 00000010", Response{Op: OpExternalAddress, Result: UnsupportedVersion, Epoch: 16}, nil},
		{"unsupported version echoing the opcode (miniupnpd)", "00 82 0001 00000010", Response{Op: OpMapTCP, Result: UnsupportedVersion, Epoch: 16}, nil},
		{"error reply cut after the header", "00 82 0004 00000003", Response{Op: OpMapTCP, Result: OutOfResources, Epoch: 3}, nil},
		{"unsupported opcode echo", "00 85 0005 00000003 abcd", Response{Op: 5, Result: UnsupportedOpcode, Epoch: 3}, nil},
		{"unknown result code", "00 80 0063 00000003", Response{Op: OpExternalAddress, Result: 99, Epoch: 3}, nil},
		{"successful address reply cut short", "00 80 0000 00000854 cb00", Response{}, ErrShortPacket},
		{"successful map reply cut short", "00 81 0000 00000854 1f90 1f91 0000", Response{}, ErrShortPacket},
		{"header cut short", "00 80 0000 000008", Response{}, ErrShortPacket},
		{"empty", "", Response{}, ErrShortPacket},
		{"a map request", "00 02 0000 4a38 2328 00000e10", Response{}, ErrNotResponse},
		{"PCP reply", "02 81 0001 00000258 00000854" + strings.Repeat("00", 12), Response{}, ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(mustHex(t, tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("ParseResponse(%s) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseResponse(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestResultErrorMessages(t *testing.T) {
	// Each code gets its own advice; the number is always there for
	// searching the RFC or the router's documentation.
	seen := map[string]ResultCode{}
	for _, code := range []ResultCode{UnsupportedVersion, NotAuthorized, NetworkFailure, OutOfResources, UnsupportedOpcode, 6, 1000} {
		err := error(&ResultError{Op: OpMapTCP, Code: code})
		msg := err.Error()
		if want := fmt.Sprintf("(result %d)", code); !strings.HasSuffix(msg, want) {
			t.Errorf("code %d: %q does not end with %q", code, msg, want)
		}
		if !strings.HasPrefix(msg, "natpmp: map TCP: ") {
			t.Errorf("code %d: %q does not name the request", code, msg)
		}
		advice := strings.TrimSuffix(msg, fmt.Sprintf("(result %d)", code))
		if other, dup := seen[advice]; dup && code < 6 {
			t.Errorf("codes %d and %d share the message %q", other, code, advice)
		}
		seen[advice] = code
		var re *ResultError
		if !errors.As(fmt.Errorf("wrapped: %w", err), &re) || re.Code != code {
			t.Errorf("errors.As through wrapping lost code %d", code)
		}
	}
	for code, want := range map[ResultCode]string{
		NotAuthorized:  "NAT-PMP is disabled or this host is not allowed to map ports",
		NetworkFailure: "no external address yet (not connected?)",
	} {
		if msg := (&ResultError{Code: code}).Error(); !strings.Contains(msg, want) {
			t.Errorf("code %d: %q does not say %q", code, msg, want)
		}
	}
}

func TestStringers(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{UDP.String(), "UDP"}, {TCP.String(), "TCP"}, {Protocol(6).String(), "protocol(6)"},
		{OpExternalAddress.String(), "external address"}, {OpMapUDP.String(), "map UDP"}, {Opcode(9).String(), "opcode 9"},
		{NotAuthorized.String(), "not authorized"}, {ResultCode(77).String(), "result 77"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
