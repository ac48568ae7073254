package ssdp

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portfwd/portfwd/internal/version"
)

// DefaultPort is the SSDP port, both the multicast destination and the port
// a device listens on.
const DefaultPort = 1900

// DefaultGroup is the IPv4 SSDP multicast group (UDA 1.1, "SSDP").
const DefaultGroup = "239.255.255.250"

// defaultHost is the HOST header of a multicast SSDP message.
const defaultHost = DefaultGroup + ":1900"

// userAgent follows the USER-AGENT form of UDA 1.1 and 2.0: "OS/version
// UPnP/1.1 product/version".
// The OS version is not known portably, so "1" stands in for it.
const userAgent = version.Server

// Search targets (ST) and notification types (NT) a port-mapping client uses.
const (
	STAll        = "ssdp:all"
	STRootDevice = "upnp:rootdevice"

	STIGDv1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
	STIGDv2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2"

	STWANIPConnectionv1  = "urn:schemas-upnp-org:service:WANIPConnection:1"
	STWANIPConnectionv2  = "urn:schemas-upnp-org:service:WANIPConnection:2"
	STWANPPPConnectionv1 = "urn:schemas-upnp-org:service:WANPPPConnection:1"
)

// ErrByeBye is returned (wrapped) by ParseResponse for a NOTIFY ssdp:byebye:
// a valid message, but one announcing that a device has left, not where to
// find it. A cache of devices can drop the USN it names.
var ErrByeBye = errors.New("ssdp:byebye notification")

// Response is what a device tells about itself, in an answer to an M-SEARCH
// or in a NOTIFY ssdp:alive.
type Response struct {
	// Location is the absolute http URL of the root device description.
	Location string
	// ST is the search target answered; for a NOTIFY it is the NT. It
	// echoes the version searched for, not the device's: miniupnpd with an
	// InternetGatewayDevice:2 description answers a search for
	// InternetGatewayDevice:1 with ST ...:1, as UDA 1.1 asks (see
	// testdata/natlab). Read the description for the real version.
	ST string
	// USN is the unique service name, "uuid:...::<type>" or "uuid:...".
	USN string
	// Server is the SERVER header, free text (possibly empty).
	Server string
	// MaxAge is how long the advertisement stays valid; 0 when the message
	// carries no usable CACHE-CONTROL max-age.
	MaxAge time.Duration
	// BootID and ConfigID are BOOTID.UPNP.ORG and CONFIGID.UPNP.ORG (UDA 1.1);
	// 0 when absent or not a number.
	BootID, ConfigID int

	// From and Interface are not part of the message: Search sets them to
	// the sender's address and the name of the interface the answer was
	// searched for on ("" for a unicast search).
	From      netip.AddrPort
	Interface string
}

// ParseResponse parses an answer to an M-SEARCH or a NOTIFY ssdp:alive, in
// which case the NT header fills Response.ST. A NOTIFY ssdp:byebye yields an
// error wrapping ErrByeBye; an M-SEARCH, a status other than 200, a missing
// ST (or NT) and a LOCATION that is not an absolute http URL are errors.
// USN and SERVER may be missing or empty: devices in the field omit them.
func ParseResponse(b []byte) (Response, error) {
	var r Response
	m, err := ParseMessage(b)
	if err != nil {
		return r, err
	}
	switch m.Method {
	case "":
		if m.StatusCode != 200 {
			return r, fmt.Errorf("ssdp: response has status %d %s, want 200 OK", m.StatusCode, m.Reason)
		}
		r.ST = m.Get("ST")
		if r.ST == "" {
			return r, errors.New("ssdp: response has no ST header")
		}
	case MethodNotify:
		r.ST = m.Get("NT")
		if r.ST == "" {
			return r, errors.New("ssdp: NOTIFY has no NT header")
		}
		switch nts := m.Get("NTS"); {
		case strings.EqualFold(nts, NTSAlive):
		case strings.EqualFold(nts, NTSByeBye):
			return r, fmt.Errorf("ssdp: NOTIFY for %q: %w", m.Get("USN"), ErrByeBye)
		default:
			return r, fmt.Errorf("ssdp: NOTIFY with NTS %q, want %s", nts, NTSAlive)
		}
	default:
		return r, fmt.Errorf("ssdp: got an %s request, want a response or NOTIFY", m.Method)
	}
	r.Location = m.Get("LOCATION")
	if err := checkLocation(r.Location); err != nil {
		return r, err
	}
	r.USN = m.Get("USN")
	r.Server = m.Get("SERVER")
	r.MaxAge = parseMaxAge(m.Get("CACHE-CONTROL"))
	r.BootID = parseUint31(m.Get("BOOTID.UPNP.ORG"))
	r.ConfigID = parseUint31(m.Get("CONFIGID.UPNP.ORG"))
	return r, nil
}

// checkLocation requires an absolute http URL with a host: the client will
// fetch the description from it, and a relative or foreign-scheme URL would
// be resolved against nothing or sent somewhere unexpected.
func checkLocation(loc string) error {
	if loc == "" {
		return errors.New("ssdp: message has no LOCATION header")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("ssdp: LOCATION %q is not a URL: %w", loc, err)
	}
	if !strings.EqualFold(u.Scheme, "http") || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("ssdp: LOCATION %q is not an absolute http:// URL", loc)
	}
	return nil
}

