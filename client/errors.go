package client

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// HRESULTs the client reports that the protocol package does not define.
const (
	// BGLocalFileChanged (BG_E_LOCAL_FILE_CHANGED) reports that the source
	// of an upload changed, or became shorter, while it was uploaded.
	BGLocalFileChanged protocol.HRESULT = 0x8020001D
	// BGInsufficientRangeSupport (BG_E_INSUFFICIENT_RANGE_SUPPORT) reports
	// that the server of a reply URL does not honour Range requests when the
	// client needs to resume a reply download.
	BGInsufficientRangeSupport protocol.HRESULT = 0x80200013
)

// ErrorTooManySessions is HRESULT_FROM_WIN32(ERROR_TOO_MANY_SESS), which
// bits_upload sends with 503 when a user has too many open sessions.
const ErrorTooManySessions protocol.HRESULT = 0x80070045

// ContextLocalFile is BG_ERROR_CONTEXT_LOCAL_FILE, the context of errors
// reading the upload source.
const ContextLocalFile protocol.Context = 0x4

// localNames names the codes protocol.HRESULT.Name does not know.
var localNames = map[protocol.HRESULT]string{
	BGLocalFileChanged:         "BG_E_LOCAL_FILE_CHANGED",
	BGInsufficientRangeSupport: "BG_E_INSUFFICIENT_RANGE_SUPPORT",
	ErrorTooManySessions:       "ERROR_TOO_MANY_SESS",
}

// Sentinel errors for [errors.Is]. Each matches every [*Error] with its
// Code, whatever the packet, status and context (see [Error.Is]):
//
//	if errors.Is(err, client.ErrSessionNotFound) { ... }
//
// Any other HRESULT is matched the same way with an Error that has only a
// Code: errors.Is(err, &client.Error{Code: protocol.ErrorDiskFull}).
var (
	// ErrSessionNotFound: the server does not know the session
	// (BG_E_SESSION_NOT_FOUND). An upload starts over on it; Cancel
	// returns it.
	ErrSessionNotFound = &Error{Code: protocol.BGSessionNotFound}
	// ErrTooLarge: the upload is larger than the server accepts, or the
	// reply larger than UploadOptions.MaxReplySize (BG_E_TOO_LARGE).
	ErrTooLarge = &Error{Code: protocol.BGTooLarge}
	// ErrAccessDenied: the server refused the request (E_ACCESSDENIED),
	// for example because the destination exists, or because the session
	// belongs to another user.
	ErrAccessDenied = &Error{Code: protocol.EAccessDenied}
	// ErrInvalidArg: the server found that the request broke a protocol
	// rule (E_INVALIDARG).
	ErrInvalidArg = &Error{Code: protocol.EInvalidArg}
	// ErrDiskFull: the server's disk is full (ERROR_DISK_FULL); the client
	// retries.
	ErrDiskFull = &Error{Code: protocol.ErrorDiskFull}
	// ErrTooManySessions: the user has too many open sessions
	// (ERROR_TOO_MANY_SESS); the client retries.
	ErrTooManySessions = &Error{Code: ErrorTooManySessions}
	// ErrInvalidServerResponse: a response broke the protocol
	// (BG_E_INVALID_SERVER_RESPONSE).
	ErrInvalidServerResponse = &Error{Code: protocol.BGInvalidServerResponse}
	// ErrProtocolMismatch: the server chose a protocol the client did not
	// offer (BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH).
	ErrProtocolMismatch = &Error{Code: protocol.BGClientServerProtocolMis}
	// ErrNoProgress: the server kept acknowledging fragments without
	// moving forward (BG_E_NO_PROGRESS).
	ErrNoProgress = &Error{Code: protocol.BGNoProgress}
	// ErrLocalFileChanged: the upload source ended before its size
	// (BG_E_LOCAL_FILE_CHANGED).
	ErrLocalFileChanged = &Error{Code: BGLocalFileChanged}
	// ErrInsufficientRangeSupport: the server of the reply does not resume
	// with ranges (BG_E_INSUFFICIENT_RANGE_SUPPORT).
	ErrInsufficientRangeSupport = &Error{Code: BGInsufficientRangeSupport}
	// ErrUnauthorized: a 401 without a BITS error code
	// (BG_E_HTTP_ERROR_401), as basic_auth answers missing or wrong
	// credentials.
	ErrUnauthorized = &Error{Code: protocol.HTTPError(http.StatusUnauthorized)}
	// ErrForbidden: a 403 without a BITS error code (BG_E_HTTP_ERROR_403),
	// or a server application's 403 (context 0x7).
	ErrForbidden = &Error{Code: protocol.HTTPError(http.StatusForbidden)}
	// ErrNotFound: a 404 without a BITS error code (BG_E_HTTP_ERROR_404):
	// nothing at the URL speaks BITS, or the reply is gone.
	ErrNotFound = &Error{Code: protocol.HTTPError(http.StatusNotFound)}
)

