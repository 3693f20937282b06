package client

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// maxSessionIDLength is the longest session id a server may send (MSDN:
// any HTTP-legal string of at most 100 characters).
const maxSessionIDLength = 100

// Ack is a parsed BITS response. Every field is taken from the response as
// it is; nothing is validated except the syntax of numeric headers.
type Ack struct {
	// Status is the HTTP status code.
	Status int
	// Header holds all response headers.
	Header http.Header
	// PacketType is the raw BITS-Packet-Type value, "Ack" for a BITS
	// server; empty when the header is absent.
	PacketType string
	// Received is BITS-Received-Content-Range, the offset of the next byte
	// the server wants. HasReceived is false when the header is absent or
	// not a non-negative decimal number.
	Received    int64
	HasReceived bool
	// SessionID is the raw BITS-Session-Id value.
	SessionID string
	// Protocol is the raw BITS-Protocol value of a Create-Session Ack.
	Protocol string
	// ReplyURL is the raw BITS-Reply-URL value of a final fragment Ack.
	ReplyURL string
	// HostID is the raw BITS-Host-Id value of a Create-Session Ack.
	HostID string
	// HostIDFallback is BITS-Host-Id-Fallback-Timeout; 0 when the header is
	// absent, zero or unparsable, which means "never fall back".
	HostIDFallback time.Duration
	// Code is the HRESULT of BITS-Error-Code; SOK when absent or
	// unparsable.
	Code protocol.HRESULT
	// Context is BITS-Error-Context; ContextNone when absent or
	// unparsable.
	Context protocol.Context

	// exchange is how long the request took on its connection, from
	// getting the connection to reading the Ack; 0 when unknown.
	exchange time.Duration
}

// IsAck reports whether the response carries "BITS-Packet-Type: Ack"
// (compared case-insensitively).
func (a *Ack) IsAck() bool {
	return strings.EqualFold(a.PacketType, protocol.PacketAck.String())
}

// Err returns the error the Ack reports for a packet of type p: nil when
// its status is a success for p (2xx, and also 416 for a Fragment, which
// asks the client to resync), and otherwise an [*Error] with the status,
// code and context. When the server sent no BITS-Error-Code, the error's
// code is BG_E_HTTP_ERROR_<status>.
func (a *Ack) Err(p protocol.PacketType) error {
	if success(p, a.Status) {
		return nil
	}
	code := a.Code
	if code == protocol.SOK {
		code = protocol.HTTPError(a.Status)
	}
	return &Error{Packet: p, Status: a.Status, Code: code, Context: a.Context, Ack: a}
}

// parseAck extracts the BITS headers of a response.
func parseAck(resp *http.Response) *Ack {
	a := &Ack{Status: resp.StatusCode, Header: resp.Header}
	get := func(name string) string {
		v, _ := protocol.GetHeader(resp.Header, name)
		return strings.TrimSpace(v)
	}
	a.PacketType = get(protocol.HeaderPacketType)
	if v := get(protocol.HeaderReceivedContentRange); v != "" {
		a.Received, a.HasReceived = parseDecimal(v)
	}
	a.SessionID = get(protocol.HeaderSessionID)
	a.Protocol = get(protocol.HeaderProtocol)
	a.ReplyURL = get(protocol.HeaderReplyURL)
	a.HostID = get(protocol.HeaderHostID)
	if secs, ok := parseDecimal(get(protocol.HeaderHostIDFallbackTimeout)); ok {
		if secs > math.MaxInt64/int64(time.Second) {
			a.HostIDFallback = time.Duration(math.MaxInt64)
		} else {
			a.HostIDFallback = time.Duration(secs) * time.Second
		}
	}
	if v, ok := parseHex(get(protocol.HeaderErrorCode)); ok {
		a.Code = protocol.HRESULT(v)
	}
	if v, ok := parseHex(get(protocol.HeaderErrorContext)); ok {
		a.Context = protocol.Context(v)
	}
	return a
}

// parseDecimal parses a non-negative decimal number without sign.
func parseDecimal(s string) (int64, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// parseHex parses a 32-bit hex number, with or without a 0x prefix.
func parseHex(s string) (uint32, bool) {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 16, 32)
	return uint32(n), err == nil
}

// Session is an upload session on a server, for sending packets one at a
// time. Its methods do not retry and return an error only when no response
// arrived; the caller judges the Ack (see [Ack.Err]).
type Session struct {
	// URL is where the session's packets go: the original URL, or that URL
	// with the host replaced by the server's BITS-Host-Id.
	URL string
	// OriginalURL is the URL the session was created at.
	OriginalURL string
	// ID is the canonical session id, or empty when the server's id is not
	// a braced GUID (the protocol allows any string of up to 100
	// characters).
	ID protocol.SessionID
	// WireID is the session id exactly as the server sent it; packets echo
	// it verbatim in BITS-Session-Id.
	WireID string
	// HostID is the server's BITS-Host-Id, or empty.
	HostID string
	// HostIDFallback is the server's BITS-Host-Id-Fallback-Timeout; 0 means
	// never fall back.
	HostIDFallback time.Duration
	// ContentName, when set, is sent as Content-Name on Fragment and
	// Close-Session packets, as Windows clients do.
	ContentName string

	c *Client
}

