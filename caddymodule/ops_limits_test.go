package caddymodule_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// opsTooMany is the Ack of a Create-Session beyond max_sessions_per_user.
var opsTooMany = ack{status: 503, code: 0x80070045}

// opsForbidden is the Ack of a packet for another user's session.
var opsForbidden = ack{status: 403, code: protocol.EAccessDenied}

// opsUser returns a BITS client sending basic credentials.
func opsUser(name string) *client.Client {
	c := newClient()
	c.Username, c.Password = name, name+"-secret"
	return c
}

// opsCreateAck sends a Create-Session and returns its Ack, whatever it
// is.
func opsCreateAck(t *testing.T, c *client.Client, url string) *client.Ack {
	t.Helper()
	return send(t, c, url, &client.Packet{
		Type:   protocol.PacketCreateSession,
		Header: http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}},
	})
}

// opsCreateAckWith is opsCreateAck with extra request headers.
func opsCreateAckWith(t *testing.T, c *client.Client, url string, extra http.Header) *client.Ack {
	t.Helper()
	hdr := http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}}
	for k, v := range extra {
		hdr[k] = v
	}
	return send(t, c, url, &client.Packet{Type: protocol.PacketCreateSession, Header: hdr})
}

// opsAck sends a packet of a session and returns its Ack.
func opsAck(t *testing.T, op func(context.Context) (*client.Ack, error)) *client.Ack {
	t.Helper()
	a, err := op(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestOpsSessionLimitPerUser checks max_sessions_per_user with basic_auth:
// each user has their own quota, finished sessions count until closed, and
// no user can drive another's session.
func TestOpsSessionLimitPerUser(t *testing.T) {
	srv := opsServer(t, "max_sessions_per_user 2", opsBasicAuth(t, "alice", "alice-secret", "bob", "bob-secret"))
	srv.load()
	alice, bob := opsUser("alice"), opsUser("bob")

	// Without credentials basic_auth answers before bits_upload.
	if a := opsCreateAck(t, newClient(), srv.URL("/lim/anon.bin")); a.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous Create-Session: status %d, want 401", a.Status)
	}

	a1 := create(t, alice, srv.URL("/lim/a1.bin"))
	a2 := create(t, alice, srv.URL("/lim/a2.bin"))
	checkAck(t, opsCreateAck(t, alice, srv.URL("/lim/a3.bin")), opsTooMany)
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 2 {
		t.Fatalf("session directories after a refused Create-Session: %v, want 2", dirs)
	}
	b1 := create(t, bob, srv.URL("/lim/b1.bin"))
	b2 := create(t, bob, srv.URL("/lim/b2.bin"))
	checkAck(t, opsCreateAck(t, bob, srv.URL("/lim/b3.bin")), opsTooMany)

	// The admin API shows who owns what.
	status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions")
	var list []opsSessionInfo
	opsDecode(t, body, &list)
	owners := map[string]string{}
	for _, s := range list {
		owners[s.ID] = s.User
	}
	if status != http.StatusOK || owners[a1.WireID] != "alice" || owners[a2.WireID] != "alice" || owners[b1.WireID] != "bob" || owners[b2.WireID] != "bob" {
		t.Errorf("owners in the admin API: %v (status %d)", owners, status)
	}

	// Bob cannot drive alice's session: not write to it, nor close or
	// cancel it.
	data := randomBytes(t, 2000)
	checkAck(t, fragment(t, a1, data, 0, 999), ack{status: 200, headers: received("1000")})
	forged := randomBytes(t, 2000)
	asBob := bob.ResumeSession(a1.URL, a1.WireID)
	checkAck(t, fragment(t, asBob, forged, 1000, 1999), opsForbidden)
	checkAck(t, fragment(t, asBob, forged, 0, 1999), opsForbidden)
	checkAck(t, opsAck(t, asBob.Close), opsForbidden)
	checkAck(t, opsAck(t, asBob.Cancel), opsForbidden)
	if !slices.Contains(sessionDirs(t, srv.SessionDir), a1.ID.Bare()) {
		t.Fatal("bob's packets removed alice's session")
	}
	// Alice's session is intact: she continues where she was, and her
	// bytes, not bob's, land at the destination.
	checkAck(t, fragment(t, a1, data, 1000, 1999), ack{status: 200, headers: received("2000")})
	assertFile(t, filepath.Join(srv.Root, "lim", "a1.bin"), data)

	// A finished session still counts until it is closed.
	checkAck(t, opsCreateAck(t, alice, srv.URL("/lim/a3.bin")), opsTooMany)
	checkAck(t, opsAck(t, asBob.Close), opsForbidden)
	checkAck(t, opsAck(t, a1.Close), ack{status: 200})
	a3 := create(t, alice, srv.URL("/lim/a3.bin"))
	checkAck(t, opsCreateAck(t, alice, srv.URL("/lim/a4.bin")), opsTooMany)

	// Cancelling frees a slot too; bob's quota was never touched by alice.
	checkAck(t, opsAck(t, a2.Cancel), ack{status: 200})
	create(t, alice, srv.URL("/lim/a4.bin"))
	checkAck(t, opsAck(t, b2.Cancel), ack{status: 200})
	create(t, bob, srv.URL("/lim/b3.bin"))
	checkAck(t, opsCreateAck(t, bob, srv.URL("/lim/b4.bin")), opsTooMany)

	// Alice cannot touch bob's session either.
	asAlice := alice.ResumeSession(b1.URL, b1.WireID)
	checkAck(t, opsAck(t, asAlice.Cancel), opsForbidden)
	checkAck(t, fragment(t, asAlice, data, 0, 999), opsForbidden)
	if !slices.Contains(sessionDirs(t, srv.SessionDir), b1.ID.Bare()) || !slices.Contains(sessionDirs(t, srv.SessionDir), a3.ID.Bare()) {
		t.Fatalf("sessions missing: %v", sessionDirs(t, srv.SessionDir))
	}
}

// TestOpsSessionLimitPerIP checks max_sessions_per_user without
// authentication: the quota is per client address, and sessions are bound
// only by their id.
func TestOpsSessionLimitPerIP(t *testing.T) {
	srv := newServer(t, "max_sessions_per_user 2")
	local := newClient()
	// A second client whose connections come from 127.0.0.2.
	other := newClient()
	other.HTTPClient = &http.Client{Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}).DialContext,
	}}

	s1 := create(t, local, srv.URL("/ip/1.bin"))
	s2 := create(t, local, srv.URL("/ip/2.bin"))
	checkAck(t, opsCreateAck(t, local, srv.URL("/ip/3.bin")), opsTooMany)
	o1 := create(t, other, srv.URL("/ip/o1.bin"))
	status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+o1.ID.Bare())
	var info opsSessionInfo
	opsDecode(t, body, &info)
	if status != http.StatusOK || info.Client != "127.0.0.2" || info.User != "" {
		t.Fatalf("session from 127.0.0.2: status %d, client %q, user %q", status, info.Client, info.User)
	}
	create(t, other, srv.URL("/ip/o2.bin"))
	checkAck(t, opsCreateAck(t, other, srv.URL("/ip/o3.bin")), opsTooMany)

	// Without authentication a session is bound to its id alone: another
	// address may send its fragments (as a client whose address changed
	// does).
	data := randomBytes(t, 100)
	checkAck(t, fragment(t, other.ResumeSession(s1.URL, s1.WireID), data, 0, 49), ack{status: 200, headers: received("50")})
	checkAck(t, fragment(t, s1, data, 50, 99), ack{status: 200, headers: received("100")})
	assertFile(t, filepath.Join(srv.Root, "ip", "1.bin"), data)

	// The quota stays with the address that created the session, and a
	// finished session counts until closed.
	checkAck(t, opsCreateAck(t, local, srv.URL("/ip/3.bin")), opsTooMany)
	checkAck(t, opsAck(t, s1.Close), ack{status: 200})
	create(t, local, srv.URL("/ip/3.bin"))
	checkAck(t, opsCreateAck(t, local, srv.URL("/ip/4.bin")), opsTooMany)
	checkAck(t, opsAck(t, s2.Cancel), ack{status: 200})
	create(t, local, srv.URL("/ip/4.bin"))
	checkAck(t, opsCreateAck(t, other, srv.URL("/ip/o3.bin")), opsTooMany)
}

