package caddymodule_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestPacketErrors sends malformed packets of every kind.
func TestPacketErrors(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	url := srv.URL("/target.bin")
	s := create(t, c, url)
	protos := http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}}
	unknown := "{00000000-0000-4000-8000-000000000000}"

	for _, tc := range []struct {
		name string
		p    client.Packet
		want ack
	}{
		{"ping with body", client.Packet{Type: protocol.PacketPing, Body: []byte("x")}, ack{status: 400, code: protocol.EInvalidArg}},
		{"create with body", client.Packet{Type: protocol.PacketCreateSession, Header: protos, Body: []byte("x")}, ack{status: 400, code: protocol.EInvalidArg}},
		{"close with body", client.Packet{Type: protocol.PacketCloseSession, SessionID: s.WireID, Body: []byte("x")}, ack{status: 400, code: protocol.EInvalidArg}},
		{"cancel with body", client.Packet{Type: protocol.PacketCancelSession, SessionID: s.WireID, Body: []byte("x")}, ack{status: 400, code: protocol.EInvalidArg}},
		{"create without protocols", client.Packet{Type: protocol.PacketCreateSession}, ack{status: 400, code: protocol.EInvalidArg}},
		{"create with unknown protocol", client.Packet{Type: protocol.PacketCreateSession,
			Header: http.Header{protocol.HeaderSupportedProtocols: {"{11111111-2222-3333-4444-555555555555}"}}}, ack{status: 400, code: protocol.EInvalidArg}},
		{"create with malformed protocol list", client.Packet{Type: protocol.PacketCreateSession,
			Header: http.Header{protocol.HeaderSupportedProtocols: {"7df0354d-249b-430f-820d-3d2a9bef4931"}}}, ack{status: 400, code: protocol.EInvalidArg}},
		{"unknown packet type", client.Packet{Type: protocol.PacketUnknown, Header: http.Header{protocol.HeaderPacketType: {"Upload"}}}, ack{status: 400, code: protocol.EInvalidArg}},
		{"ack as request", client.Packet{Type: protocol.PacketAck}, ack{status: 400, code: protocol.EInvalidArg}},
		{"missing packet type", client.Packet{Type: protocol.PacketPing, Header: http.Header{protocol.HeaderPacketType: nil}}, ack{status: 400, code: protocol.EInvalidArg}},
		{"header over 4 KiB", client.Packet{Type: protocol.PacketCreateSession,
			Header: http.Header{protocol.HeaderSupportedProtocols: {strings.Repeat(protocol.UploadProtocol+" ", 110)}}}, ack{status: 400, code: protocol.EInvalidArg}},
		{"fragment of unknown session", client.Packet{Type: protocol.PacketFragment, SessionID: unknown,
			Header: http.Header{"Content-Range": {"bytes 0-0/1"}}, Body: []byte("x")}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"fragment with malformed session id", client.Packet{Type: protocol.PacketFragment, SessionID: "../../etc/passwd",
			Header: http.Header{"Content-Range": {"bytes 0-0/1"}}, Body: []byte("x")}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"fragment with bare guid", client.Packet{Type: protocol.PacketFragment, SessionID: strings.Trim(s.WireID, "{}"),
			Header: http.Header{"Content-Range": {"bytes 0-0/1"}}, Body: []byte("x")}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"fragment without session id", client.Packet{Type: protocol.PacketFragment,
			Header: http.Header{"Content-Range": {"bytes 0-0/1"}}, Body: []byte("x")}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"close of unknown session", client.Packet{Type: protocol.PacketCloseSession, SessionID: unknown}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"cancel of unknown session", client.Packet{Type: protocol.PacketCancelSession, SessionID: unknown}, ack{status: 500, code: protocol.BGSessionNotFound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			checkAck(t, send(t, c, url, &p), tc.want)
		})
	}
	// Packet types and session ids are case-insensitive.
	a := send(t, c, url, &client.Packet{Type: protocol.PacketPing, Header: http.Header{protocol.HeaderPacketType: {"PING"}}})
	checkAck(t, a, ack{status: 200})
	a = send(t, c, url, &client.Packet{Type: protocol.PacketFragment, SessionID: strings.ToLower(s.WireID),
		Header: http.Header{protocol.HeaderPacketType: {"fragment"}, "Content-Range": {"Bytes 0-2/3"}}, Body: []byte("abc")})
	checkAck(t, a, ack{status: 200, headers: received("3")})
}

// TestRawFramingErrors sends fragments whose length is not declared, and
// checks that a rejected fragment with an unread body does not desync the
// kept-alive connection.
func TestRawFramingErrors(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	url := srv.URL("/raw.bin")
	s := create(t, c, url)
	head := "BITS_POST /raw.bin HTTP/1.1\r\nHost: " + srv.Addr() + "\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: " + s.WireID + "\r\n"

	// Chunked fragment.
	out := rawRequest(t, srv.Addr(), head+"Content-Range: bytes 0-4/5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "BITS-Error-Code: 0x80070057") || !strings.Contains(out, "BITS-Error-Context: 0x5") {
		t.Fatalf("chunked fragment answered:\n%s", out)
	}
	// Fragment without Content-Length: its body bytes cannot be framed.
	out = rawRequest(t, srv.Addr(), head+"Content-Range: bytes 0-4/5\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "BITS-Error-Code: 0x80070057") {
		t.Fatalf("fragment without Content-Length answered:\n%s", out)
	}
	// A rejected fragment (its range disagrees with its length) whose body
	// is a complete request in itself, then a Ping on the same connection:
	// the body must be skipped, not parsed as a request, and the Ping
	// answered as a Ping.
	ping := "BITS_POST /raw.bin HTTP/1.1\r\nHost: " + srv.Addr() + "\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n"
	smuggled := "BITS_POST /raw.bin HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Cancel-Session\r\nBITS-Session-Id: " + s.WireID + "\r\nContent-Length: 0\r\n\r\n"
	for _, pad := range []int{0, 512 << 10} {
		body := smuggled + strings.Repeat("x", pad)
		req := head + "Content-Range: bytes 0-4/5\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body + ping + "Connection: close\r\n\r\n"
		out := rawRequest(t, srv.Addr(), req)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
			t.Fatalf("pad %d: first answer is not 400:\n%.600s", pad, out)
		}
		switch n := countResponses(out); {
		case n == 2:
			second := out[strings.LastIndex(out, "HTTP/1.1 "):]
			if !strings.HasPrefix(second, "HTTP/1.1 200 ") || strings.Contains(second, "BITS-Session-Id") {
				t.Fatalf("pad %d: second answer is not the Ping's:\n%s", pad, out)
			}
		case n == 1 && pad > 0 && strings.Contains(out, "Connection: close"):
			// A large unread body: the server closed the connection instead.
		default:
			t.Fatalf("pad %d: %d responses:\n%.2000s", pad, n, out)
		}
	}
	// The smuggled Cancel-Session was never executed.
	checkAck(t, fragment(t, s, []byte("hello"), 0, 4), ack{status: 200, headers: received("5")})
}
