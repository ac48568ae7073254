package gateway

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
)

// AuditEvent names what happened to a mapping in an AuditRecord.
type AuditEvent string

// The events of the audit trail.
const (
	AuditAdded   AuditEvent = "added"   // a new mapping
	AuditRenewed AuditEvent = "renewed" // the same mapping asked for again: a new lease
	AuditChanged AuditEvent = "changed" // the same key, now forwarding elsewhere or (dis)abled
	AuditDeleted AuditEvent = "deleted" // removed at a client's or the operator's request
	AuditExpired AuditEvent = "expired" // its lease ended
	// AuditRefused is a request the gateway said no to (policy, conflict,
	// quota, a malformed request); AuditFailed one it could not carry out
	// (the backend or the store failed). The protocol adapters record
	// these, since they know the answer the client got.
	AuditRefused AuditEvent = "refused"
	AuditFailed  AuditEvent = "failed"
	// AuditDropped is a saved lease not restored at start (expired, or
	// denied by the current policy); AuditParked one the backend refused
	// at start, kept in the store for the next start but not served.
	AuditDropped AuditEvent = "dropped"
	AuditParked  AuditEvent = "parked"
)

// AuditRecord is one line of the audit trail: who did what to which
// mapping, when, and how it ended. Its JSON form is the trail's file
// format.
type AuditRecord struct {
	Time  time.Time  `json:"time"`
	Event AuditEvent `json:"event"`
	// Via is the protocol of the request: "UPnP", "NAT-PMP", "PCP", or
	// "admin" for the operator and the gateway itself (expiry, restore).
	Via string `json:"via"`
	// Client is the address the request came from; the zero Addr for the
	// operator and for the gateway's own actions.
	Client       netip.Addr `json:"client,omitzero"`
	Protocol     string     `json:"protocol,omitempty"` // "TCP" or "UDP"
	ExternalPort uint16     `json:"external_port,omitempty"`
	// ExternalAddr is the external pool address of a mapping on one (a
	// carrier's record of who used which address and port); absent for
	// the gateway's own address.
	ExternalAddr netip.Addr `json:"external_addr,omitzero"`
	// Internal is where the mapping forwards to.
	Internal   netip.AddrPort `json:"internal,omitzero"`
	RemoteHost netip.Addr     `json:"remote_host,omitzero"`
	// Family is "ipv6" for IPv6 pinholes; empty for IPv4 port mappings.
	Family string `json:"family,omitempty"`
	// PinholeID and RemotePort are a pinhole's unique ID and remote port.
	PinholeID  uint16 `json:"pinhole_id,omitempty"`
	RemotePort uint16 `json:"remote_port,omitempty"`
	// LeaseSeconds is the lease granted (0: permanent or not applicable).
	LeaseSeconds uint32 `json:"lease_s,omitempty"`
	Description  string `json:"description,omitempty"`
	// Action is the request, for refusals: "AddPortMapping", "map",
	// "delete", ...
	Action string `json:"action,omitempty"`
	// Result is "ok", or the answer sent: "606 Action not authorized",
	// "NOT_AUTHORIZED", ...
	Result string `json:"result"`
	// Reason says why, in a sentence, when it was not a plain success.
	Reason string `json:"reason,omitempty"`
}

// NewAuditRecord fills a record about m as requested by req.
func NewAuditRecord(now time.Time, ev AuditEvent, req Requester, m Mapping) AuditRecord {
	r := AuditRecord{
		Time: now, Event: ev, Via: req.Source.String(), Client: req.Addr,
		RemoteHost: m.RemoteHost, Description: m.Description, Result: "ok",
	}
	if m.Protocol != 0 {
		r.Protocol = m.Protocol.String()
	}
	r.ExternalPort, r.ExternalAddr = m.ExternalPort, m.ExternalAddr
	if m.InternalAddr.IsValid() {
		r.Internal = netip.AddrPortFrom(m.InternalAddr, m.InternalPort)
	}
	if ev == AuditAdded || ev == AuditRenewed || ev == AuditChanged {
		r.LeaseSeconds = m.LeaseSeconds(now)
	}
	return r
}

// audit hands r to the configured trail, if any.
func (c *Core) audit(r AuditRecord) {
	if c.auditf != nil {
		c.auditf(r)
	}
}

// AppendJSON appends r's JSON form to b: exactly what json.Marshal makes
// of r, without its reflection, which cost as much as the rest of the
// audit trail's work on the request path. Like json.Marshal, it fails for
// a time outside the years 0-9999, and then returns b unchanged.
func (r AuditRecord) AppendJSON(b []byte) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		_, err := json.Marshal(r.Time) // says why
		return b, err
	}
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":`...)
	b = appendJSONString(b, string(r.Event))
	b = append(b, `,"via":`...)
	b = appendJSONString(b, r.Via)
	if r.Client.IsValid() {
		b = append(b, `,"client":"`...)
		b = r.Client.AppendTo(b)
		b = append(b, '"')
	}
	if r.Protocol != "" {
		b = append(b, `,"protocol":`...)
		b = appendJSONString(b, r.Protocol)
	}
	if r.ExternalPort != 0 {
		b = append(b, `,"external_port":`...)
		b = strconv.AppendUint(b, uint64(r.ExternalPort), 10)
	}
	if r.Internal.IsValid() {
		b = append(b, `,"internal":"`...)
		b = r.Internal.AppendTo(b)
		b = append(b, '"')
	}
	if r.RemoteHost.IsValid() {
		b = append(b, `,"remote_host":"`...)
		b = r.RemoteHost.AppendTo(b)
		b = append(b, '"')
	}
	if r.Family != "" {
		b = append(b, `,"family":`...)
		b = appendJSONString(b, r.Family)
	}
	if r.PinholeID != 0 {
		b = append(b, `,"pinhole_id":`...)
		b = strconv.AppendUint(b, uint64(r.PinholeID), 10)
	}
	if r.RemotePort != 0 {
		b = append(b, `,"remote_port":`...)
		b = strconv.AppendUint(b, uint64(r.RemotePort), 10)
	}
	if r.LeaseSeconds != 0 {
		b = append(b, `,"lease_s":`...)
		b = strconv.AppendUint(b, uint64(r.LeaseSeconds), 10)
	}
	if r.Description != "" {
		b = append(b, `,"description":`...)
		b = appendJSONString(b, r.Description)
	}
	if r.Action != "" {
		b = append(b, `,"action":`...)
		b = appendJSONString(b, r.Action)
	}
	b = append(b, `,"result":`...)
	b = appendJSONString(b, r.Result)
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, r.Reason)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as json.Marshal quotes it. Printable ASCII
// other than the characters it escapes is copied; anything else goes
// through json.Marshal itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
