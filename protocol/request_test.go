package protocol

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Session ids as a Windows client sends them and as ParseRequest returns
// them.
const (
	wireSessionID  = "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"
	canonSessionID = SessionID("{a0ff5911-4144-45b3-bf27-27afc8ec8a67}")
)

// headerStyle selects how a test request's headers are stored: under the
// exact BITS spelling by direct map assignment, or canonicalised by
// http.Header.Set, as net/http's server stores them.
type headerStyle int

const (
	styleExact headerStyle = iota
	styleCanonical
)

func (s headerStyle) String() string {
	if s == styleExact {
		return "exact"
	}
	return "canonical"
}

// hdr is one request header.
type hdr struct{ name, value string }

// newBITSRequest builds a BITS_POST request whose ContentLength is the body
// length. Headers are stored in the given style, and mutate, when not nil,
// adjusts the request last.
func newBITSRequest(style headerStyle, headers []hdr, body string, mutate func(*http.Request)) *http.Request {
	req := httptest.NewRequest(Method, "/upload/rfc2119.txt", strings.NewReader(body))
	for _, h := range headers {
		if style == styleExact {
			req.Header[h.name] = []string{h.value}
		} else {
			req.Header.Set(h.name, h.value)
		}
	}
	if mutate != nil {
		mutate(req)
	}
	return req
}

// chunked makes a request look like one with Transfer-Encoding: chunked.
func chunked(r *http.Request) {
	r.TransferEncoding = []string{"chunked"}
	r.ContentLength = -1
	r.Header.Del("Content-Length")
}

