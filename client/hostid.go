package client

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// replaceHost returns u with its host replaced by a BITS-Host-Id value, as
// the Windows client does for all packets after Create-Session ([MC-BUP]
// 3.1.5.1.2). The scheme, path and query are kept. The port of u is kept
// unless the host id names its own ("node7:8443" or "[2001:db8::7]:8443");
// a bare IPv6 literal ("2001:db8::7") is bracketed.
func replaceHost(u *url.URL, hostID string) (*url.URL, error) {
	h := strings.TrimSpace(hostID)
	if h == "" {
		return nil, fmt.Errorf("empty BITS-Host-Id")
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c <= ' ' || c == 0x7f || c >= 0x80:
			return nil, fmt.Errorf("BITS-Host-Id %.60q contains a character not allowed in a host", hostID)
		case strings.IndexByte(`/\?#@`, c) >= 0:
			return nil, fmt.Errorf("BITS-Host-Id %.60q contains a character not allowed in a host", hostID)
		}
	}
	var host, port string
	switch {
	case strings.HasPrefix(h, "["):
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return nil, fmt.Errorf("BITS-Host-Id %.60q has an unterminated IPv6 literal", hostID)
		}
		host, port = h[1:end], ""
		rest := h[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return nil, fmt.Errorf("BITS-Host-Id %.60q has junk after its IPv6 literal", hostID)
			}
			port = rest[1:]
		}
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return nil, fmt.Errorf("BITS-Host-Id %.60q is not a valid IPv6 literal", hostID)
		}
	case strings.Count(h, ":") == 1:
		host, port, _ = strings.Cut(h, ":")
	case strings.Count(h, ":") > 1:
		if _, err := netip.ParseAddr(h); err != nil {
			return nil, fmt.Errorf("BITS-Host-Id %.60q is not a valid IPv6 address", hostID)
		}
		host = h
	default:
		host = h
	}
	if host == "" {
		return nil, fmt.Errorf("BITS-Host-Id %.60q names no host", hostID)
	}
	if port == "" {
		port = u.Port()
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return nil, fmt.Errorf("BITS-Host-Id %.60q has an invalid port", hostID)
	}
	if strings.Contains(host, ":") {
		// url.URL.String escapes the zone separator of a scoped address.
		host = "[" + host + "]"
	}
	out := *u
	if port != "" {
		out.Host = host + ":" + port
	} else {
		out.Host = host
	}
	if _, err := url.Parse(out.String()); err != nil {
		return nil, fmt.Errorf("BITS-Host-Id %.60q does not make a valid URL: %v", hostID, err)
	}
	return &out, nil
}

// sameHost reports whether two URLs name the same scheme, host and port,
// with default ports made explicit.
func sameHost(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(hostPort(a), hostPort(b))
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// hostFallback tracks how long requests to a BITS-Host-Id node have been
// failing ([MC-BUP] 3.1.6.3): the timer starts at the first failure, any
// successful fragment Ack stops it, and when it expires the session goes
// back to its original URL.
type hostFallback struct {
	timeout time.Duration // 0: never fall back
	since   time.Time     // zero: no failure pending
}

// failed notes a failed request to the host-id node.
func (f *hostFallback) failed(now time.Time) {
	if f.since.IsZero() {
		f.since = now
	}
}

// succeeded notes a successful fragment Ack from the host-id node.
func (f *hostFallback) succeeded() { f.since = time.Time{} }

// due reports whether the fallback timer has expired.
func (f *hostFallback) due(now time.Time) bool {
	return f.timeout > 0 && !f.since.IsZero() && now.Sub(f.since) >= f.timeout
}
