package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// Defaults of the Client fields.
const (
	// DefaultFragmentSize is the size of the first fragment of an upload
	// whose fragments are sized adaptively.
	DefaultFragmentSize = 1 << 20
	// DefaultMinFragmentSize is the smallest size 413 answers and slow Acks
	// can shrink a fragment to: 5 KB, as on Windows ([MC-BUP] note 10).
	DefaultMinFragmentSize = 5 * 1024
	// MaxFragmentSize is the largest fragment the client sends: 13 MB, the
	// upper end of the range Windows clients use ([MC-BUP] note 16).
	MaxFragmentSize = 13 << 20
	// DefaultUserAgent is the User-Agent of every request.
	DefaultUserAgent = "caddy-bits/client"
	// DefaultMaxRetries is how many consecutive failures without progress
	// an operation survives.
	DefaultMaxRetries = 8
	// DefaultRetryDelay is the delay before the first retry.
	DefaultRetryDelay = 500 * time.Millisecond
	// DefaultMaxRetryDelay caps the exponential backoff.
	DefaultMaxRetryDelay = 30 * time.Second
	// DefaultMaxRestarts is how many times an upload starts over after the
	// server lost its session.
	DefaultMaxRestarts = 5
	// DefaultRequestTimeout bounds each request, like the five-minute
	// response timer of the Windows client ([MC-BUP] 3.1.2).
	DefaultRequestTimeout = 5 * time.Minute
)

// maxAckBody is how much of an (unexpected) Ack body is drained so that the
// connection can be reused.
const maxAckBody = 64 << 10

// Client is a BITS upload client. The zero value is ready to use with the
// defaults documented on each field.
//
// A Client is safe for concurrent use by multiple goroutines; each upload
// keeps exactly one request outstanding. Its fields must not be changed
// after its first request, and a Client must not be copied after first use.
type Client struct {
	// HTTPClient sends the requests. When nil (the default), the Client
	// makes its own from [NewTransport] with TLSConfig: HTTP/1.1 only, as
	// the Windows client speaks, with keep-alive.
	//
	// A supplied HTTPClient is used as it is: its Transport decides the
	// HTTP version, the TLS settings and the proxy. With Go's default
	// transport that means HTTP/2 whenever the server offers it, which
	// bits_upload accepts but Windows never speaks; build the Transport
	// with NewTransport to keep to HTTP/1.1. TLSConfig cannot be combined
	// with it: every request then fails at once. Either way BITS_POST
	// requests never follow redirects (a 3xx is returned as the Ack);
	// reply downloads follow them as the supplied client's CheckRedirect
	// allows.
	HTTPClient *http.Client

	// TLSConfig configures TLS for https URLs when HTTPClient is nil; nil
	// (the default) means Go's defaults, which trust the system's
	// certificate authorities. Set its RootCAs to trust a private CA, such
	// as Caddy's internal one (see [LoadRootCAs]). Its NextProtos is
	// ignored: the Client offers exactly HTTP/1.1.
	TLSConfig *tls.Config

	// FragmentSize, when positive, fixes the size of the fragments of every
	// upload, overriding the adaptive sizing; values above MaxFragmentSize
	// are capped, and 413 answers still halve it down to MinFragmentSize.
	// Sizes below MinFragmentSize are allowed (they are useful to test
	// servers), but then a 413 is fatal at once.
	//
	// 0 (the default) sizes fragments adaptively, as Windows clients do:
	// the first fragment has DefaultFragmentSize bytes; when an Ack comes
	// back in less than half the target time (fast) or more than twice it
	// (slow), the next fragment gets the size the link carried in the
	// target time at that fragment's rate. A 413 halves the size and caps
	// later growth, a request timeout halves it, and it always stays within
	// MinFragmentSize and MaxFragmentSize. A fragment should take about
	// 2 seconds, or 100 round trips of a Ping or Create-Session when that
	// is longer (at most 30 seconds), so that the round trip each fragment
	// costs stays near 1 % of the time on slow and distant links too.
	FragmentSize int64
	// MinFragmentSize is the floor of the shrinking on 413 and on slow
	// Acks; 0 means DefaultMinFragmentSize. A 413 to a fragment that is not
	// larger than the floor fails the upload.
	MinFragmentSize int64

	// SkipPing suppresses the Ping an upload sends before its first
	// Create-Session. The Pings the protocol requires elsewhere (to a
	// BITS-Host-Id node, and before resuming after a transport error) are
	// always sent. It is false (send that Ping) by default.
	SkipPing bool

	// Username and Password, when either is set, are sent as HTTP Basic
	// credentials on every BITS request, and on reply downloads from the
	// same host. Both are empty by default.
	Username, Password string

	// UserAgent is sent on every request; empty means DefaultUserAgent.
	UserAgent string

	// MaxRetries is how many times in a row a failed request is retried
	// without the upload making progress; 0 means DefaultMaxRetries (or no
	// limit on the count when NoProgressTimeout is set), and a negative
	// value disables retries. Any forward progress (server-confirmed upload
	// bytes or reply bytes) resets the count. Failures that retrying cannot
	// fix (see [Error] and [TLSError]) are never retried.
	MaxRetries int
	// NoProgressTimeout, when positive, bounds how long the client keeps
	// retrying after a failure without making progress, like the
	// NoProgressTimeout of a Windows BITS job: the clock starts at the first
	// failure and any forward progress stops it. It is 0 (no time limit) by
	// default; then only MaxRetries bounds the retries.
	NoProgressTimeout time.Duration
	// RetryDelay is the delay before the first retry; each further
	// consecutive retry doubles it up to MaxRetryDelay. 0 means
	// DefaultRetryDelay; a negative value retries at once. Each delay is
	// jittered: the client waits a random time between half the delay and
	// the whole delay ("equal jitter"), so that clients that failed
	// together do not retry in lockstep.
	RetryDelay time.Duration
	// MaxRetryDelay caps the backoff; 0 means DefaultMaxRetryDelay.
	MaxRetryDelay time.Duration
	// MaxRestarts is how many times an upload starts over with a new
	// Create-Session after the server answered BG_E_SESSION_NOT_FOUND to a
	// Fragment; 0 means DefaultMaxRestarts and a negative value disables
	// restarts.
	MaxRestarts int

	// RequestTimeout bounds each request, including the reading of its
	// response; 0 means DefaultRequestTimeout and a negative value means no
	// limit. A request that times out is a transient failure.
	RequestTimeout time.Duration

	// HostIDFallbackOverride, when positive, replaces the server's
	// BITS-Host-Id-Fallback-Timeout (also when the server sent none): after
	// requests to the BITS-Host-Id node have kept failing for this long, the
	// upload goes back to the original URL. It is 0 (use the server's
	// timeout) by default; it is meant for tests.
	HostIDFallbackOverride time.Duration

	// randN returns a random number in [0, n) for the jitter of the
	// backoff; nil means math/rand/v2's Int64N. Tests set it.
	randN func(n int64) int64
	// now returns the time for measuring how long requests take; nil means
	// time.Now. Tests set it.
	now func() time.Time

	once  sync.Once
	hc    *http.Client
	hcErr error
}

