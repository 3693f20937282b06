package protocol

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestHRESULTString checks the BITS-Error-Code format: "0x" and eight
// upper-case hex digits.
func TestHRESULTString(t *testing.T) {
	tests := []struct {
		h    HRESULT
		want string
	}{
		{EInvalidArg, "0x80070057"},
		{BGSessionNotFound, "0x8020001F"},
		{EAccessDenied, "0x80070005"},
		{ErrorTimeout, "0x800705B4"},
		{SOK, "0x00000000"},
		{HRESULT(1), "0x00000001"},
		{HRESULT(0xabcdef), "0x00ABCDEF"},
		{HRESULT(0xFFFFFFFF), "0xFFFFFFFF"},
	}
	for _, tc := range tests {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("HRESULT(0x%x).String() = %q, want %q", uint32(tc.h), got, tc.want)
		}
	}
}

// TestHRESULTName checks the symbolic names of known codes and of the
// BG_E_HTTP_ERROR range, and the empty name of unknown codes.
func TestHRESULTName(t *testing.T) {
	tests := []struct {
		h    HRESULT
		want string
	}{
		{SOK, "S_OK"},
		{EAccessDenied, "E_ACCESSDENIED"},
		{EInvalidArg, "E_INVALIDARG"},
		{EFail, "E_FAIL"},
		{ErrorPathNotFound, "ERROR_PATH_NOT_FOUND"},
		{ErrorDiskFull, "ERROR_DISK_FULL"},
		{ErrorTimeout, "ERROR_TIMEOUT"},
		{BGInvalidServerResponse, "BG_E_INVALID_SERVER_RESPONSE"},
		{BGSessionNotFound, "BG_E_SESSION_NOT_FOUND"},
		{BGTooLarge, "BG_E_TOO_LARGE"},
		{BGClientServerProtocolMis, "BG_E_CLIENT_SERVER_PROTOCOL_MISMATCH"},
		{BGServerExecuteEnable, "BG_E_SERVER_EXECUTE_ENABLE"},
		{BGNoProgress, "BG_E_NO_PROGRESS"},
		{HTTPError(100), "BG_E_HTTP_ERROR_100"},
		{HTTPError(200), "BG_E_HTTP_ERROR_200"},
		{HTTPError(403), "BG_E_HTTP_ERROR_403"},
		{HTTPError(500), "BG_E_HTTP_ERROR_500"},
		{HTTPError(505), "BG_E_HTTP_ERROR_505"},
		{HTTPError(599), "BG_E_HTTP_ERROR_599"},
		{HTTPError(600), ""},
		{BGHTTPErrorBase, ""},
		{HRESULT(0x12345678), ""},
		{HRESULT(0x80070070 + 1), ""},
	}
	for _, tc := range tests {
		if got := tc.h.Name(); got != tc.want {
			t.Errorf("%v.Name() = %q, want %q", tc.h, got, tc.want)
		}
	}
}

// TestHTTPError checks BG_E_HTTP_ERROR_<status> against the values listed
// in the reference (section 4.3).
func TestHTTPError(t *testing.T) {
	tests := []struct {
		status int
		want   HRESULT
	}{
		{200, 0x801900C8},
		{400, 0x80190190},
		{401, 0x80190191},
		{403, 0x80190193},
		{404, 0x80190194},
		{407, 0x80190197},
		{408, 0x80190198},
		{409, 0x80190199},
		{411, 0x8019019B},
		{413, 0x8019019D},
		{416, 0x801901A0},
		{500, 0x801901F4},
		{501, 0x801901F5},
		{503, 0x801901F7},
		{505, 0x801901F9},
	}
	for _, tc := range tests {
		if got := HTTPError(tc.status); got != tc.want {
			t.Errorf("HTTPError(%d) = %v, want %v", tc.status, got, tc.want)
		}
	}
	if got := HTTPError(http.StatusForbidden).String(); got != "0x80190193" {
		t.Errorf("HTTPError(403).String() = %q, want %q", got, "0x80190193")
	}
	if !HTTPError(403).Failed() {
		t.Error("HTTPError(403).Failed() = false, want true")
	}
}

