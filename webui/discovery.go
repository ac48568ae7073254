package webui

import (
	"context"
	"fmt"
	"sync"

	"github.com/portfwd/portfwd/internal/explain"
	"github.com/portfwd/portfwd/portmap"
)

// discoveryStatus is the state of the background discovery.
type discoveryStatus struct {
	Running bool `json:"running"`
	// Message is the latest progress line, or the outcome.
	Message string `json:"message,omitempty"`
	Found   int    `json:"found"`
	// Error says why nothing was found, and what to do.
	Error string `json:"error,omitempty"`
	// Done is true once a discovery has finished.
	Done bool `json:"done"`
}

// StartDiscovery starts looking for gateways in the background, unless a
// search is already running; it reports whether it started one. Progress
// and the result are pushed to the browser as events.
func (s *Server) StartDiscovery() bool {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disc.Running || s.closed {
		return false
	}
	s.discStarted = true
	s.disc = discoveryStatus{Running: true, Message: "searching for gateways...", Done: s.disc.Done}
	s.broadcastLocked("discovery", s.disc)
	s.wg.Add(1)
	go s.discover()
	return true
}

// ensureDiscovery starts the first discovery if none ever ran: a page or
// API request is the first sign that someone wants a gateway.
func (s *Server) ensureDiscovery() {
	s.mu.Lock()
	started := s.discStarted
	s.mu.Unlock()
	if !started {
		s.StartDiscovery()
	}
}

func (s *Server) setProgress(p portmap.Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.disc.Running {
		return
	}
	s.disc.Message, s.disc.Found = p.Message, p.Found
	s.broadcastLocked("discovery", s.disc)
}

// discover runs one discovery, then reads each gateway's details (its
// name and external address) so the list can tell them apart.
func (s *Server) discover() {
	defer s.wg.Done()
	log := s.logger()
	ctx, cancel := context.WithTimeout(s.ctx, s.discoverTimeout())
	o := s.Options
	o.Progress = s.setProgress
	if o.Logger == nil {
		o.Logger = s.Logger
	}
	find := s.Discover
	if find == nil {
		find = portmap.Discover
	}
	found, err := find(ctx, o)
	cancel()
	if err != nil {
		log.Info("discovery found no gateway", "err", err)
	}

	type details struct {
		info    portmap.Info
		infoErr error
	}
	got := make([]details, len(found))
	if len(found) > 0 {
		s.setProgress(portmap.Progress{Message: fmt.Sprintf("reading the details of %d gateway(s)...", len(found)), Found: len(found)})
		var wg sync.WaitGroup
		for i, g := range found {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ictx, cancel := context.WithTimeout(s.ctx, s.timeout())
				defer cancel()
				got[i].info, got[i].infoErr = g.Info(ictx)
			}()
		}
		wg.Wait()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st := discoveryStatus{Done: true, Found: len(found)}
	switch {
	case s.ctx.Err() != nil:
		st.Error = "discovery was stopped"
	case err != nil:
		st.Error = explain.Sentence(err, "")
		if len(s.gateways) > 0 {
			st.Error += " (the gateways found before are still listed)"
		}
	default:
		st.Message = fmt.Sprintf("found %d gateway(s)", len(found))
	}
	s.disc = st
	if len(found) > 0 {
		known := map[string]*gateway{}
		for _, g := range s.gateways {
			known[g.id] = g
		}
		list := make([]*gateway, 0, len(found))
		for i, pg := range found {
			id := gatewayID(pg)
			g := known[id]
			if g == nil {
				g = &gateway{id: id, gw: pg}
			}
			if d := got[i]; d.infoErr == nil || d.info.Method != "" {
				info := d.info
				g.info = &info
			}
			if got[i].infoErr != nil {
				g.infoErr = s.sentence(got[i].infoErr)
			} else {
				g.infoErr = ""
			}
			if ip := got[i].info.ExternalIP; ip.IsValid() {
				g.ext, g.extKnown, g.extErr = ip, true, ""
			}
			list = append(list, g)
		}
		s.gateways = list
		if s.selected == nil || !containsGateway(list, s.selected) {
			s.selected = list[0]
		}
	}
	s.broadcastLocked("discovery", s.disc)
	s.broadcastLocked("gateways", s.gatewaysPayloadLocked())
	if s.selected != nil {
		s.broadcastLocked("external", s.externalPayloadLocked(s.selected))
	}
	s.kickPoller()
}

func containsGateway(list []*gateway, g *gateway) bool {
	for _, x := range list {
		if x == g {
			return true
		}
	}
	return false
}

// gatewayByID finds a gateway from the last discovery.
func (s *Server) gatewayByID(id string) *gateway {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.gateways {
		if g.id == id {
			return g
		}
	}
	return nil
}

// noGatewayError says why there is no gateway to act on.
func (s *Server) noGatewayError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.disc.Running || !s.discStarted:
		return noGateway("still searching for gateways; try again in a moment")
	case s.disc.Error != "":
		return noGateway(s.disc.Error + "; search again once the router is reachable")
	}
	return noGateway("no gateway: search for one (POST /api/discover)")
}

// noGateway is an error that matches errNoGatewayYet with its own sentence.
type noGateway string

func (e noGateway) Error() string        { return string(e) }
func (e noGateway) Is(target error) bool { return target == errNoGatewayYet }