// Error is a BITS failure: either an Ack whose status is an error for the
// packet it answers, or a response the client found to break the protocol
// (then Code is BG_E_INVALID_SERVER_RESPONSE or another client-side code
// and Message says what was wrong). Use [errors.As] to get it out of the
// error an upload returns, or [errors.Is] to match its code:
//
//	var be *client.Error
//	if errors.As(err, &be) && be.Code == protocol.BGTooLarge { ... }
//	if errors.Is(err, client.ErrTooLarge) { ... } // the same test
type Error struct {
	// Packet is the type of the request the failure answers. It is
	// protocol.PacketUnknown for failures of the reply download, which uses
	// plain HEAD and GET requests.
	Packet protocol.PacketType
	// Status is the HTTP status of the response, or 0 when the failure was
	// detected before any response arrived.
	Status int
	// Code is the HRESULT of BITS-Error-Code. When the server sent none, it
	// is BG_E_HTTP_ERROR_<status> (protocol.HTTPError), as the Windows
	// client reports bare HTTP failures; for failures the client detected
	// itself it is the client-side code, such as
	// BG_E_INVALID_SERVER_RESPONSE.
	Code protocol.HRESULT
	// Context is the BITS-Error-Context the server sent, or
	// protocol.ContextNone.
	Context protocol.Context
	// Message describes a failure the client detected itself. It is empty
	// when the error is exactly what the server answered.
	Message string
	// Ack is the response the error was derived from, or nil when there is
	// none (the reply download keeps no Ack).
	Ack *Ack
}

// Error formats the failure with the symbolic names of its HRESULT and
// context, for example
// "fragment: server answered 500 BG_E_SESSION_NOT_FOUND (0x8020001F), context BG_ERROR_CONTEXT_REMOTE_FILE (0x5)".
// An Error that has nothing but a Code, such as the sentinel values,
// formats as the code alone.
func (e *Error) Error() string {
	if e.Packet == protocol.PacketUnknown && e.Status == 0 && e.Message == "" && e.Context == protocol.ContextNone && e.Ack == nil {
		return CodeString(e.Code)
	}
	var b strings.Builder
	b.WriteString(opName(e.Packet))
	b.WriteString(": ")
	if e.Message != "" {
		b.WriteString(e.Message)
		b.WriteString(": ")
	} else if e.Status != 0 {
		fmt.Fprintf(&b, "server answered %d ", e.Status)
	}
	b.WriteString(CodeString(e.Code))
	if e.Context != protocol.ContextNone {
		b.WriteString(", context ")
		if n := e.Context.Name(); n != "" {
			fmt.Fprintf(&b, "%s (%s)", n, e.Context)
		} else {
			b.WriteString(e.Context.String())
		}
	}
	return b.String()
}

// Is reports whether target is an *Error with the same Code, so that
// [errors.Is] matches an Error against the sentinel values such as
// [ErrSessionNotFound], or against any HRESULT.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e.Code == t.Code
}

