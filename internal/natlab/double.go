package natlab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// Double is a two-level NAT lab (carrier-grade NAT, or a home router
// behind the ISP's box), the shape of the reference lab's
// NATLAB_TOPOLOGY=double:
//
//	 LAN host            home router                 ISP router                       WAN host
//	eth0 10.77.0.2 ── lan0 10.77.0.1  wan0 100.64.0.2 ── lan0 100.64.0.1  wan0 203.0.113.1 ── eth0 203.0.113.2 (+.3)
//	                   NAT, no daemon (the gateway        miniupnpd (UPnP, NAT-PMP, PCP),       STUN responder
//	                   under test runs here)              NAT of 100.64.0.0/24
//
// The home router masquerades the LAN and accepts DNAT-ed connections (as
// Router "none"); its default route goes to the ISP, and its 224.0.0.0/4
// route to the LAN, as in the reference lab (gotcha D1: a discovery that
// does not choose the external interface finds the LAN side). The ISP
// router masquerades 100.64.0.0/24 and runs miniupnpd for it, with secure
// mode and `allow 1024-65535 100.64.0.0/24 1024-65535`; it learns its
// public address over STUN from the WAN host (see the package doc). The WAN
// host has no route to either private network and the ISP none to the LAN:
// only a mapping on both levels connects the WAN host to the LAN host.
type Double struct {
	*Lab
	// ISPInsideIP is the ISP router's address on the CGNAT segment (the
	// home router's default gateway); ISPOutsideIP its public address.
	ISPInsideIP, ISPOutsideIP netip.Addr
	CGNATPrefix               netip.Prefix
	// ISPConf is the ISP's miniupnpd configuration; ISPMiniupnpd its
	// process (replaced by RestartISP).
	ISPConf      *Conf
	ISPMiniupnpd *Process
}

// DoubleOptions configure StartDouble.
type DoubleOptions struct {
	Prefix string // as Options.Prefix
	// ISPConf, if set, may change the ISP miniupnpd's configuration.
	ISPConf func(*Conf)
}

// StartDouble builds a double-NAT lab and registers its teardown, as Start
// does; the home router runs no daemon.
func StartDouble(t testing.TB, opts DoubleOptions) *Double {
	t.Helper()
	began := time.Now()
	if opts.Prefix != "" && !validPrefix.MatchString(opts.Prefix) {
		t.Fatalf("natlab: DoubleOptions.Prefix %q: want 1-10 letters, digits or underscores", opts.Prefix)
	}
	if testing.Short() {
		t.Skip("natlab: -short: the NAT lab runs in the full suite only")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the NAT lab needs root (network namespaces, nftables); run the tests as root, e.g. through scripts/test.sh")
	}
	paths := testenv.Programs(t, "ip", "nft", "miniupnpd", "sh", "mount")
	l := newLab(Options{Router: RouterNone}, paths)
	l.RouterWANIP = netip.MustParseAddr("100.64.0.2") // on the CGNAT segment
	d := &Double{Lab: l,
		ISPInsideIP:  netip.MustParseAddr("100.64.0.1"),
		ISPOutsideIP: netip.MustParseAddr("203.0.113.1"),
		CGNATPrefix:  netip.MustParsePrefix("100.64.0.0/24"),
	}
	prefix := l.prepare(t, opts.Prefix)
	l.ISP = prefix + "-isp"
	d.build(t, d.topology())
	if err := d.configure(); err != nil {
		t.Fatal(err)
	}
	if err := l.startSTUN(); err != nil {
		t.Fatal(err)
	}
	if err := d.startISP(opts.ISPConf, false); err != nil {
		t.Fatal(err)
	}
	l.StartupTime = time.Since(began)
	t.Logf("natlab: double-NAT lab %s up in %v (LAN %v, home %v/%v, ISP %v/%v, WAN %v, files in %s)",
		prefix, l.StartupTime.Round(time.Millisecond), l.LANIP, l.RouterLANIP, l.RouterWANIP,
		d.ISPInsideIP, d.ISPOutsideIP, l.WANIP, l.RunDir)
	return d
}

func (d *Double) configure() error {
	tp := d.topology()
	if err := d.configureTopology(tp, baseSysctls()); err != nil {
		return err
	}
	return d.loadRulesets(tp)
}

