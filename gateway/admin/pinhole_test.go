package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portfwd/portfwd/gateway/admin"
)

// fakePinholes is a fakeAdmin whose gateway opens IPv6 pinholes.
type fakePinholes struct {
	*fakeAdmin
	pmu  sync.Mutex
	pins []admin.Pinhole
}

func (f *fakePinholes) Pinholes() []admin.Pinhole {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	return slices.Clone(f.pins)
}

func (f *fakePinholes) DeletePinhole(_ context.Context, id uint16) error {
	f.pmu.Lock()
	defer f.pmu.Unlock()
	i := slices.IndexFunc(f.pins, func(p admin.Pinhole) bool { return p.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: no pinhole %d", admin.ErrNoSuchMapping, id)
	}
	f.pins = slices.Delete(f.pins, i, i+1)
	return nil
}

// TestAdminPinholes: the page lists the IPv6 pinholes beside the
// mappings, and the operator closes one by its ID.
func TestAdminPinholes(t *testing.T) {
	f := &fakePinholes{fakeAdmin: newFakeAdmin(upnpMapping(18080, "web")), pins: []admin.Pinhole{
		{ID: 3, Protocol: "TCP", InternalAddr: netip.MustParseAddr("2001:db8:77::2"), InternalPort: 8080,
			Client: netip.MustParseAddr("2001:db8:77::22"), Source: "UPnP", Expires: time.Now().Add(time.Hour)},
		{ID: 7, Protocol: "UDP", InternalAddr: netip.MustParseAddr("2001:db8:77::5"), InternalPort: 5000,
			RemoteHost: netip.MustParseAddr("2001:db8:113::2"), RemotePort: 443, Client: netip.MustParseAddr("2001:db8:77::5"), Source: "PCP", Expires: time.Now().Add(time.Minute)},
	}}
	e, _ := newAdminEnv(t, f)
	var tb struct {
		Pinholes []struct {
			ID        uint16 `json:"id"`
			Internal  string `json:"internal_addr"`
			Remote    string `json:"remote_host"`
			ExpiresIn int64  `json:"expires_in"`
		} `json:"pinholes"`
	}
	e.call("GET", "/api/mappings", nil, http.StatusOK, &tb)
	if len(tb.Pinholes) != 2 || tb.Pinholes[0].ID != 3 || tb.Pinholes[1].Remote != "2001:db8:113::2" || tb.Pinholes[0].ExpiresIn < 3590 {
		t.Fatalf("pinholes in /api/mappings: %+v", tb.Pinholes)
	}
	_, page := e.request("GET", "/?token="+testToken, nil, nil)
	for _, want := range []string{"IPv6 pinholes", "2 IPv6 pinhole(s).", "[2001:db8:77::2]:8080", "2001:db8:113::2, port 443", "Close pinhole 7"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	e.call("DELETE", "/api/pinholes/3", nil, http.StatusOK, &tb)
	if len(tb.Pinholes) != 1 || tb.Pinholes[0].ID != 7 {
		t.Fatalf("after closing 3: %+v", tb.Pinholes)
	}
	var ae struct{ Error string }
	json.Unmarshal(e.call("DELETE", "/api/pinholes/3", nil, http.StatusNotFound, nil), &ae)
	if !strings.Contains(ae.Error, "no pinhole 3") {
		t.Errorf("closing it again: %q", ae.Error)
	}
	e.call("DELETE", "/api/pinholes/0", nil, http.StatusBadRequest, nil)
	e.call("DELETE", "/api/pinholes/x", nil, http.StatusBadRequest, nil)
}