// CodeString formats an HRESULT as its symbolic name followed by its hex
// value, e.g. "BG_E_TOO_LARGE (0x80200020)", or as the hex value alone when
// the code has no known name.
func CodeString(h protocol.HRESULT) string {
	name := h.Name()
	if name == "" {
		name = localNames[h]
	}
	if name == "" {
		return h.String()
	}
	return name + " (" + h.String() + ")"
}

// opName is the lower-case name of a packet type used in error messages.
func opName(p protocol.PacketType) string {
	if p == protocol.PacketUnknown {
		return "reply"
	}
	return strings.ToLower(p.String())
}

// invalidResponse returns the BG_E_INVALID_SERVER_RESPONSE error for an Ack
// that broke the protocol.
func invalidResponse(p protocol.PacketType, a *Ack, format string, args ...any) *Error {
	e := &Error{Packet: p, Code: protocol.BGInvalidServerResponse, Message: fmt.Sprintf(format, args...), Ack: a}
	if a != nil {
		e.Status = a.Status
	}
	return e
}

// action is what the client does after an Ack.
type action int

const (
	// actOK: the packet succeeded (for fragments: 2xx or 416, resync from
	// BITS-Received-Content-Range).
	actOK action = iota
	// actTransient: retry after a delay.
	actTransient
	// actFatal: give up and report the error.
	actFatal
	// actSessionLost: the server answered BG_E_SESSION_NOT_FOUND; what to do
	// depends on the packet (restart for fragments, success for a
	// Close-Session after the upload completed, error for Cancel-Session).
	actSessionLost
	// actShrink: the fragment was too large (413); halve and resend.
	actShrink
)

// decide classifies an Ack of packet type p the way the Windows client
// does ([MC-BUP] 3.1.5, MSDN "Ack for Close-Session" and "Handling Server
// Application Errors").
func decide(p protocol.PacketType, a *Ack) action {
	st := a.Status
	if success(p, st) {
		return actOK
	}
	if a.Code == protocol.BGSessionNotFound {
		if p.NeedsSession() {
			return actSessionLost
		}
		// A Ping or Create-Session has no session to lose; the server is
		// confused, which may pass.
		return actTransient
	}
	if p == protocol.PacketFragment && st == http.StatusRequestEntityTooLarge {
		return actShrink
	}
	if a.Code == protocol.BGTooLarge {
		return actFatal
	}
	if p == protocol.PacketCloseSession || p == protocol.PacketCancelSession {
		// MSDN: 5xx makes the client resend Close/Cancel; 1xx-4xx do not.
		if st >= 500 && st <= 599 {
			return actTransient
		}
		return actFatal
	}
	if a.Context == protocol.ContextRemoteApplication {
		return appAction(st)
	}
	switch {
	case st == http.StatusRequestTimeout, st == http.StatusConflict:
		return actTransient
	case st == http.StatusNotImplemented, st == http.StatusHTTPVersionNotSupported:
		return actFatal
	case st >= 500 && st <= 599:
		return actTransient
	}
	// Other 4xx, redirects the client does not follow for BITS_POST, and
	// anything outside the HTTP status classes.
	return actFatal
}

// appAction classifies the status of an error that the server application
// reported (BITS-Error-Context 0x7), per MSDN "Handling Server Application
// Errors": 3xx transient except 300-305 and 307; 4xx fatal except 408 and
// 409; 5xx transient except 501 and 505; anything else transient.
func appAction(st int) action {
	switch {
	case st >= 300 && st <= 399:
		if st <= 305 || st == 307 {
			return actFatal
		}
		return actTransient
	case st >= 400 && st <= 499:
		if st == http.StatusRequestTimeout || st == http.StatusConflict {
			return actTransient
		}
		return actFatal
	case st >= 500 && st <= 599:
		if st == http.StatusNotImplemented || st == http.StatusHTTPVersionNotSupported {
			return actFatal
		}
		return actTransient
	}
	return actTransient
}

// success reports whether an Ack status is a success for packet type p.
func success(p protocol.PacketType, status int) bool {
	if status >= 200 && status <= 299 {
		return true
	}
	return p == protocol.PacketFragment && status == http.StatusRequestedRangeNotSatisfiable
}
