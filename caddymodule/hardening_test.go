package caddymodule_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// wholeBodyConn is a raw client connection that behaves as WinHTTP does:
// it writes a request's whole body before it reads the answer.
type wholeBodyConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	addr string
}

func dialWholeBody(t testing.TB, addr string) *wholeBodyConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &wholeBodyConn{t: t, conn: conn, br: bufio.NewReader(conn), addr: addr}
}

// roundTrip writes a BITS_POST with the given headers and body, all of it,
// and only then reads the answer. A server that answers without reading
// the body and closes the connection makes the write fail (the peer
// resets it) or the read find no answer.
func (c *wholeBodyConn) roundTrip(path string, headers map[string]string, body []byte) *http.Response {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "BITS_POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", path, c.addr, len(body))
	for k, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		c.t.Fatalf("writing the request head: %v", err)
	}
	if _, err := c.conn.Write(body); err != nil {
		c.t.Fatalf("writing the whole %d-byte body before reading the answer: %v", len(body), err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading the answer after writing the whole body: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// checkRawAck compares a raw response with an expected Ack.
func checkRawAck(t *testing.T, resp *http.Response, want ack) {
	t.Helper()
	checkAck(t, &client.Ack{Status: resp.StatusCode, Header: resp.Header, PacketType: resp.Header.Get(protocol.HeaderPacketType)}, want)
}

// TestHardeningEarlyAnswersReachTheClient sends, for every answer the
// server gives before it has read a fragment's body, an 8 MiB body in full
// before reading, as WinHTTP does. The answer must arrive intact, and the
// connection must stay usable for the next request.
func TestHardeningEarlyAnswersReachTheClient(t *testing.T) {
	const size = 8 << 20
	body := randomBytes(t, size)
	frag := func(id string, first, total int64) map[string]string {
		return map[string]string{
			protocol.HeaderPacketType: "Fragment",
			protocol.HeaderSessionID:  id,
			"Content-Range":           fmt.Sprintf("bytes %d-%d/%d", first, first+size-1, total),
		}
	}
	c := newClient()
	for _, tc := range []struct {
		name    string
		options string
		// setup prepares the server and returns the request's path and
		// headers.
		setup func(t *testing.T, srv *server) (string, map[string]string)
		want  ack
	}{
		{"max_size", "max_size 1MiB", func(t *testing.T, srv *server) (string, map[string]string) {
			s := create(t, c, srv.URL("/big.bin"))
			return "/big.bin", frag(s.WireID, 0, size)
		}, ack{status: 500, code: protocol.BGTooLarge}},
		{"gap", "", func(t *testing.T, srv *server) (string, map[string]string) {
			s := create(t, c, srv.URL("/gap.bin"))
			data := randomBytes(t, size+1000)
			checkAck(t, fragment(t, s, data[:size+1000], 0, 99), ack{status: 200, headers: received("100")})
			return "/gap.bin", frag(s.WireID, 1000, size+1000)
		}, ack{status: 416, headers: received("100")}},
		{"held bytes resent", "", func(t *testing.T, srv *server) (string, map[string]string) {
			s := create(t, c, srv.URL("/held.bin"))
			data := append(append([]byte(nil), body...), body...)
			for off := int64(0); off < size; off += 1 << 20 {
				fragment(t, s, data, off, off+1<<20-1)
			}
			return "/held.bin", frag(s.WireID, 0, 2*size)
		}, ack{status: 200, headers: received(strconv.Itoa(size))}},
		{"unknown session", "", func(t *testing.T, srv *server) (string, map[string]string) {
			return "/unknown.bin", frag("{6B29FC40-CA47-1067-B31D-00DD010662DA}", 0, size)
		}, ack{status: 500, code: protocol.BGSessionNotFound}},
		{"another URL", "", func(t *testing.T, srv *server) (string, map[string]string) {
			s := create(t, c, srv.URL("/mine.bin"))
			return "/other.bin", frag(s.WireID, 0, size)
		}, ack{status: 400, code: protocol.EInvalidArg}},
		{"min_free_space", "", func(t *testing.T, srv *server) (string, map[string]string) {
			s := create(t, c, srv.URL("/reserve.bin"))
			srv.Options = "min_free_space 1000PB"
			reloadConfig(srv, c)
			return "/reserve.bin", frag(s.WireID, 0, size)
		}, ack{status: 500, code: protocol.ErrorDiskFull}},
		{"disk full", "", func(t *testing.T, srv *server) (string, map[string]string) {
			fs := testutil.MountTmpfs(t, "4m")
			srv.Root, srv.SessionDir = filepath.Join(fs, "root"), filepath.Join(fs, "sessions")
			reloadConfig(srv, c)
			s := create(t, c, srv.URL("/full.bin"))
			return "/full.bin", frag(s.WireID, 0, size)
		}, ack{status: 500, code: protocol.ErrorDiskFull}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.options)
			path, headers := tc.setup(t, srv)
			conn := dialWholeBody(t, srv.Addr())
			checkRawAck(t, conn.roundTrip(path, headers, body), tc.want)
			// The body was drained: the same connection carries the next
			// request.
			resp := conn.roundTrip("/ping.bin", map[string]string{protocol.HeaderPacketType: "Ping"}, nil)
			checkRawAck(t, resp, ack{status: 200})
		})
	}
}