// Progress reports the state of an upload after a fragment Ack.
type Progress struct {
	// SessionID is the current session (empty when the server's id is not a
	// braced GUID).
	SessionID protocol.SessionID
	// Acked is the server-confirmed offset: BITS-Received-Content-Range.
	Acked int64
	// Total is the size of the upload.
	Total int64
	// Fragments counts the fragment Acks of the upload so far, over all
	// sessions.
	Fragments int
	// Restarts counts how many times the upload started over.
	Restarts int
	// FragmentSize is the size of the next fragment.
	FragmentSize int64
}

// Packet is one raw BITS request for [Client.Send].
type Packet struct {
	// Type is sent as BITS-Packet-Type.
	Type protocol.PacketType
	// SessionID, when not empty, is sent verbatim as BITS-Session-Id.
	SessionID string
	// Header holds extra request headers. They are applied last, under
	// exactly the given names, and replace any default header whose name
	// matches case-insensitively; a nil value removes that header.
	// Content-Length, Transfer-Encoding and Host are written by net/http and
	// cannot be set here.
	Header http.Header
	// Body is the request body; Content-Length is always set to its length.
	Body []byte
}

// httpClient returns the HTTP client requests go through, or the error of
// an inconsistent configuration.
func (c *Client) httpClient() (*http.Client, error) {
	c.once.Do(func() {
		var hc http.Client
		if c.HTTPClient != nil {
			if c.TLSConfig != nil {
				c.hcErr = &configError{"TLSConfig cannot be combined with HTTPClient: configure TLS in the HTTPClient's Transport (see NewTransport)"}
				return
			}
			hc = *c.HTTPClient
		} else {
			hc.Transport = NewTransport(c.TLSConfig)
		}
		prev := hc.CheckRedirect
		hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if via[0].Method == protocol.Method {
				return http.ErrUseLastResponse
			}
			if prev != nil {
				return prev(req, via)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
		c.hc = &hc
	})
	return c.hc, c.hcErr
}

// CloseIdleConnections closes the idle kept-alive connections of the
// Client's HTTP client.
func (c *Client) CloseIdleConnections() {
	if hc, err := c.httpClient(); err == nil {
		hc.CloseIdleConnections()
	}
}

func (c *Client) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return DefaultUserAgent
}

