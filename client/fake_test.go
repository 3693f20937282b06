package client

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// fakeStore is the session storage of a fake BITS server; two fakes may
// share one to model a farm with shared storage.
type fakeStore struct {
	mu       sync.Mutex
	sessions map[protocol.SessionID]*fakeSession
	closed   map[protocol.SessionID]bool // tombstones
	files    map[string][]byte           // committed uploads by URL path
}

type fakeSession struct {
	path  string
	data  []byte
	total int64 // -1 until the first fragment
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		sessions: map[protocol.SessionID]*fakeSession{},
		closed:   map[protocol.SessionID]bool{},
		files:    map[string][]byte{},
	}
}

// hookFunc may answer a packet itself (returning true). n is the 1-based
// count of packets of that type the server has seen, including this one.
type hookFunc func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool

// replyHookFunc may answer a reply request itself (returning true). n
// counts reply requests of that method.
type replyHookFunc func(f *fakeServer, w http.ResponseWriter, r *http.Request, data []byte, n int) bool

// fakeServer is a minimal in-memory BITS upload server with fault
// injection, listening on 127.0.0.1 only.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	// Configuration, set before the first request.
	store       *fakeStore
	hostStore   *fakeStore // where sessions handed to BITS-Host-Id go (nil: store)
	hostID      string     // BITS-Host-Id for the first hostIDCount Create-Sessions
	hostIDCount int
	hostIDSecs  int64
	maxFragment int64 // > 0: 413 for larger fragments
	user, pass  string
	reply       func(upload []byte) []byte // nil: no reply URL
	relReply    bool                       // send a relative, backslashed reply URL
	noHead      bool                       // answer HEAD on replies with 405
	hook        hookFunc
	replyHook   replyHookFunc
	noRaw       bool // do not record the bytes clients send

	mu      sync.Mutex
	log     []string
	raw     bytes.Buffer
	conns   int
	counts  map[string]int
	replies map[string][]byte // by bare lower-case session id
	headers []http.Header     // request headers in order
	protos  []string          // request protocols ("HTTP/1.1") in order
	hellos  [][]string        // ALPN protocols of each TLS ClientHello
}

func newFake(t *testing.T) *fakeServer {
	t.Helper()
	f := newUnstartedFake(t)
	f.srv.Start()
	return f
}

// newUnstartedFake returns a fake whose server is not started yet.
func newUnstartedFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, store: newFakeStore(), counts: map[string]int{}, replies: map[string][]byte{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Listener = &recListener{Listener: ln, f: f}
	t.Cleanup(f.srv.Close)
	return f
}

// newTLSFake returns a fake that serves HTTPS with httptest's certificate
// (valid for 127.0.0.1, ::1 and example.com) and offers the ALPN
// protocols protos, recording what each ClientHello offers. cfg, when not
// nil, is the base of the server's TLS configuration.
func newTLSFake(t *testing.T, cfg *tls.Config, protos ...string) *fakeServer {
	t.Helper()
	f := newUnstartedFake(t)
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.NextProtos = protos
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		f.mu.Lock()
		f.hellos = append(f.hellos, append([]string{}, hello.SupportedProtos...))
		f.mu.Unlock()
		return nil, nil
	}
	f.srv.TLS = cfg
	f.srv.EnableHTTP2 = slices.Contains(protos, "h2")
	f.srv.StartTLS()
	return f
}

// clientHellos returns the ALPN protocols of each TLS ClientHello so far.
func (f *fakeServer) clientHellos() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.hellos...)
}

// requestProtos returns the protocol of each request so far.
func (f *fakeServer) requestProtos() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.protos...)
}

// certPool returns a pool that trusts the fake's TLS certificate.
func (f *fakeServer) certPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return pool
}

// url returns the upload URL of path on the fake.
func (f *fakeServer) url(path string) string { return f.srv.URL + path }

// port returns the fake's TCP port.
func (f *fakeServer) port() string {
	_, p, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	return p
}

