package portmap

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/igd/igdtest"
	"github.com/portfwd/portfwd/pcp"
)

const (
	helperDirEnv = "PORTMAP_STATE_HELPER_DIR"
	helperIDEnv  = "PORTMAP_STATE_HELPER_ID"
	helperRecs   = 25
)

// TestStateHelperProcess is not a test: it is a process of
// TestStateManyProcesses and TestStateSurvivesKill9, writing records to
// the state directory they name, and printing "ok N" after each.
func TestStateHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("a helper process of the state tests")
	}
	id, _ := strconv.Atoi(os.Getenv(helperIDEnv))
	st := newStore(dir, nil)
	n := helperRecs
	if id < 0 {
		n = 1 << 30 // until killed
		id = 9
	}
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		r := Record{Method: NATPMP, Gateway: "192.0.2.1:5351", Protocol: TCP, ExternalPort: uint16(10000 + id*1000 + i%1000),
			InternalPort: uint16(20000 + i%1000), Description: fmt.Sprintf("process %d record %d", id, i), Made: time.Now(), Expires: time.Now().Add(time.Hour)}
		if _, err := st.put(r); err != nil {
			t.Fatal(err)
		}
		// Reads and other writes in between, as real processes do.
		if _, err := st.records(NATPMP, "192.0.2.1:5351", nil); err != nil {
			t.Fatal(err)
		}
		st.rememberLocation(netip.MustParseAddr("192.0.2.1"), fmt.Sprintf("http://192.0.2.1/%d", i))
		fmt.Fprintf(out, "ok %d\n", i)
		out.Flush()
	}
}

func helper(t *testing.T, dir string, id int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperIDEnv+"="+strconv.Itoa(id))
	cmd.Stderr = os.Stderr
	return cmd
}

// TestStateManyProcesses: 8 processes write 25 records each to one state
// directory at once, reading and rewriting the file each time. Not one
// record is lost.
func TestStateManyProcesses(t *testing.T) {
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for id := range 8 {
		cmd := helper(t, dir, id)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("a writer failed: %v", err)
		}
	}
	recs, err := Remembered(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Key]bool{}
	for _, r := range recs {
		seen[r.Key()] = true
	}
	if len(recs) != 8*helperRecs || len(seen) != 8*helperRecs {
		t.Fatalf("%d records (%d distinct) after 8 processes wrote %d each", len(recs), len(seen), helperRecs)
	}
	// Nothing else is left in the directory: no temporary file.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != stateFile && e.Name() != stateLockFile {
			t.Errorf("left in the state directory: %s", e.Name())
		}
	}
}

