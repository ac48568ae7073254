//go:build linux

package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// xt_conntrack state bits for "--ctstate DNAT" (XT_CONNTRACK_STATE_DNAT,
// 1 << (IP_CT_NUMBER + 2) with IP_CT_NUMBER = 5).
const xtConntrackStateDNAT = 1 << 7

// Check inspects the whole ruleset and the forwarding settings of the
// namespace cfg designates and describes, one sentence each, the problems
// that would keep forwarded (DNATed) traffic from flowing. It is best
// effort: see the package documentation for what it cannot see. A nil
// slice means no problem was found; the error is for failures to inspect.
func Check(ctx context.Context, cfg Config) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var problems []string

	var forward, legacy []byte
	var missing []string
	err := inNetNS(cfg.NetNS, func() error {
		var err error
		forward, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		if err != nil {
			return fmt.Errorf("reading net.ipv4.ip_forward: %w", err)
		}
		// Present only when the ip_tables module is loaded; it lists the
		// legacy tables instantiated in this namespace.
		legacy, err = os.ReadFile("/proc/thread-self/net/ip_tables_names")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading ip_tables_names: %w", err)
		}
		for _, name := range slices.Concat(cfg.ExternalInterfaces, cfg.InternalInterfaces) {
			if strings.HasSuffix(name, "*") {
				continue
			}
			if _, err := net.InterfaceByName(name); err != nil {
				missing = append(missing, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nft: check: %w", err)
	}
	if strings.TrimSpace(string(forward)) == "0" {
		problems = append(problems, "net.ipv4.ip_forward is 0, so the kernel forwards nothing: set it to 1 (sysctl -w net.ipv4.ip_forward=1, and in /etc/sysctl.d to keep it)")
	}
	for _, name := range missing {
		problems = append(problems, fmt.Sprintf("interface %s does not exist (yet?): mappings only apply to traffic on interfaces that exist", name))
	}
	if slices.Contains(strings.Fields(string(legacy)), "filter") {
		problems = append(problems, "an iptables-legacy filter table is loaded, and portfwd cannot read it: make sure its FORWARD chain accepts DNATed connections (iptables-legacy -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT)")
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		return nil, fmt.Errorf("nft: check: %w", permHint(err))
	}
	defer conn.CloseLasting()
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nft: check: listing chains: %w", permHint(err))
	}
	w := &walker{conn: conn, chains: map[chainRef]*nftables.Chain{}}
	for _, c := range chains {
		w.chains[chainRef{c.Table.Family, c.Table.Name, c.Name}] = c
	}
	for _, c := range chains {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !isForwardFilter(c) || (c.Table.Family == nftables.TableFamilyINet && c.Table.Name == cfg.table()) {
			continue
		}
		w.sawXT = false
		v, err := w.walk(c, 0)
		if err != nil {
			return nil, fmt.Errorf("nft: check: reading chain %s: %w", describe(c), err)
		}
		policyDrop := c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop
		switch {
		case v == verdictAccept:
		case v == verdictDrop:
			problems = append(problems, fmt.Sprintf("%s drops forwarded connections before accepting DNATed ones: add a rule before the drop (nft insert rule %s ct status dnat accept)",
				describe(c), ruleTarget(c)))
		case policyDrop:
			hint := ""
			if w.sawXT || (c.Table.Family == nftables.TableFamilyIPv4 && c.Table.Name == "filter" && c.Name == "FORWARD") {
				// Managed by iptables-nft: answer in its language too.
				hint = "; with iptables: iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT"
			}
			problems = append(problems, fmt.Sprintf("%s has policy drop and no rule accepting DNATed connections, so forwarded mappings are dropped there: add one (nft insert rule %s ct status dnat accept%s)",
				describe(c), ruleTarget(c), hint))
		}
	}
	return problems, nil
}

// isForwardFilter tells whether c is a base chain at the IPv4 forward hook
// that can drop packets.
func isForwardFilter(c *nftables.Chain) bool {
	if c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward || c.Type != nftables.ChainTypeFilter {
		return false
	}
	return c.Table.Family == nftables.TableFamilyIPv4 || c.Table.Family == nftables.TableFamilyINet
}

func describe(c *nftables.Chain) string {
	return fmt.Sprintf("chain %s in table %s %s", c.Name, familyName(c.Table.Family), c.Table.Name)
}

func ruleTarget(c *nftables.Chain) string {
	return fmt.Sprintf("%s %s %s", familyName(c.Table.Family), c.Table.Name, c.Name)
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family(%d)", f)
}

type chainRef struct {
	family nftables.TableFamily
	table  string
	chain  string
}

// verdict is what walking a chain concludes for a new DNATed connection.
type verdict int

const (
	verdictNone   verdict = iota // falls through: the policy decides
	verdictAccept                // some rule accepts DNATed connections
	verdictDrop                  // an unconditional drop comes first
)

// walker follows a chain and the chains it jumps to, looking for a rule
// that accepts DNATed connections. It is deliberately optimistic: a
// conditional jump to a chain that accepts them counts as acceptance (fw4
// jumps per input zone), because the point is to catch the common mistake
// of a drop policy with no such rule at all, not to prove reachability.
type walker struct {
	conn   *nftables.Conn
	chains map[chainRef]*nftables.Chain
	sawXT  bool // iptables-nft rules were seen since the last reset
}

const maxJumpDepth = 16 // the kernel's own limit on nested jumps

func (w *walker) walk(c *nftables.Chain, depth int) (verdict, error) {
	if depth > maxJumpDepth {
		return verdictNone, nil
	}
	rules, err := w.conn.GetRules(c.Table, c)
	if err != nil {
		return verdictNone, err
	}
	for _, r := range rules {
		conditional := false
		var targets []string
		var final *expr.Verdict
		dnatTest := false
		for i, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Counter, *expr.Log:
			case *expr.Verdict:
				final = e
			case *expr.Ct:
				conditional = true
				if e.Key == expr.CtKeySTATUS && isDNATStatusTest(r.Exprs[i+1:]) {
					dnatTest = true
				}
			case *expr.Match:
				conditional = true
				w.sawXT = true
				if xtAcceptsDNAT(e) {
					dnatTest = true
				}
			case *expr.Lookup:
				conditional = true
				if e.IsDestRegSet && e.DestRegister == unix.NFT_REG_VERDICT {
					t, err := w.vmapTargets(c.Table, e.SetName)
					if err != nil {
						return verdictNone, err
					}
					targets = append(targets, t...)
				}
			default:
				conditional = true
			}
		}
		if final != nil {
			switch final.Kind {
			case expr.VerdictAccept:
				if dnatTest || !conditional {
					return verdictAccept, nil
				}
			case expr.VerdictDrop:
				if !conditional {
					return verdictDrop, nil
				}
			case expr.VerdictReturn:
				if !conditional {
					return verdictNone, nil
				}
			case expr.VerdictJump, expr.VerdictGoto:
				targets = append(targets, final.Chain)
			}
		}
		for _, name := range targets {
			sub, ok := w.chains[chainRef{c.Table.Family, c.Table.Name, name}]
			if !ok {
				continue
			}
			v, err := w.walk(sub, depth+1)
			if err != nil {
				return verdictNone, err
			}
			if v == verdictAccept || (v == verdictDrop && !conditional && len(targets) == 1) {
				return v, nil
			}
		}
	}
	return verdictNone, nil
}

