package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/portfwd/portfwd/internal/cli"
	"github.com/portfwd/portfwd/internal/gatewaycmd"
	"github.com/portfwd/portfwd/internal/version"
)

// program is portfwd's documentation: what it is, each command's usage
// line, description and examples, and the sections of the man page. The
// flags are not here: each command defines them where it uses them, and
// describe or fullProgram adds them.
func program() *cli.Program {
	all := docs()
	doc := func(name string) *cli.Command {
		c := all[name]
		c.Name = name
		return &c
	}
	group := func(title string, names ...string) cli.Group {
		g := cli.Group{Title: title}
		for _, n := range names {
			g.Commands = append(g.Commands, doc(n))
		}
		return g
	}
	p := &cli.Program{
		Name:    "portfwd",
		Summary: "open ports on a NAT router over UPnP IGD, NAT-PMP and PCP, and be one",
		Description: `portfwd asks a router to forward ports from the Internet to a machine on its LAN, for game and P2P ` +
			`clients, servers at home and video calls. It finds the gateway, reads its details and external address, ` +
			`lists, adds, edits and deletes port mappings, keeps a port open across renewals and router restarts, ` +
			`watches the router for changes, and proves from outside that a forward works. It speaks UPnP IGD ` +
			`(SSDP, SOAP, GENA), NAT-PMP (RFC 6886) and PCP (RFC 6887), racing them to use whichever the router ` +
			`answers. Every change is read back: portfwd reports what the router did, not what it was asked.

portfwd gateway is the router side of the same three protocols, like miniupnpd.`,
		Groups: []cli.Group{
			group("Client commands", "discover", "info", "ip", "list", "add", "edit", "delete", "keep", "forget", "watch", "check", "ui"),
			group("Router side", "gateway", "probe-server"),
			group("Other commands", "demo", "version", "completion", "man", "help"),
		},
		SharedTitle: "Client flags (every client command)",
		SharedDescription: `Every client command (discover, info, ip, list, add, edit, delete, keep, forget, watch, check and ui) ` +
			`accepts these flags. Flags may come before or after the arguments, and --name=value is the same as --name value.`,
		Sections: []cli.Section{
			{Title: "Exit status", InHelp: true, Text: ` 0  done
 1  usage error: a mistake in the command line (nothing was sent)
 2  no gateway found
 3  refused, by the router or by portfwd (a mapping in the way, a change the router ignored)
 4  any other failure (network, timeout)
 5  portfwd check: the port is not reachable from outside

portfwd gateway exits 1 for a configuration it cannot use and 4 when it cannot run.

Run 'portfwd help COMMAND' for a command's usage, flags and examples.`},
			{Title: "JSON", Text: `With --json, every command prints one JSON object (keep and watch print one per line), ` +
				`with "schema": 1 and snake_case fields, as README.md documents. A failure prints ` +
				`{"schema": 1, "error": {"code", "message", "exit"}} on stdout as well as its exit status.`},
			{Title: "Environment", Text: ` PORTFWD_STATE_DIR  the client's state directory (--state-dir)
 XDG_STATE_HOME     else its parent: $XDG_STATE_HOME/portfwd, else ~/.local/state/portfwd
 PORTFWD_CONFIG     the client's configuration file (portfwd check --config)
 XDG_CONFIG_HOME    else its parent: $XDG_CONFIG_HOME/portfwd/config.toml, else ~/.config/portfwd/config.toml
 GOMEMLIMIT         portfwd gateway: the Go runtime's memory limit, over --memory-limit`},
			{Title: "Files", Text: ` ~/.local/state/portfwd/state.json   mappings made over NAT-PMP and PCP, mappings kept, the last gateway
 ~/.config/portfwd/config.toml       probe_servers for portfwd check and the web interface
 /etc/portfwd/gateway.toml           portfwd gateway's configuration (--config)
 /var/lib/portfwd                    portfwd gateway's leases, epoch, device UUID and audit trail`},
			{Title: "See also", Text: `upnpc(1), natpmpc(1), miniupnpd(8); README.md, docs/gateway.md and dist/gateway.example.toml in the source.`},
		},
		Version: version.Version,
	}
	p.Command("help").ArgValues = p.CommandNames()
	return p
}