func (f *fakeServer) record(entry string, h http.Header) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, entry)
	f.headers = append(f.headers, h.Clone())
	key := strings.Fields(entry)[0]
	f.counts[key]++
	return f.counts[key]
}

// sequence returns the requests seen so far.
func (f *fakeServer) sequence() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeServer) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[key]
}

func (f *fakeServer) rawBytes() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.raw.String()
}

func (f *fakeServer) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// file returns the committed upload at path.
func (f *fakeServer) file(path string) ([]byte, bool) {
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	b, ok := f.store.files[path]
	return b, ok
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.protos = append(f.protos, r.Proto)
	f.mu.Unlock()
	if f.user != "" || f.pass != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.pass {
			f.record("401 "+r.Method, r.Header)
			w.Header().Set("WWW-Authenticate", `Basic realm="bits"`)
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		f.serveReply(w, r)
		return
	}
	if r.Method != protocol.Method {
		f.record("BAD-METHOD "+r.Method, r.Header)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	p, perr := protocol.ParseRequest(r)
	if perr != nil {
		f.record("BAD "+perr.Msg, r.Header)
		protocol.WriteAck(w, protocol.ErrorAck(perr))
		return
	}
	entry := p.Type.String()
	if p.Type == protocol.PacketFragment {
		entry = fmt.Sprintf("Fragment %d-%d/%d", p.Range.First, p.Range.Last, p.Range.Total)
	}
	n := f.record(entry, r.Header)
	if f.hook != nil && f.hook(f, w, r, p, n) {
		return
	}
	f.process(w, r, p)
}

// process answers a parsed packet like a correct server.
func (f *fakeServer) process(w http.ResponseWriter, r *http.Request, p *protocol.Packet) {
	st := f.store
	switch p.Type {
	case protocol.PacketPing:
		protocol.WriteAck(w, protocol.Ack{})
	case protocol.PacketCreateSession:
		if _, ok := protocol.NegotiateProtocol(p.Protocols); !ok {
			protocol.WriteAck(w, protocol.ErrorAck(protocol.BadRequest("no protocol")))
			return
		}
		var b [16]byte
		rand.Read(b[:])
		id := protocol.NewSessionID(b)
		ack := protocol.Ack{SessionID: id, Protocol: protocol.UploadProtocol, AcceptEncodingIdentity: true}
		f.mu.Lock()
		useHost := f.hostID != "" && f.counts["Create-Session"] <= f.hostIDCount
		f.mu.Unlock()
		if useHost {
			ack.HostID, ack.HostIDFallbackTimeout = f.hostID, f.hostIDSecs
			if f.hostStore != nil {
				st = f.hostStore
			}
		}
		st.mu.Lock()
		st.sessions[id] = &fakeSession{path: r.URL.Path, total: -1}
		st.mu.Unlock()
		protocol.WriteAck(w, ack)
	case protocol.PacketFragment:
		st.mu.Lock()
		s := st.sessions[p.SessionID]
		st.mu.Unlock()
		if s == nil {
			protocol.WriteAck(w, protocol.ErrorAck(protocol.SessionNotFound("unknown")))
			return
		}
		if f.maxFragment > 0 && p.ContentLength > f.maxFragment {
			protocol.WriteAck(w, protocol.Ack{Status: http.StatusRequestEntityTooLarge})
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // client went away
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		if s.total < 0 {
			s.total = p.Range.Total
		} else if s.total != p.Range.Total {
			protocol.WriteAck(w, protocol.ErrorAck(protocol.BadRequest("total changed")))
			return
		}
		received := int64(len(s.data))
		action, skip := protocol.ClassifyFragment(received, p.Range)
		switch action {
		case protocol.Append:
			s.data = append(s.data, body[skip:]...)
		case protocol.Gap:
			protocol.WriteAck(w, protocol.Ack{Status: http.StatusRequestedRangeNotSatisfiable, SessionID: p.SessionID,
				Received: received, HasReceived: true})
			return
		}
		ack := protocol.Ack{SessionID: p.SessionID, Received: int64(len(s.data)), HasReceived: true}
		if int64(len(s.data)) == s.total {
			st.files[s.path] = append([]byte(nil), s.data...)
			if f.reply != nil {
				bare := p.SessionID.Bare()
				f.mu.Lock()
				if _, ok := f.replies[bare]; !ok {
					f.replies[bare] = f.reply(s.data)
				}
				f.mu.Unlock()
				if f.relReply {
					ack.ReplyURL = `reply\` + p.SessionID.Wire() + `\responsefile.bin`
				} else {
					ack.ReplyURL = f.srv.URL + "/reply/" + bare
				}
			}
		}
		protocol.WriteAck(w, ack)
	case protocol.PacketCloseSession, protocol.PacketCancelSession:
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.closed[p.SessionID] {
			protocol.WriteAck(w, protocol.Ack{SessionID: p.SessionID})
			return
		}
		if st.sessions[p.SessionID] == nil {
			protocol.WriteAck(w, protocol.ErrorAck(protocol.SessionNotFound("unknown")))
			return
		}
		delete(st.sessions, p.SessionID)
		st.closed[p.SessionID] = true
		protocol.WriteAck(w, protocol.Ack{SessionID: p.SessionID})
	}
}

// serveReply serves /…/reply/<id>[/…] with full range support.
func (f *fakeServer) serveReply(w http.ResponseWriter, r *http.Request) {
	entry := r.Method + " " + r.URL.Path
	if r.Method == http.MethodGet {
		entry = "GET " + r.Header.Get("Range")
	}
	n := f.record(entry, r.Header)
	_, rest, ok := strings.Cut(r.URL.Path, "/reply/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	id, _, _ := strings.Cut(rest, "/")
	id = strings.ToLower(strings.Trim(id, "{}"))
	f.mu.Lock()
	data, ok := f.replies[id]
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if f.replyHook != nil && f.replyHook(f, w, r, data, n) {
		return
	}
	if r.Method == http.MethodHead && f.noHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// abort drops the connection of the current request.
func abort() { panic(http.ErrAbortHandler) }

// recListener records every byte clients send and counts connections.
type recListener struct {
	net.Listener
	f *fakeServer
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.f.mu.Lock()
	l.f.conns++
	l.f.mu.Unlock()
	return &recConn{Conn: c, f: l.f}, nil
}

type recConn struct {
	net.Conn
	f *fakeServer
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.f.mu.Lock()
		if !c.f.noRaw {
			c.f.raw.Write(p[:n])
		}
		c.f.mu.Unlock()
	}
	return n, err
}

// testData returns n deterministic pseudo-random bytes.
func testData(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	mrand.NewChaCha8(key).Read(b)
	return b
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// newTestClient returns a client with tiny retry delays.
func newTestClient(t *testing.T) *Client {
	c := &Client{RetryDelay: time.Millisecond, MaxRetryDelay: 4 * time.Millisecond, RequestTimeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// fragments returns the sequence entries of fragments covering size bytes
// in pieces of n, starting at from.
func fragments(from, size, n int64) []string {
	var out []string
	if size == 0 {
		return []string{"Fragment 0--1/0"}
	}
	for off := from; off < size; off += n {
		out = append(out, fmt.Sprintf("Fragment %d-%d/%d", off, min(off+n, size)-1, size))
	}
	return out
}

// seq concatenates sequence parts.
func seq(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("seq: %T", p))
		}
	}
	return out
}

func checkSeq(t *testing.T, f *fakeServer, want []string) {
	t.Helper()
	got := f.sequence()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("request sequence:\n got: %q\nwant: %q", got, want)
	}
}

// checkFile asserts the fake committed exactly want at path.
func checkFile(t *testing.T, f *fakeServer, path string, want []byte) {
	t.Helper()
	got, ok := f.file(path)
	if !ok {
		t.Fatalf("no file committed at %s", path)
	}
	if sum(got) != sum(want) {
		t.Fatalf("committed file %s: %d bytes, sha256 %x; want %d bytes, sha256 %x", path, len(got), sum(got), len(want), sum(want))
	}
}
