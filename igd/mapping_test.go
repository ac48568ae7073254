package igd_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/upnp"
)

func mapping(port uint16, proto, client string, internal uint16, desc string) igd.PortMapping {
	return igd.PortMapping{ExternalPort: port, Protocol: proto, InternalPort: internal, InternalClient: client, Enabled: true, Description: desc}
}

// table returns n TCP entries from port first and then m UDP ones.
func table(first uint16, n, m int) []igd.PortMapping {
	var out []igd.PortMapping
	for i := range n {
		out = append(out, mapping(first+uint16(i), "TCP", "192.168.1.10", first+uint16(i), fmt.Sprint("tcp ", i)))
	}
	for i := range m {
		out = append(out, mapping(first+uint16(i), "UDP", "192.168.1.11", first+uint16(i), fmt.Sprint("udp ", i)))
	}
	return out
}

// sameTable compares mapping tables, an empty one equal to nil.
func sameTable(a, b []igd.PortMapping) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

func count(actions []string, name string) int {
	n := 0
	for _, a := range actions {
		if a == name {
			n++
		}
	}
	return n
}

func TestListPortMappings(t *testing.T) {
	big := table(10000, 2500, 3) // more than two chunks of 1000
	small := table(5000, 3, 2)
	garbage := reply("GetListOfPortMappings", "NewPortListing", "<p:PortMappingList><p:PortMappingEntry><p:NewExternalPort>x")
	tests := []struct {
		name string
		opts igdtest.Options
		// max sets Client.MaxEntries.
		max        int
		want       []igd.PortMapping
		wantList   int // GetListOfPortMappings calls, exactly
		wantWalk   bool
		wantErr    string // "" for none
		wantRouter int    // an error's UPnP code, if any
	}{
		{name: "v2 listing in chunks", opts: igdtest.Options{Mappings: big}, want: big, wantList: 4 + 2},
		{name: "v2 empty table, confirmed by index 0", opts: igdtest.Options{}, want: nil, wantList: 2, wantWalk: true},
		{name: "v2 listing refused: walk", want: small, wantList: 1, wantWalk: true,
			opts: igdtest.Options{Mappings: small, Faults: []igdtest.Fault{{Action: "GetListOfPortMappings", Code: igd.CodeActionNotAuthorized}}}},
		{name: "v2 listing not parsable: walk", want: small, wantList: 1, wantWalk: true,
			opts: igdtest.Options{Mappings: small, Bodies: map[string][]byte{"GetListOfPortMappings": garbage}}},
		{name: "v2 listing empty but table is not: walk", want: small, wantList: 2, wantWalk: true,
			opts: igdtest.Options{Mappings: small, Bodies: map[string][]byte{"GetListOfPortMappings": reply("GetListOfPortMappings", "NewPortListing", "")}}},
		{name: "v2 listing that ignores the range stays bounded", wantList: 3,
			want: []igd.PortMapping{mapping(10, "TCP", "192.168.1.2", 10, "a"), mapping(20, "TCP", "192.168.1.2", 20, "b")},
			opts: igdtest.Options{Bodies: map[string][]byte{"GetListOfPortMappings": reply("GetListOfPortMappings", "NewPortListing",
				string(igd.AppendPortMappingList(nil, []igd.PortMapping{mapping(10, "TCP", "192.168.1.2", 10, "a"), mapping(20, "TCP", "192.168.1.2", 20, "b")})))}}},
		{name: "v1 walk ends at 713", opts: igdtest.Options{Version: 1, Mappings: small}, want: small, wantWalk: true},
		{name: "v1 walk ends at 402 (DD-WRT)", opts: igdtest.Options{Version: 1, Mappings: small, OutOfRangeCode: 402}, want: small, wantWalk: true},
		{name: "v1 walk ends at 714", opts: igdtest.Options{Version: 1, Mappings: small, OutOfRangeCode: 714}, want: small, wantWalk: true},
		{name: "v1 walk ends at any fault after the first entry", want: small, wantWalk: true,
			opts: igdtest.Options{Version: 1, Mappings: small, OutOfRangeCode: igd.CodeActionFailed}},
		{name: "v1 walk refused at index 0", wantWalk: true, wantErr: "UPnP error 606", wantRouter: 606,
			opts: igdtest.Options{Version: 1, Mappings: small, Faults: []igdtest.Fault{{Action: "GetGenericPortMappingEntry", Code: 606}}}},
		{name: "v1 walk broken mid-way: partial", want: small[:2], wantWalk: true, wantErr: "reading entry 2 failed",
			opts: igdtest.Options{Version: 1, Mappings: small, Faults: []igdtest.Fault{{Action: "GetGenericPortMappingEntry",
				Match: func(a upnp.Args) bool { return a.Value("NewPortMappingIndex") == "2" }, Raw: []byte("<html>oops")}}}},
		{name: "router repeating its last entry forever: partial", want: small, wantWalk: true, wantErr: "kept answering index 5",
			opts: igdtest.Options{Version: 1, Mappings: small, RepeatLastEntry: true}},
		{name: "entry cap: partial", max: 4, want: small[:4], wantWalk: true, wantErr: "limit of 4 entries",
			opts: igdtest.Options{Version: 1, Mappings: small}},
		{name: "entry cap on v2: partial", max: 4, want: small[:4], wantList: 3, wantErr: "limit of 4 entries",
			opts: igdtest.Options{Mappings: small}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := igdtest.NewServer(t, tt.opts)
			c := srv.Client()
			c.MaxEntries = tt.max
			var progress []int
			got, err := c.ListPortMappings(context.Background(), func(n int) { progress = append(progress, n) })
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if upnp.ErrorCode(err) != tt.wantRouter {
					t.Errorf("error code %d, want %d", upnp.ErrorCode(err), tt.wantRouter)
				}
				var pe *igd.PartialError
				if tt.wantRouter == 0 && (!errors.As(err, &pe) || pe.Got != len(tt.want)) {
					t.Errorf("error %#v, want a *PartialError with Got %d", err, len(tt.want))
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %d entries, want %d\n got  %.300v\n want %.300v", len(got), len(tt.want), got, tt.want)
			}
			actions := srv.Actions()
			if n := count(actions, "GetListOfPortMappings"); n != tt.wantList {
				t.Errorf("%d GetListOfPortMappings calls, want %d", n, tt.wantList)
			}
			if walked := count(actions, "GetGenericPortMappingEntry") > 0; walked != tt.wantWalk {
				t.Errorf("walked = %v, want %v", walked, tt.wantWalk)
			}
			// A walk tries at most a few indexes past what it returns.
			if n := count(actions, "GetGenericPortMappingEntry"); n > len(tt.want)+3 {
				t.Errorf("%d GetGenericPortMappingEntry calls for %d entries", n, len(tt.want))
			}
			if len(tt.want) > 0 && (len(progress) == 0 || progress[len(progress)-1] != len(tt.want) || !slices.IsSorted(progress)) {
				t.Errorf("progress %v, want increasing counts ending at %d", progress, len(tt.want))
			}
		})
	}
}

