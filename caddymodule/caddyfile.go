package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("bits_upload", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("bits_upload", httpcaddyfile.Before, "respond")
}

// parseCaddyfile sets up the handler from Caddyfile tokens.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bits_upload [<matcher>] {
//		root <dir>
//		session_dir <dir>
//		max_size <size>
//		session_timeout <duration>
//		allow_overwrite
//		host_id <host>
//		host_id_fallback_timeout <duration>
//	}
//
// Sizes accept units such as 10MiB or 1GB; durations accept Caddy's
// duration syntax, including days (14d).
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "root":
			if !d.AllArgs(&h.Root) {
				return d.ArgErr()
			}
		case "session_dir":
			if !d.AllArgs(&h.SessionDir) {
				return d.ArgErr()
			}
		case "max_size":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(v)
			switch {
			case err != nil && strings.HasPrefix(v, "-"):
				return d.Errf("max_size must be positive, got %q", v)
			case err != nil && strings.Contains(err.Error(), "too large"):
				return d.Errf("max_size %q is too large", v)
			case err != nil:
				return d.Errf("max_size %q is not a size such as 500MB or 10GiB", v)
			case size == 0:
				return d.Errf("max_size must be positive, got %q", v)
			case size > 1<<62:
				return d.Errf("max_size %q is too large", v)
			}
			h.MaxSize = int64(size)
		case "session_timeout":
			dur, err := parseDuration(d, "session_timeout")
			if err != nil {
				return err
			}
			h.SessionTimeout = dur
		case "allow_overwrite":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AllowOverwrite = true
		case "host_id":
			if !d.AllArgs(&h.HostID) {
				return d.ArgErr()
			}
			if !strings.Contains(h.HostID, "{") {
				if err := validateHostID(h.HostID); err != nil {
					return d.Err(err.Error())
				}
			}
		case "host_id_fallback_timeout":
			dur, err := parseDuration(d, "host_id_fallback_timeout")
			if err != nil {
				return err
			}
			h.HostIDFallbackTimeout = dur
		default:
			return d.Errf("unrecognized bits_upload subdirective %q", d.Val())
		}
	}
	return nil
}

// parseDuration reads the single positive duration argument of a
// subdirective.
func parseDuration(d *caddyfile.Dispenser, name string) (caddy.Duration, error) {
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("parsing %s %q: %v", name, v, err)
	}
	if dur <= 0 {
		return 0, d.Errf("%s must be positive, got %s", name, strconv.Quote(v))
	}
	return caddy.Duration(dur), nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
