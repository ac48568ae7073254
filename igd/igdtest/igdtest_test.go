package igdtest_test

import (
	"context"
	"testing"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/upnp"
)

func TestFake(t *testing.T) {
	ctx := context.Background()
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, PPP: true, Faults: []igdtest.Fault{
		{Action: "GetExternalIPAddress", Code: igd.CodeActionFailed, Times: 1},
	}})
	if srv.ServiceType != igd.URNWANPPPConnection1 {
		t.Errorf("service type %q", srv.ServiceType)
	}
	root, err := upnp.FetchDescription(ctx, nil, srv.Location)
	if err != nil {
		t.Fatal(err)
	}
	refs := igd.ConnectionServices(root)
	if len(refs) != 1 || refs[0].ControlURL != srv.ControlURL || refs[0].CommonControlURL != srv.CommonControlURL {
		t.Fatalf("description gives %+v", refs)
	}
	c := srv.Client()
	if _, err := c.GetExternalIPAddress(ctx); upnp.ErrorCode(err) != igd.CodeActionFailed {
		t.Errorf("first call: %v, want the scripted 501", err)
	}
	if _, err := c.GetExternalIPAddress(ctx); err != nil {
		t.Errorf("second call: %v, want the fault spent", err)
	}
	// A SOAPAction for another service is refused as a real device would.
	soap := &upnp.Client{}
	if _, err := soap.Call(ctx, srv.ControlURL, igd.URNWANIPConnection1, "GetExternalIPAddress", nil); upnp.ErrorCode(err) != igd.CodeInvalidAction {
		t.Errorf("wrong service type: %v, want 401", err)
	}
	// So are the v2 actions on a v1 service, and unknown ones.
	for _, action := range []string{"GetListOfPortMappings", "AddAnyPortMapping", "DeletePortMappingRange", "Reboot"} {
		if _, err := soap.Call(ctx, srv.ControlURL, srv.ServiceType, action, nil); upnp.ErrorCode(err) != igd.CodeInvalidAction {
			t.Errorf("%s: %v, want 401", action, err)
		}
	}
	// AddPortMapping without all eight arguments is 402.
	if _, err := soap.Call(ctx, srv.ControlURL, srv.ServiceType, "AddPortMapping", upnp.Args{{Name: "NewExternalPort", Value: "1"}}); upnp.ErrorCode(err) != igd.CodeInvalidArgs {
		t.Errorf("short AddPortMapping: %v, want 402", err)
	}
	if got := len(srv.Requests()); got != 8 {
		t.Errorf("%d requests recorded, want 8", got)
	}
}