func TestListPortMappingsCancelled(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Version: 1, Mappings: table(7000, 10, 0)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got, err := srv.Client().ListPortMappings(ctx, func(n int) {
		if n == 3 {
			cancel()
		}
	})
	var pe *igd.PartialError
	if !errors.As(err, &pe) || !errors.Is(err, context.Canceled) || len(got) != 3 || pe.Got != 3 {
		t.Errorf("got %d entries, %v; want 3 and a *PartialError wrapping context.Canceled", len(got), err)
	}
}

func TestAddMapping(t *testing.T) {
	holder := mapping(8080, "TCP", "192.168.1.7", 8080, "desc")
	want := func(port uint16, lease time.Duration) igd.PortMapping {
		m := mapping(port, "TCP", "192.168.1.8", 80, "mine")
		m.LeaseDuration = lease
		return m
	}
	type call struct {
		action string
		port   string
		lease  string
	}
	tests := []struct {
		name    string
		opts    igdtest.Options
		in      igd.PortMapping
		add     igd.AddOptions
		want    igd.PortMapping
		wantErr string
		calls   []call
	}{
		{name: "plain", in: want(8080, time.Hour), want: want(8080, time.Hour),
			calls: []call{{"AddPortMapping", "8080", "3600"}}},
		{name: "external port 0 means the internal port", in: want(0, 0), want: want(80, 0),
			calls: []call{{"AddPortMapping", "80", "0"}}},
		{name: "725: retried permanent", opts: igdtest.Options{OnlyPermanentLeases: true}, in: want(8080, time.Hour), want: want(8080, 0),
			calls: []call{{"AddPortMapping", "8080", "3600"}, {"AddPortMapping", "8080", "0"}}},
		{name: "402 with a lease: retried permanent", opts: igdtest.Options{RejectLeases: true}, in: want(8080, time.Hour), want: want(8080, 0),
			calls: []call{{"AddPortMapping", "8080", "3600"}, {"AddPortMapping", "8080", "0"}}},
		{name: "402 without a lease: no retry", in: want(8080, 0), wantErr: "UPnP error 402",
			opts:  igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 402}}},
			calls: []call{{"AddPortMapping", "8080", "0"}}},
		{name: "718: holder named", opts: igdtest.Options{Mappings: []igd.PortMapping{holder}}, in: want(8080, 0),
			wantErr: `the router answered 718: port 8080/TCP is already mapped to 192.168.1.7:8080 ("desc")`,
			calls:   []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""}}},
		{name: "718: holder unknown", in: want(8080, 0),
			opts:    igdtest.Options{Mappings: []igd.PortMapping{holder}, Faults: []igdtest.Fault{{Action: "GetSpecificPortMappingEntry", Code: 501}}},
			wantErr: "the router answered 718: port 8080/TCP is already mapped to another client",
			calls:   []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""}}},
		{name: "718 on renewing our own mapping: delete and add", in: want(8080, time.Hour), want: want(8080, time.Hour),
			opts: igdtest.Options{RefuseRenewal: true, Mappings: []igd.PortMapping{want(8080, time.Minute)}},
			calls: []call{{"AddPortMapping", "8080", "3600"}, {"GetSpecificPortMappingEntry", "8080", ""},
				{"DeletePortMapping", "8080", ""}, {"AddPortMapping", "8080", "3600"}}},
		{name: "any, v2: AddAnyPortMapping", opts: igdtest.Options{Mappings: []igd.PortMapping{holder}}, in: want(8080, 0),
			add: igd.AddOptions{Any: true}, want: want(8081, 0),
			calls: []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""}, {"AddAnyPortMapping", "8080", "0"}}},
		{name: "any, v2 without AddAnyPortMapping: next ports", in: want(8080, 0), add: igd.AddOptions{Any: true}, want: want(8081, 0),
			opts: igdtest.Options{Mappings: []igd.PortMapping{holder}, Faults: []igdtest.Fault{{Action: "AddAnyPortMapping", Code: 401}}},
			calls: []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""}, {"AddAnyPortMapping", "8080", "0"},
				{"AddPortMapping", "8081", "0"}}},
		{name: "any, v2: 728 is final", in: want(8080, 0), add: igd.AddOptions{Any: true}, wantErr: "UPnP error 728",
			opts:  igdtest.Options{Mappings: []igd.PortMapping{holder}, Faults: []igdtest.Fault{{Action: "AddAnyPortMapping", Code: 728}}},
			calls: []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""}, {"AddAnyPortMapping", "8080", "0"}}},
		{name: "any, v1: next ports, permanent lease carried over", add: igd.AddOptions{Any: true}, in: want(8080, time.Hour), want: want(8082, 0),
			opts: igdtest.Options{Version: 1, OnlyPermanentLeases: true, Mappings: []igd.PortMapping{holder, mapping(8081, "TCP", "192.168.1.9", 1, "")}},
			calls: []call{{"AddPortMapping", "8080", "3600"}, {"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""},
				{"AddPortMapping", "8081", "0"}, {"AddPortMapping", "8082", "0"}}},
		{name: "any, v1: bounded", add: igd.AddOptions{Any: true, Tries: 2}, in: want(8080, 0),
			wantErr: "port 8080/TCP and the 2 ports after it are taken",
			opts: igdtest.Options{Version: 1, Mappings: []igd.PortMapping{holder, mapping(8081, "TCP", "192.168.1.9", 1, ""),
				mapping(8082, "TCP", "192.168.1.9", 2, ""), mapping(8083, "TCP", "192.168.1.9", 3, "")}},
			calls: []call{{"AddPortMapping", "8080", "0"}, {"GetSpecificPortMappingEntry", "8080", ""},
				{"AddPortMapping", "8081", "0"}, {"AddPortMapping", "8082", "0"}}},
		{name: "729 with any: next port", add: igd.AddOptions{Any: true}, in: want(8080, 0), want: want(8081, 0),
			opts:  igdtest.Options{Version: 1, Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 729, Times: 1}}},
			calls: []call{{"AddPortMapping", "8080", "0"}, {"AddPortMapping", "8081", "0"}}},
		{name: "729 without any: refused", in: want(8080, 0), wantErr: "UPnP error 729",
			opts:  igdtest.Options{Version: 1, Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 729, Times: 1}}},
			calls: []call{{"AddPortMapping", "8080", "0"}}},
		{name: "724 with any: same port", add: igd.AddOptions{Any: true}, in: want(8080, 0), want: want(80, 0),
			opts: igdtest.Options{Version: 1, Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 724,
				Match: func(a upnp.Args) bool { return a.Value("NewExternalPort") != a.Value("NewInternalPort") }}}},
			calls: []call{{"AddPortMapping", "8080", "0"}, {"AddPortMapping", "80", "0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := igdtest.NewServer(t, tt.opts)
			got, err := srv.Client().AddMapping(context.Background(), tt.in, tt.add)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				if got != tt.want {
					t.Errorf("made %+v, want %+v", got, tt.want)
				}
				if !slices.Contains(srv.Mappings(), tt.want) {
					t.Errorf("router table %+v lacks %+v", srv.Mappings(), tt.want)
				}
			}
			var calls []call
			for _, r := range srv.Requests() {
				calls = append(calls, call{r.Action, r.Args.Value("NewExternalPort"), r.Args.Value("NewLeaseDuration")})
			}
			if !reflect.DeepEqual(calls, tt.calls) {
				t.Errorf("calls\n got  %v\n want %v", calls, tt.calls)
			}
		})
	}
}