// TestHardeningDrainLimit checks that a body larger than drain_limit is
// not read: the answer still comes, and the connection is closed.
func TestHardeningDrainLimit(t *testing.T) {
	srv := newServer(t, "drain_limit 64KiB")
	c := newClient()
	s := create(t, c, srv.URL("/limit.bin"))
	data := randomBytes(t, 2<<20)
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
	// A gap whose declared body of 1 MiB is more than the limit: the
	// server answers without waiting for it and closes the connection.
	// A client that reads as soon as the server answers gets the Ack.
	resp := rawRequest(t, srv.Addr(), fmt.Sprintf("BITS_POST /limit.bin HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Fragment\r\n"+
		"BITS-Session-Id: %s\r\nContent-Range: bytes 1000-%d/%d\r\nContent-Length: %d\r\n\r\n", srv.Addr(), s.WireID, 1000+1<<20-1, 2<<20, 1<<20))
	if !strings.HasPrefix(resp, "HTTP/1.1 416 ") || !strings.Contains(resp, "Connection: close") {
		t.Fatalf("gap with an unsent body over drain_limit answered %.300q, want 416 and Connection: close", resp)
	}
}

// TestHardeningCancelBehindAStalledFragment has a fragment trickle at one
// byte per second; the client's Cancel-Session takes the session over and
// is answered within a second, and the upload is gone.
func TestHardeningCancelBehindAStalledFragment(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	s := create(t, c, srv.URL("/stalled.bin"))
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "BITS_POST /stalled.bin HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Fragment\r\n"+
		"BITS-Session-Id: %s\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 10\r\n\r\nx", srv.Addr(), s.WireID)
	// The trickle holds the session once it announced the total.
	if !opsWaitFor(5*time.Second, func() bool {
		_, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+s.ID.Bare())
		return strings.Contains(string(body), `"total":20`)
	}) {
		t.Fatal("the trickled fragment never reached the session")
	}
	start := time.Now()
	a, err := s.Cancel(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatalf("cancel-session: %v", err)
	}
	checkAck(t, a, ack{status: 200})
	if took > time.Second {
		t.Errorf("Cancel-Session behind a stalled fragment took %v, want at most a second", took)
	}
	assertNoSession(t, srv.SessionDir, s.ID)
	assertNoFile(t, filepath.Join(srv.Root, "stalled.bin"))
	// The stalled request's connection is closed.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Errorf("the stalled connection was not closed: %v", err)
	}
}

