package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	paths := programs(t, "ip", "nft", "miniupnpd", "sh", "mount")
	l := &Lab{
		opts:        Options{Router: RouterNone},
		ip:          paths["ip"],
		nft:         paths["nft"],
		ns:          map[string]*os.File{},
		LANIP:       netip.MustParseAddr("10.77.0.2"),
		RouterLANIP: netip.MustParseAddr("10.77.0.1"),
		LANPrefix:   netip.MustParsePrefix("10.77.0.0/24"),
		RouterWANIP: netip.MustParseAddr("100.64.0.2"),
		WANIP:       netip.MustParseAddr("203.0.113.2"),
		WANIP2:      netip.MustParseAddr("203.0.113.3"),
		WANPrefix:   netip.MustParsePrefix("203.0.113.0/24"),
	}
	d := &Double{Lab: l,
		ISPInsideIP:  netip.MustParseAddr("100.64.0.1"),
		ISPOutsideIP: netip.MustParseAddr("203.0.113.1"),
		CGNATPrefix:  netip.MustParsePrefix("100.64.0.0/24"),
	}
	prefix := opts.Prefix
	if prefix == "" {
		var err error
		if prefix, err = freePrefix(t.Name()); err != nil {
			t.Fatal(err)
		}
	}
	l.LAN, l.Router, l.ISP, l.WAN = prefix+"-lan", prefix+"-rtr", prefix+"-isp", prefix+"-wan"
	dir, err := os.MkdirTemp("", "natlab-"+prefix+"-")
	if err != nil {
		t.Fatalf("natlab: %v", err)
	}
	l.RunDir = dir
	l.spawn = newSpawner()
	t.Cleanup(func() { l.teardown(t) })

	if err := d.createNamespaces(); err != nil {
		if errors.Is(err, errNoNetns) {
			unavailable(t, "%v", err)
		}
		t.Fatal(err)
	}
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

// programs checks that the named programs exist (skipping or failing t as
// Require does) and returns their paths.
func programs(t testing.TB, names ...string) map[string]string {
	t.Helper()
	Require(t, names...)
	out := map[string]string{}
	for _, n := range names {
		out[n] = (&Lab{}).mustTool(n)
	}
	return out
}

func (d *Double) createNamespaces() error {
	l := d.Lab
	names := []string{l.LAN, l.Router, l.ISP, l.WAN}
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
			return fmt.Errorf("natlab: namespace %s already exists; give the lab another prefix (or delete a stale one with `ip netns del %s`)", ns, ns)
		}
	}
	err := l.ipBatch("",
		"netns add "+l.LAN,
		"netns add "+l.Router,
		"netns add "+l.ISP,
		"netns add "+l.WAN,
		fmt.Sprintf("link add %s netns %s type veth peer name %s netns %s", HostIf, l.LAN, RouterLANIf, l.Router),
		fmt.Sprintf("link add %s netns %s type veth peer name %s netns %s", RouterWANIf, l.Router, RouterLANIf, l.ISP),
		fmt.Sprintf("link add %s netns %s type veth peer name %s netns %s", RouterWANIf, l.ISP, HostIf, l.WAN),
	)
	for _, ns := range names {
		if _, serr := os.Stat(filepath.Join(netnsDir, ns)); serr == nil {
			l.created = append(l.created, ns)
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") || strings.Contains(err.Error(), "Permission denied") {
			return fmt.Errorf("%w: %v", errNoNetns, err)
		}
		return fmt.Errorf("natlab: creating the lab's namespaces: %w", err)
	}
	return nil
}