// CreateSession sends one Create-Session packet to url, offering the BITS
// 1.5 upload protocol. It succeeds when the server answers 200 or 201 with
// "BITS-Packet-Type: Ack", the offered protocol in BITS-Protocol and a
// session id; when the Ack carries BITS-Host-Id, the session's URL points
// at that host (keeping the scheme, and the port unless the host id names
// one). CreateSession does not Ping the new host and does not retry.
//
// The Ack is returned whenever a response arrived, also with an error. The
// error is the transport error, the [*Error] of the Ack, or an [*Error]
// with BG_E_INVALID_SERVER_RESPONSE (or
// BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH) when the Ack breaks the protocol.
func (c *Client) CreateSession(ctx context.Context, url string) (*Session, *Ack, error) {
	return c.createSession(ctx, url, "")
}

// createSession is CreateSession with a Content-Name for the session.
func (c *Client) createSession(ctx context.Context, rawURL, contentName string) (*Session, *Ack, error) {
	const p = protocol.PacketCreateSession
	hdr := http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}}
	a, err := c.send(ctx, rawURL, p.String(), "", hdr, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := a.Err(p); err != nil {
		return nil, a, err
	}
	if a.Status != http.StatusOK && a.Status != http.StatusCreated {
		return nil, a, invalidResponse(p, a, "Create-Session answered with status %d, want 200 or 201", a.Status)
	}
	if !a.IsAck() {
		return nil, a, invalidResponse(p, a, "%d response has BITS-Packet-Type %q, want Ack", a.Status, a.PacketType)
	}
	switch {
	case a.Protocol == "":
		return nil, a, invalidResponse(p, a, "Ack has no %s", protocol.HeaderProtocol)
	case !strings.EqualFold(a.Protocol, protocol.UploadProtocol):
		return nil, a, &Error{Packet: p, Status: a.Status, Code: protocol.BGClientServerProtocolMis, Ack: a,
			Message: fmt.Sprintf("server chose protocol %.60q, which the client did not offer", a.Protocol)}
	}
	if err := checkSessionID(a.SessionID); err != "" {
		return nil, a, invalidResponse(p, a, "%s", err)
	}
	s := &Session{URL: rawURL, OriginalURL: rawURL, WireID: a.SessionID, ContentName: contentName, c: c}
	if id, err := protocol.ParseSessionID(a.SessionID); err == nil {
		s.ID = id
	}
	if a.HostID != "" {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, a, err
		}
		hu, err := replaceHost(u, a.HostID)
		if err != nil {
			return nil, a, invalidResponse(p, a, "%v", err)
		}
		s.URL = hu.String()
		s.HostID = a.HostID
		s.HostIDFallback = a.HostIDFallback
	}
	return s, a, nil
}

// checkSessionID returns what is wrong with a session id, or "".
func checkSessionID(id string) string {
	if id == "" {
		return "Ack has no " + protocol.HeaderSessionID
	}
	if len(id) > maxSessionIDLength {
		return fmt.Sprintf("%s is %d characters long, at most %d allowed", protocol.HeaderSessionID, len(id), maxSessionIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f {
			return fmt.Sprintf("%s %.60q contains a control character", protocol.HeaderSessionID, id)
		}
	}
	return ""
}

// ResumeSession returns a Session for packets to an existing session,
// without any network traffic: wireID is sent verbatim as BITS-Session-Id
// to url.
func (c *Client) ResumeSession(url, wireID string) *Session {
	s := &Session{URL: url, OriginalURL: url, WireID: wireID, c: c}
	if id, err := protocol.ParseSessionID(wireID); err == nil {
		s.ID = id
	}
	return s
}

// contentName returns the Content-Name header to send, if any.
func (s *Session) contentName() http.Header {
	if s.ContentName == "" {
		return nil
	}
	return http.Header{"Content-Name": {s.ContentName}}
}

// Fragment sends one Fragment packet carrying data as the bytes
// first..first+len(data)-1 of an upload of total bytes, with
// "Content-Range: bytes <first>-<last>/<total>" (for an empty file
// "bytes 0--1/0"). It returns the Ack whatever its status; the error is
// only for a failure to get a response. When the server answers before it
// read the whole fragment, the transport may still read data for a moment
// after Fragment returned, so data must not be modified afterwards.
func (s *Session) Fragment(ctx context.Context, data []byte, first, total int64) (*Ack, error) {
	return s.fragment(ctx, int64(len(data)), bytesBody(data), first, total)
}

// fragment is Fragment with a body of n bytes that open returns.
func (s *Session) fragment(ctx context.Context, n int64, open func() io.ReadCloser, first, total int64) (*Ack, error) {
	r := protocol.Range{First: first, Last: first + n - 1, Total: total}
	hdr := s.contentName()
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr["Content-Range"] = []string{r.String()}
	return s.c.sendBody(ctx, s.URL, protocol.PacketFragment.String(), s.WireID, hdr, n, open)
}

// Close sends one Close-Session packet. It returns the Ack whatever its
// status; the error is only for a failure to get a response.
func (s *Session) Close(ctx context.Context) (*Ack, error) {
	return s.c.send(ctx, s.URL, protocol.PacketCloseSession.String(), s.WireID, s.contentName(), nil)
}

// Cancel sends one Cancel-Session packet. It returns the Ack whatever its
// status; the error is only for a failure to get a response.
func (s *Session) Cancel(ctx context.Context) (*Ack, error) {
	return s.c.send(ctx, s.URL, protocol.PacketCancelSession.String(), s.WireID, nil, nil)
}