func TestAddMappingConflictError(t *testing.T) {
	holder := mapping(8080, "TCP", "192.168.1.7", 8080, "desc")
	srv := igdtest.NewServer(t, igdtest.Options{Mappings: []igd.PortMapping{holder}})
	_, err := srv.Client().AddMapping(context.Background(), mapping(8080, "tcp", "192.168.1.8", 80, ""), igd.AddOptions{})
	var ce *igd.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %#v, want *ConflictError", err)
	}
	if !ce.HolderKnown || ce.Holder != holder || ce.Wanted.ExternalPort != 8080 || ce.Wanted.Protocol != "TCP" {
		t.Errorf("conflict %+v", ce)
	}
	if upnp.ErrorCode(err) != igd.CodeConflictInMappingEntry {
		t.Errorf("the 718 fault is not wrapped: %v", err)
	}
	if _, err := srv.Client().AddMapping(context.Background(), igd.PortMapping{Protocol: "TCP", InternalClient: "192.168.1.8"}, igd.AddOptions{}); err == nil {
		t.Error("AddMapping without an internal port succeeded")
	}
}

func TestEditMapping(t *testing.T) {
	old := mapping(8080, "TCP", "192.168.1.7", 80, "web")
	old.LeaseDuration = time.Hour
	other := mapping(9090, "TCP", "192.168.1.99", 9090, "someone else")
	oldKey := old.Key()
	tests := []struct {
		name      string
		opts      igdtest.Options
		newM      igd.PortMapping
		key       igd.Key
		wantTable []igd.PortMapping
		wantErr   string
		// restored is checked on an *EditError.
		restored bool
		actions  []string
	}{
		{name: "new external port: added before the old one goes", newM: mapping(9091, "TCP", "192.168.1.7", 80, "web"), key: oldKey,
			wantTable: []igd.PortMapping{mapping(9091, "TCP", "192.168.1.7", 80, "web")},
			actions:   []string{"GetSpecificPortMappingEntry", "AddPortMapping", "DeletePortMapping"}},
		{name: "new external port taken: old kept", newM: mapping(9090, "TCP", "192.168.1.7", 80, "web"), key: oldKey,
			opts:      igdtest.Options{Mappings: []igd.PortMapping{other}},
			wantTable: []igd.PortMapping{other, old}, restored: true,
			wantErr: `could not change mapping 8080/TCP (the old mapping is unchanged): the router answered 718: port 9090/TCP is already mapped to 192.168.1.99:9090 ("someone else")`,
			actions: []string{"GetSpecificPortMappingEntry", "AddPortMapping", "GetSpecificPortMappingEntry"}},
		{name: "old cannot be removed: new taken back", newM: mapping(9091, "TCP", "192.168.1.7", 80, "web"), key: oldKey,
			opts: igdtest.Options{Faults: []igdtest.Fault{{Action: "DeletePortMapping", Code: 606,
				Match: func(a upnp.Args) bool { return a.Value("NewExternalPort") == "8080" }}}},
			wantTable: []igd.PortMapping{old}, restored: true, wantErr: "removing the old mapping",
			actions: []string{"GetSpecificPortMappingEntry", "AddPortMapping", "DeletePortMapping", "DeletePortMapping"}},
		{name: "same key, new client: delete then add", newM: mapping(8080, "TCP", "192.168.1.8", 8080, "moved"), key: oldKey,
			wantTable: []igd.PortMapping{mapping(8080, "TCP", "192.168.1.8", 8080, "moved")},
			actions:   []string{"GetSpecificPortMappingEntry", "DeletePortMapping", "AddPortMapping"}},
		{name: "same key, new refused: old put back", newM: mapping(8080, "TCP", "192.168.1.8", 8080, "moved"), key: oldKey,
			opts: igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 606,
				Match: func(a upnp.Args) bool { return a.Value("NewInternalClient") == "192.168.1.8" }}}},
			wantTable: []igd.PortMapping{old}, restored: true, wantErr: "(the old mapping is unchanged)",
			actions: []string{"GetSpecificPortMappingEntry", "DeletePortMapping", "AddPortMapping", "AddPortMapping"}},
		{name: "same key, new refused and old cannot be put back", newM: mapping(8080, "TCP", "192.168.1.8", 8080, "moved"), key: oldKey,
			opts:      igdtest.Options{Faults: []igdtest.Fault{{Action: "AddPortMapping", Code: 501}}},
			wantTable: nil, restored: false, wantErr: "putting the old mapping back also failed, so it is gone",
			actions: []string{"GetSpecificPortMappingEntry", "DeletePortMapping", "AddPortMapping", "AddPortMapping"}},
		{name: "no such mapping", newM: mapping(8080, "TCP", "192.168.1.8", 8080, ""), key: igd.Key{ExternalPort: 1234, Protocol: "tcp"},
			wantTable: []igd.PortMapping{old}, wantErr: "reading mapping 1234/TCP before changing it",
			actions: []string{"GetSpecificPortMappingEntry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Mappings = append(tt.opts.Mappings, old)
			srv := igdtest.NewServer(t, tt.opts)
			got, err := srv.Client().EditMapping(context.Background(), tt.key, tt.newM)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.newM {
					t.Errorf("made %+v, want %+v", got, tt.newM)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				var ee *igd.EditError
				if errors.As(err, &ee) {
					if ee.Restored != tt.restored || ee.Old != old {
						t.Errorf("EditError restored=%v old=%+v; want restored=%v old=%+v", ee.Restored, ee.Old, tt.restored, old)
					}
				} else if tt.actions[len(tt.actions)-1] != "GetSpecificPortMappingEntry" || upnp.ErrorCode(err) != 714 {
					t.Errorf("error %#v, want an *EditError", err)
				}
			}
			if !sameTable(srv.Mappings(), tt.wantTable) {
				t.Errorf("table\n got  %+v\n want %+v", srv.Mappings(), tt.wantTable)
			}
			if !reflect.DeepEqual(srv.Actions(), tt.actions) {
				t.Errorf("actions %v, want %v", srv.Actions(), tt.actions)
			}
		})
	}
}

