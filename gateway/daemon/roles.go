package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/portfwd/portfwd/internal/addrclass"
	"github.com/portfwd/portfwd/internal/netroute"
)

// ErrInterfaceRoles is what New's error wraps when the interfaces look
// swapped or wrong (see roleProblems) and interfaces.force is not set.
var ErrInterfaceRoles = errors.New("the interface roles look wrong")

// roleProblems reports interfaces whose role contradicts what the host
// says about them, the mistake that would serve UPnP and NAT-PMP to the
// Internet (internal and external swapped, say):
//
//   - an internal interface that carries the default route: the way to
//     the Internet is never the LAN;
//   - an internal interface with a public address;
//   - an external interface that no default route leaves through: the
//     Internet is not behind it.
//
// Routes are read from the main table (/proc/net/route); where it cannot
// be read, only the addresses are checked. Interface patterns ("ppp*")
// are not checked: their interface may not exist yet. Setups these rules
// do not fit (a LAN of public addresses, policy routing) set
// interfaces.force.
func roleProblems(cfg *Config) []string {
	var out []string
	routes, routesErr := mainRoutes()
	defaults := map[string]netroute.Route{}
	for _, r := range routes {
		if r.Dst.Bits() == 0 && r.Flags&netroute.FlagUp != 0 && r.Flags&netroute.FlagReject == 0 {
			defaults[r.Iface] = r
		}
	}
	for _, name := range cfg.Interfaces.Internal {
		if r, ok := defaults[name]; ok {
			via := ""
			if r.Gateway.IsValid() && !r.Gateway.IsUnspecified() {
				via = " via " + r.Gateway.String()
			}
			out = append(out, fmt.Sprintf("internal interface %s carries the default route%s, so it faces the Internet, not the LAN: UPnP and NAT-PMP would be served there (are --internal and --external swapped?)", name, via))
		}
		prefixes, _ := netroute.InterfaceAddrs(name)
		for _, p := range prefixes {
			if c := addrclass.Of(p.Addr()); c == addrclass.Public {
				out = append(out, fmt.Sprintf("internal interface %s has the public address %s: UPnP and NAT-PMP would be answered to whoever reaches it from the Internet (are --internal and --external swapped?)", name, p.Addr()))
			}
		}
	}
	if routesErr != nil {
		return out
	}
	for _, name := range cfg.Interfaces.External {
		if strings.HasSuffix(name, "*") {
			continue
		}
		if _, ok := defaults[name]; !ok {
			out = append(out, fmt.Sprintf("external interface %s has no route out: no default route leaves through it, so the Internet is not behind it and its traffic is not what should be forwarded (is it the right interface? a router needs `ip route add default via GATEWAY dev %s`)", name, name))
		}
	}
	return out
}

// mainRoutes reads the main IPv4 routing table.
func mainRoutes() ([]netroute.Route, error) {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, err
	}
	return netroute.ParseProcNetRoute(data)
}

// checkRoles is New's guard: the role problems as one error, unless
// forced, in which case they are logged.
func (d *Daemon) checkRoles() error {
	problems := roleProblems(&d.cfg)
	if len(problems) == 0 {
		return nil
	}
	if d.cfg.Interfaces.Force {
		for _, p := range problems {
			d.log.Warn("starting anyway (interfaces.force): " + p)
		}
		return nil
	}
	return fmt.Errorf("%w: %s; fix the interfaces, or pass --force if this is really what you mean", ErrInterfaceRoles, strings.Join(problems, "; "))
}
