//go:build linux

package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers, numbered as nft numbers them: NFT_REG_1 is the 16-byte
// register that NFT_REG32_00..03 alias, so a concatenation loaded into
// reg 1, reg32 01, reg32 02 is one contiguous key for a lookup from reg 1.
const (
	reg1   = unix.NFT_REG_1
	reg32a = unix.NFT_REG32_01
	reg32b = unix.NFT_REG32_02
)

// Kernel values that x/sys/unix does not name.
const (
	rtnLocal    = 2    // RTN_LOCAL, the fib addrtype of our own addresses
	ipsDstNAT   = 0x20 // IPS_DST_NAT, the "dnat" bit of ct status
	nfprotoIPv4 = unix.NFPROTO_IPV4
)

// ourChains lists the base chains of our table.
func ourChains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{
		{Name: chainPre, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting,
			Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		{Name: chainPost, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting,
			Priority: nftables.ChainPriorityNATSource, Policy: &accept},
		{Name: chainFilter, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward,
			Priority: nftables.ChainPriorityFilter, Policy: &accept},
	}
}

// buildRules returns the rules of each of our chains, by chain name, in the
// order they must be evaluated. The package documentation shows them in nft
// syntax.
func buildRules(cfg Config, fwd, fwdSrc, fwdPool, pool *nftables.Set) (map[string][][]expr.Any, error) {
	rules := map[string][][]expr.Any{}
	dnat := func(iface string, hairpin bool) error {
		m, err := ifnameCmp(expr.MetaKeyIIFNAME, iface)
		if err != nil {
			return err
		}
		match := append(m,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfprotoIPv4}},
			// Only traffic addressed to the gateway itself: a routed
			// subnet behind the gateway keeps its own ports.
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(rtnLocal)},
		)
		if hairpin {
			// ... but not to the address of the LAN interface the packet
			// came in on, which would hijack the gateway's own LAN
			// services (its web UI on port 80) from LAN hosts.
			match = append(match,
				&expr.Fib{Register: reg1, FlagDADDR: true, FlagIIF: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(rtnLocal)},
			)
		}
		// RemoteHost-restricted mappings first: nat ends evaluation of the
		// chain for the packet, so the first matching rule wins.
		src := append(clone(match),
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, // ip saddr
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32a},
			&expr.Payload{DestRegister: reg32b, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // th dport
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: fwdSrc.Name, SetID: fwdSrc.ID},
			dnatTo(),
		)
		unrestricted := append(clone(match),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Payload{DestRegister: reg32a, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: fwd.Name, SetID: fwd.ID},
			dnatTo(),
		)
		if fwdPool != nil {
			// A pool address's own mappings, then nothing else for it:
			// the address-less maps are the gateway's own address's.
			onPool := append(clone(match),
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // ip daddr
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32a},
				&expr.Payload{DestRegister: reg32b, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // th dport
				&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: fwdPool.Name, SetID: fwdPool.ID},
				dnatTo(),
			)
			stop := append(clone(match),
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // ip daddr
				&expr.Lookup{SourceRegister: reg1, SetName: pool.Name, SetID: pool.ID},
				&expr.Verdict{Kind: expr.VerdictAccept},
			)
			rules[chainPre] = append(rules[chainPre], onPool, stop)
		}
		rules[chainPre] = append(rules[chainPre], src, unrestricted)
		return nil
	}
	for _, iface := range cfg.ExternalInterfaces {
		if err := dnat(iface, false); err != nil {
			return nil, err
		}
	}
	for _, iface := range cfg.InternalInterfaces {
		if err := dnat(iface, true); err != nil {
			return nil, err
		}
	}

	// Hairpin: a LAN host's connection to the external address comes back
	// out on the LAN; masquerade it so that the server's replies go back
	// through the gateway to be un-DNATed instead of straight to the client.
	for _, in := range cfg.InternalInterfaces {
		for _, out := range cfg.InternalInterfaces {
			mi, err := ifnameCmp(expr.MetaKeyIIFNAME, in)
			if err != nil {
				return nil, err
			}
			mo, err := ifnameCmp(expr.MetaKeyOIFNAME, out)
			if err != nil {
				return nil, err
			}
			r := append(append(mi, mo...), ctStatusDNAT()...)
			rules[chainPost] = append(rules[chainPost], append(r, &expr.Masq{}))
		}
	}

	rules[chainFilter] = [][]expr.Any{
		append(ctStatusDNAT(), &expr.Verdict{Kind: expr.VerdictAccept}),
	}
	return rules, nil
}

// dnatTo is "dnat ip to" the address and port a lookup left in reg 1 and
// reg32 01. The kernel sets the range flags from the registers given.
func dnatTo() *expr.NAT {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: nfprotoIPv4, RegAddrMin: reg1, RegProtoMin: reg32a}
}

// ctStatusDNAT matches connections that were DNATed ("ct status dnat").
func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ifnameCmp matches the interface name loaded from key against name.
func ifnameCmp(key expr.MetaKey, name string) ([]expr.Any, error) {
	data, err := ifnameMatch(name)
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data},
	}, nil
}

// clone copies a match prefix so that two rules built from it do not share
// a backing array.
func clone(e []expr.Any) []expr.Any { return append([]expr.Any(nil), e...) }