// isDNATStatusTest tells whether the expressions following a ct status
// load test the dnat bit positively, as "ct status dnat" (bit set, not
// zero) and "ct status & dnat == dnat" do.
func isDNATStatusTest(next []expr.Any) bool {
	if len(next) < 2 {
		return false
	}
	bw, ok := next[0].(*expr.Bitwise)
	if !ok || len(bw.Mask) != 4 || binary.NativeEndian.Uint32(bw.Mask)&ipsDstNAT == 0 {
		return false
	}
	c, ok := next[1].(*expr.Cmp)
	if !ok || len(c.Data) != 4 {
		return false
	}
	v := binary.NativeEndian.Uint32(c.Data)
	return (c.Op == expr.CmpOpNeq && v == 0) || (c.Op == expr.CmpOpEq && v&ipsDstNAT != 0)
}

// vmapTargets returns the chains a verdict map jumps or goes to.
func (w *walker) vmapTargets(t *nftables.Table, set string) ([]string, error) {
	elems, err := w.conn.GetSetElements(&nftables.Set{Table: t, Name: set})
	if err != nil {
		return nil, fmt.Errorf("reading verdict map %s: %w", set, err)
	}
	var chains []string
	for _, e := range elems {
		// The element's data is the NFTA_DATA_VERDICT nest, left raw by
		// google/nftables: a verdict code and, for jump/goto, a chain.
		ad, err := netlink.NewAttributeDecoder(e.Val)
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_VERDICT_CHAIN {
				chains = append(chains, string(bytes.TrimRight(ad.Bytes(), "\x00")))
			}
		}
	}
	return chains, nil
}

// xtAcceptsDNAT recognizes iptables-nft's "-m conntrack --ctstate DNAT" and
// "--ctstatus DNAT" (when not inverted).
func xtAcceptsDNAT(m *expr.Match) bool {
	if m.Name != "conntrack" {
		return false
	}
	var base *xt.ConntrackMtinfoBase
	var state, status uint16
	switch info := m.Info.(type) {
	case *xt.ConntrackMtinfo1:
		base, state, status = &info.ConntrackMtinfoBase, uint16(info.StateMask), uint16(info.StatusMask)
	case *xt.ConntrackMtinfo2:
		base, state, status = &info.ConntrackMtinfoBase, info.StateMask, info.StatusMask
	case *xt.ConntrackMtinfo3:
		base, state, status = &info.ConntrackMtinfoBase, info.StateMask, info.StatusMask
	default:
		return false
	}
	flags, inv := xt.ConntrackFlags(base.MatchFlags), xt.ConntrackFlags(base.InvertFlags)
	if flags&xt.ConntrackState != 0 && inv&xt.ConntrackState == 0 && state&xtConntrackStateDNAT != 0 {
		return true
	}
	return flags&xt.ConntrackStatus != 0 && inv&xt.ConntrackStatus == 0 && status&ipsDstNAT != 0
}
