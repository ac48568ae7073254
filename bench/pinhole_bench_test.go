package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/natlab"
)

// TestLabBenchPinhole times "discover + open an IPv6 pinhole", each tool
// from a fresh process on the dual-stack lab's LAN host against miniupnpd:
// portfwd over SSDP on ff02::c, portfwd given the IGD's IPv6 URL, portfwd
// over PCP, upnpc -6 -A with SSDP discovery and with -u. Each pinhole is
// closed, untimed, before the next run.
func TestLabBenchPinhole(t *testing.T) {
	requireBench(t)
	natlab.Require(t, "upnpc")
	l := natlab.Start(t, natlab.Options{IPv6: true})
	bin := natlab.GoBuild(t, "github.com/portfwd/portfwd/cmd/portfwd")
	url6 := l.MiniupnpdURL6()
	lan6 := l.LANIP6.String()
	pcp := []string{"--protocol", "pcp", "--natpmp", l.RouterLANIP6.String()}
	n := runs()
	rows := []row{
		{name: "portfwd add --ipv6 (SSDP ff02::c)"},
		{name: "portfwd add --ipv6 --gateway IPv6-URL"},
		{name: "portfwd add --ipv6 --protocol pcp"},
		{name: "upnpc -6 -A (SSDP discovery)"},
		{name: "upnpc -6 -u URL -A"},
	}
	upnpcAdd := func(args ...string) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := l.Cmd(ctx, natlab.HostLAN, "upnpc", args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		const marker = "Pinhole ID = "
		i := strings.Index(string(out), marker)
		if err != nil || i < 0 {
			t.Fatalf("upnpc %v: %v\n%s", args, err, out)
		}
		id := strings.Fields(string(out[i+len(marker):]))[0]
		untimed(t, l, "upnpc", "-6", "-i", "-u", url6, "-D", id)
		return d
	}
	for i := range n {
		p := strconv.Itoa(20000 + i)
		rows[0].times = append(rows[0].times, timed(t, l, bin, "add", p, "--ipv6", "--protocol", "upnp", "--no-cache"))
		untimed(t, l, bin, "delete", p+"/tcp", "--ipv6", "--protocol", "upnp", "--gateway", url6)
		rows[1].times = append(rows[1].times, timed(t, l, bin, "add", p, "--ipv6", "--gateway", url6))
		untimed(t, l, bin, "delete", p+"/tcp", "--ipv6", "--gateway", url6)
		rows[2].times = append(rows[2].times, timed(t, l, bin, append([]string{"add", p, "--ipv6"}, pcp...)...))
		untimed(t, l, bin, append([]string{"delete", p + "/tcp", "--ipv6"}, pcp...)...)
		rows[3].times = append(rows[3].times, upnpcAdd("-6", "-i", "-A", "", "0", lan6, p, "TCP", "3600"))
		rows[4].times = append(rows[4].times, upnpcAdd("-6", "-i", "-u", url6, "-A", "", "0", lan6, p, "TCP", "3600"))
	}
	printTable(t, "discover + open one IPv6 pinhole, against miniupnpd", rows, 0)
}