// TestHardeningPlaceholderRoots uses a root with a placeholder of a
// request header: a value that is not one plain name is refused with 400
// before anything is written, and a valid one stays below the fixed part.
func TestHardeningPlaceholderRoots(t *testing.T) {
	dir := t.TempDir()
	tenants := filepath.Join(dir, "tenants")
	if err := os.MkdirAll(filepath.Join(tenants, "acme"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, "")
	srv.Root = tenants + "/{http.request.header.X-Tenant}"
	c := newClient()
	reloadConfig(srv, c)
	tenantHeader := func(tenant string) http.Header {
		if tenant == "" {
			return nil // the placeholder expands to nothing
		}
		return http.Header{"X-Tenant": {tenant}}
	}
	for _, tenant := range []string{"../..", "..", ".", "", "a/b", `a\b`, "acme/../../x"} {
		a := opsCreateAckWith(t, c, srv.URL("/f.bin"), tenantHeader(tenant))
		checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the test directory holds %d entries, want only tenants", len(entries))
	}
	// A plain tenant name works, below the fixed part.
	a := opsCreateAckWith(t, c, srv.URL("/f.bin"), tenantHeader("acme"))
	checkAck(t, a, ack{status: 200})
	data := []byte("tenant data")
	f := send(t, c, srv.URL("/f.bin"), &client.Packet{Type: protocol.PacketFragment, SessionID: a.Header.Get(protocol.HeaderSessionID),
		Header: http.Header{"Content-Range": {fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data))}, "X-Tenant": {"acme"}}, Body: data})
	checkAck(t, f, ack{status: 200, headers: received(strconv.Itoa(len(data)))})
	assertFile(t, filepath.Join(tenants, "acme", "f.bin"), data)
	// The same session through another tenant's root is refused.
	f = send(t, c, srv.URL("/f.bin"), &client.Packet{Type: protocol.PacketFragment, SessionID: a.Header.Get(protocol.HeaderSessionID),
		Header: http.Header{"Content-Range": {fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data))}, "X-Tenant": {"other"}}, Body: data})
	checkAck(t, f, ack{status: 400, code: protocol.EInvalidArg})
}

// TestHardeningSessionDirThroughSymlink refuses a session_dir that is a
// symbolic link into the root: comparing the paths as text would let
// uploads plant files in the session store.
func TestHardeningSessionDirThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "sessions")
	if err := os.Symlink(filepath.Join(root, "inside"), link); err != nil {
		t.Fatal(err)
	}
	status, body := opsLoadHandler(t, map[string]any{"handler": "bits_upload", "root": root, "session_dir": link})
	if status != http.StatusBadRequest || !strings.Contains(body, "must not be inside root") {
		t.Fatalf("loading session_dir %s (a link into root): status %d, %s; want 400 naming the overlap", link, status, body)
	}
}

// TestHardeningSessionLimitByDefault checks that one client address may
// hold 50 sessions by default, as IIS allows, and that "off" lifts it.
func TestHardeningSessionLimitByDefault(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	for i := range 50 {
		create(t, c, srv.URL(fmt.Sprintf("/limit/%d.bin", i)))
	}
	checkAck(t, opsCreateAck(t, c, srv.URL("/limit/50.bin")), ack{status: 503, code: 0x80070045})
	srv.Options = "max_sessions_per_user off"
	reloadConfig(srv, c)
	for i := 50; i < 60; i++ {
		create(t, c, srv.URL(fmt.Sprintf("/limit/%d.bin", i)))
	}
}

// TestHardeningEmptySessionTimeout checks that a session that received no
// byte is deleted after empty_session_timeout, while one holding bytes
// stays, and that the empty one's client loses nothing: its next packet
// makes the session again from its id.
func TestHardeningEmptySessionTimeout(t *testing.T) {
	srv := newServer(t, "empty_session_timeout 1s")
	c := newClient()
	empty := create(t, c, srv.URL("/empty.bin"))
	held := create(t, c, srv.URL("/held.bin"))
	data := randomBytes(t, 100)
	checkAck(t, fragment(t, held, data, 0, 49), ack{status: 200, headers: received("50")})
	if !opsWaitFor(10*time.Second, func() bool { return !sessionStored(t, srv.SessionDir, empty.ID) }) {
		t.Fatal("the empty session was not reaped within 10 s")
	}
	checkAck(t, fragment(t, held, data, 50, 99), ack{status: 200, headers: received("100")})
	checkAck(t, fragment(t, empty, data, 0, 99), ack{status: 200, headers: received("100")})
	assertFile(t, filepath.Join(srv.Root, "empty.bin"), data)
}

// TestHardeningNames checks that names a file system refuses are answered
// 400 at Create-Session, before any byte is sent, even under parents that
// do not exist.
func TestHardeningNames(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	for _, path := range []string{
		"/new/" + strings.Repeat("a", 256) + "/f.bin",
		"/" + strings.Repeat("b", 256),
		"/" + strings.Repeat("%C3%A9", 128), // 256 bytes of UTF-8
		"/bad-%FF.bin",
	} {
		checkAck(t, opsCreateAck(t, c, srv.URL(path)), ack{status: 400, code: protocol.EInvalidArg})
	}
	// 255 bytes is fine.
	s := create(t, c, srv.URL("/new/"+strings.Repeat("a", 255)))
	data := []byte("x")
	checkAck(t, fragment(t, s, data, 0, 0), ack{status: 200, headers: received("1")})
	assertFile(t, filepath.Join(srv.Root, "new", strings.Repeat("a", 255)), data)
}

