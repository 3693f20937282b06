package caddymodule

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
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
//		max_sessions_per_user <n>|off
//		empty_session_timeout <duration>
//		min_free_space <size>
//		drain_limit <size>
//		drain_timeout <duration>
//		storage local|s3 { ... }
//		disable_metrics
//		notify <url> {
//			type value|reference
//			timeout <duration>
//			header <name> <value>
//			max_reply_size <size>
//			transport <module> { ... }
//		}
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
			size, err := parseSize(d, "max_size")
			if err != nil {
				return err
			}
			h.MaxSize = size
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
		case "max_sessions_per_user":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			if v == "off" {
				h.MaxSessionsPerUser = -1
				break
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return d.Errf("max_sessions_per_user must be a positive integer or off, got %q", v)
			}
			h.MaxSessionsPerUser = n
		case "empty_session_timeout":
			dur, err := parseDuration(d, "empty_session_timeout")
			if err != nil {
				return err
			}
			h.EmptySessionTimeout = dur
		case "drain_limit":
			size, err := parseSize(d, "drain_limit")
			if err != nil {
				return err
			}
			h.DrainLimit = size
		case "drain_timeout":
			dur, err := parseDuration(d, "drain_timeout")
			if err != nil {
				return err
			}
			h.DrainTimeout = dur
		case "min_free_space":
			size, err := parseSize(d, "min_free_space")
			if err != nil {
				return err
			}
			h.MinFreeSpace = size
		case "disable_metrics":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.DisableMetrics = true
		case "storage":
			if h.StorageRaw != nil {
				return d.Err("storage already specified")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			modID := "http.handlers.bits_upload.storage." + name
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return err
			}
			if _, ok := unm.(Storage); !ok {
				return d.Errf("module %s is not a bits_upload storage", modID)
			}
			h.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", name, nil)
		case "sessions":
			if h.Sessions != nil {
				return d.Err("sessions already specified")
			}
			s, err := parseSessions(d)
			if err != nil {
				return err
			}
			h.Sessions = s
		case "notify":
			if h.Notify != nil {
				return d.Err("notify already specified")
			}
			n, err := parseNotify(d)
			if err != nil {
				return err
			}
			h.Notify = n
		default:
			return d.Errf("unrecognized bits_upload subdirective %q", d.Val())
		}
	}
	return nil
}

// parseNotify reads a notify subdirective and its block:
//
//	notify <url> {
//		type value|reference
//		timeout <duration>
//		header <name> <value>
//		max_reply_size <size>
//		transport <module> { ... }
//	}
func parseNotify(d *caddyfile.Dispenser) (*Notify, error) {
	n := new(Notify)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	n.URL = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "type":
			if !d.AllArgs(&n.Type) {
				return nil, d.ArgErr()
			}
			if n.Type != notifyByValue && n.Type != notifyByReference {
				return nil, d.Errf("notify type must be %q or %q, got %q", notifyByValue, notifyByReference, n.Type)
			}
		case "timeout":
			dur, err := parseDuration(d, "notify timeout")
			if err != nil {
				return nil, err
			}
			n.Timeout = dur
		case "header":
			var name, value string
			if !d.AllArgs(&name, &value) {
				return nil, d.ArgErr()
			}
			if n.Headers == nil {
				n.Headers = make(http.Header)
			}
			n.Headers.Add(name, value)
		case "max_reply_size":
			size, err := parseSize(d, "max_reply_size")
			if err != nil {
				return nil, err
			}
			n.MaxReplySize = size
		case "transport":
			if n.TransportRaw != nil {
				return nil, d.Err("notify transport already specified")
			}
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			name := d.Val()
			modID := "http.reverse_proxy.transport." + name
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return nil, err
			}
			if _, ok := unm.(http.RoundTripper); !ok {
				return nil, d.Errf("module %s is not an HTTP transport", modID)
			}
			n.TransportRaw = caddyconfig.JSONModuleObject(unm, "protocol", name, nil)
		default:
			return nil, d.Errf("unrecognized notify subdirective %q", d.Val())
		}
	}
	return n, nil
}

// parseSize reads the single positive size argument of a subdirective,
// such as 10MiB or 1GB.
func parseSize(d *caddyfile.Dispenser, name string) (int64, error) {
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	size, err := humanize.ParseBytes(v)
	switch {
	case err != nil && strings.HasPrefix(v, "-"):
		return 0, d.Errf("%s must be positive, got %q", name, v)
	case err != nil && strings.Contains(err.Error(), "too large"):
		return 0, d.Errf("%s %q is too large", name, v)
	case err != nil:
		return 0, d.Errf("%s %q is not a size such as 500MB or 10GiB", name, v)
	case size == 0:
		return 0, d.Errf("%s must be positive, got %q", name, v)
	case size > 1<<62:
		return 0, d.Errf("%s %q is too large", name, v)
	}
	return int64(size), nil
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

// parseSessions parses the sessions subdirective:
//
//	sessions local|shared {
//		advertise       <url>
//		forward_timeout <duration>
//	}
func parseSessions(d *caddyfile.Dispenser) (*Sessions, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	s := &Sessions{Mode: d.Val()}
	if s.Mode != sessionsLocal && s.Mode != sessionsShared {
		return nil, d.Errf("sessions must be local or shared, got %q", s.Mode)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if s.Mode != sessionsShared {
			return nil, d.Errf("sessions local has no options, got %q", opt)
		}
		if opt != "advertise" && opt != "forward_timeout" {
			return nil, d.Errf("unrecognized sessions option %q", opt)
		}
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		switch opt {
		case "advertise":
			s.Advertise = val
		case "forward_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return nil, d.Errf("parsing forward_timeout %q: %v", val, err)
			}
			if dur <= 0 {
				return nil, d.Errf("forward_timeout must be positive, got %q", val)
			}
			s.ForwardTimeout = caddy.Duration(dur)
		default:
			return nil, d.Errf("unrecognized sessions option %q", opt)
		}
	}
	return s, nil
}
