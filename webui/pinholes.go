package webui

import (
	"net/http"
	"time"

	"github.com/portfwd/portfwd/internal/websec"
	"github.com/portfwd/portfwd/portmap"
)

// IPv6 pinholes on the page: read-only, from this computer's records
// (Server.Pinholes), since no protocol can list a router's pinholes. They
// are opened, renewed and closed with the CLI (portfwd add --ipv6).

// pinholeJSON is a pinhole as the page and GET /api/pinholes show it.
type pinholeJSON struct {
	portmap.Mapping
	// LeaseSeconds is the lease left when the response was made.
	LeaseSeconds int64 `json:"lease_seconds"`
	// Via is the protocol as people write it ("UPnP", "PCP").
	Via string `json:"via"`
}

// pinholesJSON is GET /api/pinholes's answer.
type pinholesJSON struct {
	Pinholes []pinholeJSON `json:"pinholes"`
	Error    string        `json:"error,omitempty"`
}

// pinholesPayload reads the records; an empty list without Server.Pinholes.
func (s *Server) pinholesPayload() pinholesJSON {
	p := pinholesJSON{Pinholes: []pinholeJSON{}}
	if s.Pinholes == nil {
		return p
	}
	ms, err := s.Pinholes()
	if err != nil {
		p.Error = "this computer's records of its pinholes could not be read: " + s.sentence(err)
	}
	for _, m := range ms {
		p.Pinholes = append(p.Pinholes, pinholeJSON{Mapping: m, LeaseSeconds: int64(m.Lease / time.Second), Via: methodName(m.Method)})
	}
	return p
}

// handlePinholes is GET /api/pinholes.
func (s *Server) handlePinholes(w http.ResponseWriter, r *http.Request) {
	websec.WriteJSON(w, http.StatusOK, s.pinholesPayload())
}
