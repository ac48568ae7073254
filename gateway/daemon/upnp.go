package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// upnpService is the igd.Service (and igd.TableInfo) of the daemon: it
// translates UPnP IGD actions onto gateway.Core. The igd server has
// already validated every argument, and passes the TCP peer as client.
type upnpService struct {
	core     *gateway.Core
	ext      *externalAddr
	metrics  *metrics
	v1       bool // serving IGDv1: error codes 728-733 do not exist there
	start    time.Time
	wanIf    string // the first external interface, for link counters
	bitsUp   uint64
	bitsDown uint64
	// updateID is IGDv2's SystemUpdateID: it counts changes to the table.
	updateID atomic.Uint32
	// quirks are those of Quirks that change the table's answers.
	quirks Quirks
}

var (
	_ igd.Service   = (*upnpService)(nil)
	_ igd.TableInfo = (*upnpService)(nil)
)

func (s *upnpService) requester(client netip.Addr) gateway.Requester {
	return gateway.Requester{Addr: client, Source: gateway.SourceUPnP}
}

// fault turns a core error into the UPnP fault the igd server sends,
// keeping err for its log line.
func (s *upnpService) fault(err error) error {
	if err == nil {
		return nil
	}
	s.metrics.countErr(err)
	code := upnpCode(err)
	if s.v1 {
		code = upnpCodeV1(err)
	}
	return fmt.Errorf("%w: %w", &upnp.Error{Code: code, Description: igd.CodeName(code)}, err)
}

func (s *upnpService) ExternalIPAddress(context.Context) (netip.Addr, error) {
	if s.quirks.NoExternalIP {
		if s.quirks.NoExternalIP501 {
			return netip.Addr{}, fmt.Errorf("%w: quirk no-external-ip:501", &upnp.Error{Code: igd.CodeActionFailed})
		}
		return netip.Addr{}, nil // sent as the empty string
	}
	return s.ext.Get(), nil
}

// ConnectionStatus reports Connected while the gateway has an external
// address (and, with refuse_private_external, a public one). The uptime is
// the daemon's: portfwd does not manage the WAN link itself.
func (s *upnpService) ConnectionStatus(context.Context) (string, time.Duration, string) {
	if !s.ext.Get().IsValid() || s.quirks.NoExternalIP {
		return "Disconnected", 0, "ERROR_NONE"
	}
	return "Connected", time.Since(s.start), "ERROR_NONE"
}

func (s *upnpService) LinkProperties(context.Context) (igd.LinkProperties, igd.LinkCounters) {
	lp := igd.LinkProperties{AccessType: "Ethernet", UpBps: s.bitsUp, DownBps: s.bitsDown, Status: "Down"}
	if s.ext.Get().IsValid() {
		lp.Status = "Up"
	}
	return lp, linkCounters(s.wanIf)
}

// linkCounters reads the interface's traffic totals from sysfs (Linux);
// elsewhere, or for a pattern such as "ppp*", they are zero.
func linkCounters(ifname string) igd.LinkCounters {
	var c igd.LinkCounters
	if ifname == "" || strings.ContainsAny(ifname, "*/") {
		return c
	}
	read := func(name string) uint64 {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", ifname, "statistics", name))
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	c.BytesSent, c.BytesReceived = read("tx_bytes"), read("rx_bytes")
	c.PacketsSent, c.PacketsReceived = read("tx_packets"), read("rx_packets")
	return c
}

// toCore converts a validated UPnP mapping. A lease of 0 (IGDv1's
// "permanent"; IGDv2's arrives as 604800 s) becomes a mapping without
// expiry, which the policy's MaxLease may then bound.
func (s *upnpService) toCore(m igd.PortMapping) (gateway.Mapping, error) {
	proto, err := gateway.ParseProtocol(m.Protocol)
	if err != nil {
		return gateway.Mapping{}, fmt.Errorf("%w: %w", gateway.ErrInvalidArgs, err)
	}
	client, err := netip.ParseAddr(m.InternalClient)
	if err != nil {
		return gateway.Mapping{}, fmt.Errorf("%w: internal client: %w", gateway.ErrInvalidArgs, err)
	}
	out := gateway.Mapping{
		Protocol:     proto,
		ExternalPort: m.ExternalPort,
		InternalAddr: client,
		InternalPort: m.InternalPort,
		Enabled:      m.Enabled || s.quirks.EnabledIgnored,
		Description:  m.Description,
	}
	if out.RemoteHost, err = parseRemoteHost(m.RemoteHost); err != nil {
		return gateway.Mapping{}, err
	}
	if m.LeaseDuration > 0 {
		out.Expires = s.core.Now().Add(m.LeaseDuration)
	}
	return out, nil
}

// parseRemoteHost reads a UPnP remote host: "" is any host.
func parseRemoteHost(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: remote host %q: %w", gateway.ErrInvalidArgs, s, err)
	}
	return a, nil
}

