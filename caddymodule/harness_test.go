package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"

	_ "github.com/caddy-bits/caddy-bits/caddymodule"
)

// adminPort is the admin endpoint of the in-process Caddy of this test
// package; other packages use other ports. $CADDY_BITS_TEST_ADMIN_PORT
// overrides it, so that two runs of this package can share a machine.
var adminPort = func() int {
	if p, err := strconv.Atoi(os.Getenv("CADDY_BITS_TEST_ADMIN_PORT")); err == nil && p > 0 {
		return p
	}
	return 2611
}()

func TestMain(m *testing.M) {
	// Keep Caddy's data and config directories out of the user's home.
	tmp, err := os.MkdirTemp("", "caddy-bits-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_DATA_HOME", filepath.Join(tmp, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(tmp, "config"))
	code := m.Run()
	testutil.RemoveBuiltCaddy()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// server is a site of the in-process Caddy with a bits_upload handler.
type server struct {
	t          testing.TB
	tester     *caddytest.Tester
	port       int
	Root       string
	SessionDir string
	// Options are extra lines inside the bits_upload block; Site are extra
	// directives of the site.
	Options string
	Site    string
}

// newServer starts (or reconfigures) the in-process Caddy with one site on
// a free 127.0.0.1 port, a fresh root and a fresh session directory.
func newServer(t testing.TB, options string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:          t,
		port:       testutil.FreePort(t),
		Root:       filepath.Join(dir, "root"),
		SessionDir: filepath.Join(dir, "sessions"),
		Options:    options,
	}
	s.tester = caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: 30 * time.Second,
	})
	s.load()
	return s
}

// load loads the server's current configuration; on a running Caddy this
// is a config reload.
func (s *server) load() {
	s.t.Helper()
	s.tester.InitServer(s.caddyfile(), "caddyfile")
	if s.t.Failed() {
		s.t.FailNow()
	}
}

func (s *server) caddyfile() string {
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	auto_https off
	servers {
		protocols h1 h2c
	}
}
:%d {
	bind 127.0.0.1
	%s
	bits_upload {
		root %s
		session_dir %s
		%s
	}
	respond "not a BITS request" 299
}
`, adminPort, s.port, s.Site, s.Root, s.SessionDir, s.Options)
}

// URL returns the absolute URL of a path on the site.
func (s *server) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path)
}

// Addr returns the site's host:port.
func (s *server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// newClient returns a BITS client with quick retries.
func newClient() *client.Client {
	return &client.Client{
		RetryDelay:    10 * time.Millisecond,
		MaxRetryDelay: 200 * time.Millisecond,
	}
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileSHA returns the SHA-256 of a file, failing the test if it cannot be
// read.
func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// assertFile asserts that path holds exactly want.
func assertFile(t testing.TB, path string, want []byte) {
	t.Helper()
	if got := fileSHA(t, path); got != sha(want) {
		fi, _ := os.Stat(path)
		t.Fatalf("%s: sha256 %s (size %d), want %s (size %d)", path, got, fi.Size(), sha(want), len(want))
	}
}

// assertNoFile asserts that nothing exists at path.
func assertNoFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("%s exists (err=%v), want nothing there", path, err)
	}
}

// sessionDirs returns the bare ids of the sessions of a session
// directory: those stored on disk, as a restart would find them, and
// those the in-process Caddy holds in memory (a session that has received
// no byte is kept nowhere else).
func sessionDirs(t testing.TB, sessionDir string) []string {
	t.Helper()
	ids, err := session.Stored(sessionDir)
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string]bool)
	for _, id := range ids {
		set[id.Bare()] = true
	}
	for _, id := range heldSessions(t, sessionDir) {
		set[id] = true
	}
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// heldSessions returns the bare ids of the sessions the in-process Caddy
// holds in the session directory, from its admin API, or none when it
// does not run.
func heldSessions(t testing.TB, sessionDir string) []string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/bits_upload/sessions", adminPort))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var list []struct {
		ID         string `json:"id"`
		SessionDir string `json:"session_dir"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("decoding the admin API's sessions: %v", err)
	}
	var out []string
	for _, s := range list {
		if id, err := protocol.ParseSessionID(s.ID); err == nil && s.SessionDir == sessionDir {
			out = append(out, id.Bare())
		}
	}
	return out
}

// sessionFile returns the path of one of a session's files in the store:
// kind is "data", "reply" or "json".
func sessionFile(sessionDir string, id protocol.SessionID, kind string) string {
	return filepath.Join(sessionDir, "active", id.Bare()+"."+kind)
}

