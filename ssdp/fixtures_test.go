package ssdp

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portfwd/portfwd/internal/testenv"
)

// fixture is one datagram from testdata.
type fixture struct {
	name string // file, plus "#n" for the n-th datagram of a capture
	data []byte
}

// listenAddrTemplate is the placeholder go-ethereum's test left in the
// DD-WRT reply's LOCATION; its harness puts its listen address there, and so
// does readFixtures, with an address of the documentation range.
const listenAddrTemplate = "{{listenAddr}}"

// readFixtures returns every SSDP datagram of testdata: raw replies, the
// messages rebuilt from aioupnp's JSON dicts, and each datagram of the
// natlab captures.
func readFixtures(t testing.TB) []fixture {
	t.Helper()
	var out []fixture
	paths, _ := filepath.Glob("testdata/routers/*/ssdp.txt")
	partial, _ := filepath.Glob("testdata/routers/_partial/*/ssdp.txt")
	for _, p := range append(paths, partial...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(listenAddrTemplate), []byte("192.0.2.1:5000"))
		out = append(out, fixture{p, b})
	}
	jsons, _ := filepath.Glob("testdata/routers/*/ssdp-reply.json")
	for _, p := range jsons {
		out = append(out, fixture{p, replyFromJSON(t, p)})
	}
	captures, _ := filepath.Glob("testdata/natlab/ssdp_*.txt")
	for _, p := range captures {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range splitCapture(b) {
			out = append(out, fixture{p + "#" + strconv.Itoa(i), d})
		}
	}
	if len(out) < 11 {
		t.Fatalf("found %d SSDP fixtures in testdata, want at least 11: were they removed?", len(out))
	}
	return out
}

// replyFromJSON rebuilds an M-SEARCH reply from aioupnp's header dict, in
// which "-" became "_" (CACHE_CONTROL). The order of the headers is lost,
// which SSDP does not care about; it is sorted for a stable result.
func replyFromJSON(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]string
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	msg := []byte("HTTP/1.1 200 OK\r\n")
	for _, k := range keys {
		msg = appendHeader(msg, strings.ReplaceAll(k, "_", "-"), h[k])
	}
	return append(msg, "\r\n"...)
}

// splitCapture splits a natlab capture into its datagrams: each follows a
// "# time src -> dst" line, and a blank line separates one from the next.
func splitCapture(b []byte) [][]byte {
	var out [][]byte
	var cur []byte
	in := false
	flush := func() {
		if in {
			if d, ok := bytes.CutSuffix(cur, []byte("\r\n\r\n\n")); ok {
				cur = append(d, "\r\n\r\n"...)
			}
			out = append(out, cur)
		}
		cur, in = nil, true
	}
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("# ")) {
			flush()
			continue
		}
		cur = append(cur, line...)
	}
	flush()
	return out
}

