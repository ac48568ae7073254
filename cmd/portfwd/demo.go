package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/portfwd/portfwd/gateway/daemon"
	"github.com/portfwd/portfwd/portmap"
)

// demoTimeout bounds the whole demo (without --keep): every step is a
// loopback exchange of a few milliseconds.
const demoTimeout = 30 * time.Second

// demoOptions configure a demo run.
type demoOptions struct {
	// keep leaves the gateway running, with the commands to try, until
	// ctx ends.
	keep bool
	// log receives the gateway's logs; nil discards them.
	log *slog.Logger
	// self is how the printed commands name this program.
	self string
}

func runDemo(ctx context.Context, e *env, args []string) error {
	var cf clientFlags // for positional arguments only: none are taken
	fs := plainFlagSet(e, "demo", &cf)
	keep := fs.Bool("keep", false, "keep the demo gateway running and print commands to try against it (stop with Ctrl-C)")
	verbose := fs.Bool("v", false, "show the gateway's log on stderr")
	if err := parse(fs, args, &cf); err != nil {
		return err
	}
	if len(cf.positions) > 0 {
		return usagef("demo takes no arguments, only flags (got %q)", cf.positions[0])
	}
	e.network("demo (loopback only)")
	o := demoOptions{keep: *keep, self: "portfwd"}
	if strings.Contains(os.Args[0], "go-build") {
		o.self = "go run ./cmd/portfwd" // started with go run, as the README says
	}
	if *verbose {
		o.log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return demo(ctx, e.stdout, o)
}

// demo runs the gateway daemon with the relay backend on loopback, a tiny
// TCP server behind it, and the portmap client against it: add a mapping,
// connect through it, list it, delete it, and show that the connection now
// fails. Every step prints one line.
//
// Loopback stands in for both sides: the LAN is 127.0.0.1 (UPnP, NAT-PMP,
// PCP and the server) and the "external address" is 127.0.0.2, where the relay
// binds the mapped ports. On Linux all of 127.0.0.0/8 is local, so this
// needs no configuration; elsewhere the demo falls back to 127.0.0.1 for
// both. No SSDP multicast is sent: the client is given the gateway's URL.
func demo(ctx context.Context, w io.Writer, o demoOptions) (err error) {
	if !o.keep {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, demoTimeout)
		defer cancel()
	}
	say := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	lo, err := loopbackInterface()
	if err != nil {
		return err
	}
	lan := netip.MustParseAddr("127.0.0.1")
	ext := netip.MustParseAddr("127.0.0.2")
	if !canBind(ext) {
		ext = lan
	}
	stateDir, err := os.MkdirTemp("", "portfwd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)

	cfg := daemon.DefaultConfig()
	cfg.Interfaces.Internal = []string{lo}
	cfg.ExternalAddress = daemon.ExternalAddressConfig{Source: daemon.SourceFixed, IP: ext.String()}
	cfg.Backend = daemon.BackendRelay
	cfg.Relay.Bind = ext.String()
	cfg.StateDir = stateDir
	cfg.UPnP.HTTPPort = 0
	cfg.UPnP.SSDP = false
	cfg.NATPMP.Port = 0
	cfg.Admin.Address = ""
	if o.keep {
		cfg.Admin.Address = "127.0.0.1:0"
	}
	cfg.Device.FriendlyName = "portfwd demo gateway"
	cfg.Logger = log

	say("portfwd demo: a gateway and a client on loopback; no router, no root, nothing sent beyond this machine.")
	gw, err := daemon.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("starting the demo gateway: %w", err)
	}
	served := make(chan error, 1)
	gctx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	go func() { served <- gw.Serve(gctx) }()
	defer func() {
		stopGateway()
		if serr := <-served; serr != nil && err == nil {
			err = fmt.Errorf("stopping the demo gateway: %w", serr)
		}
	}()
	urls, pmp := gw.DescriptionURLs(), gw.NATPMPAddrs()
	if len(urls) == 0 || len(pmp) == 0 {
		return errors.New("the demo gateway has no address on the loopback interface")
	}
	say("1. gateway started: relay backend, external address %s", ext)
	say("   UPnP IGD:        %s", urls[0])
	say("   NAT-PMP and PCP: %s", pmp[0])

	hello, err := net.Listen("tcp4", netip.AddrPortFrom(lan, 0).String())
	if err != nil {
		return fmt.Errorf("starting the demo's TCP server: %w", err)
	}
	defer hello.Close()
	helloAddr := netip.MustParseAddrPort(hello.Addr().String())
	go serveHello(hello)
	say("2. a TCP server (the \"LAN host\") listens on %s", helloAddr)

	gws, err := portmap.Discover(ctx, portmap.Options{
		GatewayURL:       urls[0],
		NoDefaultGateway: true,
		NoMulticast:      true,
		NoCache:          true,
		Methods:          []portmap.Method{portmap.UPnP},
	})
	if err != nil {
		return fmt.Errorf("the client could not use the demo gateway: %w", err)
	}
	client := gws[0]
	ip, err := client.ExternalIP(ctx)
	if err != nil {
		return fmt.Errorf("asking the external address: %w", err)
	}
	say("3. the client found the gateway over UPnP: %s (external address %s)", client.Addr(), ip)

	want, err := freePort(ext)
	if err != nil {
		return err
	}
	m, err := client.Add(ctx, portmap.Request{
		Protocol: portmap.TCP, InternalPort: helloAddr.Port(), ExternalPort: want,
		Lease: 10 * time.Minute, Description: "portfwd demo", Any: true,
	})
	if err != nil {
		return fmt.Errorf("adding the mapping: %w", err)
	}
	pub := netip.AddrPortFrom(ip, m.ExternalPort)
	say("4. added %s/%s -> %s:%d (lease %v)", pub, m.Protocol, m.InternalClient, m.InternalPort, m.Lease)

	got, err := helloThrough(ctx, pub)
	if err != nil {
		return fmt.Errorf("connecting through the mapping: %w", err)
	}
	say("5. connected to %s; the relay carried it to the server, which said: %q", pub, got)

	list, err := client.List(ctx, nil)
	if err != nil {
		return fmt.Errorf("listing the mappings: %w", err)
	}
	say("6. the gateway's table holds %d mapping(s):", len(list))
	for _, x := range list {
		say("   %s %d -> %s:%d  enabled=%s  lease=%v  %q", x.Protocol, x.ExternalPort, x.InternalClient, x.InternalPort,
			yesNo(x.Enabled), x.Lease, x.Description)
	}

	if o.keep {
		keepRunning(ctx, say, o.self, urls[0], pmp[0], gw.AdminAddr(), pub, m)
		return nil
	}

	if err := client.Delete(ctx, m.Key()); err != nil {
		return fmt.Errorf("deleting the mapping: %w", err)
	}
	say("7. deleted %d/%s", m.ExternalPort, m.Protocol)
	if got, err := helloThrough(ctx, pub); err == nil {
		return fmt.Errorf("%s still answered after the delete (%q): the relay kept the port open", pub, got)
	} else {
		say("8. connecting to %s again fails, as it should: %v", pub, shortNetErr(err))
	}
	say("demo done. Run `%s demo --keep` to try the CLI against the demo gateway, and see docs/gateway.md to run it on a router.", o.self)
	return nil
}

