package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage" // the storage of the config below
)

func init() {
	caddy.RegisterModule(caddyBaseline{})
}

// caddyBaseline is the baseline's handler as a Caddy HTTP handler: the
// same code answers the same requests, behind Caddy's server, routing,
// replacer and logging instead of a bare net/http server. What it costs
// more than the baseline is the price of Caddy's request pipeline, which
// any handler module pays, bits_upload included.
type caddyBaseline struct {
	// Dir is the baseline's directory (its root and tmp).
	Dir string `json:"dir"`
	// NoFsync and DirFsync are the baseline's options.
	NoFsync  bool `json:"no_fsync,omitempty"`
	DirFsync bool `json:"dir_fsync,omitempty"`

	b *baseline
}

// CaddyModule returns the Caddy module information.
func (caddyBaseline) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bitsbench_baseline",
		New: func() caddy.Module { return new(caddyBaseline) },
	}
}

// Provision sets up the baseline handler and its directories.
func (h *caddyBaseline) Provision(caddy.Context) error {
	b, err := newBaseline(h.Dir, h.NoFsync, h.DirFsync)
	h.b = b
	return err
}

// ServeHTTP answers every request with the baseline.
func (h *caddyBaseline) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.b.ServeHTTP(w, r)
	return nil
}

// serveCaddyBaseline runs Caddy with the baseline's handler (see
// startCaddyBaseline) until the process is killed.
func serveCaddyBaseline(addr, dir string, noFsync, dirFsync bool) error {
	if err := startCaddyBaseline(addr, dir, noFsync, dirFsync); err != nil {
		return err
	}
	select {}
}

// startCaddyBaseline starts Caddy in this process with the baseline's
// handler as its only route, configured as bitsbench configures
// bits_upload: one server on addr, logs at WARN, no automatic HTTPS.
func startCaddyBaseline(addr, dir string, noFsync, dirFsync bool) error {
	handler, err := json.Marshal(map[string]any{
		"handler": "bitsbench_baseline", "dir": dir, "no_fsync": noFsync, "dir_fsync": dirFsync,
	})
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{
	"admin": {"disabled": true, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "WARN"}}},
	"storage": {"module": "file_system", "root": %q},
	"apps": {"http": {"servers": {"srv0": {
		"listen": [%q],
		"routes": [{"handle": [%s]}],
		"automatic_https": {"disable": true}
	}}}}
}`, filepath.Join(dir, "caddy-data"), addr, handler)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		return fmt.Errorf("starting caddy: %w", err)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*caddyBaseline)(nil)
	_ caddyhttp.MiddlewareHandler = (*caddyBaseline)(nil)
)
