package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-bits/caddy-bits/session"
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
	// against the upload URL and sent to this same server, on the
	// listener that took the upload and with the upload's Host, so it
	// reaches the site the upload reached; the Host header never sends
	// it anywhere else. The upload URL's query string is appended, except
	// for the parameters the configured URL sets itself, which the client
	// can neither replace nor repeat. Placeholders of the final fragment's
	// request are expanded (a placeholder of client data in the host part
	// lets the client choose the destination, so don't). Required.
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

	// The transport to reach the application at an absolute URL with, a
	// module of the http.reverse_proxy.transport namespace (such as
	// "http", with its TLS, timeout and keep-alive settings). A relative
	// URL always goes to this server's own listener. Default: an HTTP/1.1
	// and HTTP/2 transport with keep-alive and a 10 s dial timeout.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`

	byReference bool
	client      *http.Client
	self        *http.Client // for relative URLs: to this server's own listener
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
	// The application's 3xx is its answer, relayed to the client.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n.client = &http.Client{Transport: n.transport, CheckRedirect: noRedirect}
	n.self = &http.Client{Transport: selfTransport(), CheckRedirect: noRedirect}
	return nil
}

// selfAddrKey is the context key of the local address a notification to
// this server itself is sent to.
type selfAddrKey struct{}

// selfTransport returns the transport of notifications to a relative URL:
// whatever host the URL names, it connects to the local address of the
// connection that took the upload (see Notify.target), which is this
// server's own listener. Over TLS it sends the upload's host name as SNI
// and does not verify the certificate: the peer is this very process, on
// an address of this host, and the listener may well hold a certificate
// of a private CA that no trust store has.
func selfTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			addr, ok := ctx.Value(selfAddrKey{}).(net.Addr)
			if !ok || addr == nil {
				return nil, errors.New("no listener address to send the notification to")
			}
			network := addr.Network()
			if strings.HasPrefix(network, "udp") {
				network = "tcp" // an upload over HTTP/3: the same port over TCP
			}
			return dialer.DialContext(ctx, network, addr.String())
		},
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see the function's comment
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// target returns the URL a session's notification goes to, and whether it
// is this server itself (a relative notify URL). A relative URL is
// resolved against the upload URL, with the final fragment's scheme and
// Host: it is routed like the upload, and sent to the listener that took
// it. The upload's query string is appended, without the parameters the
// configured URL sets.
func (n *Notify) target(r *http.Request, st session.State) (*url.URL, bool, error) {
	raw := replacer(r).ReplaceAll(n.URL, "")
	ref, err := url.Parse(raw)
	if err != nil {
		return nil, false, fmt.Errorf("parsing notify URL %q: %w", raw, err)
	}
	upload, err := url.Parse(st.URL)
	if err != nil {
		return nil, false, fmt.Errorf("parsing upload URL %q: %w", st.URL, err)
	}
	self := ref.Scheme == "" && ref.Host == ""
	base := upload
	if self {
		here := requestURL(r)
		base = &url.URL{Scheme: here.Scheme, Host: here.Host, Path: upload.Path, RawPath: upload.RawPath}
	}
	u := base.ResolveReference(ref)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, false, fmt.Errorf("notify URL %q is not an http URL", raw)
	}
	u.RawQuery = mergeQuery(ref.RawQuery, upload.RawQuery)
	return u, self, nil
}

// mergeQuery appends the pairs of the client's query string to the
// configured one, leaving out every pair whose name the configured query
// has (or that cannot be decoded): the client can neither replace nor
// repeat a parameter the configuration sets.
func mergeQuery(configured, client string) string {
	if client == "" {
		return configured
	}
	set, _ := url.ParseQuery(configured)
	out := configured
	for pair := range strings.SplitSeq(client, "&") {
		if pair == "" {
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(name)
		if err != nil {
			continue
		}
		if _, taken := set[key]; taken {
			continue
		}
		if out != "" {
			out += "&"
		}
		out += pair
	}
	return out
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
	if n.self != nil {
		n.self.CloseIdleConnections()
	}
}