func TestFixtures(t *testing.T) {
	const devURN = "urn:schemas-upnp-org:device:"
	natlab := Response{
		Location: "http://10.77.0.1:5000/rootDesc.xml",
		ST:       STIGDv1,
		USN:      "uuid:85cf6c3a-62cc-4535-b4ce-0b3ca5a24e2b::" + STIGDv1,
		Server:   "Debian/6.18.44-fc-v669 UPnP/1.1 MiniUPnPd/2.3.1",
		MaxAge:   120 * time.Second,
		BootID:   1795310987,
		ConfigID: 1337,
	}
	// Replies, by the file they are in.
	replies := map[string]Response{
		"testdata/routers/asus-rt-n16-ddwrt/ssdp.txt": {
			// DD-WRT answers with the WANConnectionDevice type.
			Location: "http://192.0.2.1:5000/InternetGatewayDevice.xml",
			ST:       devURN + "WANConnectionDevice:1",
			USN:      "uuid:CB2471CC-CF2E-9795-8D9C-E87B34C16800::" + devURN + "WANConnectionDevice:1",
			Server:   "POSIX UPnP/1.0 DD-WRT Linux/V24",
			MaxAge:   300 * time.Second,
		},
		"testdata/routers/google-onhub/ssdp.txt": {
			Location: "http://192.168.86.1:5000/rootDesc.xml",
			ST:       STIGDv2,
			USN:      "uuid:a9708184-a6c0-413a-bbac-11bcf7e30ece::" + STIGDv2,
			Server:   "Linux/5.4.0-1034-gcp UPnP/1.1 MiniUPnPd/1.9",
			MaxAge:   120 * time.Second,
			BootID:   1,
			ConfigID: 1337,
		},
		"testdata/routers/pfsense-2.5.0/ssdp.txt": {
			Location: "http://192.168.1.1:2189/rootDesc.xml",
			ST:       STIGDv1,
			USN:      "uuid:bee7052b-49e8-3597-b545-55a1e38ac11::" + STIGDv1,
			Server:   "FreeBSD/12.2-STABLE UPnP/1.1 MiniUPnPd/2.2.1",
			MaxAge:   120 * time.Second,
			BootID:   1627958564,
			ConfigID: 1337,
		},
		"testdata/routers/tplink-tl-wr841nd-v9-ddwrt/ssdp.txt": {
			Location: "http://192.168.1.1:1780/InternetGatewayDevice.xml",
			ST:       STIGDv1,
			USN:      "uuid:C8032011-43C8-CD28-13A8-7F60317255C4::" + STIGDv1,
			Server:   "POSIX UPnP/1.0 DD-WRT Linux/V24",
			MaxAge:   300 * time.Second,
		},
		"testdata/routers/_partial/huawei-portable-sdk/ssdp.txt": {
			Location: "http://192.168.1.1:49652/49652gatedesc.xml",
			ST:       STIGDv1,
			USN:      "uuid:00e0fc37-2525-2828-2500-0C31DCD93368::" + STIGDv1,
			Server:   "Linux/4.4.240, UPnP/1.0, Portable SDK for UPnP devices/1.12.1",
			MaxAge:   1800 * time.Second,
		},
		"testdata/routers/_partial/sagemcom-fast3890v3/ssdp.txt": {
			Location: "http://192.168.0.1:49153/69692b70/gatedesc0b.xml",
			ST:       STIGDv1,
			USN:      "uuid:75802409-bccb-40e7-8e6c-fa095ecce13e::" + STIGDv1,
			Server:   "",
			MaxAge:   1800 * time.Second,
		},
		"testdata/routers/actiontec-gt784wn/ssdp-reply.json": {
			Location: "http://192.168.0.1:5431/dyndev/uuid:deadbeef-dead-beef-dead-beefdeadbeef00",
			ST:       STRootDevice,
			USN:      "uuid:deadbeef-dead-beef-dead-beefdeadbeef00::upnp:rootdevice",
			Server:   "Custom/1.0 UPnP/1.0 Proc/Ver",
			MaxAge:   1800 * time.Second,
		},
		"testdata/routers/ddwrt-generic-x86/ssdp-reply.json": {
			Location: "http://192.168.1.1:5431/dyndev/uuid:dead-beef-deadbeef2222",
			ST:       STRootDevice,
			USN:      "uuid:dead-beef-deadbeef2222::upnp:rootdevice",
			Server:   "Custom/1.0 UPnP/1.0 Proc/Ver",
			MaxAge:   180 * time.Second,
		},
		"testdata/natlab/ssdp_msearch_response.txt":          natlab,
		"testdata/natlab/ssdp_all_msearch_and_responses.txt": natlab,
	}
	// miniupnpc's searches in the natlab captures.
	searches := map[string]bool{
		"testdata/natlab/ssdp_msearch_request.txt":           true,
		"testdata/natlab/ssdp_all_msearch_and_responses.txt": true,
	}

	var nReplies, nSearches int
	for _, f := range readFixtures(t) {
		file, _, _ := strings.Cut(f.name, "#")
		t.Run(f.name, func(t *testing.T) {
			m, err := ParseMessage(f.data)
			if err != nil {
				t.Fatalf("ParseMessage: %v", err)
			}
			if m.Method == MethodSearch {
				if !searches[file] {
					t.Fatalf("unexpected M-SEARCH in %s", file)
				}
				nSearches++
				st, mx, err := ParseSearch(f.data)
				if err != nil || st != STIGDv1 || mx != 2 {
					t.Errorf("ParseSearch = %q, %d, %v; want %q, 2, nil", st, mx, err, STIGDv1)
				}
				return
			}
			want, ok := replies[file]
			if !ok {
				t.Fatalf("no expected reply for %s: add it to the table", file)
			}
			nReplies++
			got, err := ParseResponse(f.data)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got != want {
				t.Errorf("ParseResponse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	// 8 router replies, 1 + 4 natlab replies; 1 + 4 natlab searches.
	if nReplies != 13 || nSearches != 5 {
		t.Errorf("parsed %d replies and %d searches, want 13 and 5: a fixture went missing or a capture was split wrongly", nReplies, nSearches)
	}
}

// The DD-WRT fixture as stored upstream, template and all, is rejected with
// a message that points at LOCATION rather than parsed into a URL no client
// could fetch.
func TestFixtureTemplateLocationRejected(t *testing.T) {
	b, err := os.ReadFile("testdata/routers/asus-rt-n16-ddwrt/ssdp.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(listenAddrTemplate)) {
		t.Fatalf("fixture no longer holds %s", listenAddrTemplate)
	}
	if _, err := ParseResponse(b); err == nil || !strings.Contains(err.Error(), "LOCATION") {
		t.Errorf("ParseResponse(template) error = %v, want one about LOCATION", err)
	}
}

// TestFixturesMatchShared checks that testdata still holds verbatim copies of
// the shared corpus, which lives beside the repository.
func TestFixturesMatchShared(t *testing.T) {
	shared := testenv.Shared(t)
	copies := map[string]string{}
	for _, pat := range []string{"testdata/routers/*/ssdp*", "testdata/routers/_partial/*/ssdp*"} {
		m, _ := filepath.Glob(pat)
		for _, p := range m {
			copies[p] = filepath.Join(shared, "routers", strings.TrimPrefix(p, "testdata/routers/"))
		}
	}
	m, _ := filepath.Glob("testdata/natlab/ssdp_*.txt")
	for _, p := range m {
		copies[p] = filepath.Join(shared, "natlab/captures", filepath.Base(p))
	}
	if len(copies) != 11 {
		t.Errorf("found %d fixture copies, want 11", len(copies))
	}
	for local, orig := range copies {
		a, err := os.ReadFile(local)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(orig)
		if err != nil {
			t.Errorf("%s: original missing: %v", local, err)
			continue
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: copy the shared file again", local, orig)
		}
	}
}
