//go:build linux

package nft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/portfwd/portfwd/gateway"
	"golang.org/x/sys/unix"
)

// IPv6 pinholes (gateway.PinholeBackend).
//
// One set element per pinhole, in four sets by which of the spec's remote
// fields the pinhole restricts, each looked up by one rule:
//
//	set portfwd_pin6      { type ipv6_addr . inet_proto . inet_service; flags timeout; counter }
//	set portfwd_pin6s     { ... . ipv6_addr }                  (remote host)
//	set portfwd_pin6p     { ... . inet_service }               (remote port)
//	set portfwd_pin6sp    { ... . ipv6_addr . inet_service }   (both)
//	chain FORWARD_CHAIN {
//	    iifname "wan0" ip6 daddr . meta l4proto . th dport @portfwd_pin6 accept
//	    iifname "wan0" ip6 daddr . meta l4proto . th dport . th sport @portfwd_pin6p accept
//	    iifname "wan0" ip6 daddr . meta l4proto . th dport . ip6 saddr @portfwd_pin6s accept
//	    iifname "wan0" ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport @portfwd_pin6sp accept
//	}
//
// (each rule also tests meta nfproto ipv6 first, which nft does not
// print, since ip6 daddr implies it).
//
// An add or delete is one element, one netlink batch, whatever the number
// of pinholes (miniupnpd adds a rule per pinhole and re-reads the chain on
// every operation). Each element carries the lease plus a grace as its own
// timeout, so the kernel closes the pinhole even if the daemon is gone; a
// renewal deletes and re-adds the element in one batch (element timeouts
// cannot be changed in place), which the packet path sees atomically.
// Elements count the packets their lookups match, for GetPinholePackets.
//
// Where: with Config.ForwardTable and ForwardChain, the sets and rules go
// into that chain of the administrator's firewall, which its forward
// chain jumps to (as miniupnpd's upnp_forward_chain): an accept in a
// table of our own cannot override a drop in the administrator's forward
// chain, since every base chain is evaluated. The backend owns only its
// own rules there (tagged in their user data) and its sets; it never
// flushes or deletes the chain. Without them, they go into our own
// table's forward chain, where they decide nothing against another drop.

// Names of the pinhole sets: part of the on-disk contract, as the maps'.
const (
	setPin6   = "portfwd_pin6"
	setPin6S  = "portfwd_pin6s"
	setPin6P  = "portfwd_pin6p"
	setPin6SP = "portfwd_pin6sp"
)

// pinRuleTag marks the rules the backend owns in a chain it shares.
var pinRuleTag = []byte("portfwd:pinhole6")

// pinholes is the pinhole side of a Backend, guarded by Backend.mu.
type pinholes struct {
	table *nftables.Table
	chain *nftables.Chain
	// sets by (remote host given, remote port given).
	sets [2][2]*nftables.Set
	// installed holds what the sets hold, with the timeout each element
	// was added with.
	installed map[gateway.PinholeKey]gateway.PinholeRule
	// shared is true when the chain is the administrator's.
	shared bool
}

// parseForwardTable reads "inet filter", "ip6 filter" or "filter" (inet).
func parseForwardTable(s string) (*nftables.Table, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1:
		return &nftables.Table{Family: nftables.TableFamilyINet, Name: f[0]}, nil
	case len(f) == 2 && f[0] == "inet":
		return &nftables.Table{Family: nftables.TableFamilyINet, Name: f[1]}, nil
	case len(f) == 2 && f[0] == "ip6":
		return &nftables.Table{Family: nftables.TableFamilyIPv6, Name: f[1]}, nil
	}
	return nil, fmt.Errorf("forward_table %q: write the family and the name, \"inet filter\" or \"ip6 filter\" (pinholes are IPv6)", s)
}

