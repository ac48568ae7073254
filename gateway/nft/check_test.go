//go:build linux

package nft

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/portfwd/portfwd/internal/testenv"
)

// checkProblems runs Check for ns and fails the test on an error.
func checkProblems(t *testing.T, ns *netNS, cfg Config) []string {
	t.Helper()
	cfg.NetNS = ns.fd()
	problems, err := Check(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, p := range problems {
		t.Logf("problem: %s", p)
	}
	return problems
}

// wantProblem asserts that exactly one problem is reported and that it
// mentions every word given.
func wantProblem(t *testing.T, problems []string, words ...string) {
	t.Helper()
	if len(problems) != 1 {
		t.Fatalf("Check reported %d problems %q, want 1 mentioning %q", len(problems), problems, words)
	}
	for _, w := range words {
		if !strings.Contains(problems[0], w) {
			t.Fatalf("problem %q does not mention %q", problems[0], w)
		}
	}
}

func TestCheck(t *testing.T) {
	ns := newLab(t).ns()
	// lo exists in every namespace; the wildcard is not checked.
	cfg := Config{ExternalInterfaces: []string{"lo", "ppp*"}}

	t.Run("ip_forward off", func(t *testing.T) {
		wantProblem(t, checkProblems(t, ns, cfg), "net.ipv4.ip_forward")
	})
	ns.sysctl(t, "net/ipv4/ip_forward", "1")

	t.Run("healthy", func(t *testing.T) {
		newBackend(t, ns, cfg) // our own table must not be reported
		if p := checkProblems(t, ns, cfg); len(p) != 0 {
			t.Fatalf("Check reported %q on a healthy namespace", p)
		}
	})

	t.Run("missing interface", func(t *testing.T) {
		wantProblem(t, checkProblems(t, ns, Config{ExternalInterfaces: []string{"wan9"}}), "wan9")
		// Interfaces are looked up in the namespace checked, not the
		// caller's: one of ours is missing there.
		host, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		for _, ifc := range host {
			if ifc.Name != "lo" {
				wantProblem(t, checkProblems(t, ns, Config{ExternalInterfaces: []string{ifc.Name}}), ifc.Name)
				break
			}
		}
	})

	// Each case loads a ruleset with the nft tool and checks the verdict.
	tests := []struct {
		name    string
		ruleset string
		words   []string // nil: no problem expected
	}{
		{
			name: "policy drop without dnat accept",
			ruleset: `table inet adminfw {
				chain forward { type filter hook forward priority filter; policy drop;
					ct state established,related accept
				}
			}`,
			words: []string{"inet adminfw", "policy drop", "ct status dnat accept"},
		},
		{
			name: "policy drop with dnat accept",
			ruleset: `table inet adminfw {
				chain forward { type filter hook forward priority filter; policy drop;
					ct state established,related accept
					ct status dnat accept
				}
			}`,
		},
		{
			name: "fw4 style: accept in a zone chain reached through a verdict map",
			ruleset: `table inet fw4 {
				chain forward { type filter hook forward priority filter; policy drop;
					ct state established,related accept
					iifname vmap { "wan0" : jump forward_wan, "lan0" : jump forward_lan }
				}
				chain forward_lan {
					accept
				}
				chain forward_wan {
					ct status dnat accept comment "!fw4: Accept port forwards"
					drop
				}
			}`,
		},
		{
			name: "fw4 style without the port forward rule",
			ruleset: `table inet fw4 {
				chain forward { type filter hook forward priority filter; policy drop;
					ct state established,related accept
					iifname vmap { "wan0" : jump forward_wan }
				}
				chain forward_wan {
					ct status != dnat counter drop
				}
			}`,
			words: []string{"inet fw4", "policy drop"},
		},
		{
			name: "an unconditional drop ends a policy accept chain",
			ruleset: `table ip legacyish {
				chain fwd_all { type filter hook forward priority filter; policy accept;
					ct state established,related accept
					jump reject_all
				}
				chain reject_all {
					counter drop
				}
			}`,
			words: []string{"ip legacyish", "drops forwarded connections"},
		},
		{
			name: "ipv6 and input chains do not matter",
			ruleset: `table ip6 v6 {
				chain forward { type filter hook forward priority filter; policy drop; }
			}
			table inet host {
				chain input { type filter hook input priority filter; policy drop; }
			}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ruleset.nft")
			if err := os.WriteFile(file, []byte(tt.ruleset), 0o644); err != nil {
				t.Fatal(err)
			}
			ns.nft(t, "-f", file)
			t.Cleanup(func() { ns.nft(t, "flush", "ruleset") })
			p := checkProblems(t, ns, cfg)
			if tt.words == nil {
				if len(p) != 0 {
					t.Fatalf("Check reported %q", p)
				}
				return
			}
			wantProblem(t, p, tt.words...)
		})
	}

	t.Run("iptables-nft conntrack match", func(t *testing.T) {
		c, err := nftables.New(nftables.WithNetNSFd(ns.fd()))
		if err != nil {
			t.Fatal(err)
		}
		// What "iptables-nft -P FORWARD DROP; iptables-nft -A FORWARD
		// -m conntrack --ctstate DNAT -j ACCEPT" creates.
		filter := c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
		drop := nftables.ChainPolicyDrop
		fwd := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.nft(t, "flush", "ruleset") })
		wantProblem(t, checkProblems(t, ns, cfg), "ip filter FORWARD", "--ctstate DNAT")

		info := &xt.ConntrackMtinfo3{}
		info.MatchFlags = uint16(xt.ConntrackState | xt.ConntrackStateAlias)
		info.StateMask = xtConntrackStateDNAT
		c.AddRule(&nftables.Rule{Table: filter, Chain: fwd, Exprs: []expr.Any{
			&expr.Match{Name: "conntrack", Rev: 3, Info: info},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		if err := c.Flush(); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
				testenv.Missing(t, "the kernel lacks nft_compat or xt_conntrack (modprobe them): %v", err)
			}
			t.Fatal(err)
		}
		if p := checkProblems(t, ns, cfg); len(p) != 0 {
			t.Fatalf("Check reported %q with an iptables DNAT accept rule", p)
		}
	})
}
