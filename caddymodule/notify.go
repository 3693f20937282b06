package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Notify configures the hand-off of every completed upload to a server
// application, the way IIS's BITS Server Extensions notify one
// (BITSServerNotificationType 1 and 2). The application gets one ordinary
// HTTP POST per upload while the final fragment is being processed, and
// the client's final Ack waits for its answer. The application never has
// to speak BITS.
//
// The POST carries BITS-Original-Request-URL (the absolute upload URL),
// BITS-Session-Id and the configured headers. By value, its body is the
// uploaded file, streamed from disk, with Content-Digest (RFC 9530,
// SHA-256). By reference, its body is empty, BITS-Request-DataFile-Name is
// the absolute path of the uploaded file, BITS-Request-DataFile-Digest its
// SHA-256 in the same form, and BITS-Response-DataFile-Name a path where
// the application may write a reply.
//
// A 200 answer is success; any other status is relayed to the client as
// the application's error (context 0x7), and the client's retry of the
// final fragment notifies again. On success, the upload is placed at its
// destination only if the answer has a BITS-Copy-File-To-Destination
// header; the reply is the BITS-Static-Response-URL the answer names, or
// else its body (by value) or the file it wrote (by reference). The
// final Ack then carries BITS-Reply-URL, which this handler serves until
// the session is closed, cancelled or times out.
type Notify struct {
	// The URL of the server application. A relative URL is resolved
	// against the upload URL, and the upload URL's query string is
	// appended to it. Placeholders of the final fragment's request are
	// expanded. Required.
	URL string `json:"url"`

	// How the upload is handed over: "value" (the file is the request
	// body) or "reference" (the request names the file's path). Default:
	// "value".
	Type string `json:"type,omitempty"`

	// The longest the whole exchange with the application may take for
	// one notification: connecting, sending the file and reading the
	// answer and reply. Windows clients give up on a response after 5
	// minutes, so it should stay below that. A timeout is answered with
	// 408 and context 0x7, which clients retry. Default: 4m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Extra request headers. Values may contain placeholders of the final
	// fragment's request, such as {http.auth.user.id}. Default: none.
	Headers http.Header `json:"headers,omitempty"`

	// The largest reply accepted from the application, in bytes. A bigger
	// reply is the application's error (500, BG_E_TOO_LARGE, context 0x7).
	// Default: 16 MiB.
	MaxReplySize int64 `json:"max_reply_size,omitempty"`

	// The transport to reach the application with, a module of the
	// http.reverse_proxy.transport namespace (such as "http", with its TLS,
	// timeout and keep-alive settings). Default: an HTTP/1.1 and HTTP/2
	// transport with keep-alive and a 10 s dial timeout.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`

	byReference bool
	client      *http.Client
	transport   http.RoundTripper
}

// Notification types.
const (
	notifyByValue     = "value"
	notifyByReference = "reference"
)

// Default values of the notify options.
const (
	defaultNotifyTimeout      = 4 * time.Minute
	defaultNotifyMaxReplySize = 16 << 20
)

// provision sets defaults and builds the client; the transport, if
// configured, is loaded by the caller (it needs the handler as the
// module's owner).
func (n *Notify) provision(ctx caddy.Context) error {
	if n.Type == "" {
		n.Type = notifyByValue
	}
	n.byReference = n.Type == notifyByReference
	if n.Timeout == 0 {
		n.Timeout = caddy.Duration(defaultNotifyTimeout)
	}
	if n.MaxReplySize == 0 {
		n.MaxReplySize = defaultNotifyMaxReplySize
	}
	if n.TransportRaw != nil {
		mod, err := ctx.LoadModule(n, "TransportRaw")
		if err != nil {
			return fmt.Errorf("loading notify transport: %v", err)
		}
		rt, ok := mod.(http.RoundTripper)
		if !ok {
			return fmt.Errorf("notify transport %T is not an http.RoundTripper", mod)
		}
		n.transport = rt
	} else {
		n.transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	n.client = &http.Client{
		Transport: n.transport,
		// The application's 3xx is its answer, relayed to the client.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return nil
}

// validate checks the notify options.
func (n *Notify) validate() error {
	if n.URL == "" {
		return fmt.Errorf("notify: a URL is required")
	}
	if !strings.Contains(n.URL, "{") {
		u, err := url.Parse(n.URL)
		if err != nil {
			return fmt.Errorf("notify: invalid URL %q: %v", n.URL, err)
		}
		if u.IsAbs() && u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("notify: URL %q must use http or https", n.URL)
		}
	}
	if n.Type != notifyByValue && n.Type != notifyByReference {
		return fmt.Errorf("notify: type must be %q or %q, got %q", notifyByValue, notifyByReference, n.Type)
	}
	if n.Timeout < 0 {
		return fmt.Errorf("notify: timeout must not be negative")
	}
	if n.MaxReplySize < 0 {
		return fmt.Errorf("notify: max_reply_size must not be negative")
	}
	return nil
}

// cleanup closes the idle connections of the transport. A delivery in
// flight is not affected.
func (n *Notify) cleanup() {
	if n.client != nil {
		n.client.CloseIdleConnections()
	}
}
