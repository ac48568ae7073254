package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"strings"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/igd"
	"github.com/portfwd/portfwd/upnp"
)

// quirkHandler stands in front of the IGD server and makes its SOAP
// control misbehave as Quirks ask (see quirks.go): it refuses, before the
// server sees them, the requests a quirky router refuses (permanent-only,
// lease-402, upper-proto, no-list's missing GetListOfPortMappings), and
// strips the body of every fault (soap-500-no-body). What depends on the
// table (enabled-ignored, duplicate-entries, no-list past the end,
// no-external-ip) is done by upnpService, which sees it.
type quirkHandler struct {
	next    http.Handler
	q       Quirks
	log     *slog.Logger
	metrics *metrics
}

// wrapQuirks returns h, or h behind a quirkHandler when a SOAP quirk is on.
func wrapQuirks(h http.Handler, q Quirks, log *slog.Logger, m *metrics) http.Handler {
	if !QuirksBuilt {
		return h
	}
	if !q.PermanentOnly && !q.Lease402 && !q.UpperProto && !q.NoList && !q.SOAP500NoBody {
		return h
	}
	return &quirkHandler{next: h, q: q, log: log, metrics: m}
}

func (h *quirkHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.next.ServeHTTP(w, r)
		return
	}
	if h.q.SOAP500NoBody {
		w = &emptyFaultWriter{ResponseWriter: w}
	}
	body, err := upnp.ReadLimited(r.Body, igd.DefaultMaxSOAPBody)
	if err != nil {
		h.next.ServeHTTP(w, r) // the server tells what is wrong
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	probe := r.Clone(r.Context())
	probe.Body = io.NopCloser(bytes.NewReader(body))
	_, action, args, err := upnp.ReadRequest(probe, igd.DefaultMaxSOAPBody)
	if err == nil {
		if code := h.refusal(action, args); code != 0 {
			h.log.Debug("quirk: refused a SOAP action", "action", action, "code", code, "peer", r.RemoteAddr)
			h.metrics.request("upnp", action, code)
			w.Header()["EXT"] = []string{""}
			upnp.WriteFault(w, code, quirkFaultText[code])
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

// refusal returns the UPnP error code a quirk answers action with, or 0.
func (h *quirkHandler) refusal(action string, args upnp.Args) int {
	get := func(name string) (string, bool) {
		if v, ok := args.Get(name); ok {
			return v, true
		}
		for _, a := range args {
			if strings.EqualFold(a.Name, name) {
				return a.Value, true
			}
		}
		return "", false
	}
	if h.q.NoList && action == "GetListOfPortMappings" {
		return igd.CodeInvalidAction
	}
	if h.q.UpperProto {
		if p, ok := get("NewProtocol"); ok && p != "TCP" && p != "UDP" {
			return igd.CodeInvalidArgs
		}
	}
	if action == "AddPortMapping" || action == "AddAnyPortMapping" {
		lease, _ := get("NewLeaseDuration")
		if lease = strings.TrimSpace(lease); lease != "" && strings.TrimLeft(lease, "0") != "" {
			switch {
			case h.q.PermanentOnly:
				return igd.CodeOnlyPermanentLeasesSupported
			case h.q.Lease402:
				return igd.CodeInvalidArgs
			}
		}
	}
	return 0
}

// emptyFaultWriter sends an HTTP 500 with no body at all (soap-500-no-body):
// the UPnPError, and so its code, never reaches the control point.
type emptyFaultWriter struct {
	http.ResponseWriter
	dropping bool
}

func (w *emptyFaultWriter) WriteHeader(status int) {
	if status == http.StatusInternalServerError {
		w.dropping = true
		w.Header().Set("Content-Length", "0")
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *emptyFaultWriter) Write(b []byte) (int, error) {
	if w.dropping {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// quirkFaultText is the errorDescription of the codes quirkHandler sends:
// UDA's words for its codes, the template's name for 725.
var quirkFaultText = map[int]string{
	igd.CodeInvalidAction:                "Invalid Action",
	igd.CodeInvalidArgs:                  "Invalid Args",
	igd.CodeOnlyPermanentLeasesSupported: "OnlyPermanentLeasesSupported",
}