// TestHardeningDuplicateHeaders refuses a request that sends a BITS header
// twice: a proxy that reads the other value would see another packet.
func TestHardeningDuplicateHeaders(t *testing.T) {
	srv := newServer(t, "")
	id := "{6B29FC40-CA47-1067-B31D-00DD010662DA}"
	for _, dup := range []string{
		"BITS-Packet-Type: Ping\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n",
		"BITS-Packet-Type: Close-Session\r\nBITS-Session-Id: " + id + "\r\nBITS-Session-Id: " + id + "\r\nContent-Length: 0\r\n\r\n",
		"BITS-Packet-Type: Fragment\r\nBITS-Session-Id: " + id + "\r\nContent-Range: bytes 0-0/1\r\nContent-Range: bytes 0-0/2\r\nContent-Length: 1\r\n\r\nx",
	} {
		resp := rawRequest(t, srv.Addr(), "BITS_POST /dup.bin HTTP/1.1\r\nHost: "+srv.Addr()+"\r\n"+dup)
		if !strings.HasPrefix(resp, "HTTP/1.1 400 ") || !strings.Contains(resp, "BITS-Error-Code: 0x80070057") {
			t.Errorf("duplicate headers in %q answered %.200q, want 400 E_INVALIDARG", dup, resp)
		}
	}
}

// TestHardeningCloseAndCancelRace sends Close-Session and Cancel-Session
// at once, many times over: every answer is 200, and the destination is
// intact after a completed upload and absent after an incomplete one.
func TestHardeningCloseAndCancelRace(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 10_000)
	race := func(s *client.Session) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var a *client.Ack
				var err error
				if i%2 == 0 {
					a, err = s.Close(context.Background())
				} else {
					a, err = s.Cancel(context.Background())
				}
				if err != nil {
					t.Error(err)
					return
				}
				if a.Status != 200 {
					t.Errorf("%d of 8: status %d (%s)", i, a.Status, a.Header.Get(protocol.HeaderErrorCode))
				}
			}()
		}
		wg.Wait()
		assertNoSession(t, srv.SessionDir, s.ID)
	}
	done := create(t, c, srv.URL("/race/done.bin"))
	checkAck(t, fragment(t, done, data, 0, int64(len(data))-1), ack{status: 200, headers: received(strconv.Itoa(len(data)))})
	race(done)
	assertFile(t, filepath.Join(srv.Root, "race", "done.bin"), data)

	partial := create(t, c, srv.URL("/race/partial.bin"))
	checkAck(t, fragment(t, partial, data, 0, 999), ack{status: 200, headers: received("1000")})
	race(partial)
	assertNoFile(t, filepath.Join(srv.Root, "race", "partial.bin"))
}

// TestHardeningReplyAfterClose checks that a reply is 404 once its session
// is closed.
func TestHardeningReplyAfterClose(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Body: []byte("reply")}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 1000)
	s, a := uploadAll(t, c, srv.URL("/r.bin"), data, 1000)
	expectStatus(t, "GET", a.ReplyURL, 200)
	if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	expectStatus(t, "GET", a.ReplyURL, 404)
}