// fromCore converts a table entry for an answer, with the lease left.
func (s *upnpService) fromCore(m gateway.Mapping) igd.PortMapping {
	out := igd.PortMapping{
		ExternalPort:   m.ExternalPort,
		Protocol:       m.Protocol.String(),
		InternalPort:   m.InternalPort,
		InternalClient: m.InternalAddr.String(),
		Enabled:        m.Enabled,
		Description:    m.Description,
		LeaseDuration:  time.Duration(m.LeaseSeconds(s.core.Now())) * time.Second,
	}
	if m.RemoteHost.IsValid() {
		out.RemoteHost = m.RemoteHost.String()
	}
	return out
}

func (s *upnpService) AddPortMapping(ctx context.Context, client netip.Addr, m igd.PortMapping) error {
	if err := s.ext.refusing(); err != nil {
		return fmt.Errorf("%w: %w", &upnp.Error{Code: igd.CodeActionFailed}, err)
	}
	gm, err := s.toCore(m)
	if err != nil {
		return s.fault(err)
	}
	_, err = s.core.Add(ctx, s.requester(client), gm)
	return s.fault(err)
}

func (s *upnpService) AddAnyPortMapping(ctx context.Context, client netip.Addr, m igd.PortMapping) (uint16, error) {
	if err := s.ext.refusing(); err != nil {
		return 0, fmt.Errorf("%w: %w", &upnp.Error{Code: igd.CodeActionFailed}, err)
	}
	gm, err := s.toCore(m)
	if err != nil {
		return 0, s.fault(err)
	}
	got, err := s.core.AddAny(ctx, s.requester(client), gm)
	if err != nil {
		return 0, s.fault(err)
	}
	return got.PublicPort(), nil
}

func (s *upnpService) DeletePortMapping(ctx context.Context, client netip.Addr, remoteHost string, port uint16, proto string) error {
	p, err := gateway.ParseProtocol(proto)
	if err != nil {
		return s.fault(fmt.Errorf("%w: %w", gateway.ErrInvalidArgs, err))
	}
	rh, err := parseRemoteHost(remoteHost)
	if err != nil {
		return s.fault(err)
	}
	return s.fault(s.core.Delete(ctx, s.requester(client), p, port, rh))
}

func (s *upnpService) DeletePortMappingRange(ctx context.Context, client netip.Addr, start, end uint16, proto string, manage bool) error {
	p, err := gateway.ParseProtocol(proto)
	if err != nil {
		return s.fault(fmt.Errorf("%w: %w", gateway.ErrInvalidArgs, err))
	}
	_, err = s.core.DeleteRange(ctx, s.requester(client), p, start, end, manage)
	return s.fault(err)
}

func (s *upnpService) GetGenericPortMappingEntry(_ context.Context, client netip.Addr, index int) (igd.PortMapping, error) {
	m, err := s.core.Index(s.requester(client), index)
	if errors.Is(err, gateway.ErrIndexOutOfRange) {
		switch {
		case s.quirks.NoList:
			return igd.PortMapping{}, fmt.Errorf("%w: quirk no-list: past the end of the table", &upnp.Error{Code: igd.CodeInvalidArgs})
		case s.quirks.DuplicateEntries:
			// The last entry, again and again.
			for i := min(index, s.core.OwnAddrLen()) - 1; i >= 0; i-- {
				if last, lerr := s.core.Index(s.requester(client), i); lerr == nil {
					return s.fromCore(last), nil
				}
			}
		}
	}
	if err != nil {
		return igd.PortMapping{}, s.fault(err)
	}
	return s.fromCore(m), nil
}

func (s *upnpService) GetSpecificPortMappingEntry(_ context.Context, client netip.Addr, remoteHost string, port uint16, proto string) (igd.PortMapping, error) {
	p, err := gateway.ParseProtocol(proto)
	if err != nil {
		return igd.PortMapping{}, s.fault(fmt.Errorf("%w: %w", gateway.ErrInvalidArgs, err))
	}
	rh, err := parseRemoteHost(remoteHost)
	if err != nil {
		return igd.PortMapping{}, s.fault(err)
	}
	m, err := s.core.Get(s.requester(client), p, port, rh)
	if err != nil {
		return igd.PortMapping{}, s.fault(err)
	}
	return s.fromCore(m), nil
}