// parseMaxAge reads the max-age directive of a CACHE-CONTROL value. It
// accepts blanks around "=" ("max-age = 1800", which some devices send), a
// quoted number, any case and other directives around it.
func parseMaxAge(v string) time.Duration {
	for _, d := range strings.Split(v, ",") {
		name, val, ok := strings.Cut(d, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "max-age") {
			continue
		}
		n := parseUint31(strings.Trim(strings.TrimSpace(val), `"`))
		return time.Duration(n) * time.Second
	}
	return 0
}

// parseUint31 parses the non-negative 31-bit numbers SSDP headers carry,
// returning 0 for anything else.
func parseUint31(s string) int {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 31)
	if err != nil {
		return 0
	}
	return int(n)
}

// AppendSearch appends an M-SEARCH for st to dst. host is the HOST header:
// "" means the multicast group, "239.255.255.250:1900"; a unicast search
// names its destination. mx is the MX header in seconds, left out when
// mx <= 0 (UDA 1.1 does not use MX in a unicast search, which is answered
// at once).
func AppendSearch(dst []byte, st string, mx int, host string) []byte {
	if host == "" {
		host = defaultHost
	}
	dst = append(dst, "M-SEARCH * HTTP/1.1\r\n"...)
	dst = appendHeader(dst, "HOST", host)
	dst = appendHeader(dst, "MAN", `"ssdp:discover"`)
	if mx > 0 {
		dst = appendHeader(dst, "MX", strconv.Itoa(mx))
	}
	dst = appendHeader(dst, "ST", st)
	dst = appendHeader(dst, "USER-AGENT", userAgent)
	return append(dst, '\r', '\n')
}

// ParseSearch parses an M-SEARCH and returns its search target and MX. mx is
// 0 when the request has no MX, as a unicast search may; an MX that is not a
// non-negative number is an error. A MAN other than "ssdp:discover" (quoted
// or not) is an error: UDA says such a request must not be answered. The
// caller caps mx (UDA 1.1: values above 5 count as 5).
func ParseSearch(b []byte) (st string, mx int, err error) {
	m, err := ParseMessage(b)
	if err != nil {
		return "", 0, err
	}
	if m.Method != MethodSearch {
		if m.Method == "" {
			return "", 0, errors.New("ssdp: got a response, want an M-SEARCH request")
		}
		return "", 0, fmt.Errorf("ssdp: got a %s request, want M-SEARCH", m.Method)
	}
	if m.Target != "*" {
		return "", 0, fmt.Errorf("ssdp: M-SEARCH request-URI is %q, want *", m.Target)
	}
	if man := strings.Trim(m.Get("MAN"), `"`); man != "ssdp:discover" {
		return "", 0, fmt.Errorf("ssdp: M-SEARCH has MAN %q, want \"ssdp:discover\"", m.Get("MAN"))
	}
	st = m.Get("ST")
	if st == "" {
		return "", 0, errors.New("ssdp: M-SEARCH has no ST header")
	}
	if v, ok := m.Header["MX"]; ok {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil {
			return "", 0, fmt.Errorf("ssdp: M-SEARCH has MX %q, want a number of seconds", v)
		}
		mx = int(n)
	}
	return st, mx, nil
}

// AppendResponse appends the answer to an M-SEARCH that r describes (its
// From and Interface are ignored). r.ST must be the target searched for, as
// the requester matches on it.
func AppendResponse(dst []byte, r Response) []byte {
	dst = append(dst, "HTTP/1.1 200 OK\r\n"...)
	dst = appendHeader(dst, "CACHE-CONTROL", "max-age="+strconv.Itoa(int(r.MaxAge/time.Second)))
	dst = appendHeader(dst, "EXT", "")
	dst = appendHeader(dst, "LOCATION", r.Location)
	dst = appendHeader(dst, "SERVER", r.Server)
	dst = appendHeader(dst, "ST", r.ST)
	dst = appendHeader(dst, "USN", r.USN)
	dst = appendHeader(dst, "BOOTID.UPNP.ORG", strconv.Itoa(r.BootID))
	dst = appendHeader(dst, "CONFIGID.UPNP.ORG", strconv.Itoa(r.ConfigID))
	return append(dst, '\r', '\n')
}

// AppendNotify appends a NOTIFY with the given NTS (NTSAlive or NTSByeBye)
// for the advertisement r describes, r.ST being its NT. host is the HOST
// header, "" for the multicast group. A byebye carries only what UDA 1.1
// lists for it: no LOCATION, SERVER or CACHE-CONTROL.
func AppendNotify(dst []byte, r Response, nts, host string) []byte {
	if host == "" {
		host = defaultHost
	}
	dst = append(dst, "NOTIFY * HTTP/1.1\r\n"...)
	dst = appendHeader(dst, "HOST", host)
	if nts != NTSByeBye {
		dst = appendHeader(dst, "CACHE-CONTROL", "max-age="+strconv.Itoa(int(r.MaxAge/time.Second)))
		dst = appendHeader(dst, "LOCATION", r.Location)
		dst = appendHeader(dst, "SERVER", r.Server)
	}
	dst = appendHeader(dst, "NT", r.ST)
	dst = appendHeader(dst, "NTS", nts)
	dst = appendHeader(dst, "USN", r.USN)
	dst = appendHeader(dst, "BOOTID.UPNP.ORG", strconv.Itoa(r.BootID))
	dst = appendHeader(dst, "CONFIGID.UPNP.ORG", strconv.Itoa(r.ConfigID))
	return append(dst, '\r', '\n')
}
