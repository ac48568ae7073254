package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/internal/websec"
)

// The admin page (admin.ui): package gateway/admin's Server, mounted at the
// root of the admin address, over the daemon's table and state.

// adminTokenFile is the file in the state directory holding the admin
// page's token of the running daemon.
const adminTokenFile = "admin-token"

// setupAdminPage builds the admin page and mounts it on the admin mux.
// Its token is new at each start; it goes to the state directory, where
// only root can read it, or, without one, into the log at start.
func (d *Daemon) setupAdminPage() error {
	d.adminSide.page = &admin.Server{Backend: adminBackend{d}, Token: websec.NewToken(), Logger: d.log}
	if d.cfg.StateDir != "" {
		path := filepath.Join(d.cfg.StateDir, adminTokenFile)
		if err := writeSecret(path, d.adminSide.page.Token+"\n"); err != nil {
			return fmt.Errorf("writing the admin page's token (admin.ui): %w", err)
		}
		d.adminSide.page.TokenFile = path
	}
	if ap, err := netip.ParseAddrPort(d.cfg.Admin.Address); err == nil && !ap.Addr().IsLoopback() {
		d.log.Warn("the admin page is served on "+ap.String()+", which other computers may reach: anyone who learns the token "+
			"can delete port mappings, and plain HTTP does not hide it; prefer 127.0.0.1 and an SSH tunnel", "admin", ap)
	}
	d.adminSide.mux.Handle("/", d.adminSide.page)
	return nil
}

// writeSecret replaces path with a file only its owner can read, holding
// s. The file is written beside path and renamed over it, so that an
// existing file's looser permissions are not inherited and a reader never
// sees half a token.
func writeSecret(path, s string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// AdminPageURL returns the admin page's address with its token, or "" when
// the page is off (admin.ui) or the admin address is.
func (d *Daemon) AdminPageURL() string {
	if d.adminSide.page == nil || d.adminSide.ln == nil {
		return ""
	}
	return d.adminSide.page.URL(d.adminSide.ln.Addr())
}

// logAdminPage says where the admin page is, at start. The token is
// logged only when it is nowhere else: logs are read more widely than the
// state directory.
func (d *Daemon) logAdminPage() {
	url := d.AdminPageURL()
	if url == "" {
		return
	}
	if f := d.adminSide.page.TokenFile; f != "" {
		base, _, _ := strings.Cut(url, "?")
		d.log.Info("admin page: open "+base+"?token= with the token in "+f, "url", base, "token_file", f)
		return
	}
	d.log.Info("admin page: open "+url, "url", url)
}

// adminBackend is the daemon as admin.Server sees it.
type adminBackend struct{ d *Daemon }

// operator is the admin page's identity in the core: it sees every
// mapping and may delete any, whoever made it and whatever secure mode
// says.
func operator() gateway.Requester { return gateway.Requester{Source: gateway.SourceAdmin} }

func (b adminBackend) Mappings() []admin.Mapping {
	ms := b.d.core.All() // the pool addresses' too
	out := make([]admin.Mapping, 0, len(ms))
	for _, m := range ms {
		out = append(out, admin.Mapping{
			Protocol: m.Protocol.String(), ExternalPort: m.ExternalPort, ExternalAddr: m.ExternalAddr,
			InternalAddr: m.InternalAddr, InternalPort: m.InternalPort,
			Client: m.Owner, RemoteHost: m.RemoteHost, Source: m.Source.String(),
			Description: m.Description, Enabled: m.Enabled, Expires: m.Expires, Created: m.Created,
			Upstream: upstreamHalfOf(m),
		})
	}
	return out
}

func (b adminBackend) Delete(ctx context.Context, proto string, addr netip.Addr, port uint16) error {
	p, err := gateway.ParseProtocol(proto)
	if err != nil {
		return err
	}
	if addr == b.d.core.ExternalAddr() {
		addr = netip.Addr{} // the gateway's own address, pool or not, is keyed as no address
	}
	err = b.d.core.DeleteAt(ctx, operator(), gateway.Key{Protocol: p, ExternalPort: port, ExternalAddr: addr}, netip.Addr{})
	if errors.Is(err, gateway.ErrNoSuchEntry) {
		return fmt.Errorf("%w: %w", admin.ErrNoSuchMapping, err)
	}
	return err
}

// AuditTrail implements admin.Auditor.
func (b adminBackend) AuditTrail() []admin.AuditRecord {
	recs := b.d.audit.Recent()
	out := make([]admin.AuditRecord, len(recs))
	for i, r := range recs {
		out[i] = admin.AuditRecord{
			Time: r.Time, Event: string(r.Event), Via: r.Via, Client: r.Client, Protocol: r.Protocol,
			ExternalPort: r.ExternalPort, Internal: r.Internal, RemoteHost: r.RemoteHost, LeaseSeconds: r.LeaseSeconds,
			Description: r.Description, Action: r.Action, Result: r.Result, Reason: r.Reason,
		}
	}
	return out
}

// SubscribeAudit implements admin.Auditor.
func (b adminBackend) SubscribeAudit(changed func()) (cancel func()) {
	return b.d.audit.OnRecord(changed)
}

func (b adminBackend) Subscribe(changed func()) (cancel func()) {
	c1 := b.d.core.Subscribe(func(gateway.Event) { changed() })
	c2 := b.d.core.SubscribePinholes(changed)
	return func() { c1(); c2() }
}

// Pinholes implements admin.PinholeBackend.
func (b adminBackend) Pinholes() []admin.Pinhole {
	var out []admin.Pinhole
	for _, p := range b.d.core.Pinholes() {
		out = append(out, admin.Pinhole{ID: p.ID, Protocol: p.Protocol.String(), InternalAddr: p.InternalAddr, InternalPort: p.InternalPort,
			RemoteHost: p.RemoteHost, RemotePort: p.RemotePort, Client: p.Owner, Source: p.Source.String(),
			Description: p.Description, Expires: p.Expires})
	}
	return out
}

// DeletePinhole implements admin.PinholeBackend.
func (b adminBackend) DeletePinhole(ctx context.Context, id uint16) error {
	err := b.d.core.DeletePinhole(ctx, operator(), id)
	if errors.Is(err, gateway.ErrNoSuchPinhole) {
		return fmt.Errorf("%w: %w", admin.ErrNoSuchMapping, err)
	}
	return err
}

func (b adminBackend) Status() admin.Status {
	d := b.d
	addr, extErr := d.wan.ext.current()
	if err := d.wan.ext.refusing(); err != nil {
		extErr = err.Error()
	}
	source := d.wan.ext.source()
	if d.cfg.ExternalAddress.Source == SourceFixed {
		source = "the configuration" // the page reads "from the configuration"
	}
	if p := d.wan.ext.chainedPublic(); p.IsValid() {
		// What clients are told, and the Internet reaches: the router
		// above's (double NAT).
		source = "the router above, through " + source + " (" + addr.String() + ")"
		addr = p
	}
	st := admin.Status{
		Name: d.cfg.Device.FriendlyName, Started: d.start, Backend: d.backend.Name(),
		ExternalAddr: addr, ExternalSource: source, ExternalError: extErr,
		SecureMode: d.cfg.Policy.SecureMode,
		Policy:     d.cfg.PolicySummary(),
		Warnings:   d.warnings(),
		Upstream:   d.upstreamStatus(),
	}
	st.UpstreamText = st.Upstream.Text()
	for _, name := range d.cfg.Interfaces.Internal {
		st.Interfaces = append(st.Interfaces, interfaceStatus(name, "internal")...)
	}
	for _, name := range d.cfg.Interfaces.External {
		st.Interfaces = append(st.Interfaces, interfaceStatus(name, "external")...)
	}
	for _, u := range d.DescriptionURLs() {
		st.Services = append(st.Services, admin.Service{Name: "UPnP IGD", Addr: u})
	}
	pmp := "NAT-PMP"
	if d.cfg.NATPMP.PCP {
		pmp = "NAT-PMP and PCP"
	}
	for _, a := range d.NATPMPAddrs() {
		st.Services = append(st.Services, admin.Service{Name: pmp, Addr: "udp " + a.String()})
	}

	c := d.metrics.counts()
	for k, n := range c.requests {
		st.Requests = append(st.Requests, admin.Counter{Protocol: protocolName(k.protocol), Action: k.action, Result: k.result, Count: n})
	}
	sort.Slice(st.Requests, func(i, j int) bool {
		x, y := st.Requests[i], st.Requests[j]
		return cmp.Or(cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Action, y.Action), cmp.Compare(x.Result, y.Result)) < 0
	})
	for kind, n := range c.errors {
		st.Errors = append(st.Errors, admin.Count{Name: kind, Count: n})
	}
	sort.Slice(st.Errors, func(i, j int) bool { return st.Errors[i].Name < st.Errors[j].Name })
	st.Expired = c.expired
	return st
}

