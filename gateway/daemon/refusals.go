package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portfwd/portfwd/gateway"
	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/pmp"
	"github.com/portfwd/portfwd/upnp"
)

// Every refused request is logged at the default level, with the client
// and the reason, and every refused or failed mapping request goes to the
// audit trail. A flood of refusals (a host hammering a denied port) is
// logged up to refusalBurst lines at once and refusalRate lines a second;
// the rest are counted and the count is logged, and the audit trail keeps
// them all.

const (
	refusalRate  = 20 // log lines a second, once the burst is spent
	refusalBurst = 100
)

// refusalLog logs refusals at Info level, bounded.
type refusalLog struct {
	log *slog.Logger

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func newRefusalLog(log *slog.Logger) *refusalLog {
	return &refusalLog{log: log, tokens: refusalBurst}
}

// Log writes one refusal, or counts it when over the rate.
func (r *refusalLog) Log(msg string, attrs ...any) {
	now := time.Now()
	r.mu.Lock()
	if !r.last.IsZero() {
		r.tokens = min(refusalBurst, r.tokens+now.Sub(r.last).Seconds()*refusalRate)
	}
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.tokens--
	suppressed := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	if suppressed > 0 {
		r.log.Info("refusals not logged (too many, rate limited); the audit trail has them", "count", suppressed)
	}
	r.log.Info(msg, attrs...)
}

// mappingActions are the SOAP actions that change the table: their faults
// are refusals of a mapping request, for the audit trail.
var mappingActions = map[string]bool{
	"AddPortMapping": true, "AddAnyPortMapping": true, "DeletePortMapping": true, "DeletePortMappingRange": true,
}

// onUPnPFault logs a SOAP fault that refuses something, and audits those
// of the mapping actions. Faults that are answers to questions (the end
// of a listing, no such entry) are neither.
func (d *Daemon) onUPnPFault(f igd.Fault) {
	defer d.catch("UPnP fault")
	if !mappingActions[f.Action] {
		switch f.Code {
		case igd.CodeSpecifiedArrayIndexInvalid, igd.CodeNoSuchEntryInArray, igd.CodePortMappingNotFound:
			return
		}
	}
	result := strconv.Itoa(f.Code) + " " + igd.CodeName(f.Code)
	reason := reasonOf(f.Reason)
	action := f.Action
	if action == "" {
		action = "(none)"
	}
	d.refusals.Log("upnp: request refused", "client", f.Client, "action", action, "result", result, "reason", reason)
	if !mappingActions[f.Action] {
		return
	}
	m := mappingOfArgs(f.Args, f.Client)
	ev := gateway.AuditRefused
	if f.Code == igd.CodeActionFailed {
		ev = gateway.AuditFailed
	}
	r := refusal(time.Now(), ev, gateway.Requester{Addr: f.Client, Source: gateway.SourceUPnP}, m, f.Action, result, nil)
	r.Reason = reason
	if f.Action == "DeletePortMappingRange" {
		start, _ := f.Args.Get("NewStartPort")
		end, _ := f.Args.Get("NewEndPort")
		r.Reason = "ports " + start + "-" + end + ": " + reason
	}
	d.audit.Record(r)
}

// reasonOf is the sentence of why: a *upnp.Error wrapped together with
// the core's error reads as the latter alone.
func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var ue *upnp.Error
		for _, e := range j.Unwrap() {
			if !errors.As(e, &ue) || ue != e {
				return e.Error()
			}
		}
	}
	return err.Error()
}

// mappingOfArgs reads what a SOAP request asked for, as well as it can.
func mappingOfArgs(args upnp.Args, client netip.Addr) gateway.Mapping {
	get := func(name string) string {
		for _, a := range args {
			if strings.EqualFold(a.Name, name) {
				return strings.TrimSpace(a.Value)
			}
		}
		return ""
	}
	var m gateway.Mapping
	m.Protocol = gateway.TCP
	if p, err := gateway.ParseProtocol(get("NewProtocol")); err == nil {
		m.Protocol = p
	}
	if p, err := strconv.ParseUint(get("NewExternalPort"), 10, 16); err == nil {
		m.ExternalPort = uint16(p)
	} else if p, err := strconv.ParseUint(get("NewStartPort"), 10, 16); err == nil {
		m.ExternalPort = uint16(p)
	}
	if p, err := strconv.ParseUint(get("NewInternalPort"), 10, 16); err == nil {
		m.InternalPort = uint16(p)
	}
	m.InternalAddr = client
	if a, err := netip.ParseAddr(get("NewInternalClient")); err == nil {
		m.InternalAddr = a
	}
	if a, err := netip.ParseAddr(get("NewRemoteHost")); err == nil {
		m.RemoteHost = a
	}
	m.Description = truncate(strings.ToValidUTF8(get("NewPortMappingDescription"), "\uFFFD"), gateway.MaxDescriptionLen)
	return m
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// pmpNote carries, through the context of one NAT-PMP or PCP request, why
// the handler refused it and what was asked, for the refusal's log line
// and audit record.
type pmpNote struct {
	err     error
	m       gateway.Mapping
	action  string
	noted   bool
	mapping bool // the handler noted a mapping request
}

type pmpNoteKey struct{}

func withPMPNote(ctx context.Context) (context.Context, *pmpNote) {
	n := &pmpNote{}
	return context.WithValue(ctx, pmpNoteKey{}, n), n
}

// notePMP records, for the refusal's log line, what the handler refused
// and why.
func notePMP(ctx context.Context, action string, m gateway.Mapping, err error) {
	if n, ok := ctx.Value(pmpNoteKey{}).(*pmpNote); ok {
		n.action, n.m, n.err, n.noted, n.mapping = action, m, err, true, true
	}
}

// onPMPAnswer follows the NAT-PMP and PCP server's answers: a panic is
// counted, and a request answered with an error is logged and, for a
// mapping request, audited, with what the handler noted of it (the
// mapping asked for, the core's error).
func (d *Daemon) onPMPAnswer(ctx context.Context, a pmp.Answer) {
	if a.Panic != nil {
		d.metrics.error(errKindPanic)
		return
	}
	if a.Result == 0 {
		return
	}
	n, ok := ctx.Value(pmpNoteKey{}).(*pmpNote)
	if !ok {
		n = &pmpNote{}
	}
	via := gateway.SourceNATPMP
	if a.Protocol() == "pcp" {
		via = gateway.SourcePCP
	}
	d.onPMPRefusal(via, a.Client.Addr(), n, a.Mapping(), a.Action(), a.ResultName())
}

// onPMPRefusal logs and audits a NAT-PMP or PCP request answered with an
// error: via is the protocol, mapping whether it asked for a mapping,
// result the code's name.
func (d *Daemon) onPMPRefusal(via gateway.Source, client netip.Addr, n *pmpNote, mapping bool, action, result string) {
	reason := result
	if n.err != nil {
		reason = n.err.Error()
	}
	if n.action != "" {
		action = n.action
	}
	proto := strings.ToLower(via.String())
	d.refusals.Log(proto+": request refused", "client", client, "action", action, "result", result, "reason", reason)
	if !mapping && !n.mapping {
		return
	}
	ev := gateway.AuditRefused
	if errors.Is(n.err, gateway.ErrBackend) || errors.Is(n.err, gateway.ErrStore) {
		ev = gateway.AuditFailed
	}
	m := n.m
	if !m.InternalAddr.IsValid() {
		m.InternalAddr = client
	}
	d.audit.Record(refusal(time.Now(), ev, gateway.Requester{Addr: client, Source: via}, m, action, result, errors.New(reason)))
}