// describe returns the documentation of the command that fs is the flag
// set of, with its flags.
func describe(fs *flag.FlagSet) *cli.Command {
	c := program().Command(fs.Name())
	if c == nil {
		c = &cli.Command{Name: fs.Name()}
	}
	c.Flags = fs
	c.Shared = func(name string) bool { return sharedFlag(name) && fs.Lookup("protocol") != nil }
	return c
}

// fullProgram is program() with every command's flags, which it learns
// by asking each command for its help (see env.flagSink).
func fullProgram(ctx context.Context) (*cli.Program, error) {
	p := program()
	for _, c := range p.Commands() {
		cmd, ok := lookup(c.Name)
		if !ok {
			return nil, fmt.Errorf("command %s is documented but does not exist", c.Name)
		}
		var fs *flag.FlagSet
		e := &env{stdout: discard{}, stderr: discard{}, flagSink: func(f *flag.FlagSet) { fs = f },
			beforeNetwork: func(string) { panic("a command asked for its flags used the network") }}
		if err := cmd.run(ctx, e, []string{"--help"}); err != errHelpShown || fs == nil {
			return nil, fmt.Errorf("command %s did not give its flags (%v)", c.Name, err)
		}
		d := describe(fs)
		c.Flags, c.Shared = d.Flags, d.Shared
	}
	for _, c := range commands() {
		if p.Command(c.name) == nil {
			return nil, fmt.Errorf("command %s is not documented", c.name)
		}
	}
	return p, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// docs documents each command; program puts them in groups.
func docs() map[string]cli.Command {
	return map[string]cli.Command{
		"discover": {
			Summary: "find gateways: protocol, address, service, status, external IP",
			Description: `Finds the gateways on this network by every protocol at once: SSDP multicast for UPnP IGD (and a ` +
				`unicast search to the default gateway), NAT-PMP and PCP to the default gateway. It stops at the first ` +
				`usable gateway (waiting 300 ms for UPnP when NAT-PMP or PCP answers first) unless --wait is given, then ` +
				`prints each gateway found, best first: its protocol and address, its status and its external address. ` +
				`An external address that the Internet cannot reach (double NAT, carrier-grade NAT) comes with a warning.`,
			Examples: []cli.Example{
				{Command: "portfwd discover"},
				{Command: "portfwd discover --wait --timeout 5s", Comment: "every gateway that answers within 5 seconds"},
				{Command: "portfwd discover --protocol pcp --natpmp 192.168.1.1", Comment: "ask one router over PCP only"},
			},
		},
		"info": {
			Summary: "show the gateway's device information",
			Description: `Shows what the gateway tells about itself. Over UPnP: its device description (name, manufacturer, ` +
				`model, serial number, services), connection status and type, uptime and link speed. Over NAT-PMP and PCP, ` +
				`which say little: the server's address, its epoch and its external address. What the router will not tell ` +
				`is left out; a request that fails is named as the problem.`,
			Examples: []cli.Example{
				{Command: "portfwd info"},
				{Command: "portfwd info --protocol natpmp --json"},
			},
		},
		"ip": {
			Summary: "show the external address (warns about double NAT and CGNAT)",
			Description: `Prints the gateway's external address alone on stdout, so that $(portfwd ip) is the address. When ` +
				`the Internet cannot reach that address (a private address: another router in front, double NAT; ` +
				`100.64.0.0/10: the ISP's carrier-grade NAT), a warning on stderr says what it means and what to do. When ` +
				`this host has a global IPv6 address, a second line gives it: on IPv6 there is no NAT, the address is ` +
				`public itself. --ipv4 prints the external IPv4 address alone; --ipv6 this host's IPv6 address alone, ` +
				`without asking the router.`,
			Examples: []cli.Example{
				{Command: "portfwd ip"},
				{Command: "portfwd ip --ipv4", Comment: "the IPv4 address alone, for scripts"},
				{Command: "portfwd ip --json"},
			},
		},
		"list": {
			Summary: "list the router's port mappings",
			Description: `Lists the gateway's mapping table: protocol, external port, internal address and port, whether ` +
				`each is enabled, the lease left, the remote host and the description. This needs UPnP: NAT-PMP and PCP ` +
				`have no way to list a router's mappings ('portfwd forget' shows the records of those this host made). ` +
				`A table cut short by an error is printed as far as it was read, and the command exits 4. The IPv6 pinholes ` +
				`this host opened follow in their own table (ID, address, remote, lease left, via), from its records: ` +
				`routers cannot list pinholes. --ipv6 lists those alone, without asking the router.`,
			Examples: []cli.Example{
				{Command: "portfwd list"},
				{Command: `portfwd list --json | jq '.mappings[] | select(.internal_client == "192.168.1.20")'`,
					Comment: "the mappings to one host"},
			},
		},
		"add": {
			Args:    "PORT",
			Summary: "add a port mapping to PORT on this host",
			Description: `Asks the router to forward an external port (--external, by default PORT itself) to PORT on this ` +
				`host, or on the host --client names; TCP unless --proto says udp or both. It never replaces a mapping ` +
				`already at that port: it reads the port first and refuses, naming the mapping in the way, unless ` +
				`--replace is given; --any lets the router choose another external port instead.

What is printed is the mapping as the router holds it, read back after the change. A note on stderr says what ` +
				`the router granted differently from what was asked (a shorter lease, say). NAT-PMP and PCP carry no ` +
				`description: there --desc is kept in this host's records only, and a note says so.

With --ipv6 it opens an IPv6 pinhole instead: an inbound firewall rule to PORT on this host's own IPv6 ` +
				`address (there is no NAT on IPv6, so no external port), with UPnP's WANIPv6FirewallControl or PCP. ` +
				`The address is this host's stable global one (temporary addresses rotate and are skipped), or the ` +
				`one of its own --client names; the request is sent from that address, as routers require. The ` +
				`pinhole is printed as the router acknowledged it (no protocol can read one back) and recorded, ` +
				`with its ID, in the state directory; the lease is 1h unless --lease says otherwise (at most 24h over UPnP).`,
			Examples: []cli.Example{
				{Command: "portfwd add 8080", Comment: "forward TCP port 8080 of the router to port 8080 on this host"},
				{Command: `portfwd add 8080 --external 18080 --desc "web server"`},
				{Command: "portfwd add 25565 --proto both --lease 2h --desc minecraft"},
				{Command: "portfwd add 3389 --client 192.168.1.30 --any", Comment: "forward to another host, at another external port if 3389 is taken"},
				{Command: "portfwd add 8080 --ipv6", Comment: "open an IPv6 pinhole to port 8080 of this host's global address"},
			},
		},
		"edit": {
			Args:    "EXT/PROTO",
			Summary: "change a mapping: internal port or host, external port, lease, description",
			Description: `Changes the mapping at external port EXT (EXT/tcp, EXT/udp or EXT/both; tcp when no /PROTO is ` +
				`given). Only the fields given change. The old entry is read, the new one applied, and the old one ` +
				`restored if the new one fails. The result is read back: a field the router accepted but ignored is an ` +
				`error (exit 3) that says what the router holds instead.`,
			Examples: []cli.Example{
				{Command: "portfwd edit 18080/tcp --internal 8081"},
				{Command: "portfwd edit 25565/both --lease 4h"},
				{Command: "portfwd edit 18080/tcp --external 18081 --replace", Comment: "move it, replacing a mapping already at 18081"},
			},
		},
		"delete": {
			Args:    "EXT/PROTO | --range START-END | PORT/PROTO --ipv6 | --id ID",
			Summary: "delete a mapping, or every mapping in a --range",
			Description: `Deletes the mapping at external port EXT (EXT/tcp, EXT/udp or EXT/both; --proto when no /PROTO ` +
				`is given), or, with --range START-END instead, every mapping of --proto whose external port is in the ` +
				`range, and lists those really removed: the table is read before and after where the router can list it. ` +
				`Over NAT-PMP and PCP a mapping is deleted through this host's record of it, kept since it was added. With ` +
				`--ipv6 it closes the IPv6 pinhole this host opened to PORT/PROTO (--client chooses when it opened ` +
				`several); --id closes a pinhole by the ID 'portfwd list' shows (over UPnP, also one opened elsewhere). ` +
				`A pinhole the router no longer has is dropped from the records with a note.`,
			Examples: []cli.Example{
				{Command: "portfwd delete 18080/tcp"},
				{Command: "portfwd delete --range 25000-26000 --proto both"},
				{Command: "portfwd delete 8080/tcp --ipv6"},
				{Command: "portfwd delete --id 3"},
			},
		},
		"keep": {
			Args:    "PORT",
			Summary: "keep a port mapped until Ctrl-C: renew, recreate, delete on exit",
			Description: `Maps the port as add does and holds the mapping until Ctrl-C or SIGTERM, then deletes it. It ` +
				`renews the lease at half its life, makes the mapping again when the router loses it (a restart, someone ` +
				`deleting it), follows a new external address, and finds the gateway again, possibly over another ` +
				`protocol, when it stops answering. Each change is printed with its time. "Mapped" means the router holds ` +
				`the mapping, not that the Internet reaches it: 'portfwd check' proves that. A refusal that will not pass ` +
				`ends keep with exit 3. --ipv6 keeps an IPv6 pinhole instead (renewed with UpdatePinhole or a PCP ` +
				`refresh, opened again when the router lost it); --ipv4 --ipv6 keeps both.`,
			Examples: []cli.Example{
				{Command: "portfwd keep 8080"},
				{Command: "portfwd keep 8080 --ipv4 --ipv6", Comment: "a port mapping and a pinhole, held together"},
				{Command: "portfwd keep 25565 --proto both --lease 30m --json"},
			},
		},
		"forget": {
			Args:    "[EXT/PROTO ...]",
			Summary: "drop remembered mappings that are gone (changes nothing on the router)",
			Description: `portfwd remembers, in its state directory, the mappings it made over NAT-PMP and PCP (a later ` +
				`delete needs them) and those 'portfwd keep' holds. forget drops the records of mappings that are gone: ` +
				`leases that ended, and UPnP entries the router no longer holds. Given mappings, it drops their records; ` +
				`with --all, every record but those of a running keep. It never changes anything on the router.`,
			Examples: []cli.Example{
				{Command: "portfwd forget"},
				{Command: "portfwd forget 9000/udp"},
				{Command: "portfwd forget --all"},
			},
		},
		"watch": {
			Summary: "print each change on the gateway until Ctrl-C",
			Description: `Prints each change on the gateway as it happens: a new external address, mappings added or ` +
				`removed, the connection status, a router restart, the gateway going away and coming back. It subscribes ` +
				`to the router's UPnP events (GENA), listens for NAT-PMP and PCP announcements, and reads the gateway ` +
				`every --interval as a safety net; each change is reported once, however it was noticed.`,
			Examples: []cli.Example{
				{Command: "portfwd watch"},
				{Command: "portfwd watch --json --interval 10s"},
			},
		},
		"check": {
			Args:    "PORT",
			Summary: "prove from outside that a forward works (needs a probe server)",
			Description: `Asks a probe server outside your network (--probe, or probe_servers in the configuration file) to ` +
				`connect back to your public address. If nothing listens on PORT, check listens there itself for the ` +
				`duration, and the probe must bring back a random token: success proves that the forward leads to this ` +
				`host and port. A failure comes with its likely reason (no mapping, a mapping to another host or port, ` +
				`double NAT or carrier-grade NAT, a firewall), from what the probe saw and the router says. Exits 0 when ` +
				`the port is reachable, 5 when it is not.`,
			Examples: []cli.Example{
				{Command: "portfwd check 8080 --probe http://probe.example.net:8999"},
				{Command: "portfwd check 8080 --external 18080 --proto udp"},
			},
		},
		"ui": {
			Summary: "the web interface, on 127.0.0.1 with a secret token for this run",
			Description: `Serves the web interface on this computer: the gateways and their external address, the mapping ` +
				`table with lease countdowns, forms to add, edit and delete mappings, keep-open toggles and, with probe ` +
				`servers, check buttons. It listens on 127.0.0.1 on a free port unless --listen says otherwise, and ` +
				`prints the address with a secret token for this run, which every change must carry.`,
			Examples: []cli.Example{
				{Command: "portfwd ui --open"},
				{Command: "portfwd ui --listen 127.0.0.1:8080"},
			},
		},
		"gateway": gatewaycmd.Doc("portfwd gateway"),
		"probe-server": {
			Summary: "answer 'portfwd check' from a host outside the NAT",
			Description: `The server half of 'portfwd check', for a host with a public address. It connects back only to ` +
				`the address each request comes from, never to an address named in the request, so it is neither a ` +
				`scanner nor a reflector. It limits the checks of each source (--rate), bodies to 1 KiB and the ` +
				`connect-back to 5 s, and logs every check.`,
			Examples: []cli.Example{
				{Command: "portfwd probe-server --listen :8999"},
				{Command: "portfwd probe-server --listen 203.0.113.5:8999 --rate 30/min"},
			},
		},
		"demo": {
			Summary: "a gateway and a client on loopback: a mapping at work, no router or root needed",
			Description: `Runs a gateway and a client on loopback, without a router or root, and shows a mapping carrying ` +
				`a connection: add it, connect through it, list it, delete it. Nothing is sent beyond this machine's ` +
				`loopback. With --keep the gateway stays up and the commands to try against it are printed.`,
			Examples: []cli.Example{
				{Command: "portfwd demo"},
				{Command: "portfwd demo --keep"},
			},
		},
		"version": {
			Summary:     "print portfwd's version, source revision and Go version",
			Description: `Prints portfwd's version, the module version and source revision it was built from (with "dirty" when the tree had uncommitted changes), and the Go version that built it. 'portfwd --version' is the same.`,
			Examples: []cli.Example{
				{Command: "portfwd version"},
				{Command: "portfwd version --json"},
			},
		},
		"completion": {
			Args:        "bash|zsh|fish",
			Summary:     "print a shell completion script",
			Description: `Prints the completion script of a shell: commands, flags with their descriptions, and the values of flags that have a fixed set. It is generated from the same description as this help.`,
			ArgValues:   cli.Shells,
			Examples: []cli.Example{
				{Command: "source <(portfwd completion bash)", Comment: "bash, for this session (add it to ~/.bashrc to keep it)"},
				{Command: `portfwd completion zsh > "${fpath[1]}/_portfwd"`},
				{Command: "portfwd completion fish > ~/.config/fish/completions/portfwd.fish"},
			},
		},
		"man": {
			Summary:     "print the manual page (roff)",
			Description: `Prints portfwd's manual page, portfwd(1), in roff: the same text as the help, every command with its flags and examples.`,
			Examples: []cli.Example{
				{Command: "portfwd man | man -l -"},
				{Command: "portfwd man > /usr/local/share/man/man1/portfwd.1"},
			},
		},
		"help": {
			Args:        "[COMMAND]",
			Summary:     "show the list of commands, or one command's help",
			Description: `Shows the list of commands, or with a COMMAND its usage, description, flags and examples, as 'portfwd COMMAND --help' does.`,
			Examples: []cli.Example{
				{Command: "portfwd help add"},
			},
		},
	}
}