// sessionStored reports whether a session is stored on disk.
func sessionStored(t testing.TB, sessionDir string, id protocol.SessionID) bool {
	t.Helper()
	return slices.Contains(sessionDirs(t, sessionDir), id.Bare())
}

// assertNoSession asserts that nothing of a session is stored any more.
func assertNoSession(t testing.TB, sessionDir string, id protocol.SessionID) {
	t.Helper()
	for _, kind := range []string{"data", "reply", "json"} {
		assertNoFile(t, sessionFile(sessionDir, id, kind))
	}
	if sessionStored(t, sessionDir, id) {
		t.Fatalf("session %s is still stored", id)
	}
}

// ack is an expected Ack: status, error code and the headers that must be
// present with exactly these values ("" means absent).
type ack struct {
	status  int
	code    protocol.HRESULT
	headers map[string]string
}

// checkAck compares a response with an expected Ack. Every Ack carries
// "BITS-Packet-Type: Ack" and "Content-Length: 0"; error Acks carry the
// code with context 0x5 (or the given context header).
func checkAck(t testing.TB, a *client.Ack, want ack) {
	t.Helper()
	if a == nil {
		t.Fatalf("no response, want %d", want.status)
	}
	if a.Status != want.status {
		t.Errorf("status %d, want %d (headers %v)", a.Status, want.status, a.Header)
	}
	if a.PacketType != "Ack" {
		t.Errorf("BITS-Packet-Type %q, want Ack", a.PacketType)
	}
	if cl := a.Header.Get("Content-Length"); cl != "0" {
		t.Errorf("Content-Length %q, want 0", cl)
	}
	gotCode := a.Header.Get(protocol.HeaderErrorCode)
	if want.code != protocol.SOK {
		if gotCode != want.code.String() {
			t.Errorf("BITS-Error-Code %q, want %q", gotCode, want.code.String())
		}
		wantCtx := "0x5"
		if v, ok := want.headers[protocol.HeaderErrorContext]; ok {
			wantCtx = v
		}
		if got := a.Header.Get(protocol.HeaderErrorContext); got != wantCtx {
			t.Errorf("BITS-Error-Context %q, want %q", got, wantCtx)
		}
	} else if gotCode != "" || a.Header.Get(protocol.HeaderErrorContext) != "" {
		t.Errorf("unexpected error headers %q / %q", gotCode, a.Header.Get(protocol.HeaderErrorContext))
	}
	for name, v := range want.headers {
		if name == protocol.HeaderErrorContext {
			continue
		}
		if got := a.Header.Get(name); got != v {
			t.Errorf("%s %q, want %q", name, got, v)
		}
	}
}

// send sends one raw BITS packet and returns its Ack.
func send(t testing.TB, c *client.Client, url string, p *client.Packet) *client.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := c.Send(ctx, url, p)
	if err != nil {
		t.Fatalf("sending %s to %s: %v", p.Type, url, err)
	}
	return a
}

// create opens a session at url and returns it.
func create(t testing.TB, c *client.Client, url string) *client.Session {
	t.Helper()
	s, a, err := c.CreateSession(context.Background(), url)
	if err != nil {
		t.Fatalf("create-session at %s: %v (ack %+v)", url, err, a)
	}
	return s
}

// fragment sends data[first:last+1] of an upload of len(data) bytes.
func fragment(t testing.TB, s *client.Session, data []byte, first, last int64) *client.Ack {
	t.Helper()
	a, err := s.Fragment(context.Background(), data[first:last+1], first, int64(len(data)))
	if err != nil {
		t.Fatalf("fragment %d-%d: %v", first, last, err)
	}
	return a
}

// rawRequest writes a raw HTTP/1.1 request on a new connection and returns
// everything the server answered until it closed the connection or went
// quiet for a second.
func rawRequest(t testing.TB, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return out.String()
}

// countResponses counts the HTTP responses in a raw response stream.
func countResponses(raw string) int {
	return strings.Count(raw, "HTTP/1.1 ")
}

// unused guard for helpers kept for later tests.
var _ = http.StatusOK

// bytesReader returns an io.ReaderAt over b.
func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// asClientError unwraps a *client.Error.
func asClientError(err error, target **client.Error) bool { return errors.As(err, target) }

// bufioReader wraps a raw response for http.ReadResponse.
func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// ioPipe returns a synchronous in-memory pipe, for request bodies that
// arrive slowly.
func ioPipe() (*io.PipeReader, *io.PipeWriter) { return io.Pipe() }
