package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/natpmp"
)

// natpmpHandler is the natpmp.Handler of the daemon: it translates NAT-PMP
// (RFC 6886) onto gateway.Core. NAT-PMP identifies a mapping by the
// requester and its internal port; the requester is always the packet's
// source address, which is also the mapping's internal address.
//
// PCP (RFC 6887) uses the same UDP port; package pmp's Server tells the
// two apart.
type natpmpHandler struct{ pmpAdapter }

// pmpAdapter is what the NAT-PMP and PCP adapters work with.
type pmpAdapter struct {
	core    *gateway.Core
	ext     *externalAddr
	metrics *metrics
	log     *slog.Logger
	// noExternalIP is the quirk no-external-ip: the address request
	// fails with result 3 (network failure).
	noExternalIP bool
	// pinholeAddr is where peers reach a pinhole when that is not the LAN
	// host's own address (the relay backend's external IPv6 address);
	// nil or the zero Addr otherwise.
	pinholeAddr func() netip.Addr
}

var _ natpmp.Handler = (*natpmpHandler)(nil)

// natpmpDescription labels mappings made over NAT-PMP, which carries no
// description, in lists and on the admin page.
const natpmpDescription = "NAT-PMP"

// ExternalAddress answers the client's external address: the gateway's
// own, or with an external address pool the address the client is paired
// with (gateway.Core.PoolAddr), where its NAT-PMP mappings are made too.
// A NAT-PMP client puts this address beside every port it is granted,
// so it must be the one its mappings are on.
func (h *natpmpHandler) ExternalAddress(_ context.Context, client netip.Addr) (addr netip.Addr, rc natpmp.ResultCode) {
	defer answerPanic(h.pmpAdapter, "natpmp", "external address", client, &rc, natpmp.NetworkFailure)
	a := h.ext.Get()
	rc = natpmp.Success
	if !a.IsValid() || h.noExternalIP {
		rc = natpmp.NetworkFailure
	} else if p := h.core.PoolAddr(client); p.IsValid() {
		a = p
	}
	h.metrics.request("natpmp", "external_address", int(rc))
	return a, rc
}

// Map creates, refreshes or deletes the client's mapping of internalPort.
//
// A request for an internal port the client already has mapped returns
// that mapping's external port, refreshed, whatever port it suggests, so
// that a retransmitted or renewed request gets the same answer. Otherwise
// the suggested port (or, when 0, the internal port) is where the search
// for a free port starts: NAT-PMP clients accept another port, so a port
// held by another client or reserved yields the next free one instead of
// a refusal. The lifetime is clamped by the policy (MinLease, MaxLease)
// and the granted one is returned.
func (h *natpmpHandler) Map(ctx context.Context, client netip.Addr, proto natpmp.Protocol, internalPort, suggested uint16, lifetime uint32) (ext uint16, granted uint32, rc natpmp.ResultCode) {
	defer answerPanic(h.pmpAdapter, "natpmp", "map", client, &rc, natpmp.NetworkFailure)
	p := gateway.TCP
	action := "map_tcp"
	if proto == natpmp.UDP {
		p, action = gateway.UDP, "map_udp"
	}
	req := gateway.Requester{Addr: client, Source: gateway.SourceNATPMP}
	var err error
	if lifetime == 0 {
		action = "delete" + action[3:]
		err = h.delete(ctx, req, p, internalPort)
	} else {
		ext, granted, err = h.add(ctx, req, p, internalPort, suggested, lifetime)
	}
	rc = natpmpResult(err)
	if err != nil {
		h.metrics.countErr(err)
		if errors.Is(err, errRefusingPrivate) {
			rc = natpmp.NetworkFailure
		}
		notePMP(ctx, action, gateway.Mapping{Protocol: p, ExternalPort: suggested, InternalAddr: client,
			InternalPort: internalPort, Description: natpmpDescription}, err)
	}
	h.metrics.request("natpmp", action, int(rc))
	return ext, granted, rc
}

// errRefusingPrivate marks requests refused because of
// refuse_private_external.
var errRefusingPrivate = errors.New("the external address is not public")

