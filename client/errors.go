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

// ContextLocalFile is BG_ERROR_CONTEXT_LOCAL_FILE, the context of errors
// reading the upload source.
const ContextLocalFile protocol.Context = 0x4

// localNames names the client-side codes protocol.HRESULT.Name does not
// know.
var localNames = map[protocol.HRESULT]string{
	BGLocalFileChanged:         "BG_E_LOCAL_FILE_CHANGED",
	BGInsufficientRangeSupport: "BG_E_INSUFFICIENT_RANGE_SUPPORT",
}

// Error is a BITS failure: either an Ack whose status is an error for the
// packet it answers, or a response the client found to break the protocol
// (then Code is BG_E_INVALID_SERVER_RESPONSE or another client-side code
// and Message says what was wrong). Use [errors.As] to get it out of the
// error an upload returns:
//
//	var be *client.Error
//	if errors.As(err, &be) && be.Code == protocol.BGTooLarge { ... }
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
func (e *Error) Error() string {
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