func (d *Double) configure() error {
	l := d.Lab
	common := map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
		"net/ipv4/conf/*/rp_filter":          "0",
	}
	for _, h := range []string{HostLAN, HostRouter, HostISP, HostWAN} {
		f, err := l.nsFile(h)
		if err != nil {
			return err
		}
		kv := map[string]string{}
		for k, v := range common {
			kv[k] = v
		}
		if h == HostRouter || h == HostISP {
			kv["net/ipv4/ip_forward"] = "1"
		}
		if err := sysctl(f, kv); err != nil {
			return err
		}
	}
	pfx := func(a netip.Addr, p netip.Prefix) string { return netip.PrefixFrom(a, p.Bits()).String() }
	steps := []struct {
		ns    string
		lines []string
	}{
		{l.LAN, []string{
			"link set lo up",
			"addr add " + pfx(l.LANIP, l.LANPrefix) + " dev " + HostIf,
			"link set " + HostIf + " up",
			"route add default via " + l.RouterLANIP.String() + " dev " + HostIf,
			"route add 224.0.0.0/4 dev " + HostIf,
		}},
		{l.Router, []string{
			"link set lo up",
			"addr add " + pfx(l.RouterLANIP, l.LANPrefix) + " dev " + RouterLANIf,
			"addr add " + pfx(l.RouterWANIP, d.CGNATPrefix) + " dev " + RouterWANIf,
			"link set " + RouterLANIf + " up",
			"link set " + RouterWANIf + " up",
			// Multicast goes to the LAN unless a program chooses (D1).
			"route add 224.0.0.0/4 dev " + RouterLANIf,
			"route add default via " + d.ISPInsideIP.String() + " dev " + RouterWANIf,
		}},
		{l.ISP, []string{
			"link set lo up",
			"addr add " + pfx(d.ISPInsideIP, d.CGNATPrefix) + " dev " + RouterLANIf,
			"addr add " + pfx(d.ISPOutsideIP, l.WANPrefix) + " dev " + RouterWANIf,
			"link set " + RouterLANIf + " up",
			"link set " + RouterWANIf + " up",
			"route add 224.0.0.0/4 dev " + RouterLANIf,
			"route add default via " + l.WANIP.String() + " dev " + RouterWANIf,
		}},
		{l.WAN, []string{
			"link set lo up",
			"addr add " + pfx(l.WANIP, l.WANPrefix) + " dev " + HostIf,
			"addr add " + pfx(l.WANIP2, l.WANPrefix) + " dev " + HostIf,
			"link set " + HostIf + " up",
		}},
	}
	for _, s := range steps {
		if err := l.ipBatch(s.ns, s.lines...); err != nil {
			return fmt.Errorf("natlab: configuring %s: %w", s.ns, err)
		}
	}
	// The home router: Router "none"'s ruleset. The ISP: a miniupnpd
	// router's, for the CGNAT segment.
	isp := &Lab{opts: Options{Router: RouterMiniupnpd}, LANPrefix: d.CGNATPrefix}
	for _, r := range []struct{ host, file, rules string }{
		{HostRouter, "router.nft", l.ruleset()},
		{HostISP, "isp.nft", isp.ruleset()},
	} {
		if err := os.WriteFile(filepath.Join(l.RunDir, r.file), []byte(r.rules), 0o644); err != nil {
			return fmt.Errorf("natlab: %w", err)
		}
		cmd := l.command(context.Background(), r.host, l.nft, "-f", "-")
		cmd.Stdin = strings.NewReader(r.rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("natlab: loading the %s nftables ruleset (%s/%s): %w: %s", r.host, l.RunDir, r.file, err, bytes.TrimSpace(out))
		}
	}
	return nil
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
		uuid := make([]byte, 16)
		rand.Read(uuid)
		c := &Conf{
			ExtIfname:         RouterWANIf,
			PerformSTUN:       true,
			STUNHost:          l.WANIP,
			STUNPort:          STUNPort,
			ListeningIP:       RouterLANIf,
			HTTPPort:          MiniupnpdHTTPPort,
			EnableUPnP:        true,
			EnableNATPMP:      true,
			SecureMode:        true,
			IPv6Disable:       true,
			MinLifetime:       120,
			MaxLifetime:       86400,
			SystemUptime:      true,
			NotifyInterval:    60,
			TableName:         "filter",
			NATTableName:      "filter",
			ForwardChain:      "miniupnpd",
			NATChain:          "prerouting_miniupnpd",
			NATPostrouteChain: "postrouting_miniupnpd",
			LeaseFile:         filepath.Join(l.RunDir, "isp-upnp.leases"),
			MinissdpdSocket:   filepath.Join(l.RunDir, "isp-minissdpd.sock"),
			FriendlyName:      "natlab ISP " + l.ISP,
			ManufacturerName:  "natlab",
			ModelName:         "natlab ISP miniupnpd",
			ModelNumber:       "1",
			Serial:            "00000002",
			UUID:              fmt.Sprintf("%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:]),
			Rules: []string{
				fmt.Sprintf("allow 1024-65535 %s 1024-65535", d.CGNATPrefix),
				"deny 0-65535 0.0.0.0/0 0-65535",
			},
		}
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
	addr := netip.AddrPortFrom(d.ISPInsideIP, d.ISPConf.HTTPPort)
	if err := l.waitTCP(HostRouter, addr, 10*time.Second, p); err != nil {
		p.Stop()
		return fmt.Errorf("natlab: the ISP's miniupnpd did not start: %w", err)
	}
	for range 200 {
		out := p.Output()
		switch {
		case strings.Contains(out, "Port forwarding is now enabled"):
			return nil
		case strings.Contains(out, "Port forwarding is now disabled"):
			return fmt.Errorf("natlab: the ISP's miniupnpd disabled port forwarding after the STUN test (see %s)", p.Log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("natlab: the ISP's miniupnpd never logged \"Port forwarding is now enabled\" (see %s)", p.Log)
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
