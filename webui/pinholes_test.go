package webui_test

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/portmap"
	"github.com/portfwd/portfwd/webui"
)

// The page and GET /api/pinholes show the IPv6 pinholes this computer
// opened, from its records; without records (or without Server.Pinholes)
// the page has no pinhole section.
func TestPinholes(t *testing.T) {
	pin := portmap.Mapping{Family: portmap.IPv6, ID: "7", Method: portmap.UPnP, Protocol: portmap.TCP,
		InternalClient: "2001:db8:77::2", InternalPort: 8080, ExternalPort: 8080, ExternalAddr: netip.MustParseAddr("2001:db8:77::2"),
		Lease: 10 * time.Minute, Description: "web <server>", Enabled: true}
	e := newEnv(t, func(s *webui.Server) {
		s.Pinholes = func() ([]portmap.Mapping, error) { return []portmap.Mapping{pin}, nil }
	})
	var got struct {
		Pinholes []struct {
			Family        string `json:"family"`
			ID            string `json:"id"`
			LeaseSeconds  int64  `json:"lease_seconds"`
			InternalPort  uint16 `json:"internal_port"`
			InternalClint string `json:"internal_client"`
		} `json:"pinholes"`
	}
	e.call("GET", "/api/pinholes", nil, http.StatusOK, &got)
	if len(got.Pinholes) != 1 || got.Pinholes[0].Family != "ipv6" || got.Pinholes[0].ID != "7" || got.Pinholes[0].LeaseSeconds != 600 {
		t.Errorf("GET /api/pinholes: %+v", got)
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	for _, want := range []string{`id="pinholes"`, "2001:db8:77::2", ">8080<", "UPnP", "web &lt;server&gt;", "10m0s"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}

	bare := newEnv(t, nil)
	_, page = bare.request("GET", "/?token="+testToken, nil, nil)
	if strings.Contains(string(page), `id="pinholes"`) {
		t.Error("a page without pinholes has a pinhole section")
	}
	failing := newEnv(t, func(s *webui.Server) {
		s.Pinholes = func() ([]portmap.Mapping, error) { return nil, errors.New("damaged state file") }
	})
	var bad struct {
		Pinholes []any `json:"pinholes"`
		Error    string
	}
	failing.call("GET", "/api/pinholes", nil, http.StatusOK, &bad)
	if bad.Pinholes == nil || !strings.Contains(bad.Error, "could not be read") {
		t.Errorf("records unreadable: %+v", bad)
	}
}
