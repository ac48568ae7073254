package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	http "github.com/portfwd/portfwd/internal/httpx"

	"github.com/portfwd/portfwd/gateway/admin"
	"github.com/portfwd/portfwd/internal/httpserve"
)

// adminSide is the admin server: /metrics, /healthz and, with admin.ui,
// the admin page.
type adminSide struct {
	mux  *http.ServeMux
	ln   net.Listener
	srv  *httpserve.Server
	page *admin.Server
}

// AdminAddr returns the admin server's address, or the zero AddrPort
// without one.
func (d *Daemon) AdminAddr() netip.AddrPort {
	if d.adminSide.ln == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(d.adminSide.ln.Addr().String())
	return ap
}

// AdminMux is the admin server's request router, serving /metrics and
// /healthz, and with admin.ui the admin page at "/". Code that embeds the
// daemon may mount more handlers on it before Serve.
func (d *Daemon) AdminMux() *http.ServeMux { return d.adminSide.mux }

// setupAdmin opens the admin server with /metrics and /healthz, and the
// admin page when admin.ui asks for it.
func (d *Daemon) setupAdmin(ctx context.Context) error {
	d.adminSide.mux = http.NewServeMux()
	d.adminSide.mux.HandleFunc("/metrics", d.metricsHandler)
	d.adminSide.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	if d.cfg.Admin.Address == "" {
		return nil
	}
	if d.cfg.Admin.UI {
		if err := d.setupAdminPage(); err != nil {
			return err
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", d.cfg.Admin.Address)
	if err != nil {
		return fmt.Errorf("admin server on %s: %w (change admin.address, or set it empty to disable)", d.cfg.Admin.Address, err)
	}
	d.adminSide.ln = ln
	d.adminSide.srv = &httpserve.Server{
		Handler:            d.adminSide.mux,
		ReadHeaderTimeout:  httpReadHeaderTimeout,
		IdleTimeout:        httpIdleTimeout,
		MaxHeaderBytes:     httpMaxHeaderBytes,
		MaxRequestsPerConn: httpMaxRequestsPerConn,
		Logger:             d.log,
		// No WriteTimeout: the admin page's event stream is a long
		// response. Shutdown ends those streams first, or it would wait
		// for them.
	}
	if d.adminSide.page != nil {
		d.adminSide.srv.RegisterOnShutdown(func() { d.adminSide.page.Close() })
	}
	return nil
}