// TestHRESULTFailed checks the severity bit test.
func TestHRESULTFailed(t *testing.T) {
	tests := []struct {
		h    HRESULT
		want bool
	}{
		{SOK, false},
		{HRESULT(0x00200006), false}, // BG_S_ERROR_CONTEXT_NONE, a success code.
		{HRESULT(0x7FFFFFFF), false},
		{HRESULT(0x80000000), true},
		{EInvalidArg, true},
		{BGSessionNotFound, true},
	}
	for _, tc := range tests {
		if got := tc.h.Failed(); got != tc.want {
			t.Errorf("%v.Failed() = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestContextString checks the BITS-Error-Context format.
func TestContextString(t *testing.T) {
	tests := []struct {
		c    Context
		want string
	}{
		{ContextRemoteFile, "0x5"},
		{ContextRemoteApplication, "0x7"},
		{ContextNone, "0x0"},
		{Context(0x8), "0x8"},
		{Context(0xab), "0xAB"},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("Context(%d).String() = %q, want %q", uint32(tc.c), got, tc.want)
		}
	}
}

// TestContextName checks every BG_ERROR_CONTEXT name (reference section
// 4.2).
func TestContextName(t *testing.T) {
	want := []string{
		"BG_ERROR_CONTEXT_NONE",
		"BG_ERROR_CONTEXT_UNKNOWN",
		"BG_ERROR_CONTEXT_GENERAL_QUEUE_MANAGER",
		"BG_ERROR_CONTEXT_QUEUE_MANAGER_NOTIFICATION",
		"BG_ERROR_CONTEXT_LOCAL_FILE",
		"BG_ERROR_CONTEXT_REMOTE_FILE",
		"BG_ERROR_CONTEXT_GENERAL_TRANSPORT",
		"BG_ERROR_CONTEXT_REMOTE_APPLICATION",
		"BG_ERROR_CONTEXT_SERVER_CERTIFICATE_CALLBACK",
	}
	for i, w := range want {
		if got := Context(i).Name(); got != w {
			t.Errorf("Context(%d).Name() = %q, want %q", i, got, w)
		}
	}
	if got := Context(9).Name(); got != "" {
		t.Errorf("Context(9).Name() = %q, want empty", got)
	}
	if ContextRemoteFile != 5 || ContextRemoteApplication != 7 || ContextNone != 0 {
		t.Errorf("context constants = %d, %d, %d; want 5, 7, 0", ContextRemoteFile, ContextRemoteApplication, ContextNone)
	}
}

// TestErrorError checks the log text of an *Error: the message, the status
// and the code's name, or its hex form when it has no name.
func TestErrorError(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{BadRequest("bad range %q", "bytes x"), `bad range "bytes x" (400 E_INVALIDARG)`},
		{SessionNotFound("no session %d", 7), "no session 7 (500 BG_E_SESSION_NOT_FOUND)"},
		{Errorf(http.StatusForbidden, EAccessDenied, "denied"), "denied (403 E_ACCESSDENIED)"},
		{&Error{Status: 502, Code: HTTPError(502), Msg: "app failed"}, "app failed (502 BG_E_HTTP_ERROR_502)"},
		{&Error{Status: 500, Code: HRESULT(0x12345678), Msg: "odd"}, "odd (500 0x12345678)"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	// The message and the name both appear, whatever the exact layout.
	e := BadRequest("header too long")
	if s := e.Error(); !strings.Contains(s, "header too long") || !strings.Contains(s, "E_INVALIDARG") {
		t.Errorf("Error() = %q, want the message and E_INVALIDARG in it", s)
	}
}

// TestErrorAsError checks that *Error works with the errors package.
func TestErrorAsError(t *testing.T) {
	var err error = SessionNotFound("gone")
	var e *Error
	if !errors.As(err, &e) || e.Code != BGSessionNotFound {
		t.Fatalf("errors.As(%v) = %v, %+v; want the *Error", err, e != nil, e)
	}
}

// TestErrorConstructors checks the exact fields set by Errorf, BadRequest
// and SessionNotFound.
func TestErrorConstructors(t *testing.T) {
	tests := []struct {
		name string
		got  *Error
		want Error
	}{
		{"BadRequest", BadRequest("bad %s %d", "thing", 3),
			Error{Status: 400, Code: EInvalidArg, Context: ContextRemoteFile, Msg: "bad thing 3"}},
		{"BadRequest without args", BadRequest("100%% bad"),
			Error{Status: 400, Code: EInvalidArg, Context: ContextRemoteFile, Msg: "100% bad"}},
		{"SessionNotFound", SessionNotFound("session %q unknown", "{x}"),
			Error{Status: 500, Code: BGSessionNotFound, Context: ContextRemoteFile, Msg: `session "{x}" unknown`}},
		{"Errorf", Errorf(413, SOK, "too big: %d", 99),
			Error{Status: 413, Code: SOK, Context: ContextRemoteFile, Msg: "too big: 99"}},
	}
	for _, tc := range tests {
		if tc.got == nil || *tc.got != tc.want {
			t.Errorf("%s = %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
}

// TestErrorAck checks that ErrorAck carries the status, code and context
// and nothing else.
func TestErrorAck(t *testing.T) {
	e := &Error{Status: 408, Code: ErrorTimeout, Context: ContextRemoteApplication, Msg: "slow"}
	want := Ack{Status: 408, Code: ErrorTimeout, Context: ContextRemoteApplication}
	if got := ErrorAck(e); got != want {
		t.Fatalf("ErrorAck(%+v) = %+v, want %+v", e, got, want)
	}
}

// TestErrorIs checks that errors.Is finds a protocol error by its code,
// however deeply it is wrapped, and by its status when the target has one.
func TestErrorIs(t *testing.T) {
	err := fmt.Errorf("fragment: %w", SessionNotFound("gone"))
	if !errors.Is(err, &Error{Code: BGSessionNotFound}) {
		t.Error("errors.Is does not find BG_E_SESSION_NOT_FOUND by its code")
	}
	if !errors.Is(err, &Error{Code: BGSessionNotFound, Status: http.StatusInternalServerError}) {
		t.Error("errors.Is does not find BG_E_SESSION_NOT_FOUND by its code and status")
	}
	if errors.Is(err, &Error{Code: BGSessionNotFound, Status: http.StatusBadRequest}) {
		t.Error("errors.Is matches another status")
	}
	if errors.Is(err, &Error{Code: EInvalidArg}) {
		t.Error("errors.Is matches another code")
	}
	if errors.Is(errors.New("plain"), &Error{Code: EInvalidArg}) {
		t.Error("errors.Is matches an error that is no protocol error")
	}
}