// TestHardeningNotifyStaysHome checks that a relative notify URL goes to
// this server's own listener whatever Host the client sends, so that a
// Host header cannot aim a notification (and the reply it produces) at
// another service; and that the client's query string cannot replace or
// repeat a parameter the configured URL sets.
func TestHardeningNotifyStaysHome(t *testing.T) {
	app := newHookBackend(t, answerWith(hookAnswer{Body: []byte("from the app")}))
	other := newHookBackend(t, answerWith(hookAnswer{Body: []byte("secrets of another service")}))
	srv := newServer(t, notifyOptions("/hook?tok=secret"))
	// The application is behind this same site; a relative notify URL
	// reaches it only by the site's own routes.
	srv.Site = "handle /hook* {\n\t\treverse_proxy " + app.Addr() + "\n\t}"
	reloadConfig(srv)
	data := randomBytes(t, 2000)

	// The upload names the other service in its Host header.
	path := "/up.bin?tok=attacker&x=1"
	conn := dialWholeBody(t, srv.Addr())
	create := conn.roundTripHost(other.Addr(), path, map[string]string{
		protocol.HeaderPacketType:         "Create-Session",
		protocol.HeaderSupportedProtocols: protocol.UploadProtocol,
	}, nil)
	checkRawAck(t, create, ack{status: 200})
	id := create.Header.Get(protocol.HeaderSessionID)
	final := conn.roundTripHost(other.Addr(), path, map[string]string{
		protocol.HeaderPacketType: "Fragment",
		protocol.HeaderSessionID:  id,
		"Content-Range":           fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)),
	}, data)
	checkRawAck(t, final, ack{status: 200, headers: received(strconv.Itoa(len(data)))})
	if n := other.hits(); n != 0 {
		t.Fatalf("the service named by the Host header got %d requests", n)
	}
	rec := app.last()
	if rec.Host != other.Addr() {
		t.Errorf("notification Host %q, want the upload's %q", rec.Host, other.Addr())
	}
	if rec.RequestURI != "/hook?tok=secret&x=1" {
		t.Errorf("notification URI %q, want the configured parameter once and the client's other one", rec.RequestURI)
	}
	if rec.BodySHA != sha(data) {
		t.Errorf("notification body sha %s, want %s", rec.BodySHA, sha(data))
	}
}

// roundTripHost is roundTrip with another Host header.
func (c *wholeBodyConn) roundTripHost(host, path string, headers map[string]string, body []byte) *http.Response {
	c.t.Helper()
	saved := c.addr
	c.addr = host
	defer func() { c.addr = saved }()
	return c.roundTrip(path, headers, body)
}

// opsLoadHandler posts a config with one site whose only handler is h to
// the admin endpoint, and returns the status and body of the answer.
func opsLoadHandler(t *testing.T, h map[string]any) (int, string) {
	t.Helper()
	cfg := map[string]any{
		"admin": map[string]any{"listen": opsAdminURL("")[len("http://"):]},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{
			"listen": []string{"127.0.0.1:" + itoa(testutil.FreePort(t))},
			"routes": []any{map[string]any{"handle": []any{h}}},
		}}}},
	}
	return opsLoad(t, cfg)
}

// BenchmarkHardeningDrain measures an early answer to a fragment whose
// 8 MiB body the client writes in full before reading (a gap, answered
// 416): the server reads and discards the body, then the answer arrives
// on a connection that stays usable. Run it with
//
//	go test -run '^$' -bench HardeningDrain ./caddymodule
func BenchmarkHardeningDrain(b *testing.B) {
	srv := newServer(b, "")
	c := newClient()
	s, _, err := c.CreateSession(context.Background(), srv.URL("/drain.bin"))
	if err != nil {
		b.Fatal(err)
	}
	const size = 8 << 20
	if _, err := s.Fragment(context.Background(), make([]byte, 100), 0, 2*size); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, size)
	conn := dialWholeBody(b, srv.Addr())
	headers := map[string]string{
		protocol.HeaderPacketType: "Fragment",
		protocol.HeaderSessionID:  s.WireID,
		"Content-Range":           fmt.Sprintf("bytes 1000-%d/%d", 1000+size-1, 2*size),
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if resp := conn.roundTrip("/drain.bin", headers, body); resp.StatusCode != 416 {
			b.Fatalf("status %d, want 416", resp.StatusCode)
		}
	}
}

// BenchmarkHardeningTakeover measures how long a Cancel-Session waits
// behind a fragment that stalled after its first byte: the time for a
// newer request to take the session over. Run it with
//
//	go test -run '^$' -bench HardeningTakeover -benchtime 20x ./caddymodule
func BenchmarkHardeningTakeover(b *testing.B) {
	srv := newServer(b, "")
	c := newClient()
	var total time.Duration
	for b.Loop() {
		s, _, err := c.CreateSession(context.Background(), srv.URL("/takeover.bin"))
		if err != nil {
			b.Fatal(err)
		}
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(conn, "BITS_POST /takeover.bin HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Fragment\r\n"+
			"BITS-Session-Id: %s\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 10\r\n\r\nx", srv.Addr(), s.WireID)
		// The stalled request holds the session once the server read its
		// head; a Ping on the same session's URL is answered after that.
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		a, err := s.Cancel(context.Background())
		took := time.Since(start)
		conn.Close()
		if err != nil || a.Status != 200 {
			b.Fatalf("cancel: %v %+v", err, a)
		}
		total += took
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/takeover")
}