// TestStateSurvivesKill9: a process writing records is killed (SIGKILL)
// part-way. The file is whole, and holds every record the process had
// finished writing.
func TestStateSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := helper(t, dir, -1)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	done := 0
	for sc.Scan() && done < 40 {
		if strings.HasPrefix(sc.Text(), "ok ") {
			done++
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	recs, err := Remembered(dir)
	if err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	if len(recs) < done {
		t.Errorf("%d records after kill -9; the process had finished %d", len(recs), done)
	}
}

func TestStateDamagedFileIsSetAsideNotLost(t *testing.T) {
	dir := t.TempDir()
	garbage := []byte(`{"version": 1, "mappings": [{"method": "natpmp", `)
	if err := os.WriteFile(filepath.Join(dir, stateFile), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Remembered(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("reading a damaged file: %v", err)
	}
	warn, err := newStore(dir, nil).put(Record{Method: NATPMP, Gateway: "g", Protocol: UDP, ExternalPort: 1, InternalPort: 1, Expires: time.Now().Add(time.Hour)})
	if err != nil || !strings.Contains(warn, "kept as") {
		t.Fatalf("writing over a damaged file: %q, %v", warn, err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, stateFile+".damaged-*"))
	if len(aside) != 1 {
		t.Fatalf("damaged file set aside as %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); string(b) != string(garbage) {
		t.Errorf("the damaged file was not kept as it was: %q", b)
	}
	if recs, err := Remembered(dir); err != nil || len(recs) != 1 {
		t.Errorf("after: %+v, %v", recs, err)
	}
}

// TestStateImportsEarlierFiles: NAT-PMP records (mappings.json), the
// discovery cache (gateways.json) and PCP nonces (pcp-nonces/) of earlier
// versions are taken into the one file, then removed.
func TestStateImportsEarlierFiles(t *testing.T) {
	dir := t.TempDir()
	exp := time.Now().Add(time.Hour).UTC().Round(time.Second)
	write := func(name string, v any) {
		b, _ := json.Marshal(v)
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("mappings.json", []map[string]any{{"method": "natpmp", "server": "192.0.2.1:5351", "protocol": "TCP", "external_port": 9000, "internal_port": 19000, "expires": exp}})
	write("gateways.json", []map[string]any{{"default_gateway": "192.0.2.1", "location": "http://192.0.2.1/d.xml", "seen": time.Now()}})
	nonce := pcp.NewNonce()
	write("pcp-nonces/pcp-192.0.2.1-udp-4000.json", map[string]any{"gateway": "192.0.2.1", "protocol": 17, "internal_port": 4000,
		"nonce": nonce, "external_port": 14000, "external_addr": "198.51.100.1", "expires": exp})
	st := newStore(dir, nil)
	if loc := st.cachedLocation(netip.MustParseAddr("192.0.2.1")); loc != "http://192.0.2.1/d.xml" {
		t.Errorf("cached location %q", loc)
	}
	if _, err := st.update(func(*stateData) error { return nil }); err != nil {
		t.Fatal(err)
	}
	recs, _ := Remembered(dir)
	slices.SortFunc(recs, func(a, b Record) int { return strings.Compare(string(a.Method), string(b.Method)) })
	if len(recs) != 2 || recs[0].Gateway != "192.0.2.1:5351" || recs[0].InternalPort != 19000 ||
		recs[1].Method != PCP || recs[1].Nonce != nonce || recs[1].ExternalPort != 14000 || recs[1].Protocol != UDP {
		t.Fatalf("imported %+v", recs)
	}
	for _, old := range []string{"mappings.json", "gateways.json", "pcp-nonces"} {
		if _, err := os.Stat(filepath.Join(dir, old)); !os.IsNotExist(err) {
			t.Errorf("%s still there after the import: %v", old, err)
		}
	}
}

// TestPruneForgetsOnlyWhatIsGone: an expired lease and a UPnP entry the
// router no longer holds are forgotten; a live entry, a running keeper's
// record and a lease still running on NAT-PMP are kept.
func TestPruneForgetsOnlyWhatIsGone(t *testing.T) {
	srv := igdtest.NewServer(t, igdtest.Options{Mappings: []igd.PortMapping{
		{ExternalPort: 18001, Protocol: "TCP", InternalPort: 8001, InternalClient: "127.0.0.1", Enabled: true}}})
	o := testOptions(t)
	o.GatewayURL = srv.Location
	g := discoverOne(t, o)
	st := newStore(o.StateDir, nil)
	hour := time.Now().Add(time.Hour)
	for _, r := range []Record{
		{Method: NATPMP, Gateway: "192.0.2.1:5351", Protocol: TCP, ExternalPort: 9000, InternalPort: 9000, Expires: time.Now().Add(-time.Minute)},
		{Method: NATPMP, Gateway: "192.0.2.1:5351", Protocol: TCP, ExternalPort: 9001, InternalPort: 9001, Expires: hour},
		{Method: UPnP, Gateway: g.Addr(), Protocol: TCP, ExternalPort: 18001, InternalClient: "127.0.0.1", InternalPort: 8001, Keeper: deadProcess(t)},
		{Method: UPnP, Gateway: g.Addr(), Protocol: TCP, ExternalPort: 18002, InternalClient: "127.0.0.1", InternalPort: 8002, Keeper: deadProcess(t)},
		{Method: UPnP, Gateway: g.Addr(), Protocol: TCP, ExternalPort: 18003, InternalClient: "127.0.0.1", InternalPort: 8003, Keeper: &Process{PID: os.Getppid()}},
	} {
		if _, err := st.put(r); err != nil {
			t.Fatal(err)
		}
	}
	gone, err := Prune(context.Background(), o.StateDir, []Gateway{g})
	if err != nil {
		t.Fatal(err)
	}
	var ports []uint16
	for _, f := range gone {
		ports = append(ports, f.ExternalPort)
		if f.Why == "" {
			t.Errorf("forgot %v without saying why", f.Key())
		}
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []uint16{9000, 18002}) {
		t.Errorf("Prune forgot %v, want 9000 (lease ended) and 18002 (gone from the router)", ports)
	}
	// Forget everything: all but the running keeper's record.
	gone2, err := Forget(o.StateDir, func(Record) bool { return true })
	if err != nil || len(gone2) != 2 {
		t.Errorf("Forget all: %d forgotten, %v", len(gone2), err)
	}
	if left, _ := Remembered(o.StateDir); len(left) != 1 || left[0].ExternalPort != 18003 {
		t.Errorf("left %+v, want the running keeper's", left)
	}
}