// keepRunning prints the commands to try and waits for ctx (Ctrl-C).
func keepRunning(ctx context.Context, say func(string, ...any), self, url string, pmp, admin, pub netip.AddrPort, m portmap.Mapping) {
	g := "--gateway " + url + " --protocol upnp --no-cache"
	say("")
	say("The demo gateway keeps running (Ctrl-C stops it). Try, in another terminal:")
	say("  %s list %s", self, g)
	say("  %s info %s", self, g)
	say("  %s add 8080 --external 18080 --desc test %s", self, g)
	say("  %s delete %d/tcp %s", self, m.ExternalPort, g)
	say("  %s ip --natpmp %s --protocol natpmp", self, pmp)
	say("  nc %s %d        (the mapping made above, relayed to the demo's server)", pub.Addr(), pub.Port())
	if admin.IsValid() {
		say("  curl http://%s/metrics", admin)
	}
	<-ctx.Done()
	say("stopping the demo gateway")
}

// loopbackInterface returns the name of the loopback interface holding
// 127.0.0.1 ("lo" on Linux, "lo0" on BSD and macOS).
func loopbackInterface() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("listing network interfaces: %w", err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 || ifi.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == netip.MustParseAddr("127.0.0.1") {
				return ifi.Name, nil
			}
		}
	}
	return "", errors.New("no loopback interface with 127.0.0.1 is up; the demo needs one (ip link set lo up)")
}

// canBind reports whether a local TCP port can be bound on a.
func canBind(a netip.Addr) bool {
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freePort returns a TCP port free on a right now, as the external port
// to ask for; the mapping is made with Any, so a port taken meanwhile
// yields another.
func freePort(a netip.Addr) (uint16, error) {
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", a, err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String()).Port(), nil
}

// serveHello answers every connection with one line naming the server,
// until ln is closed.
func serveHello(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "hello from the demo server at %s\n", ln.Addr())
		c.Close()
	}
}

// helloThrough connects to addr and returns the line the server sent.
func helloThrough(ctx context.Context, addr netip.AddrPort) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("the connection closed without a byte")
	}
	return strings.TrimSpace(string(b)), nil
}

// shortNetErr says what a failed connection met, without the Go error
// chain around it.
func shortNetErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error()
		}
		return oe.Err.Error()
	}
	return err.Error()
}
