package caddymodule_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// opsPlaceholderSite copies each placeholder into a response header when
// the Ack is written.
const opsPlaceholderSite = `header {
		>X-B-Session "{http.bits_upload.session_id}"
		>X-B-Type "{http.bits_upload.packet_type}"
		>X-B-Received "{http.bits_upload.received}"
		>X-B-Total "{http.bits_upload.total}"
		>X-B-Dest "{http.bits_upload.destination}"
	}`

// opsUnset is what a header shows for a placeholder that was not set.
func opsUnset(name string) string { return "{http.bits_upload." + name + "}" }

// opsPlaceholders checks the placeholder headers of an Ack.
func opsPlaceholders(t *testing.T, what string, a *client.Ack, session, packetType, received, total, dest string) {
	t.Helper()
	for _, h := range []struct{ name, got, want string }{
		{"session_id", a.Header.Get("X-B-Session"), session},
		{"packet_type", a.Header.Get("X-B-Type"), packetType},
		{"received", a.Header.Get("X-B-Received"), received},
		{"total", a.Header.Get("X-B-Total"), total},
		{"destination", a.Header.Get("X-B-Dest"), dest},
	} {
		if h.got != h.want {
			t.Errorf("%s: {http.bits_upload.%s} = %q, want %q", what, h.name, h.got, h.want)
		}
	}
}

// TestOpsPlaceholders checks the http.bits_upload.* placeholders on the
// Acks of a whole session, and of requests that fail.
func TestOpsPlaceholders(t *testing.T) {
	srv := opsServer(t, "", opsPlaceholderSite)
	srv.load()
	c := newClient()
	ctx := context.Background()
	url := srv.URL("/ph/dir/file.bin")
	dest := filepath.Join(srv.Root, "ph", "dir", "file.bin")
	data := randomBytes(t, 3000)

	a := send(t, c, url, &client.Packet{Type: protocol.PacketPing})
	checkAck(t, a, ack{status: 200})
	opsPlaceholders(t, "Ping", a, opsUnset("session_id"), "Ping", opsUnset("received"), opsUnset("total"), opsUnset("destination"))

	s, a, err := c.CreateSession(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	opsPlaceholders(t, "Create-Session", a, s.WireID, "Create-Session", "0", opsUnset("total"), dest)

	a = fragment(t, s, data, 0, 999)
	checkAck(t, a, ack{status: 200, headers: received("1000")})
	opsPlaceholders(t, "first fragment", a, s.WireID, "Fragment", "1000", "3000", dest)

	a = fragment(t, s, data, 2000, 2999)
	checkAck(t, a, ack{status: 416, headers: received("1000")})
	opsPlaceholders(t, "fragment after a gap", a, s.WireID, "Fragment", "1000", "3000", dest)

	a = fragment(t, s, data, 1000, 2999)
	checkAck(t, a, ack{status: 200, headers: received("3000")})
	opsPlaceholders(t, "final fragment", a, s.WireID, "Fragment", "3000", "3000", dest)
	assertFile(t, dest, data)

	a, err = s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	opsPlaceholders(t, "Close-Session", a, s.WireID, "Close-Session", "3000", "3000", dest)

	// A Cancel-Session for a session already gone: the id is known from
	// the packet, nothing else.
	a, err = s.Cancel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	opsPlaceholders(t, "repeated Cancel-Session", a, s.WireID, "Cancel-Session", opsUnset("received"), opsUnset("total"), opsUnset("destination"))

	// A fragment for an unknown session, id sent in lower case: the
	// placeholder has the canonical wire form.
	const ghost = "{6b29fc40-ca47-1067-b31d-00dd010662da}"
	a, err = c.ResumeSession(url, ghost).Fragment(ctx, data[:10], 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 500, code: protocol.BGSessionNotFound})
	opsPlaceholders(t, "unknown session", a, "{6B29FC40-CA47-1067-B31D-00DD010662DA}", "Fragment", opsUnset("received"), opsUnset("total"), opsUnset("destination"))

	// A Create-Session refused for its destination still names it.
	if err := opsWriteFile(filepath.Join(srv.Root, "ph", "exists.bin")); err != nil {
		t.Fatal(err)
	}
	a = send(t, c, srv.URL("/ph/exists.bin"), &client.Packet{
		Type:   protocol.PacketCreateSession,
		Header: http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}},
	})
	checkAck(t, a, ack{status: 403, code: protocol.EAccessDenied})
	opsPlaceholders(t, "refused Create-Session", a, opsUnset("session_id"), "Create-Session", opsUnset("received"), opsUnset("total"),
		filepath.Join(srv.Root, "ph", "exists.bin"))
}

// opsWriteFile creates path, and its parent directories, with a few bytes.
func opsWriteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("exists"), 0o644)
}