// TestOpsSessionLimitReload checks that the limit applies to sessions
// created under an earlier config: the count lives in the session store.
func TestOpsSessionLimitReload(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	for i := range 3 {
		create(t, c, srv.URL("/rl/"+itoa(i)+".bin"))
	}
	srv.Options = "max_sessions_per_user 3"
	srv.load()
	c.CloseIdleConnections()
	checkAck(t, opsCreateAck(t, c, srv.URL("/rl/x.bin")), opsTooMany)
	srv.Options = "max_sessions_per_user 4"
	srv.load()
	c.CloseIdleConnections()
	create(t, c, srv.URL("/rl/x.bin"))
	checkAck(t, opsCreateAck(t, c, srv.URL("/rl/y.bin")), opsTooMany)
}

// TestOpsReplyDownloadBoundToUser checks that the reply of an upload-reply
// session created by one user is not served to another.
func TestOpsReplyDownloadBoundToUser(t *testing.T) {
	app := newOpsApp(t)
	srv := opsServer(t, "notify "+app.srv.URL+"/hook", opsBasicAuth(t, "alice", "alice-secret", "bob", "bob-secret"))
	srv.load()
	alice := opsUser("alice")
	data := randomBytes(t, 100)
	s := create(t, alice, srv.URL("/reply/a.bin"))
	a := fragment(t, s, data, 0, 99)
	checkAck(t, a, ack{status: 200, headers: received("100")})
	if a.ReplyURL == "" {
		t.Fatal("no BITS-Reply-URL")
	}
	get := func(user string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, a.ReplyURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(user, user+"-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, body := get("alice"); status != http.StatusOK || body != "reply to 1" {
		t.Fatalf("alice's reply download: status %d, body %q", status, body)
	}
	if status, body := get("bob"); status != http.StatusForbidden {
		t.Fatalf("bob downloads alice's reply: status %d, body %q; want 403 (serveReply does not check the session's user)", status, body)
	}
}

// TestOpsForwardAuthBinding checks the forward_auth recipe of
// docs/security.md: forward_auth itself does not set {http.auth.user.id},
// so the user the auth service names in Remote-User is mapped onto it;
// sessions are then bound to that user and counted against them.
func TestOpsForwardAuthBinding(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != user+"-secret" || (user != "alice" && user != "bob" && user != "carol") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// carol is let in without being named.
		if user != "carol" {
			w.Header().Set("Remote-User", user)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(auth.Close)
	srv := opsServer(t, "max_sessions_per_user 1", `forward_auth `+strings.TrimPrefix(auth.URL, "http://")+` {
		uri /auth
		copy_headers Remote-User
	}
	map {http.request.header.Remote-User} {http.auth.user.id} {
		~^(.+)$ "${1}"
	}`)
	srv.load()
	alice, bob := opsUser("alice"), opsUser("bob")

	if a := opsCreateAck(t, newClient(), srv.URL("/fa/anon.bin")); a.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous Create-Session: status %d, want 401", a.Status)
	}
	// A client cannot name itself: forward_auth drops the Remote-User it
	// sends, and an answer without one leaves the session unbound.
	spoofed := opsCreateAckWith(t, opsUser("carol"), srv.URL("/fa/spoof.bin"), http.Header{"Remote-User": {"alice"}})
	checkAck(t, spoofed, ack{status: 200})
	status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+spoofed.SessionID)
	var info opsSessionInfo
	opsDecode(t, body, &info)
	if status != http.StatusOK || info.User != "" {
		t.Fatalf("session created with a forged Remote-User: status %d, user %q; want no user", status, info.User)
	}
	if status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+spoofed.SessionID); status != http.StatusOK {
		t.Fatalf("DELETE: status %d: %s", status, body)
	}

	s := create(t, alice, srv.URL("/fa/a.bin"))
	status, body = opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+s.ID.Bare())
	info = opsSessionInfo{}
	opsDecode(t, body, &info)
	if status != http.StatusOK || info.User != "alice" {
		t.Fatalf("session of alice: status %d, user %q; want alice", status, info.User)
	}
	checkAck(t, opsCreateAck(t, alice, srv.URL("/fa/b.bin")), opsTooMany)
	b := create(t, bob, srv.URL("/fa/b.bin"))
	data := randomBytes(t, 100)
	asBob := bob.ResumeSession(s.URL, s.WireID)
	checkAck(t, fragment(t, asBob, data, 0, 99), opsForbidden)
	checkAck(t, opsAck(t, asBob.Cancel), opsForbidden)
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
	assertFile(t, filepath.Join(srv.Root, "fa", "a.bin"), data)
	checkAck(t, opsAck(t, b.Cancel), ack{status: 200})

	// Without the map, forward_auth authenticates but sets no user: the
	// session is bound to nothing but its id, and counted per address.
	srv.Site = `forward_auth ` + strings.TrimPrefix(auth.URL, "http://") + ` {
		uri /auth
		copy_headers Remote-User
	}`
	srv.load()
	alice.CloseIdleConnections()
	bob.CloseIdleConnections()
	s = create(t, alice, srv.URL("/fa/c.bin"))
	status, body = opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+s.ID.Bare())
	info = opsSessionInfo{}
	opsDecode(t, body, &info)
	if status != http.StatusOK || info.User != "" || info.Client != "127.0.0.1" {
		t.Fatalf("forward_auth without map: status %d, user %q, client %q; want no user", status, info.User, info.Client)
	}
	checkAck(t, fragment(t, bob.ResumeSession(s.URL, s.WireID), data, 0, 99), ack{status: 200, headers: received("100")})
}