// withContentLength sets both the ContentLength field and the header.
func withContentLength(n int64) func(*http.Request) {
	return func(r *http.Request) {
		r.ContentLength = n
		r.Header["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	}
}

// fragmentHeaders returns the headers of a Fragment as a Windows client
// sends it (reference section 8.1), with the given Content-Range and body
// length.
func fragmentHeaders(contentRange string, n int) []hdr {
	return []hdr{
		{"Accept", "*/*"},
		{HeaderPacketType, "Fragment"},
		{HeaderSessionID, wireSessionID},
		{"Content-Name", "rfc2119.txt"},
		{"Content-Range", contentRange},
		{"User-Agent", "Microsoft BITS/7.8"},
		{"Content-Length", strconv.Itoa(n)},
	}
}

// replace returns hs with the named header's value changed, or the header
// removed when value is "\x00".
func replace(hs []hdr, name, value string) []hdr {
	out := make([]hdr, 0, len(hs))
	for _, h := range hs {
		if strings.EqualFold(h.name, name) {
			if value == "\x00" {
				continue
			}
			h.value = value
		}
		out = append(out, h)
	}
	return out
}

// with returns hs with extra headers appended.
func with(hs []hdr, extra ...hdr) []hdr {
	return append(append([]hdr(nil), hs...), extra...)
}

var (
	pingHeaders   = []hdr{{"Accept", "*/*"}, {HeaderPacketType, "Ping"}, {"Content-Length", "0"}}
	createHeaders = []hdr{
		{HeaderPacketType, "Create-Session"},
		{HeaderSupportedProtocols, UploadProtocol},
		{"Content-Name", "rfc2119.txt"},
		{"Content-Length", "0"},
	}
	closeHeaders = []hdr{
		{HeaderPacketType, "Close-Session"},
		{HeaderSessionID, wireSessionID},
		{"Content-Name", "rfc2119.txt"},
		{"Content-Length", "0"},
	}
	cancelHeaders = []hdr{
		{HeaderPacketType, "Cancel-Session"},
		{HeaderSessionID, wireSessionID},
		{"Content-Length", "0"},
	}
)

// TestParseRequestValid checks the exact Packet for every accepted packet,
// with headers stored both in the exact BITS spelling and canonicalised.
func TestParseRequestValid(t *testing.T) {
	body4892 := strings.Repeat("x", 4892)
	tests := []struct {
		name    string
		headers []hdr
		body    string
		mutate  func(*http.Request)
		want    Packet
	}{
		{"ping", pingHeaders, "", nil, Packet{Type: PacketPing}},
		{"ping upper case", replace(pingHeaders, HeaderPacketType, "PING"), "", nil, Packet{Type: PacketPing}},
		{"ping ignores a session id", with(pingHeaders, hdr{HeaderSessionID, "garbage"}), "", nil, Packet{Type: PacketPing}},
		{"ping with maximal Content-Name", with(pingHeaders, hdr{"Content-Name", strings.Repeat("n", MaxHeaderValueLength)}), "", nil,
			Packet{Type: PacketPing}},
		{"create-session", createHeaders, "", nil,
			Packet{Type: PacketCreateSession, Protocols: []string{UploadProtocol}}},
		{"create-session upper-case GUID list", replace(createHeaders, HeaderSupportedProtocols,
			"{11111111-2222-3333-4444-555555555555}, {7DF0354D-249B-430F-820D-3D2A9BEF4931}"), "", nil,
			Packet{Type: PacketCreateSession, Protocols: []string{"{11111111-2222-3333-4444-555555555555}", UploadProtocol}}},
		{"create-session MC-BUP casing", replace(createHeaders, HeaderPacketType, "CREATE-SESSION"), "", nil,
			Packet{Type: PacketCreateSession, Protocols: []string{UploadProtocol}}},
		{"create-session ignores a session id", with(createHeaders, hdr{HeaderSessionID, "garbage"}), "", nil,
			Packet{Type: PacketCreateSession, Protocols: []string{UploadProtocol}}},
		{"fragment from the capture", fragmentHeaders("bytes 0-4891/4892", 4892), body4892, nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 4891, 4892}, ContentLength: 4892}},
		{"fragment in the middle", fragmentHeaders("bytes 100-199/1000", 100), strings.Repeat("y", 100), nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{100, 199, 1000}, ContentLength: 100}},
		{"fragment lower-case session id", replace(fragmentHeaders("bytes 0-0/1", 1), HeaderSessionID, string(canonSessionID)), "z", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 0, 1}, ContentLength: 1}},
		{"fragment upper-case type and unit", replace(replace(fragmentHeaders("x", 1), HeaderPacketType, "FRAGMENT"), "Content-Range", "Bytes 0-0/1"), "z", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 0, 1}, ContentLength: 1}},
		{"fragment of the empty file", fragmentHeaders("bytes 0--1/0", 0), "", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, -1, 0}, ContentLength: 0}},
		{"fragment of the empty file, star form", fragmentHeaders("bytes */0", 0), "", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, -1, 0}, ContentLength: 0}},
		{"fragment of the empty file, zero-zero form", fragmentHeaders("bytes 0-0/0", 0), "", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, -1, 0}, ContentLength: 0}},
		{"fragment identity encoding", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", "identity"}), "z", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 0, 1}, ContentLength: 1}},
		{"fragment identity encoding, odd case and spaces", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", " Identity\t"}), "z", nil,
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 0, 1}, ContentLength: 1}},
		{"fragment over HTTP/2 without a Content-Length header", replace(fragmentHeaders("bytes 0-0/1", 1), "Content-Length", "\x00"), "z",
			func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0 },
			Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 0, 1}, ContentLength: 1}},
		{"close-session", closeHeaders, "", nil, Packet{Type: PacketCloseSession, SessionID: canonSessionID}},
		{"close-session lower case", replace(closeHeaders, HeaderPacketType, "close-session"), "", nil,
			Packet{Type: PacketCloseSession, SessionID: canonSessionID}},
		{"cancel-session", cancelHeaders, "", nil, Packet{Type: PacketCancelSession, SessionID: canonSessionID}},
		{"cancel-session padded id", replace(cancelHeaders, HeaderSessionID, " \t"+wireSessionID+" "), "", nil,
			Packet{Type: PacketCancelSession, SessionID: canonSessionID}},
	}
	for _, style := range []headerStyle{styleExact, styleCanonical} {
		for _, tc := range tests {
			t.Run(style.String()+"/"+tc.name, func(t *testing.T) {
				req := newBITSRequest(style, tc.headers, tc.body, tc.mutate)
				p, perr := ParseRequest(req)
				if perr != nil {
					t.Fatalf("ParseRequest error = %v, want %+v", perr, tc.want)
				}
				if p == nil {
					t.Fatal("ParseRequest returned a nil packet and no error")
				}
				if !reflect.DeepEqual(*p, tc.want) {
					t.Fatalf("ParseRequest = %+v, want %+v", *p, tc.want)
				}
			})
		}
	}
}

