package protocol

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// recordAck writes a through WriteAck into a recorder and returns the
// recorded status and the raw header map, whose keys are exactly the
// spellings that go on the wire.
func recordAck(a Ack) (int, map[string][]string) {
	rec := httptest.NewRecorder()
	WriteAck(rec, a)
	return rec.Code, map[string][]string(rec.Header())
}

// TestWriteAckFullCreateSession checks every header of a Create-Session Ack
// with all optional parts, by exact key spelling and exact value.
func TestWriteAckFullCreateSession(t *testing.T) {
	status, h := recordAck(Ack{
		SessionID:              canonSessionID,
		Protocol:               UploadProtocol,
		HostID:                 "FRANKCAO8",
		HostIDFallbackTimeout:  110,
		AcceptEncodingIdentity: true,
	})
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	want := map[string][]string{
		"BITS-Packet-Type":              {"Ack"},
		"Content-Length":                {"0"},
		"BITS-Session-Id":               {"{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"},
		"BITS-Protocol":                 {"{7df0354d-249b-430f-820d-3d2a9bef4931}"},
		"BITS-Host-Id":                  {"FRANKCAO8"},
		"BITS-Host-Id-Fallback-Timeout": {"110"},
		"Accept-Encoding":               {"identity"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers =\n%v\nwant\n%v", h, want)
	}
}

// TestWriteAckFinalFragment checks a final-fragment Ack with a reply URL.
func TestWriteAckFinalFragment(t *testing.T) {
	status, h := recordAck(Ack{
		SessionID:   canonSessionID,
		Received:    4892,
		HasReceived: true,
		ReplyURL:    "https://example.com/replies/%7BA0FF5911%7D/responsefile.bin",
	})
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	want := map[string][]string{
		"BITS-Packet-Type":            {"Ack"},
		"Content-Length":              {"0"},
		"BITS-Session-Id":             {"{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"},
		"BITS-Received-Content-Range": {"4892"},
		"BITS-Reply-URL":              {"https://example.com/replies/%7BA0FF5911%7D/responsefile.bin"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers =\n%v\nwant\n%v", h, want)
	}
}

// TestWriteAckMinimal checks that the zero Ack is a bare 200 Ack with
// Content-Length 0 and nothing else.
func TestWriteAckMinimal(t *testing.T) {
	status, h := recordAck(Ack{})
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	want := map[string][]string{"BITS-Packet-Type": {"Ack"}, "Content-Length": {"0"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers = %v, want %v", h, want)
	}
}

// TestWriteAckStatusAndErrorHeaders checks the status and the presence and
// exact values of BITS-Error-Code and BITS-Error-Context for each kind of
// Ack.
func TestWriteAckStatusAndErrorHeaders(t *testing.T) {
	tests := []struct {
		name       string
		ack        Ack
		wantStatus int
		wantCode   string // Empty means the header must be absent.
		wantCtx    string
	}{
		{"status 0 is 200", Ack{}, 200, "", ""},
		{"status 0 with a code sends no error", Ack{Code: EInvalidArg, Context: ContextRemoteFile}, 200, "", ""},
		{"200 with a code sends no error", Ack{Status: 200, Code: EInvalidArg, Context: ContextRemoteFile}, 200, "", ""},
		{"201 with a code sends no error", Ack{Status: 201, Code: EInvalidArg, Context: ContextRemoteFile}, 201, "", ""},
		{"416 resync without code", Ack{Status: 416, Received: 100, HasReceived: true}, 416, "", ""},
		{"416 resync with SOK and a context", Ack{Status: 416, Code: SOK, Context: ContextRemoteFile}, 416, "", ""},
		{"413 without code", Ack{Status: 413}, 413, "", ""},
		{"400 with SOK sends no error", Ack{Status: 400, Code: SOK, Context: ContextRemoteFile}, 400, "", ""},
		{"400 invalid argument", Ack{Status: 400, Code: EInvalidArg, Context: ContextRemoteFile}, 400, "0x80070057", "0x5"},
		{"403 access denied", Ack{Status: 403, Code: EAccessDenied, Context: ContextRemoteFile}, 403, "0x80070005", "0x5"},
		{"404 path not found", Ack{Status: 404, Code: ErrorPathNotFound, Context: ContextRemoteFile}, 404, "0x80070003", "0x5"},
		{"408 application timeout", Ack{Status: 408, Code: ErrorTimeout, Context: ContextRemoteApplication}, 408, "0x800705B4", "0x7"},
		{"416 with an error code", Ack{Status: 416, Code: EInvalidArg, Context: ContextRemoteFile}, 416, "0x80070057", "0x5"},
		{"500 session not found", Ack{Status: 500, Code: BGSessionNotFound, Context: ContextRemoteFile}, 500, "0x8020001F", "0x5"},
		{"500 too large", Ack{Status: 500, Code: BGTooLarge, Context: ContextRemoteFile}, 500, "0x80200020", "0x5"},
		{"500 disk full", Ack{Status: 500, Code: ErrorDiskFull, Context: ContextRemoteFile}, 500, "0x80070070", "0x5"},
		{"501 uploads disabled", Ack{Status: 501, Code: EAccessDenied, Context: ContextRemoteFile}, 501, "0x80070005", "0x5"},
		{"502 relayed application error", Ack{Status: 502, Code: HTTPError(502), Context: ContextRemoteApplication}, 502, "0x801901F6", "0x7"},
		{"error ack from BadRequest", ErrorAck(BadRequest("x")), 400, "0x80070057", "0x5"},
		{"error ack from SessionNotFound", ErrorAck(SessionNotFound("x")), 500, "0x8020001F", "0x5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h := recordAck(tc.ack)
			if status != tc.wantStatus {
				t.Fatalf("status = %d, want %d", status, tc.wantStatus)
			}
			if got := h["BITS-Packet-Type"]; !reflect.DeepEqual(got, []string{"Ack"}) {
				t.Fatalf("BITS-Packet-Type = %q, want [Ack]", got)
			}
			if got := h["Content-Length"]; !reflect.DeepEqual(got, []string{"0"}) {
				t.Fatalf("Content-Length = %q, want [0]", got)
			}
			checkOptional(t, h, "BITS-Error-Code", tc.wantCode)
			checkOptional(t, h, "BITS-Error-Context", tc.wantCtx)
		})
	}
}

// checkOptional checks that header name has exactly the value want, or is
// absent when want is empty.
func checkOptional(t *testing.T, h map[string][]string, name, want string) {
	t.Helper()
	got, present := h[name]
	switch {
	case want == "" && present:
		t.Errorf("%s = %q, want it absent", name, got)
	case want != "" && !reflect.DeepEqual(got, []string{want}):
		t.Errorf("%s = %q, want [%s]", name, got, want)
	}
}

// TestWriteAckReceived checks that BITS-Received-Content-Range follows
// HasReceived, including the value 0.
func TestWriteAckReceived(t *testing.T) {
	tests := []struct {
		ack  Ack
		want string
	}{
		{Ack{Received: 0, HasReceived: true}, "0"},
		{Ack{Received: 4892, HasReceived: true}, "4892"},
		{Ack{Received: 9223372036854775807, HasReceived: true}, "9223372036854775807"},
		{Ack{Received: 5, HasReceived: false}, ""},
		{Ack{Status: 416, Received: 100, HasReceived: true}, "100"},
	}
	for _, tc := range tests {
		_, h := recordAck(tc.ack)
		checkOptional(t, h, "BITS-Received-Content-Range", tc.want)
	}
}

// TestWriteAckSessionIDUpperCase checks that the session id is echoed in
// upper case, as IIS writes it, whatever case it was stored in.
func TestWriteAckSessionIDUpperCase(t *testing.T) {
	id := NewSessionID([16]byte{0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89})
	_, h := recordAck(Ack{SessionID: id})
	want := "{ABCDEF01-2345-4789-ABCD-EF0123456789}"
	checkOptional(t, h, "BITS-Session-Id", want)
	if back, err := ParseSessionID(want); err != nil || back != id {
		t.Fatalf("ParseSessionID(%q) = %q, %v; want %q", want, back, err, id)
	}
}

// TestWriteAckHostIDFallback checks that the fallback timeout is sent only
// together with a host id, and only when it is positive.
func TestWriteAckHostIDFallback(t *testing.T) {
	tests := []struct {
		name                 string
		ack                  Ack
		wantHost, wantTimout string
	}{
		{"host id and timeout", Ack{HostID: "node1", HostIDFallbackTimeout: 86400}, "node1", "86400"},
		{"host id without timeout", Ack{HostID: "node1"}, "node1", ""},
		{"host id with negative timeout", Ack{HostID: "node1", HostIDFallbackTimeout: -1}, "node1", ""},
		{"timeout without host id", Ack{HostIDFallbackTimeout: 86400}, "", ""},
		{"IPv6 host id", Ack{HostID: "[2001:db8::1]", HostIDFallbackTimeout: 1}, "[2001:db8::1]", "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, h := recordAck(tc.ack)
			checkOptional(t, h, "BITS-Host-Id", tc.wantHost)
			checkOptional(t, h, "BITS-Host-Id-Fallback-Timeout", tc.wantTimout)
		})
	}
}

// TestWriteAckOptionalHeadersAbsent checks that no optional header appears
// when its field is empty.
func TestWriteAckOptionalHeadersAbsent(t *testing.T) {
	_, h := recordAck(Ack{Status: 500, Code: BGSessionNotFound, Context: ContextRemoteFile})
	for _, name := range []string{
		"BITS-Session-Id", "BITS-Protocol", "BITS-Received-Content-Range", "BITS-Reply-URL",
		"BITS-Host-Id", "BITS-Host-Id-Fallback-Timeout", "Accept-Encoding",
	} {
		checkOptional(t, h, name, "")
	}
}

// TestWriteAckNoCanonicalDuplicates checks that no header is stored under
// the canonical spelling net/http would use ("Bits-Packet-Type" and so on).
func TestWriteAckNoCanonicalDuplicates(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteAck(rec, Ack{
		Status: 500, Code: BGSessionNotFound, Context: ContextRemoteFile,
		SessionID: canonSessionID, Protocol: UploadProtocol, Received: 1, HasReceived: true,
		ReplyURL: "https://r", HostID: "h", HostIDFallbackTimeout: 1,
	})
	for key := range rec.Header() {
		if strings.HasPrefix(key, "Bits-") {
			t.Errorf("header stored under canonical key %q, want the exact BITS spelling", key)
		}
	}
}

// TestWriteAckErrorContextNone documents that an Ack whose Context is
// ContextNone carries no BITS-Error-Context header, as ContextNone's doc
// comment says; the reference allows only 0x5 and 0x7 on the wire.
func TestWriteAckErrorContextNone(t *testing.T) {
	_, h := recordAck(Ack{Status: 500, Code: EFail, Context: ContextNone})
	checkOptional(t, h, "BITS-Error-Code", "0x80004005")
	if got, present := h["BITS-Error-Context"]; present {
		t.Fatalf("WriteAck sends BITS-Error-Context %q for ContextNone, whose doc comment says "+
			"an Ack carries no context header in that case", got)
	}
}

// readRawHead reads a status line and header lines, up to the empty line,
// from br, without any parsing or canonicalisation.
func readRawHead(t *testing.T, br *bufio.Reader) []string {
	t.Helper()
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading response head: %v (so far %q)", err, lines)
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("response line %q does not end in CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			return lines
		}
		lines = append(lines, line)
	}
}