// GetListOfPortMappings lists the client's own mappings, or with manage
// every mapping the policy lets it see (ListOwnOnly still applies).
func (s *upnpService) GetListOfPortMappings(_ context.Context, client netip.Addr, start, end uint16, proto string, manage bool, max int) ([]igd.PortMapping, error) {
	p, err := gateway.ParseProtocol(proto)
	if err != nil {
		return nil, s.fault(fmt.Errorf("%w: %w", gateway.ErrInvalidArgs, err))
	}
	req := s.requester(client)
	limit := max
	if !manage {
		limit = 0 // filtered below, so the cap applies after filtering
	}
	var out []igd.PortMapping
	for _, m := range s.core.List(req, p, start, end, limit) {
		if !manage && m.Owner != client.Unmap() {
			continue
		}
		out = append(out, s.fromCore(m))
		if max > 0 && len(out) == max {
			break
		}
	}
	return out, nil
}

// RequestConnection succeeds while the connection is up: portfwd does not
// manage the WAN link, so it cannot bring it up.
func (s *upnpService) RequestConnection(context.Context, netip.Addr) error {
	if s.ext.Get().IsValid() {
		return nil
	}
	return fmt.Errorf("%w: the gateway has no external address and does not manage the WAN link",
		&upnp.Error{Code: igd.CodeActionFailed})
}

// ForceTermination is refused (606) unless the policy allows clients to
// disable the external interface; even then portfwd, which does not manage
// the WAN link, cannot take it down and answers 501.
func (s *upnpService) ForceTermination(_ context.Context, client netip.Addr) error {
	if err := s.core.MayDisableExternal(s.requester(client)); err != nil {
		return s.fault(err)
	}
	return fmt.Errorf("%w: portfwd does not manage the WAN link",
		&upnp.Error{Code: igd.CodeActionFailed})
}

func (s *upnpService) PortMappingNumberOfEntries(context.Context) int { return s.core.OwnAddrLen() }

func (s *upnpService) SystemUpdateID(context.Context) uint32 { return s.updateID.Load() }

// upnpCode returns the WANIPConnection:2 error code for a core error, 0
// for nil (the table of the package documentation). Errors the table does
// not list (backend, store, cancellation) are 501 Action Failed.
func upnpCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, gateway.ErrConflict), errors.Is(err, gateway.ErrUpstreamConflict):
		return igd.CodeConflictInMappingEntry
	case errors.Is(err, gateway.ErrNotAuthorized), errors.Is(err, gateway.ErrUpstreamRefused):
		return igd.CodeActionNotAuthorized
	case errors.Is(err, gateway.ErrNoSuchEntry):
		return igd.CodeNoSuchEntryInArray
	case errors.Is(err, gateway.ErrNoneInRange):
		return igd.CodePortMappingNotFound
	case errors.Is(err, gateway.ErrIndexOutOfRange):
		return igd.CodeSpecifiedArrayIndexInvalid
	case errors.Is(err, gateway.ErrQuota), errors.Is(err, gateway.ErrTableFull), errors.Is(err, gateway.ErrNoPortsAvailable),
		errors.Is(err, gateway.ErrUpstreamExhausted):
		return igd.CodeNoPortMapsAvailable
	case errors.Is(err, gateway.ErrReservedPort):
		return igd.CodeConflictWithOtherMechanisms
	case errors.Is(err, gateway.ErrWildcardExternalPort):
		return igd.CodeWildCardNotPermittedInExtPort
	case errors.Is(err, gateway.ErrWildcardInternalPort):
		return igd.CodeWildCardNotPermittedInIntPort
	case errors.Is(err, gateway.ErrRemoteHostNotSupported):
		return igd.CodeRemoteHostOnlySupportsWildcard
	case errors.Is(err, gateway.ErrInconsistentRange):
		return igd.CodeInconsistentParameters
	case errors.Is(err, gateway.ErrInvalidArgs):
		return igd.CodeInvalidArgs
	}
	return igd.CodeActionFailed
}

// upnpCodeV1 is upnpCode for WANIPConnection:1 clients, which predate
// codes 728-733: each is replaced by the nearest IGD:1 code.
func upnpCodeV1(err error) int {
	switch c := upnpCode(err); c {
	case igd.CodeNoPortMapsAvailable:
		return igd.CodeActionFailed
	case igd.CodeConflictWithOtherMechanisms:
		return igd.CodeConflictInMappingEntry
	case igd.CodePortMappingNotFound:
		return igd.CodeNoSuchEntryInArray
	case igd.CodeWildCardNotPermittedInIntPort, igd.CodeInconsistentParameters:
		return igd.CodeInvalidArgs
	default:
		return c
	}
}