// TestParseRequestInvalid checks the exact status, HRESULT and context of
// every refusal, with headers stored in both spellings.
func TestParseRequestInvalid(t *testing.T) {
	long := strings.Repeat(" ", MaxHeaderValueLength-3) // Padding that trimming would remove.
	type want struct {
		status int
		code   HRESULT
	}
	bad := want{http.StatusBadRequest, EInvalidArg}
	noSession := want{http.StatusInternalServerError, BGSessionNotFound}

	tests := []struct {
		name    string
		headers []hdr
		body    string
		mutate  func(*http.Request)
		want    want
	}{
		// Packet type.
		{"missing packet type", []hdr{{"Content-Length", "0"}}, "", nil, bad},
		{"empty packet type", replace(pingHeaders, HeaderPacketType, ""), "", nil, bad},
		{"unknown packet type", replace(pingHeaders, HeaderPacketType, "Upload"), "", nil, bad},
		{"ack as a request", replace(pingHeaders, HeaderPacketType, "Ack"), "", nil, bad},
		{"ack as a request, upper case", replace(pingHeaders, HeaderPacketType, "ACK"), "", nil, bad},

		// Header value sizes.
		{"packet type longer than 4096", replace(pingHeaders, HeaderPacketType, "Ping"+long), "", nil, bad},
		{"content-name longer than 4096", with(pingHeaders, hdr{"Content-Name", strings.Repeat("n", MaxHeaderValueLength+1)}), "", nil, bad},
		{"supported protocols longer than 4096", replace(createHeaders, HeaderSupportedProtocols, UploadProtocol+strings.Repeat(" ", MaxHeaderValueLength)), "", nil, bad},
		{"session id longer than 4096", replace(closeHeaders, HeaderSessionID, wireSessionID+long), "", nil, bad},
		{"content-range longer than 4096", fragmentHeaders("bytes 0-0/1"+long, 1), "z", nil, bad},

		// Bodies on bodiless packets.
		{"ping with body", pingHeaders, "abc", withContentLength(3), bad},
		{"ping chunked", pingHeaders, "", chunked, bad},
		{"ping with unknown length", pingHeaders, "", func(r *http.Request) { r.ContentLength = -1 }, bad},
		{"create-session with body", createHeaders, "abc", withContentLength(3), bad},
		{"create-session chunked", createHeaders, "", chunked, bad},
		{"close-session with body", closeHeaders, "abc", withContentLength(3), bad},
		{"close-session chunked", closeHeaders, "", chunked, bad},
		{"cancel-session with body", cancelHeaders, "abc", withContentLength(3), bad},
		{"cancel-session chunked", cancelHeaders, "", chunked, bad},

		// Fragment length and encoding.
		{"fragment with unknown length", fragmentHeaders("bytes 0-0/1", 1), "z", func(r *http.Request) { r.ContentLength = -1 }, bad},
		{"fragment chunked", fragmentHeaders("bytes 0-0/1", 1), "z", chunked, bad},
		{"fragment chunked with a declared length", fragmentHeaders("bytes 0-0/1", 1), "z",
			func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }, bad},
		{"fragment without Content-Length header", replace(fragmentHeaders("bytes 0-0/1", 1), "Content-Length", "\x00"), "z", nil, bad},
		{"fragment gzip", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", "gzip"}), "z", nil, bad},
		{"fragment deflate", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", "deflate"}), "z", nil, bad},
		{"fragment identity plus gzip", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", "identity, gzip"}), "z", nil, bad},
		{"fragment empty encoding", with(fragmentHeaders("bytes 0-0/1", 1), hdr{"Content-Encoding", ""}), "z", nil, bad},

		// Content-Range.
		{"fragment without Content-Range", replace(fragmentHeaders("", 1), "Content-Range", "\x00"), "z", nil, bad},
		{"fragment with empty Content-Range", fragmentHeaders("", 1), "z", nil, bad},
		{"fragment with equals Content-Range", fragmentHeaders("bytes=0-0/1", 1), "z", nil, bad},
		{"fragment with last beyond total", fragmentHeaders("bytes 0-1/1", 2), "zz", nil, bad},
		{"fragment with first after last", fragmentHeaders("bytes 2-0/5", 0), "", nil, bad},
		{"fragment with unknown total", fragmentHeaders("bytes 0-0/*", 1), "z", nil, bad},
		{"fragment body shorter than range", fragmentHeaders("bytes 0-9/10", 9), strings.Repeat("z", 9), nil, bad},
		{"fragment body longer than range", fragmentHeaders("bytes 0-9/10", 11), strings.Repeat("z", 11), nil, bad},
		{"fragment zero-zero form with a byte", fragmentHeaders("bytes 0-0/0", 1), "z", nil, bad},
		{"fragment empty-file form with a byte", fragmentHeaders("bytes 0--1/0", 1), "z", nil, bad},

		// Create-Session protocols.
		{"create-session without protocols", replace(createHeaders, HeaderSupportedProtocols, "\x00"), "", nil, bad},
		{"create-session with empty protocols", replace(createHeaders, HeaderSupportedProtocols, ""), "", nil, bad},
		{"create-session with non-GUID protocol", replace(createHeaders, HeaderSupportedProtocols, "BITS-1.5"), "", nil, bad},
		{"create-session with bare GUID", replace(createHeaders, HeaderSupportedProtocols, UploadProtocol[1:37]), "", nil, bad},

		// Session ids: an unusable id is answered as an unknown session.
		{"fragment without session id", replace(fragmentHeaders("bytes 0-0/1", 1), HeaderSessionID, "\x00"), "z", nil, noSession},
		{"fragment with empty session id", replace(fragmentHeaders("bytes 0-0/1", 1), HeaderSessionID, ""), "z", nil, noSession},
		{"fragment with bare session id", replace(fragmentHeaders("bytes 0-0/1", 1), HeaderSessionID, wireSessionID[1:37]), "z", nil, noSession},
		{"fragment with traversal session id", replace(fragmentHeaders("bytes 0-0/1", 1), HeaderSessionID, "{../../../../etc/passwd}"), "z", nil, noSession},
		{"close-session without session id", replace(closeHeaders, HeaderSessionID, "\x00"), "", nil, noSession},
		{"close-session with malformed session id", replace(closeHeaders, HeaderSessionID, "{A0FF5911-4144-45B3-BF27-27AFC8EC8A6}"), "", nil, noSession},
		{"cancel-session without session id", replace(cancelHeaders, HeaderSessionID, "\x00"), "", nil, noSession},
		{"cancel-session with malformed session id", replace(cancelHeaders, HeaderSessionID, "session-1"), "", nil, noSession},
	}
	for _, style := range []headerStyle{styleExact, styleCanonical} {
		for _, tc := range tests {
			t.Run(style.String()+"/"+tc.name, func(t *testing.T) {
				req := newBITSRequest(style, tc.headers, tc.body, tc.mutate)
				p, perr := ParseRequest(req)
				if perr == nil {
					t.Fatalf("ParseRequest = %+v, want status %d code %v", p, tc.want.status, tc.want.code)
				}
				if p != nil {
					t.Fatalf("ParseRequest returned packet %+v together with error %v", p, perr)
				}
				if perr.Status != tc.want.status || perr.Code != tc.want.code || perr.Context != ContextRemoteFile {
					t.Fatalf("ParseRequest error = {Status:%d Code:%v Context:%v}, want {Status:%d Code:%v Context:0x5} (%s)",
						perr.Status, perr.Code, perr.Context, tc.want.status, tc.want.code, perr.Msg)
				}
				if perr.Msg == "" {
					t.Fatal("ParseRequest error has an empty log message")
				}
			})
		}
	}
}

// TestParseRequestHeaderLimitBoundary checks that a BITS header value of
// exactly MaxHeaderValueLength bytes is accepted and one more byte is not.
func TestParseRequestHeaderLimitBoundary(t *testing.T) {
	if MaxHeaderValueLength != 4096 {
		t.Fatalf("MaxHeaderValueLength = %d, want 4096", MaxHeaderValueLength)
	}
	// The padding is optional whitespace, so the value is valid apart from
	// its size.
	for _, n := range []int{MaxHeaderValueLength, MaxHeaderValueLength + 1} {
		v := wireSessionID + strings.Repeat(" ", n-len(wireSessionID))
		req := newBITSRequest(styleExact, replace(closeHeaders, HeaderSessionID, v), "", nil)
		p, perr := ParseRequest(req)
		if n <= MaxHeaderValueLength {
			if perr != nil || p.SessionID != canonSessionID {
				t.Errorf("session id of %d bytes: ParseRequest = %+v, %v; want the session", n, p, perr)
			}
		} else if perr == nil || perr.Status != http.StatusBadRequest || perr.Code != EInvalidArg {
			t.Errorf("session id of %d bytes: ParseRequest = %+v, %v; want 400 E_INVALIDARG", n, p, perr)
		}
	}
}

// TestParseRequestBodilessWithoutContentLength checks the deliberate
// leniency documented on ParseRequest: HTTP/1.1 packets without a body are
// accepted without a Content-Length header, because proxies drop
// "Content-Length: 0" from BITS_POST requests, while a body that arrives
// without a declared length is refused.
func TestParseRequestBodilessWithoutContentLength(t *testing.T) {
	for _, hs := range [][]hdr{pingHeaders, createHeaders, closeHeaders, cancelHeaders} {
		req := newBITSRequest(styleExact, replace(hs, "Content-Length", "\x00"), "", nil)
		if p, perr := ParseRequest(req); perr != nil {
			t.Errorf("%s without Content-Length: %v, want it accepted", hs[0].value, perr)
		} else if p.Type.String() == "" {
			t.Errorf("%s without Content-Length: no packet type", hs[0].value)
		}
	}
}

// TestParseRequestMixedSpellings checks that a header map carrying both
// spellings is read consistently, preferring the canonical key that
// net/http produces.
func TestParseRequestMixedSpellings(t *testing.T) {
	req := newBITSRequest(styleExact, closeHeaders, "", nil)
	req.Header.Set(HeaderSessionID, string(canonSessionID))
	req.Header[HeaderSessionID] = []string{"garbage"}
	p, perr := ParseRequest(req)
	if perr != nil || p.SessionID != canonSessionID {
		t.Fatalf("ParseRequest = %+v, %v; want session %q from the canonical key", p, perr, canonSessionID)
	}
}

// TestParseRequestOverRealServer sends the packets of a complete upload,
// byte for byte as in the MC-BUP capture, to a net/http server and checks
// what ParseRequest makes of the server-parsed requests. It also covers
// the framing cases only a real server produces: chunked bodies and a
// missing Content-Length.
func TestParseRequestOverRealServer(t *testing.T) {
	type result struct {
		p    *Packet
		perr *Error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, perr := ParseRequest(r)
		results <- result{p, perr}
		io.Copy(io.Discard, r.Body)
		if perr != nil {
			WriteAck(w, ErrorAck(perr))
			return
		}
		WriteAck(w, Ack{})
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)

	body := strings.Repeat("r", 4892)
	tests := []struct {
		name       string
		raw        string
		want       *Packet
		wantStatus int
		wantCode   HRESULT
	}{
		{
			name: "ping",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nAccept: */*\r\nBITS-Packet-Type: Ping\r\n" +
				"User-Agent: Microsoft BITS/6.7\r\nHost: frankcao8\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
			want: &Packet{Type: PacketPing},
		},
		{
			name: "create-session",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nAccept: */*\r\nBITS-Packet-Type: Create-Session\r\n" +
				"BITS-Supported-Protocols: {7df0354d-249b-430f-820d-3d2a9bef4931}\r\nContent-Name: rfc2119.txt\r\n" +
				"User-Agent: Microsoft BITS/6.7\r\nHost: frankcao8\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
			want: &Packet{Type: PacketCreateSession, Protocols: []string{UploadProtocol}},
		},
		{
			name: "fragment",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nAccept: */*\r\nBITS-Packet-Type: Fragment\r\n" +
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\nContent-Name: rfc2119.txt\r\n" +
				"Content-Range: bytes 0-4891/4892\r\nUser-Agent: Microsoft BITS/6.7\r\nHost: frankcao8\r\n" +
				"Content-Length: 4892\r\nConnection: Keep-Alive\r\n\r\n" + body,
			want: &Packet{Type: PacketFragment, SessionID: canonSessionID, Range: Range{0, 4891, 4892}, ContentLength: 4892},
		},
		{
			name: "close-session",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nAccept: */*\r\nBITS-Packet-Type: Close-Session\r\n" +
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\nContent-Name: rfc2119.txt\r\n" +
				"User-Agent: Microsoft BITS/6.7\r\nHost: frankcao8\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
			want: &Packet{Type: PacketCloseSession, SessionID: canonSessionID},
		},
		{
			name: "ping with chunked body",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nHost: frankcao8\r\n" +
				"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			wantStatus: http.StatusBadRequest, wantCode: EInvalidArg,
		},
		{
			name: "fragment with chunked body",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nBITS-Packet-Type: Fragment\r\n" +
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\nContent-Range: bytes 0-2/3\r\n" +
				"Host: frankcao8\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			wantStatus: http.StatusBadRequest, wantCode: EInvalidArg,
		},
		{
			name: "fragment with a body but without Content-Length",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nBITS-Packet-Type: Fragment\r\n" +
				"BITS-Session-Id: {A0FF5911-4144-45B3-BF27-27AFC8EC8A67}\r\nContent-Range: bytes 0-2/3\r\n" +
				"Host: frankcao8\r\n\r\nabc",
			wantStatus: http.StatusBadRequest, wantCode: EInvalidArg,
		},
		{
			name: "cancel-session with unknown-format id",
			raw: "BITS_POST /upload/rfc2119.txt HTTP/1.1\r\nBITS-Packet-Type: Cancel-Session\r\n" +
				"BITS-Session-Id: 42\r\nHost: frankcao8\r\nContent-Length: 0\r\n\r\n",
			wantStatus: http.StatusInternalServerError, wantCode: BGSessionNotFound,
		},
	}
	for _, tc := range tests {
		if _, err := io.WriteString(conn, tc.raw); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: read response: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()

		var res result
		select {
		case res = <-results:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: handler did not run", tc.name)
		}
		if tc.want != nil {
			if res.perr != nil {
				t.Errorf("%s: ParseRequest error = %v, want %+v", tc.name, res.perr, *tc.want)
			} else if !reflect.DeepEqual(*res.p, *tc.want) {
				t.Errorf("%s: ParseRequest = %+v, want %+v", tc.name, *res.p, *tc.want)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: response status %d, want 200", tc.name, resp.StatusCode)
			}
			continue
		}
		if res.perr == nil {
			t.Errorf("%s: ParseRequest = %+v, want status %d", tc.name, res.p, tc.wantStatus)
			continue
		}
		if res.perr.Status != tc.wantStatus || res.perr.Code != tc.wantCode || res.perr.Context != ContextRemoteFile {
			t.Errorf("%s: ParseRequest error = %+v, want status %d code %v context 0x5", tc.name, res.perr, tc.wantStatus, tc.wantCode)
		}
		if resp.StatusCode != tc.wantStatus {
			t.Errorf("%s: response status %d, want %d", tc.name, resp.StatusCode, tc.wantStatus)
		}
		if got, want := resp.Header.Get(HeaderErrorCode), tc.wantCode.String(); got != want {
			t.Errorf("%s: %s = %q, want %q", tc.name, HeaderErrorCode, got, want)
		}
	}
}

// TestParseRequestEveryTypeBothStyles checks, for each request packet type
// spelled in several casings, that both header spellings give the same
// type.
func TestParseRequestEveryTypeBothStyles(t *testing.T) {
	cases := []struct {
		base  []hdr
		body  string
		want  PacketType
		names []string
	}{
		{pingHeaders, "", PacketPing, []string{"Ping", "ping", "PING", " Ping "}},
		{createHeaders, "", PacketCreateSession, []string{"Create-Session", "CREATE-SESSION", "create-session"}},
		{fragmentHeaders("bytes 0-0/1", 1), "z", PacketFragment, []string{"Fragment", "fragment", "FRAGMENT"}},
		{closeHeaders, "", PacketCloseSession, []string{"Close-Session", "close-session", "CLOSE-SESSION"}},
		{cancelHeaders, "", PacketCancelSession, []string{"Cancel-Session", "cancel-session", "CANCEL-SESSION"}},
	}
	for _, c := range cases {
		for _, name := range c.names {
			for _, style := range []headerStyle{styleExact, styleCanonical} {
				req := newBITSRequest(style, replace(c.base, HeaderPacketType, name), c.body, nil)
				p, perr := ParseRequest(req)
				if perr != nil || p.Type != c.want {
					t.Errorf("%s %q: ParseRequest = %+v, %v; want type %v", style, name, p, perr, c.want)
				}
			}
		}
	}
}

// ExampleError shows the status, HRESULT and context ParseRequest returns
// for an Ack sent as a request.
func ExampleError() {
	req := httptest.NewRequest(Method, "/upload/file.bin", nil)
	req.Header.Set(HeaderPacketType, "Ack")
	_, perr := ParseRequest(req)
	fmt.Println(perr.Status, perr.Code, perr.Context)
	// Output: 400 0x80070057 0x5
}

// TestParseRequestDuplicateHeaders refuses a BITS header, Content-Range or
// Content-Name sent twice, even with equal values: a proxy in front that
// reads another value than the server would disagree about the packet.
func TestParseRequestDuplicateHeaders(t *testing.T) {
	frag := fragmentHeaders("bytes 0-4891/4892", 4892)
	for _, tc := range []struct {
		headers []hdr
		body    int
		dup     string
	}{
		{pingHeaders, 0, HeaderPacketType},
		{closeHeaders, 0, HeaderSessionID},
		{createHeaders, 0, HeaderSupportedProtocols},
		{frag, 4892, "Content-Range"},
		{frag, 4892, "Content-Name"},
	} {
		req := newBITSRequest(styleCanonical, tc.headers, strings.Repeat("x", tc.body), func(r *http.Request) { r.ContentLength = int64(tc.body) })
		if _, perr := ParseRequest(req); perr != nil {
			t.Fatalf("packet before duplicating %s: %v", tc.dup, perr)
		}
		req.Header.Add(tc.dup, req.Header.Get(tc.dup))
		_, perr := ParseRequest(req)
		if perr == nil || perr.Status != http.StatusBadRequest || perr.Code != EInvalidArg {
			t.Errorf("packet with %s twice: %v, want 400 E_INVALIDARG", tc.dup, perr)
		}
	}
}