// TestWriteAckOnTheWire sends raw HTTP/1.1 requests to a net/http server
// that answers with WriteAck, and checks the literal response bytes: the
// header names keep their exact spelling, Content-Length is 0, nothing is
// chunked, and the connection stays usable for the next packet.
func TestWriteAckOnTheWire(t *testing.T) {
	acks := map[string]Ack{
		"/create": {
			SessionID: canonSessionID, Protocol: UploadProtocol, HostID: "FRANKCAO8",
			HostIDFallbackTimeout: 110, AcceptEncodingIdentity: true,
		},
		"/fragment": {SessionID: canonSessionID, Received: 4892, HasReceived: true, ReplyURL: "https://example.com/reply"},
		"/resync":   {Status: 416, Received: 100, HasReceived: true},
		"/error":    {Status: 500, Code: BGSessionNotFound, Context: ContextRemoteFile},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		WriteAck(w, acks[r.URL.Path])
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)

	tests := []struct {
		path       string
		statusLine string
		want       []string
		absent     []string
	}{
		{
			path:       "/create",
			statusLine: "HTTP/1.1 200 OK",
			want: []string{
				"BITS-Packet-Type: Ack",
				"Content-Length: 0",
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}",
				"BITS-Protocol: {7df0354d-249b-430f-820d-3d2a9bef4931}",
				"BITS-Host-Id: FRANKCAO8",
				"BITS-Host-Id-Fallback-Timeout: 110",
				"Accept-Encoding: identity",
			},
			absent: []string{"BITS-Error-Code", "BITS-Error-Context", "BITS-Received-Content-Range"},
		},
		{
			path:       "/fragment",
			statusLine: "HTTP/1.1 200 OK",
			want: []string{
				"BITS-Packet-Type: Ack",
				"Content-Length: 0",
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}",
				"BITS-Received-Content-Range: 4892",
				"BITS-Reply-URL: https://example.com/reply",
			},
			absent: []string{"BITS-Error-Code", "BITS-Error-Context"},
		},
		{
			path:       "/resync",
			statusLine: "HTTP/1.1 416 Requested Range Not Satisfiable",
			want:       []string{"BITS-Packet-Type: Ack", "Content-Length: 0", "BITS-Received-Content-Range: 100"},
			absent:     []string{"BITS-Error-Code", "BITS-Error-Context"},
		},
		{
			path:       "/error",
			statusLine: "HTTP/1.1 500 Internal Server Error",
			want: []string{
				"BITS-Packet-Type: Ack",
				"Content-Length: 0",
				"BITS-Error-Code: 0x8020001F",
				"BITS-Error-Context: 0x5",
			},
			absent: []string{"BITS-Session-Id", "BITS-Received-Content-Range"},
		},
	}
	for _, tc := range tests {
		req := fmt.Sprintf("BITS_POST %s HTTP/1.1\r\nHost: frankcao8\r\nBITS-Packet-Type: Ping\r\n"+
			"Content-Length: 0\r\nConnection: Keep-Alive\r\n\r\n", tc.path)
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatalf("%s: write: %v", tc.path, err)
		}
		lines := readRawHead(t, br)
		if lines[0] != tc.statusLine {
			t.Errorf("%s: status line %q, want %q", tc.path, lines[0], tc.statusLine)
		}
		have := map[string]bool{}
		for _, l := range lines[1:] {
			have[l] = true
			name, _, _ := strings.Cut(l, ":")
			if strings.HasPrefix(name, "Bits-") {
				t.Errorf("%s: header line %q uses the canonical spelling", tc.path, l)
			}
			if strings.EqualFold(name, "Transfer-Encoding") || (strings.EqualFold(name, "Connection") && strings.Contains(l, "close")) {
				t.Errorf("%s: unexpected header line %q", tc.path, l)
			}
		}
		for _, w := range tc.want {
			if !have[w] {
				t.Errorf("%s: response lacks the line %q; got %q", tc.path, w, lines)
			}
		}
		for _, a := range tc.absent {
			for _, l := range lines[1:] {
				if strings.HasPrefix(strings.ToLower(l), strings.ToLower(a)+":") {
					t.Errorf("%s: response has the line %q, want no %s", tc.path, l, a)
				}
			}
		}
		// Content-Length 0 means the next byte on the connection belongs to
		// the next response; the loop's next request proves it.
		if br.Buffered() != 0 {
			t.Errorf("%s: %d unexpected bytes after the response head", tc.path, br.Buffered())
		}
	}
}