// ISPURL returns the URL of the ISP miniupnpd's root description.
func (d *Double) ISPURL() string {
	return fmt.Sprintf("http://%s/rootDesc.xml", netip.AddrPortFrom(d.ISPInsideIP, d.ISPConf.HTTPPort))
}

// startISP writes the ISP's miniupnpd.conf (once) and starts it; with
// fresh, its lease file is removed first, so that it starts with no
// mapping, as after a reboot.
func (d *Double) startISP(edit func(*Conf), fresh bool) error {
	l := d.Lab
	if d.ISPConf == nil {
		c := l.routerConf("isp-", "ISP ", l.ISP, "00000002", d.CGNATPrefix)
		if edit != nil {
			edit(c)
		}
		d.ISPConf = c
		if err := os.WriteFile(filepath.Join(l.RunDir, "isp-miniupnpd.conf"), []byte(c.String()), 0o644); err != nil {
			return fmt.Errorf("natlab: %w", err)
		}
	}
	if fresh {
		os.Remove(d.ISPConf.LeaseFile)
	}
	const wrap = `mount --bind /dev/null /dev/console 2>/dev/null; exec "$@"`
	l.mu.Lock()
	l.seq++
	logName := fmt.Sprintf("isp-miniupnpd-%d.log", l.seq)
	l.mu.Unlock()
	p, err := l.start(logName, HostISP, "sh", "-c", wrap, "miniupnpd", l.mustTool("miniupnpd"),
		"-d", "-f", filepath.Join(l.RunDir, "isp-miniupnpd.conf"), "-P", filepath.Join(l.RunDir, "isp-miniupnpd.pid"))
	if err != nil {
		return err
	}
	p.Name = "ISP miniupnpd"
	d.ISPMiniupnpd = p
	return l.waitForwarding(p, "the ISP's miniupnpd", HostRouter, netip.AddrPortFrom(d.ISPInsideIP, d.ISPConf.HTTPPort))
}

// StopISP stops the ISP's miniupnpd by its PID (SIGTERM: it removes its
// rules and saves its leases, as a clean shutdown does).
func (d *Double) StopISP(t testing.TB) {
	t.Helper()
	d.ISPMiniupnpd.Stop()
}

// RestartISP reboots the ISP router's miniupnpd with its state lost: the
// daemon is killed (SIGKILL, by PID), its lease file removed, its nftables
// chains flushed, and it is started again. It returns once the new daemon
// has enabled forwarding (it sends its PCP ANNOUNCE right after, on the
// CGNAT segment).
func (d *Double) RestartISP(t testing.TB) {
	t.Helper()
	if p := d.ISPMiniupnpd; p != nil {
		// Only a process not reaped yet: its PID cannot have been reused.
		if exited, _ := p.Exited(); !exited {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-p.Done()
	}
	os.Remove(d.ISPConf.LeaseFile)
	os.Remove(filepath.Join(d.RunDir, "isp-miniupnpd.pid"))
	if _, err := d.Run(t, HostISP, d.nft, "flush chain inet filter miniupnpd; flush chain inet filter prerouting_miniupnpd; flush chain inet filter postrouting_miniupnpd"); err != nil {
		t.Fatal(err)
	}
	// miniupnpd's BOOTID and epoch come from the clock in seconds.
	time.Sleep(1100 * time.Millisecond)
	if err := d.startISP(nil, true); err != nil {
		t.Fatal(err)
	}
}

// ISPMappings returns the ISP miniupnpd's port mappings, as its nftables
// DNAT rules show them: one "TCP 18080->100.64.0.2:18080" per mapping.
func (d *Double) ISPMappings(t testing.TB) []string {
	t.Helper()
	out, err := d.Run(t, HostISP, d.nft, "list", "chain", "inet", "filter", "prerouting_miniupnpd")
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		i := strings.Index(line, "dnat ip to ")
		j := strings.Index(line, "th dport ")
		if i < 0 || j < 0 {
			continue
		}
		proto := "UDP"
		if strings.Contains(line, "0x6 ") {
			proto = "TCP"
		}
		port := strings.Fields(line[j+len("th dport "):])[0]
		to := strings.Fields(line[i+len("dnat ip to "):])[0]
		ms = append(ms, proto+" "+port+"->"+to)
	}
	return ms
}