// setupPinholes creates (or adopts) the pinhole sets and (re)writes our
// rules in the pinhole chain, in one batch.
func (b *Backend) setupPinholes() error {
	p := b.pins
	if p == nil {
		p = &pinholes{installed: map[gateway.PinholeKey]gateway.PinholeRule{}}
		b.pins = p
		p.table = b.table
		p.chain = &nftables.Chain{Name: chainFilter, Table: b.table}
		if b.cfg.ForwardTable != "" || b.cfg.ForwardChain != "" {
			if b.cfg.ForwardTable == "" || b.cfg.ForwardChain == "" {
				return errors.New("nft: forward_table and forward_chain go together: name the table and the chain your forward chain jumps to")
			}
			t, err := parseForwardTable(b.cfg.ForwardTable)
			if err != nil {
				return fmt.Errorf("nft: %w", err)
			}
			p.table, p.chain, p.shared = t, &nftables.Chain{Name: b.cfg.ForwardChain, Table: t}, true
		}
		id := uint32(10)
		for rh := range 2 {
			for rp := range 2 {
				types := []nftables.SetDatatype{nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService}
				name := setPin6
				switch {
				case rh == 1 && rp == 1:
					types, name = append(types, nftables.TypeIP6Addr, nftables.TypeInetService), setPin6SP
				case rh == 1:
					types, name = append(types, nftables.TypeIP6Addr), setPin6S
				case rp == 1:
					types, name = append(types, nftables.TypeInetService), setPin6P
				}
				p.sets[rh][rp] = &nftables.Set{Table: p.table, Name: name, ID: id,
					KeyType: nftables.MustConcatSetType(types...), Concatenation: true,
					HasTimeout: true, Counter: true}
				id++
			}
		}
	}
	if p.shared {
		chains, err := b.conn.ListChainsOfTableFamily(p.table.Family)
		if err != nil {
			return fmt.Errorf("nft: listing chains: %w", permHint(err))
		}
		found := false
		for _, c := range chains {
			found = found || c.Table != nil && c.Table.Name == p.table.Name && c.Name == p.chain.Name
		}
		if !found {
			return fmt.Errorf("nft: forward_chain %q is not in table %s: create it and make your forward chain jump to it (as for miniupnpd), or leave forward_table and forward_chain empty",
				b.cfg.ForwardChain, b.cfg.ForwardTable)
		}
		// Remove our rules of a previous run (only ours: tagged).
		rules, err := b.conn.GetRules(p.table, p.chain)
		if err != nil {
			return fmt.Errorf("nft: reading chain %s of %s: %w", p.chain.Name, b.cfg.ForwardTable, permHint(err))
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, pinRuleTag) {
				if err := b.conn.DelRule(r); err != nil {
					return fmt.Errorf("nft: %w", err)
				}
			}
		}
	}
	for _, rh := range p.sets {
		for _, s := range rh {
			if err := b.conn.AddSet(s, nil); err != nil {
				return fmt.Errorf("nft: encoding set %s: %w", s.Name, err)
			}
		}
	}
	for _, iface := range b.cfg.ExternalInterfaces {
		m, err := ifnameCmp(expr.MetaKeyIIFNAME, iface)
		if err != nil {
			return fmt.Errorf("nft: %w", err)
		}
		for rh := range 2 {
			for rp := range 2 {
				b.conn.AddRule(&nftables.Rule{Table: p.table, Chain: p.chain, UserData: pinRuleTag,
					Exprs: pinholeRule(m, p.sets[rh][rp], rh == 1, rp == 1)})
			}
		}
	}
	if err := b.conn.Flush(); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("nft: the pinhole sets (%s...) in %s have another shape (left by another version?): delete them and start again: %w",
				setPin6, b.pinTableName(), err)
		}
		return fmt.Errorf("nft: installing the IPv6 pinhole rules: %w", permHint(err))
	}
	return nil
}

// Registers of the pinhole key: daddr in NFT_REG_1 (reg32 00-03), then
// one 32-bit register per field.
const (
	regPinProto = unix.NFT_REG32_04
	regPinDport = unix.NFT_REG32_05
)

// pinholeRule is "meta nfproto ipv6 iifname IF ip6 daddr . meta l4proto .
// th dport [. ip6 saddr] [. th sport] @set accept".
func pinholeRule(ifmatch []expr.Any, set *nftables.Set, remoteHost, remotePort bool) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
	}
	e = append(e, clone(ifmatch)...)
	e = append(e,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}, // ip6 daddr
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regPinProto},
		&expr.Payload{DestRegister: regPinDport, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // th dport
	)
	next := uint32(unix.NFT_REG32_06)
	if remoteHost {
		e = append(e, &expr.Payload{DestRegister: next, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}) // ip6 saddr
		next += 4
	}
	if remotePort {
		e = append(e, &expr.Payload{DestRegister: next, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2}) // th sport
	}
	return append(e,
		&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
}

