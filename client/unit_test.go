package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestDecide(t *testing.T) {
	const (
		ping   = protocol.PacketPing
		create = protocol.PacketCreateSession
		frag   = protocol.PacketFragment
		cl     = protocol.PacketCloseSession
		cancel = protocol.PacketCancelSession
		srv    = protocol.ContextRemoteFile
		app    = protocol.ContextRemoteApplication
	)
	cases := []struct {
		p      protocol.PacketType
		status int
		code   protocol.HRESULT
		ctx    protocol.Context
		want   action
	}{
		{frag, 200, 0, 0, actOK},
		{frag, 416, 0, 0, actOK},
		{create, 201, 0, 0, actOK},
		{create, 416, 0, 0, actFatal},
		{frag, 500, protocol.BGSessionNotFound, srv, actSessionLost},
		{frag, 404, protocol.BGSessionNotFound, srv, actSessionLost},
		{cl, 500, protocol.BGSessionNotFound, srv, actSessionLost},
		{cancel, 500, protocol.BGSessionNotFound, srv, actSessionLost},
		{create, 500, protocol.BGSessionNotFound, srv, actTransient},
		{frag, 413, 0, 0, actShrink},
		{create, 413, 0, 0, actFatal},
		{frag, 500, protocol.BGTooLarge, srv, actFatal},
		{frag, 500, protocol.EFail, srv, actTransient},
		{frag, 503, 0, 0, actTransient},
		{frag, 408, 0, 0, actTransient},
		{frag, 409, 0, 0, actTransient},
		{frag, 400, protocol.EInvalidArg, srv, actFatal},
		{frag, 403, protocol.EAccessDenied, srv, actFatal},
		{frag, 404, 0, 0, actFatal},
		{create, 501, protocol.EAccessDenied, srv, actFatal},
		{frag, 505, 0, 0, actFatal},
		{frag, 302, 0, 0, actFatal},
		{ping, 401, 0, 0, actFatal},
		{ping, 500, 0, 0, actTransient},
		{cl, 503, 0, 0, actTransient},
		{cl, 501, 0, 0, actTransient},
		{cl, 408, 0, 0, actFatal},
		{cl, 403, 0, 0, actFatal},
		{cancel, 500, protocol.EFail, srv, actTransient},
		{cancel, 400, 0, 0, actFatal},
		// Server-application errors (context 0x7).
		{frag, 300, 0, app, actFatal},
		{frag, 305, 0, app, actFatal},
		{frag, 306, 0, app, actTransient},
		{frag, 307, 0, app, actFatal},
		{frag, 308, 0, app, actTransient},
		{frag, 400, 0, app, actFatal},
		{frag, 403, 0, app, actFatal},
		{frag, 408, protocol.ErrorTimeout, app, actTransient},
		{frag, 409, 0, app, actTransient},
		{frag, 500, protocol.HTTPError(500), app, actTransient},
		{frag, 501, 0, app, actFatal},
		{frag, 502, 0, app, actTransient},
		{frag, 505, 0, app, actFatal},
		{frag, 600, 0, app, actTransient},
		{frag, 500, protocol.BGTooLarge, app, actFatal},
	}
	for _, tc := range cases {
		a := &Ack{Status: tc.status, Code: tc.code, Context: tc.ctx}
		if got := decide(tc.p, a); got != tc.want {
			t.Errorf("decide(%s, %d %v ctx %v) = %d, want %d", tc.p, tc.status, tc.code, tc.ctx, got, tc.want)
		}
	}
}

func TestReplaceHost(t *testing.T) {
	cases := []struct {
		url, hostID, want string
	}{
		{"http://farm.example.com/up/f.bin?q=1", "node7", "http://node7/up/f.bin?q=1"},
		{"https://farm.example.com:8443/up/f.bin", "node7", "https://node7:8443/up/f.bin"},
		{"https://farm.example.com:8443/up/f.bin", "NODE7.example.com", "https://NODE7.example.com:8443/up/f.bin"},
		{"http://farm:8080/up/f", "10.0.0.7", "http://10.0.0.7:8080/up/f"},
		{"http://farm:8080/up/f", "2001:db8::7", "http://[2001:db8::7]:8080/up/f"},
		{"http://farm/up/f", "2001:db8::7", "http://[2001:db8::7]/up/f"},
		{"http://farm:8080/up/f", "[2001:db8::7]", "http://[2001:db8::7]:8080/up/f"},
		{"http://farm:8080/up/f", "[2001:db8::7]:9090", "http://[2001:db8::7]:9090/up/f"},
		{"http://farm:8080/up/f", "127.0.0.1:9090", "http://127.0.0.1:9090/up/f"},
		{"http://[::1]:8080/up/f", "node7", "http://node7:8080/up/f"},
		{"http://farm:8080/up/f", "fe80::1%eth0", "http://[fe80::1%25eth0]:8080/up/f"},
		{"http://farm:8080/up/f", "  node7 ", "http://node7:8080/up/f"},
	}
	for _, tc := range cases {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := replaceHost(u, tc.hostID)
		if err != nil {
			t.Errorf("replaceHost(%q, %q): %v", tc.url, tc.hostID, err)
			continue
		}
		if got.String() != tc.want {
			t.Errorf("replaceHost(%q, %q) = %q, want %q", tc.url, tc.hostID, got, tc.want)
		}
	}
	u, _ := url.Parse("http://farm:8080/up/f")
	for _, bad := range []string{"", "a/b", "a b", "user@node", "[2001:db8::7", "[node7]", "[::1]x", "node:99999", "node:+80", "1:2:3", "n\u00e9", "node?x", "a:b:c"} {
		if got, err := replaceHost(u, bad); err == nil {
			t.Errorf("replaceHost(%q) = %v, want an error", bad, got)
		}
	}
}

