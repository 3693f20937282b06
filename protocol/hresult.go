package protocol

import (
	"fmt"
	"net/http"
)

// HRESULT is a Windows error code as carried in the BITS-Error-Code header.
type HRESULT uint32

// HRESULTs a BITS server sends, and the client-side codes a BITS client
// reports. Values are those of the Windows SDK (winerror.h, bitsmsg.h).
const (
	// SOK is success; an Ack with this code carries no error headers.
	SOK HRESULT = 0x00000000
	// EAccessDenied: not authorised, or the destination exists and may not
	// be overwritten.
	EAccessDenied HRESULT = 0x80070005
	// EInvalidArg: the request broke a protocol rule.
	EInvalidArg HRESULT = 0x80070057
	// EFail: an unspecified server failure. Clients treat it as transient.
	EFail HRESULT = 0x80004005
	// ErrorPathNotFound is HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND).
	ErrorPathNotFound HRESULT = 0x80070003
	// ErrorDiskFull is HRESULT_FROM_WIN32(ERROR_DISK_FULL). [MC-BUP] prints
	// it as "x80070112", which is 112 decimal written as hex; the real
	// value of ERROR_DISK_FULL (112 = 0x70) gives 0x80070070.
	ErrorDiskFull HRESULT = 0x80070070
	// ErrorTimeout is HRESULT_FROM_WIN32(ERROR_TIMEOUT), sent with 408 when
	// the server application did not answer in time.
	ErrorTimeout HRESULT = 0x800705B4

	BGInvalidServerResponse   HRESULT = 0x8020001B
	BGSessionNotFound         HRESULT = 0x8020001F
	BGTooLarge                HRESULT = 0x80200020
	BGClientServerProtocolMis HRESULT = 0x80200022
	BGServerExecuteEnable     HRESULT = 0x80200023
	BGNoProgress              HRESULT = 0x80200024

	// BGHTTPErrorBase plus an HTTP status is BG_E_HTTP_ERROR_<status>, used
	// to relay a server-application failure.
	BGHTTPErrorBase HRESULT = 0x80190000
)

var hresultNames = map[HRESULT]string{
	SOK:                       "S_OK",
	EAccessDenied:             "E_ACCESSDENIED",
	EInvalidArg:               "E_INVALIDARG",
	EFail:                     "E_FAIL",
	ErrorPathNotFound:         "ERROR_PATH_NOT_FOUND",
	ErrorDiskFull:             "ERROR_DISK_FULL",
	ErrorTimeout:              "ERROR_TIMEOUT",
	BGInvalidServerResponse:   "BG_E_INVALID_SERVER_RESPONSE",
	BGSessionNotFound:         "BG_E_SESSION_NOT_FOUND",
	BGTooLarge:                "BG_E_TOO_LARGE",
	BGClientServerProtocolMis: "BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH",
	BGServerExecuteEnable:     "BG_E_SERVER_EXECUTE_ENABLE",
	BGNoProgress:              "BG_E_NO_PROGRESS",
}

// HTTPError returns BG_E_HTTP_ERROR_<status>, the code used to relay an
// HTTP failure of the server application.
func HTTPError(status int) HRESULT {
	return BGHTTPErrorBase + HRESULT(status&0xFFFF)
}

// Name returns the symbolic name of the code, such as
// "BG_E_SESSION_NOT_FOUND", or "" when the code is not one this package
// knows.
func (h HRESULT) Name() string {
	if n, ok := hresultNames[h]; ok {
		return n
	}
	if h > BGHTTPErrorBase && h < BGHTTPErrorBase+600 {
		return fmt.Sprintf("BG_E_HTTP_ERROR_%d", h-BGHTTPErrorBase)
	}
	return ""
}

// String formats the code as BITS-Error-Code carries it: "0x" and eight
// upper-case hex digits.
func (h HRESULT) String() string {
	return fmt.Sprintf("0x%08X", uint32(h))
}

// Failed reports whether the code is an error (its severity bit is set).
func (h HRESULT) Failed() bool { return h&0x80000000 != 0 }

// Context is a BG_ERROR_CONTEXT value as carried in BITS-Error-Context.
type Context uint32

// Error contexts a server sends.
const (
	// ContextNone means no context; an Ack carries no context header.
	ContextNone Context = 0x0
	// ContextRemoteFile (BG_ERROR_CONTEXT_REMOTE_FILE, "CONTEXT_SERVER" in
	// [MC-BUP]) marks errors raised by the BITS server itself.
	ContextRemoteFile Context = 0x5
	// ContextRemoteApplication (BG_ERROR_CONTEXT_REMOTE_APPLICATION) marks
	// errors that come from the server application behind the notification.
	ContextRemoteApplication Context = 0x7
)

// String formats the context as BITS-Error-Context carries it, e.g. "0x5".
func (c Context) String() string {
	return fmt.Sprintf("0x%X", uint32(c))
}

// Name returns the symbolic name of the context.
func (c Context) Name() string {
	switch c {
	case ContextNone:
		return "BG_ERROR_CONTEXT_NONE"
	case 0x1:
		return "BG_ERROR_CONTEXT_UNKNOWN"
	case 0x2:
		return "BG_ERROR_CONTEXT_GENERAL_QUEUE_MANAGER"
	case 0x3:
		return "BG_ERROR_CONTEXT_QUEUE_MANAGER_NOTIFICATION"
	case 0x4:
		return "BG_ERROR_CONTEXT_LOCAL_FILE"
	case ContextRemoteFile:
		return "BG_ERROR_CONTEXT_REMOTE_FILE"
	case 0x6:
		return "BG_ERROR_CONTEXT_GENERAL_TRANSPORT"
	case ContextRemoteApplication:
		return "BG_ERROR_CONTEXT_REMOTE_APPLICATION"
	case 0x8:
		return "BG_ERROR_CONTEXT_SERVER_CERTIFICATE_CALLBACK"
	}
	return ""
}

// Error is a protocol-level failure: the Ack status, HRESULT and context to
// send, and a message for the server's log. It is never sent to the client
// as text; the client sees only the Ack headers.
type Error struct {
	Status  int
	Code    HRESULT
	Context Context
	Msg     string
}

// Is reports whether target is an *Error with the same code and, if
// target's status is set, the same status. So
// errors.Is(err, &protocol.Error{Code: protocol.BGSessionNotFound}) finds a
// session-not-found answer however deep err wraps it.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Status == 0 || t.Status == e.Status)
}

// Error returns the log message with the code.
func (e *Error) Error() string {
	name := e.Code.Name()
	if name == "" {
		name = e.Code.String()
	}
	return fmt.Sprintf("%s (%d %s)", e.Msg, e.Status, name)
}

// Errorf returns an *Error with context ContextRemoteFile and a formatted
// message.
func Errorf(status int, code HRESULT, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Context: ContextRemoteFile, Msg: fmt.Sprintf(format, args...)}
}

// App marks the error as raised by the server application behind the
// notification (context 0x7) and returns it.
func (e *Error) App() *Error {
	e.Context = ContextRemoteApplication
	return e
}

// BadRequest returns the 400 E_INVALIDARG error every protocol violation
// gets.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, EInvalidArg, format, args...)
}

// SessionNotFound returns the 500 BG_E_SESSION_NOT_FOUND error for an
// unknown, expired or malformed session id. The client starts over with a
// new Create-Session when it sees it.
func SessionNotFound(format string, args ...any) *Error {
	return Errorf(http.StatusInternalServerError, BGSessionNotFound, format, args...)
}