func TestRemoveRange(t *testing.T) {
	entries := []igd.PortMapping{
		mapping(1000, "TCP", "192.168.1.2", 1, ""), mapping(1001, "TCP", "192.168.1.2", 2, ""),
		mapping(2000, "TCP", "192.168.1.2", 3, ""), mapping(1000, "UDP", "192.168.1.2", 4, ""),
	}
	tests := []struct {
		name        string
		opts        igdtest.Options
		proto       string
		wantRemoved []igd.PortMapping
		wantErr     string
		wantTable   []igd.PortMapping
		wantAction  string // an action that must have been used
	}{
		{name: "v2: one action", proto: "tcp", wantRemoved: entries[:2], wantTable: entries[2:],
			wantAction: "DeletePortMappingRange"},
		{name: "v2: both protocols, one of them empty", proto: "", wantRemoved: []igd.PortMapping{entries[0], entries[3]},
			wantTable:  entries[2:3],
			opts:       igdtest.Options{Mappings: []igd.PortMapping{entries[0], entries[2], entries[3]}},
			wantAction: "DeletePortMappingRange"},
		{name: "v2 without the action: one by one", proto: "TCP", wantRemoved: entries[:2], wantTable: entries[2:],
			opts:       igdtest.Options{Faults: []igdtest.Fault{{Action: "DeletePortMappingRange", Code: 401}}},
			wantAction: "DeletePortMapping"},
		{name: "v1: list then delete", proto: "TCP", wantRemoved: entries[:2], wantTable: entries[2:], opts: igdtest.Options{Version: 1},
			wantAction: "DeletePortMapping"},
		{name: "v1: a refusal does not stop the rest, and is named", proto: "",
			wantRemoved: []igd.PortMapping{entries[0], entries[3]},
			wantErr:     "1001/TCP",
			wantTable:   []igd.PortMapping{entries[1], entries[2]},
			wantAction:  "DeletePortMapping",
			opts: igdtest.Options{Version: 1, Faults: []igdtest.Fault{{Action: "DeletePortMapping", Code: 606,
				Match: func(a upnp.Args) bool { return a.Value("NewExternalPort") == "1001" }}}},
		},
		{name: "nothing in the range: nothing but the listing", proto: "TCP",
			opts:      igdtest.Options{Mappings: entries[2:3]},
			wantTable: entries[2:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Mappings == nil {
				tt.opts.Mappings = entries
			}
			srv := igdtest.NewServer(t, tt.opts)
			removed, err := srv.Client().RemoveRange(context.Background(), 1000, 1500, tt.proto)
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !sameTable(removed, tt.wantRemoved) {
				t.Errorf("removed\n got  %+v\n want %+v", removed, tt.wantRemoved)
			}
			if !sameTable(srv.Mappings(), tt.wantTable) {
				t.Errorf("table\n got  %+v\n want %+v", srv.Mappings(), tt.wantTable)
			}
			if tt.wantAction != "" && !slices.Contains(srv.Actions(), tt.wantAction) {
				t.Errorf("actions %v: want %s among them", srv.Actions(), tt.wantAction)
			}
			if tt.wantAction == "" && slices.ContainsFunc(srv.Actions(), func(a string) bool { return strings.HasPrefix(a, "Delete") }) {
				t.Errorf("actions %v: nothing to delete, yet a delete was sent", srv.Actions())
			}
		})
	}
	srv := igdtest.NewServer(t, igdtest.Options{})
	if _, err := srv.Client().RemoveRange(context.Background(), 2, 1, "TCP"); err == nil {
		t.Error("reversed range accepted")
	}
	if _, err := srv.Client().RemoveRange(context.Background(), 1, 2, "ICMP"); err == nil {
		t.Error("protocol ICMP accepted")
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests sent for invalid ranges", n)
	}
}