// warnings are what the operator should know about the gateway's state,
// for the admin page.
func (d *Daemon) warnings() []string {
	var out []string
	if parked := d.core.Parked(); len(parked) > 0 {
		var ms []string
		for _, m := range parked {
			ms = append(ms, m.String())
		}
		out = append(out, fmt.Sprintf("%d saved lease(s) refused by the %s backend at start, kept in the state directory and tried again at the next start: %s",
			len(parked), d.backend.Name(), strings.Join(ms, "; ")))
	}
	if d.store != nil {
		for _, dmg := range d.store.Damage() {
			out = append(out, fmt.Sprintf("the lease journal was damaged (%d stretch(es) skipped); %d lease(s) were read back, and the damaged file is kept as %s",
				dmg.Stretches, dmg.Leases, dmg.Copy))
		}
	}
	return out
}

// protocolName is a metrics label as people write the protocol, the way
// gateway.Source spells it.
func protocolName(label string) string {
	switch label {
	case "upnp":
		return gateway.SourceUPnP.String()
	case "natpmp":
		return gateway.SourceNATPMP.String()
	case "pcp":
		return gateway.SourcePCP.String()
	}
	return label
}

// interfaceStatus describes the interfaces a configured name stands for:
// one, or those a pattern such as "ppp*" matches.
func interfaceStatus(name, role string) []admin.Interface {
	var ifs []net.Interface
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		all, err := net.Interfaces()
		if err != nil {
			return []admin.Interface{{Name: name, Role: role, Error: err.Error()}}
		}
		for _, ifi := range all {
			if strings.HasPrefix(ifi.Name, prefix) {
				ifs = append(ifs, ifi)
			}
		}
		if len(ifs) == 0 {
			return []admin.Interface{{Name: name, Role: role, Error: "no interface matches now"}}
		}
	} else {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return []admin.Interface{{Name: name, Role: role, Error: "missing"}}
		}
		ifs = []net.Interface{*ifi}
	}
	out := make([]admin.Interface, 0, len(ifs))
	for _, ifi := range ifs {
		ai := admin.Interface{Name: ifi.Name, Role: role, Up: ifi.Flags&net.FlagUp != 0}
		addrs, err := ifi.Addrs()
		if err != nil {
			ai.Error = err.Error()
		}
		for _, a := range addrs {
			// IPv4, and IPv6 other than link-local, which every interface has.
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLinkLocalUnicast() {
				ai.Addrs = append(ai.Addrs, p)
			}
		}
		out = append(out, ai)
	}
	return out
}