func (c *Client) fragmentSize() int64 {
	n := c.FragmentSize
	if n <= 0 {
		n = DefaultFragmentSize
	}
	return min(n, MaxFragmentSize)
}

func (c *Client) minFragmentSize() int64 {
	if c.MinFragmentSize <= 0 {
		return DefaultMinFragmentSize
	}
	return c.MinFragmentSize
}

func (c *Client) maxRetries() int {
	switch {
	case c.MaxRetries == 0:
		return DefaultMaxRetries
	case c.MaxRetries < 0:
		return 0
	}
	return c.MaxRetries
}

func (c *Client) maxRestarts() int {
	switch {
	case c.MaxRestarts == 0:
		return DefaultMaxRestarts
	case c.MaxRestarts < 0:
		return 0
	}
	return c.MaxRestarts
}

// clock returns the current time for measuring requests.
func (c *Client) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// backoff returns the delay before retry number n (1-based).
func (c *Client) backoff(n int) time.Duration {
	d := c.RetryDelay
	if d == 0 {
		d = DefaultRetryDelay
	}
	if d < 0 {
		return 0
	}
	maxd := c.MaxRetryDelay
	if maxd <= 0 {
		maxd = DefaultMaxRetryDelay
	}
	for i := 1; i < n && d < maxd; i++ {
		d *= 2
	}
	return min(d, maxd)
}

// retryDelay returns the jittered delay before retry number n (1-based): a
// random duration between half of backoff(n) and all of it. Keeping half
// the delay keeps the backoff growing; the random half spreads clients
// that failed at the same moment over a window as long as that half.
func (c *Client) retryDelay(n int) time.Duration {
	d := c.backoff(n)
	if d <= 1 {
		return d
	}
	half := d / 2
	randN := c.randN
	if randN == nil {
		randN = rand.Int64N
	}
	return d - half + time.Duration(randN(int64(half)+1))
}

// requestContext derives the context of one request.
func (c *Client) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	t := c.RequestTimeout
	if t == 0 {
		t = DefaultRequestTimeout
	}
	if t < 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, t)
}

// setAuth adds the Basic credentials, if any.
func (c *Client) setAuth(req *http.Request) {
	if c.Username != "" || c.Password != "" {
		req.SetBasicAuth(c.Username, c.Password)
	}
}

// setBody gives req a body of n bytes that open returns, with an explicit
// Content-Length, even when n is 0. Go only writes "Content-Length: 0" for
// an extension method when the transfer encoding is explicitly identity.
// open is called again for each retry of the transport.
func setBody(req *http.Request, n int64, open func() io.ReadCloser) {
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		req.TransferEncoding = []string{"identity"}
		return
	}
	req.Body = open()
	req.GetBody = func() (io.ReadCloser, error) { return open(), nil }
}

// bytesBody returns the body opener of b.
func bytesBody(b []byte) func() io.ReadCloser {
	return func() io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
}

// Send sends one raw BITS_POST packet to url and returns its parsed Ack,
// whatever its status. The request carries BITS-Packet-Type, the session
// id when set, Accept, User-Agent, the Basic credentials and
// Content-Length, then p.Header. Send does not retry, does not validate the
// Ack and returns an error only when no response arrived.
func (c *Client) Send(ctx context.Context, url string, p *Packet) (*Ack, error) {
	return c.send(ctx, url, p.Type.String(), p.SessionID, p.Header, p.Body)
}

// send performs one BITS_POST exchange.
func (c *Client) send(ctx context.Context, url, packetType, sessionID string, extra http.Header, body []byte) (*Ack, error) {
	return c.sendBody(ctx, url, packetType, sessionID, extra, int64(len(body)), bytesBody(body))
}

// sendBody is send with a body of n bytes that open returns.
func (c *Client) sendBody(ctx context.Context, url, packetType, sessionID string, extra http.Header, n int64, open func() io.ReadCloser) (*Ack, error) {
	rctx, cancel := c.requestContext(ctx)
	defer cancel()
	// The time from having a connection to having the response excludes
	// the dial and TLS handshake of a new connection.
	var gotConn time.Time
	rctx = httptrace.WithClientTrace(rctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { gotConn = c.clock() }})
	req, err := http.NewRequestWithContext(rctx, protocol.Method, url, nil)
	if err != nil {
		return nil, err
	}
	h := req.Header
	h["Accept"] = []string{"*/*"}
	h[protocol.HeaderPacketType] = []string{packetType}
	if sessionID != "" {
		h[protocol.HeaderSessionID] = []string{sessionID}
	}
	h["User-Agent"] = []string{c.userAgent()}
	c.setAuth(req)
	for k, v := range extra {
		for old := range h {
			if strings.EqualFold(old, k) {
				delete(h, old)
			}
		}
		if v != nil {
			h[k] = v
		}
	}
	setBody(req, n, open)
	hc, err := c.httpClient()
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.CopyN(io.Discard, resp.Body, maxAckBody); err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading the Ack body: %w", err)
	}
	a := parseAck(resp)
	if !gotConn.IsZero() {
		a.exchange = c.clock().Sub(gotConn)
	}
	return a, nil
}