// encodePinKey lays out k as the set's concatenated key, each field padded
// to 4 bytes.
func encodePinKey(k gateway.PinholeKey) []byte {
	a := k.InternalAddr.As16()
	key := append([]byte(nil), a[:]...)
	key = append(key, byte(k.Protocol), 0, 0, 0)
	key = append(key, byte(k.InternalPort>>8), byte(k.InternalPort), 0, 0)
	if k.RemoteHost.IsValid() {
		r := k.RemoteHost.As16()
		key = append(key, r[:]...)
	}
	if k.RemotePort != 0 {
		key = append(key, byte(k.RemotePort>>8), byte(k.RemotePort), 0, 0)
	}
	return key
}

// decodePinKey reads a key of the set (rh, rp).
func decodePinKey(key []byte, rh, rp bool) (gateway.PinholeKey, error) {
	want := 24
	if rh {
		want += 16
	}
	if rp {
		want += 4
	}
	if len(key) != want {
		return gateway.PinholeKey{}, fmt.Errorf("pinhole key of %d bytes, want %d", len(key), want)
	}
	var k gateway.PinholeKey
	k.InternalAddr = netip.AddrFrom16([16]byte(key[:16]))
	k.Protocol = gateway.Protocol(key[16])
	k.InternalPort = uint16(key[20])<<8 | uint16(key[21])
	off := 24
	if rh {
		k.RemoteHost = netip.AddrFrom16([16]byte(key[off : off+16]))
		off += 16
	}
	if rp {
		k.RemotePort = uint16(key[off])<<8 | uint16(key[off+1])
	}
	return k, nil
}

func (p *pinholes) setFor(k gateway.PinholeKey) *nftables.Set {
	rh, rp := 0, 0
	if k.RemoteHost.IsValid() {
		rh = 1
	}
	if k.RemotePort != 0 {
		rp = 1
	}
	return p.sets[rh][rp]
}

func pinElement(r gateway.PinholeRule) nftables.SetElement {
	e := nftables.SetElement{Key: encodePinKey(r.PinholeKey)}
	if r.Timeout > 0 {
		// Whole milliseconds, at least one: the kernel's unit.
		e.Timeout = max(r.Timeout.Truncate(time.Millisecond), time.Millisecond)
	}
	return e
}

func checkPinhole(r gateway.PinholeRule) error {
	if !r.InternalAddr.Is6() || r.InternalAddr.Is4In6() {
		return fmt.Errorf("nft: pinhole to %v: not an IPv6 address", r.InternalAddr)
	}
	if r.RemoteHost.IsValid() && (!r.RemoteHost.Is6() || r.RemoteHost.Is4In6()) {
		return fmt.Errorf("nft: pinhole from %v: not an IPv6 address", r.RemoteHost)
	}
	if r.Protocol != gateway.TCP && r.Protocol != gateway.UDP {
		return fmt.Errorf("nft: pinhole for protocol %d: TCP and UDP only", r.Protocol)
	}
	return nil
}