func TestResolveReplyURL(t *testing.T) {
	base := "http://node7:8080/vdir/dir/file.bin?x=1"
	cases := []struct{ ref, want string }{
		{"http://static.example.com/r/1", "http://static.example.com/r/1"},
		{`BITS-Sessions\Replies\{C85B4E0A-0000-0000-0000-000000000000}\responsefile.bin`,
			"http://node7:8080/vdir/dir/BITS-Sessions/Replies/%7BC85B4E0A-0000-0000-0000-000000000000%7D/responsefile.bin"},
		{"/abs/path", "http://node7:8080/abs/path"},
		{"r#frag", "http://node7:8080/vdir/dir/r"},
	}
	for _, tc := range cases {
		got, err := resolveReplyURL(base, tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("resolveReplyURL(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
	for _, bad := range []string{"ftp://x/y", "mailto:a@b", "http://%zz"} {
		if got, err := resolveReplyURL(base, bad); err == nil {
			t.Errorf("resolveReplyURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseAck(t *testing.T) {
	resp := &http.Response{StatusCode: 500, Header: http.Header{
		"Bits-Packet-Type":              {"ack"},
		"Bits-Error-Code":               {"0x8020001f"},
		"Bits-Error-Context":            {" 0x7 "},
		"Bits-Received-Content-Range":   {"12345"},
		"Bits-Session-Id":               {"{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"},
		"Bits-Host-Id":                  {"node7"},
		"Bits-Host-Id-Fallback-Timeout": {"110"},
		"Bits-Reply-Url":                {"http://x/r"},
		"Bits-Protocol":                 {protocol.UploadProtocol},
	}}
	a := parseAck(resp)
	if !a.IsAck() || a.Code != protocol.BGSessionNotFound || a.Context != protocol.ContextRemoteApplication ||
		!a.HasReceived || a.Received != 12345 || a.SessionID != "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}" ||
		a.HostID != "node7" || a.HostIDFallback != 110*time.Second || a.ReplyURL != "http://x/r" || a.Protocol != protocol.UploadProtocol {
		t.Errorf("parseAck = %+v", a)
	}
	// Exact (non-canonical) header spellings, as hand-built maps carry them.
	a = parseAck(&http.Response{StatusCode: 200, Header: http.Header{"BITS-Received-Content-Range": {"7"}, "BITS-Error-Code": {"8020001F"}}})
	if a.Received != 7 || !a.HasReceived || a.Code != protocol.BGSessionNotFound {
		t.Errorf("parseAck = %+v", a)
	}
	for _, bad := range []string{"", "-1", "+5", "1.5", "bytes 0-4", "99999999999999999999", " "} {
		a := parseAck(&http.Response{StatusCode: 200, Header: http.Header{"Bits-Received-Content-Range": {bad}, "Bits-Error-Code": {bad}, "Bits-Host-Id-Fallback-Timeout": {bad}}})
		if a.HasReceived || a.Code != 0 || a.HostIDFallback != 0 {
			t.Errorf("parseAck with %q = %+v", bad, a)
		}
	}
}

func TestAckErr(t *testing.T) {
	if err := (&Ack{Status: 416}).Err(protocol.PacketFragment); err != nil {
		t.Errorf("416 fragment: %v", err)
	}
	if err := (&Ack{Status: 416}).Err(protocol.PacketCloseSession); err == nil {
		t.Error("416 close-session: no error")
	}
	err := (&Ack{Status: 500, Code: protocol.BGSessionNotFound, Context: protocol.ContextRemoteFile}).Err(protocol.PacketFragment)
	want := "fragment: server answered 500 BG_E_SESSION_NOT_FOUND (0x8020001F), context BG_ERROR_CONTEXT_REMOTE_FILE (0x5)"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	wrapped := fmt.Errorf("upload: %w", err)
	var be *Error
	if !errors.As(wrapped, &be) || be.Code != protocol.BGSessionNotFound || be.Status != 500 {
		t.Errorf("errors.As: %+v", be)
	}
	err = (&Ack{Status: 500, Code: 0xC0DE0001, Context: 0x9}).Err(protocol.PacketCreateSession)
	if want := "create-session: server answered 500 0xC0DE0001, context 0x9"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	e := &Error{Packet: protocol.PacketFragment, Status: 200, Code: protocol.BGInvalidServerResponse, Message: "200 Ack has no BITS-Received-Content-Range"}
	if want := "fragment: 200 Ack has no BITS-Received-Content-Range: BG_E_INVALID_SERVER_RESPONSE (0x8020001B)"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e, want)
	}
	if got := CodeString(BGLocalFileChanged); got != "BG_E_LOCAL_FILE_CHANGED (0x8020001D)" {
		t.Errorf("CodeString = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := c.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := (&Client{}).backoff(100); got != DefaultMaxRetryDelay {
		t.Errorf("default backoff(100) = %v", got)
	}
	if got := (&Client{}).backoff(1); got != DefaultRetryDelay {
		t.Errorf("default backoff(1) = %v", got)
	}
	if got := (&Client{RetryDelay: -1}).backoff(3); got != 0 {
		t.Errorf("negative delay backoff = %v", got)
	}
}

func TestDefaults(t *testing.T) {
	c := &Client{}
	if c.fragmentSize() != 1<<20 || c.minFragmentSize() != 5120 || c.maxRetries() != 8 || c.maxRestarts() != 5 || c.userAgent() != "caddy-bits/client" {
		t.Error("wrong defaults")
	}
	c = &Client{FragmentSize: 100 << 20, MaxRetries: -1, MaxRestarts: -1}
	if c.fragmentSize() != MaxFragmentSize || c.maxRetries() != 0 || c.maxRestarts() != 0 {
		t.Error("wrong limits")
	}
}