// Ping sends one Ping packet to url. It returns nil when the server
// answered with a 2xx Ack, an [*Error] when it answered with an error or
// with something that is not an Ack, a [*TLSError] when the TLS handshake
// failed for good, and the transport error when no response arrived. Ping
// does not retry.
func (c *Client) Ping(ctx context.Context, url string) error {
	a, err := c.send(ctx, url, protocol.PacketPing.String(), "", nil, nil)
	if err != nil {
		if perr := permanentTransportError(protocol.PacketPing, err); perr != nil {
			return perr
		}
		return err
	}
	if err := a.Err(protocol.PacketPing); err != nil {
		return err
	}
	if !a.IsAck() {
		return invalidResponse(protocol.PacketPing, a, "%d response is not a BITS Ack", a.Status)
	}
	return nil
}

// Cancel sends Cancel-Session for session id to url, retrying like an
// upload does: transport errors (with a Ping before the retry) and 5xx
// answers other than BG_E_SESSION_NOT_FOUND are retried, anything else
// that is not a 2xx Ack is returned as an [*Error] (including
// BG_E_SESSION_NOT_FOUND for a session the server does not know).
// To cancel a session whose id is not a braced GUID, use
// [Client.ResumeSession] and [Session.Cancel].
func (c *Client) Cancel(ctx context.Context, url string, id protocol.SessionID) error {
	const p = protocol.PacketCancelSession
	x := c.newExchanger(ctx, url)
	x.sess = c.ResumeSession(url, id.Wire())
	a, act, err := x.exchange(p, func(url string) (*Ack, error) {
		return c.send(ctx, url, p.String(), x.sess.WireID, nil, nil)
	})
	if err != nil {
		return err
	}
	if act != actOK {
		return a.Err(p)
	}
	return nil
}

// retrier counts consecutive failures without progress and waits between
// attempts.
type retrier struct {
	c        *Client
	ctx      context.Context
	max      int           // retries allowed; -1: no limit on the count
	limit    time.Duration // NoProgressTimeout; 0: no time limit
	failures int
	since    time.Time // the first failure since the last progress
}

// newRetrier returns the retrier of one operation.
func (c *Client) newRetrier(ctx context.Context) retrier {
	r := retrier{c: c, ctx: ctx, max: c.maxRetries(), limit: max(c.NoProgressTimeout, 0)}
	if c.MaxRetries == 0 && r.limit > 0 {
		r.max = -1
	}
	return r
}

// progress records forward progress, which resets the failure count and
// the no-progress clock.
func (r *retrier) progress() { r.failures = 0 }

// failed records a failure of packet p. For a fatal failure, a transport
// error that retrying cannot fix, or when the context is done, or when the
// retries are used up, it returns the error to give up with; otherwise it
// waits for the backoff delay and returns nil.
func (r *retrier) failed(p protocol.PacketType, err error, fatal bool) error {
	return r.fail(p, err, fatal, true)
}

// fail is failed with a choice of waiting.
func (r *retrier) fail(p protocol.PacketType, err error, fatal, wait bool) error {
	if cerr := r.ctx.Err(); cerr != nil {
		return fmt.Errorf("bits client: %s: %w", opName(p), cerr)
	}
	if fatal {
		return err
	}
	if perr := permanentTransportError(p, err); perr != nil {
		return perr
	}
	now := time.Now()
	r.failures++
	if r.failures == 1 {
		r.since = now
	}
	if r.max >= 0 && r.failures > r.max {
		return fmt.Errorf("bits client: %s: giving up after %d consecutive failures without progress: %w", opName(p), r.failures, err)
	}
	var left time.Duration
	if r.limit > 0 {
		left = r.since.Add(r.limit).Sub(now)
		if left <= 0 {
			return fmt.Errorf("bits client: %s: giving up after %d consecutive failures in %s without progress: %w",
				opName(p), r.failures, now.Sub(r.since).Round(time.Millisecond), err)
		}
	}
	if !wait {
		return nil
	}
	d := r.c.retryDelay(r.failures)
	if r.limit > 0 {
		// One last attempt when the time is up.
		d = min(d, left)
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return fmt.Errorf("bits client: %s: %w", opName(p), r.ctx.Err())
	case <-t.C:
		return nil
	}
}