// AddPinhole implements gateway.PinholeBackend: one element, replacing
// the element with the same key (delete and add in one batch).
func (b *Backend) AddPinhole(ctx context.Context, r gateway.PinholeRule) error {
	if err := checkPinhole(r); err != nil {
		return err
	}
	r.InternalAddr, r.RemoteHost = r.InternalAddr.WithZone(""), r.RemoteHost.WithZone("")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.pins
	set := p.setFor(r.PinholeKey)
	_, had := p.installed[r.PinholeKey]
	err := b.retryPins(func() error {
		if had {
			if err := b.conn.SetDeleteElements(set, []nftables.SetElement{{Key: encodePinKey(r.PinholeKey)}}); err != nil {
				return err
			}
		}
		if err := b.conn.SetAddElements(set, []nftables.SetElement{pinElement(r)}); err != nil {
			return err
		}
		err := b.conn.Flush()
		if err != nil && had && errors.Is(err, unix.ENOENT) {
			// The element timed out in the kernel (or was deleted by
			// hand): add it alone.
			if err := b.conn.SetAddElements(set, []nftables.SetElement{pinElement(r)}); err != nil {
				return err
			}
			err = b.conn.Flush()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("nft: opening pinhole %v: %w", r, err)
	}
	p.installed[r.PinholeKey] = r
	b.log.Debug("pinhole installed", "pinhole", r.String())
	return nil
}

// DeletePinhole implements gateway.PinholeBackend.
func (b *Backend) DeletePinhole(ctx context.Context, r gateway.PinholeRule) error {
	r.InternalAddr, r.RemoteHost = r.InternalAddr.WithZone(""), r.RemoteHost.WithZone("")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.pins
	if _, had := p.installed[r.PinholeKey]; !had {
		return nil
	}
	err := b.retryPins(func() error {
		if err := b.conn.SetDeleteElements(p.setFor(r.PinholeKey), []nftables.SetElement{{Key: encodePinKey(r.PinholeKey)}}); err != nil {
			return err
		}
		return b.conn.Flush()
	})
	if err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT: timed out already
		return fmt.Errorf("nft: closing pinhole %v: %w", r, err)
	}
	delete(p.installed, r.PinholeKey)
	b.log.Debug("pinhole removed", "pinhole", r.String())
	return nil
}

// PinholePackets implements gateway.PinholeBackend from the element's
// counter.
func (b *Backend) PinholePackets(ctx context.Context, r gateway.PinholeRule) (uint64, bool, error) {
	r.InternalAddr, r.RemoteHost = r.InternalAddr.WithZone(""), r.RemoteHost.WithZone("")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	set := b.pins.setFor(r.PinholeKey)
	elems, err := b.conn.GetSetElements(set)
	if err != nil {
		return 0, false, fmt.Errorf("nft: reading set %s: %w", set.Name, err)
	}
	want := encodePinKey(r.PinholeKey)
	for _, e := range elems {
		if bytes.Equal(e.Key, want) {
			if e.Counter == nil {
				return 0, false, nil
			}
			return e.Counter.Packets, true, nil
		}
	}
	return 0, true, nil
}

// InstalledPinholes implements gateway.PinholeLister from the kernel's
// sets, so that a restart finds what a previous run left.
func (b *Backend) InstalledPinholes(ctx context.Context) ([]gateway.PinholeRule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.readPinholes()
}

func (b *Backend) readPinholes() ([]gateway.PinholeRule, error) {
	var out []gateway.PinholeRule
	for rh := range 2 {
		for rp := range 2 {
			set := b.pins.sets[rh][rp]
			elems, err := b.conn.GetSetElements(set)
			if err != nil {
				return nil, fmt.Errorf("nft: reading set %s: %w", set.Name, err)
			}
			for _, e := range elems {
				k, err := decodePinKey(e.Key, rh == 1, rp == 1)
				if err != nil {
					b.log.Warn("ignoring set element", "set", set.Name, "err", err)
					continue
				}
				out = append(out, gateway.PinholeRule{PinholeKey: k, Timeout: e.Expires})
			}
		}
	}
	return out, nil
}

// retryPins runs op and, when it fails because the sets are gone (the
// administrator's firewall was reloaded: fw4 rebuilds its table), puts
// the sets, the rules and every installed pinhole back and runs op again.
func (b *Backend) retryPins(op func() error) error {
	err := op()
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	if _, gerr := b.conn.GetSetByName(b.pins.table, setPin6); gerr == nil {
		return err // the sets are there: the missing object is an element
	}
	b.log.Warn("the IPv6 pinhole sets vanished (firewall reloaded?): putting them back", "pinholes", len(b.pins.installed))
	if b.pins.table == b.table {
		if serr := b.setup(); serr != nil {
			return errors.Join(err, serr)
		}
		if rerr := b.restore(); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if serr := b.setupPinholes(); serr != nil {
		return errors.Join(err, serr)
	}
	if rerr := b.restorePinholes(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return op()
}

// restorePinholes re-adds every installed pinhole to the (re-created,
// empty) sets. The timeouts are those of the last add: a little longer
// than the lease left, which the Core's expiry shortens anyway.
func (b *Backend) restorePinholes() error {
	if len(b.pins.installed) == 0 {
		return nil
	}
	for _, r := range b.pins.installed {
		if err := b.conn.SetAddElements(b.pins.setFor(r.PinholeKey), []nftables.SetElement{pinElement(r)}); err != nil {
			return err
		}
	}
	return b.conn.Flush()
}

func (b *Backend) pinTableName() string {
	fam := "inet"
	if b.pins.table.Family == nftables.TableFamilyIPv6 {
		fam = "ip6"
	}
	return fam + " " + b.pins.table.Name
}

// PinholeTarget describes where pinholes are accepted, for --check and
// the start-up log: the administrator's chain, or our own table (where an
// accept decides nothing against a drop elsewhere).
func (b *Backend) PinholeTarget() (where string, shared bool) {
	return fmt.Sprintf("chain %s of table %s", b.pins.chain.Name, b.pinTableName()), b.pins.shared
}

// CheckPinholes describes, for --check, where IPv6 pinholes will be
// accepted and what will stand in their way: the chain named by
// ForwardTable/ForwardChain missing, or, without them, a forward chain
// of the administrator's with policy drop for IPv6, which an accept in
// our own table cannot override. ok holds the sentences that are fine,
// problems those that are not.
func CheckPinholes(ctx context.Context, cfg Config) (ok, problems []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var fwd []byte
	if err := inNetNS(cfg.NetNS, func() (err error) {
		fwd, err = os.ReadFile("/proc/sys/net/ipv6/conf/all/forwarding")
		return err
	}); err != nil {
		return nil, nil, fmt.Errorf("nft: check: reading net.ipv6.conf.all.forwarding: %w", err)
	}
	if strings.TrimSpace(string(fwd)) == "0" {
		problems = append(problems, "net.ipv6.conf.all.forwarding is 0, so the router forwards no IPv6 and pinholes lead nowhere: set it to 1")
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		return nil, nil, fmt.Errorf("nft: check: %w", permHint(err))
	}
	defer conn.CloseLasting()
	chains, err := conn.ListChains()
	if err != nil {
		return nil, nil, fmt.Errorf("nft: check: listing chains: %w", permHint(err))
	}
	if cfg.ForwardTable != "" {
		t, err := parseForwardTable(cfg.ForwardTable)
		if err != nil {
			return nil, append(problems, err.Error()), nil
		}
		found := false
		for _, c := range chains {
			found = found || c.Table.Family == t.Family && c.Table.Name == t.Name && c.Name == cfg.ForwardChain
		}
		if !found {
			return ok, append(problems, fmt.Sprintf("nft.forward_chain %q is not in table %s: create it and make your forward chain jump to it, or leave forward_table and forward_chain empty", cfg.ForwardChain, cfg.ForwardTable)), nil
		}
		return append(ok, fmt.Sprintf("IPv6 pinholes will be accepted in chain %s of table %s (make sure your forward chain jumps there before it drops)", cfg.ForwardChain, cfg.ForwardTable)), problems, nil
	}
	for _, c := range chains {
		if c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward || c.Type != nftables.ChainTypeFilter {
			continue
		}
		if c.Table.Family != nftables.TableFamilyINet && c.Table.Family != nftables.TableFamilyIPv6 {
			continue
		}
		if c.Table.Family == nftables.TableFamilyINet && c.Table.Name == cfg.table() {
			continue
		}
		if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
			problems = append(problems, fmt.Sprintf("IPv6 pinholes will meet the policy drop of %s: an accept in portfwd's own table cannot override it; set nft.forward_table and nft.forward_chain to a chain that %s jumps to before it drops (OpenWrt fw4: \"inet fw4\" and \"upnp_forward\")",
				describe(c), c.Name))
		}
	}
	if len(problems) == 0 {
		ok = append(ok, "IPv6 pinholes go into portfwd's own table; no forward chain of yours has policy drop, so inbound IPv6 may not be filtered at all")
	}
	return ok, problems, nil
}
