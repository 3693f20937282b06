package protocol

import (
	"net/http"
	"strconv"
)

// Ack is a BITS response. Every BITS request is answered with exactly one
// Ack, written by [WriteAck].
type Ack struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Code and Context are sent as BITS-Error-Code and BITS-Error-Context
	// when Status is not 2xx and Code is not SOK. A 416 (the "resync" answer
	// to a fragment) is sent without them, as Windows servers do.
	Code    HRESULT
	Context Context
	// SessionID is echoed in BITS-Session-Id when set.
	SessionID SessionID
	// Protocol is the chosen protocol of a Create-Session Ack.
	Protocol string
	// Received, when HasReceived is true, is sent as
	// BITS-Received-Content-Range: the offset of the next byte the server
	// wants.
	Received    int64
	HasReceived bool
	// ReplyURL is sent as BITS-Reply-URL when set.
	ReplyURL string
	// HostID and HostIDFallbackTimeout (in seconds) are sent as
	// BITS-Host-Id and BITS-Host-Id-Fallback-Timeout when HostID is set.
	HostID                string
	HostIDFallbackTimeout int64
	// AcceptEncodingIdentity adds "Accept-Encoding: identity" (Create-Session).
	AcceptEncodingIdentity bool
}

// ErrorAck returns the Ack for a protocol error.
func ErrorAck(e *Error) Ack {
	return Ack{Status: e.Status, Code: e.Code, Context: e.Context}
}

// WriteAck writes a complete Ack: the status line, BITS-Packet-Type: Ack,
// the headers the Ack carries, and an empty body with Content-Length: 0.
// BITS-* headers are written with their exact spelling.
func WriteAck(w http.ResponseWriter, a Ack) {
	h := w.Header()
	SetHeader(h, HeaderPacketType, "Ack")
	SetHeader(h, "Content-Length", "0")
	// IIS leaves BITS-Session-Id out of fragment Acks, but [MC-BUP] requires
	// it on a successful one; it is harmless elsewhere.
	if a.SessionID != "" {
		SetHeader(h, HeaderSessionID, a.SessionID.Wire())
	}
	if a.Protocol != "" {
		SetHeader(h, HeaderProtocol, a.Protocol)
	}
	if a.HasReceived {
		SetHeader(h, HeaderReceivedContentRange, strconv.FormatInt(a.Received, 10))
	}
	if a.ReplyURL != "" {
		SetHeader(h, HeaderReplyURL, a.ReplyURL)
	}
	if a.HostID != "" {
		SetHeader(h, HeaderHostID, a.HostID)
		if a.HostIDFallbackTimeout > 0 {
			SetHeader(h, HeaderHostIDFallbackTimeout, strconv.FormatInt(a.HostIDFallbackTimeout, 10))
		}
	}
	if a.AcceptEncodingIdentity {
		SetHeader(h, "Accept-Encoding", "identity")
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	// The header is BITS-Error-Code, as MSDN, IIS and every known client
	// spell it; [MC-BUP]'s prose calls it BITS-Error. A 416 carries no code
	// (the protocol table lists 0, and Windows servers omit it).
	if (status < 200 || status > 299) && a.Code != SOK {
		SetHeader(h, HeaderErrorCode, a.Code.String())
		if a.Context != ContextNone {
			SetHeader(h, HeaderErrorContext, a.Context.String())
		}
	}
	w.WriteHeader(status)
}