func (h *natpmpHandler) add(ctx context.Context, req gateway.Requester, p gateway.Protocol, internalPort, suggested uint16, lifetime uint32) (uint16, uint32, error) {
	if err := h.ext.refusing(); err != nil {
		return 0, 0, errors.Join(errRefusingPrivate, err)
	}
	m := gateway.Mapping{
		Protocol:     p,
		ExternalPort: suggested,
		InternalAddr: req.Addr,
		InternalPort: internalPort,
		Enabled:      true,
		Description:  natpmpDescription,
	}
	if held, ok := h.core.FindByInternal(req.Addr, p, internalPort); ok {
		// A renewal: keep the port the client was given, on the address
		// it is on (a PCP client's mapping on an external pool address
		// is renewed there, not doubled on the gateway's own), and what
		// the mapping was (a UPnP mapping of the same port keeps its
		// label).
		m.ExternalPort = held.ExternalPort
		m.ExternalAddr = held.ExternalAddr
		m.RemoteHost = held.RemoteHost
		if held.Description != "" {
			m.Description = held.Description
		}
	} else {
		// With an external address pool, on the client's paired address,
		// the one ExternalAddress answers it.
		m.ExternalAddr = h.core.PoolAddr(req.Addr)
	}
	if m.ExternalPort == 0 {
		m.ExternalPort = internalPort
	}
	m.Expires = h.core.Now().Add(time.Duration(lifetime) * time.Second)
	got, err := h.core.AddAny(ctx, req, m)
	if err != nil {
		return 0, 0, err
	}
	// Read the time after the core clamped the lease, so that a lifetime
	// raised to MinLease is reported as that, not a second more.
	// A chained mapping is reached on the router above's port (and the
	// lease is no longer than the router above grants).
	return got.PublicPort(), got.LeaseSeconds(h.core.Now()), nil
}

// delete removes the client's mapping of internalPort, or with internal
// port 0 all its mappings of p. Deleting what does not exist succeeds
// (RFC 6886 section 3.4), so that a retransmitted deletion gets the same
// answer.
func (h *natpmpHandler) delete(ctx context.Context, req gateway.Requester, p gateway.Protocol, internalPort uint16) error {
	if internalPort == 0 {
		_, err := h.core.DeleteAllFor(ctx, req, p)
		return err
	}
	held, ok := h.core.FindByInternal(req.Addr, p, internalPort)
	if !ok {
		return nil
	}
	err := h.core.DeleteAt(ctx, req, held.Key(), held.RemoteHost) // on a pool address too, if PCP made it
	if errors.Is(err, gateway.ErrNoSuchEntry) {
		return nil // deleted meanwhile
	}
	return err
}

// answerPanic, deferred by a NAT-PMP or PCP handler, turns a panic into
// the protocol's network-failure answer (failure, in *rc), so that one bad
// request never stops the server.
func answerPanic[C any](a pmpAdapter, proto, what string, client netip.Addr, rc *C, failure C) {
	if p := recover(); p != nil {
		a.metrics.error(errKindPanic)
		a.log.Error(proto+": panic while answering a request; answered network failure",
			"request", what, "client", client, "panic", p, "stack", string(debug.Stack()))
		*rc = failure
	}
}

// natpmpResult returns the NAT-PMP result code for a core error. NAT-PMP
// has no "conflict" or "bad argument" code: this adapter uses AddAny, so
// conflicts and reserved ports are answered with another port rather than
// an error, and what is left is a refusal (NOT_AUTHORIZED). Failures the
// client can only retry (backend, store) are NETWORK_FAILURE.
func natpmpResult(err error) natpmp.ResultCode {
	switch {
	case err == nil:
		return natpmp.Success
	case errors.Is(err, gateway.ErrQuota), errors.Is(err, gateway.ErrTableFull), errors.Is(err, gateway.ErrNoPortsAvailable),
		errors.Is(err, gateway.ErrUpstreamExhausted):
		return natpmp.OutOfResources
	case errors.Is(err, gateway.ErrUpstreamRefused), errors.Is(err, gateway.ErrUpstreamConflict):
		return natpmp.NotAuthorized
	case errors.Is(err, gateway.ErrNotAuthorized), errors.Is(err, gateway.ErrConflict), errors.Is(err, gateway.ErrReservedPort),
		errors.Is(err, gateway.ErrInvalidArgs), errors.Is(err, gateway.ErrWildcardInternalPort),
		errors.Is(err, gateway.ErrWildcardExternalPort), errors.Is(err, gateway.ErrRemoteHostNotSupported):
		return natpmp.NotAuthorized
	}
	return natpmp.NetworkFailure
}
