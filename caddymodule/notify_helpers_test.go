package caddymodule_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// hookRecord is what a hook backend saw of one notification.
type hookRecord struct {
	Method           string
	RequestURI       string
	Host             string
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	// BodyLen and BodySHA describe the request body as received; BodyErr
	// is the error reading it, if any.
	BodyLen int64
	BodySHA string
	BodyErr string
	// FileLen, FileSHA and FileErr describe the file named by
	// BITS-Request-DataFile-Name, read inside the handler (by reference).
	FileLen int64
	FileSHA string
	FileErr string
	// FileAbs reports whether that path was absolute.
	FileAbs bool
	// Status is what the backend answered.
	Status int
	// Aborted is set when the notification went away before the backend
	// answered (it timed out on the server's side).
	Aborted bool
}

// hookAnswer is how a hook backend answers one notification.
type hookAnswer struct {
	Status int
	// Header is added to the response.
	Header map[string]string
	// Body is the response body.
	Body []byte
	// ReplyFile, when not nil, is written to BITS-Response-DataFile-Name
	// before answering (notification by reference).
	ReplyFile []byte
	// Delay holds the answer back (cut short when the request goes away).
	Delay time.Duration
	// CloseDelimited writes a raw HTTP/1.1 response without Content-Length
	// and closes the connection, as the ASP application in the MC-BUP
	// capture did.
	CloseDelimited bool
	// Stall sends the headers and the first half of Body, then holds the
	// rest back this long (cut short when the request goes away).
	Stall time.Duration
}

// hookBackend is an HTTP server application on 127.0.0.1 that records
// every notification it receives.
type hookBackend struct {
	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	records []hookRecord
	answer  func(n int, rec *hookRecord) hookAnswer
}

// newHookBackend starts a recording backend; answer decides the answer to
// the n-th notification (1-based). A nil answer is 200 with an empty body.
func newHookBackend(t testing.TB, answer func(n int, rec *hookRecord) hookAnswer) *hookBackend {
	t.Helper()
	b := &hookBackend{t: t, answer: answer}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

// URL is the absolute URL of a path on the backend.
func (b *hookBackend) URL(path string) string { return b.srv.URL + path }

// Addr is the backend's host:port.
func (b *hookBackend) Addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// setAnswer replaces the answer function.
func (b *hookBackend) setAnswer(answer func(n int, rec *hookRecord) hookAnswer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answer = answer
}

// recs returns a copy of the records so far.
func (b *hookBackend) recs() []hookRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]hookRecord(nil), b.records...)
}

// hits returns the number of notifications received so far.
func (b *hookBackend) hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.records)
}

// last returns the latest record, failing the test if there is none.
func (b *hookBackend) last() hookRecord {
	b.t.Helper()
	r := b.recs()
	if len(r) == 0 {
		b.t.Fatal("the backend received no notification")
	}
	return r[len(r)-1]
}

func (b *hookBackend) serve(w http.ResponseWriter, r *http.Request) {
	rec := hookRecord{
		Method:           r.Method,
		RequestURI:       r.RequestURI,
		Host:             r.Host,
		Header:           r.Header.Clone(),
		ContentLength:    r.ContentLength,
		TransferEncoding: r.TransferEncoding,
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	rec.BodyLen, rec.BodySHA = n, hex.EncodeToString(h.Sum(nil))
	if err != nil {
		rec.BodyErr = err.Error()
	}
	if p := r.Header.Get(protocol.HeaderRequestDataFileName); p != "" {
		rec.FileAbs = filepath.IsAbs(p)
		if f, err := os.Open(p); err != nil {
			rec.FileErr = err.Error()
		} else {
			fh := sha256.New()
			n, err := io.Copy(fh, f)
			f.Close()
			rec.FileLen, rec.FileSHA = n, hex.EncodeToString(fh.Sum(nil))
			if err != nil {
				rec.FileErr = err.Error()
			}
		}
	}

	b.mu.Lock()
	num := len(b.records) + 1
	answer := b.answer
	b.mu.Unlock()
	a := hookAnswer{Status: http.StatusOK}
	if answer != nil {
		a = answer(num, &rec)
	}
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	rec.Status = a.Status
	b.mu.Lock()
	b.records = append(b.records, rec)
	idx := len(b.records) - 1
	b.mu.Unlock()

	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			b.mu.Lock()
			b.records[idx].Aborted = true
			b.mu.Unlock()
			return
		}
	}
	if a.ReplyFile != nil {
		if err := os.WriteFile(r.Header.Get(protocol.HeaderResponseDataFileName), a.ReplyFile, 0o644); err != nil {
			b.t.Errorf("backend writing the reply file: %v", err)
		}
	}
	if a.CloseDelimited {
		hj, ok := w.(http.Hijacker)
		if !ok {
			b.t.Errorf("backend: response writer is not a Hijacker")
			return
		}
		conn, bw, err := hj.Hijack()
		if err != nil {
			b.t.Errorf("backend: hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-type: text/html\r\n", a.Status, http.StatusText(a.Status))
		for k, v := range a.Header {
			fmt.Fprintf(bw, "%s: %s\r\n", k, v)
		}
		bw.WriteString("\r\n")
		bw.Write(a.Body)
		bw.Flush()
		return
	}
	for k, v := range a.Header {
		w.Header().Set(k, v)
	}
	if a.Body != nil {
		w.Header().Set("Content-Length", fmt.Sprint(len(a.Body)))
	}
	w.WriteHeader(a.Status)
	if a.Stall > 0 {
		half := len(a.Body) / 2
		w.Write(a.Body[:half])
		http.NewResponseController(w).Flush()
		select {
		case <-time.After(a.Stall):
		case <-r.Context().Done():
			b.mu.Lock()
			b.records[idx].Aborted = true
			b.mu.Unlock()
			return
		}
		w.Write(a.Body[half:])
		return
	}
	w.Write(a.Body)
}

// answerWith returns an answer function that always gives a.
func answerWith(a hookAnswer) func(int, *hookRecord) hookAnswer {
	return func(int, *hookRecord) hookAnswer { return a }
}

// notifyOptions returns the bits_upload lines of a notify block.
func notifyOptions(url string, lines ...string) string {
	if len(lines) == 0 {
		return "notify " + url
	}
	return "notify " + url + " {\n\t\t\t" + strings.Join(lines, "\n\t\t\t") + "\n\t\t}"
}

// digestOf is the RFC 9530 SHA-256 field value of b.
func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
}

// copyHeader is the answer header that asks for the upload to be placed at
// its destination.
var copyHeader = map[string]string{protocol.HeaderCopyFileToDest: "1"}

// plainHTTP is an HTTP client for reply downloads that adds no
// Accept-Encoding and decompresses nothing.
var plainHTTP = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// fetch sends a GET or HEAD with the given headers and returns the
// response (body closed) and its body.
func fetch(t testing.TB, method, rawURL string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := plainHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, rawURL, err)
	}
	return resp, body
}

// expectStatus fetches rawURL and checks the status.
func expectStatus(t testing.TB, method, rawURL string, want int) {
	t.Helper()
	resp, _ := fetch(t, method, rawURL, nil)
	if resp.StatusCode != want {
		t.Errorf("%s %s: status %d, want %d", method, rawURL, resp.StatusCode, want)
	}
}

// finalAck is the expected successful final Ack of a notified upload.
func finalAck(total int, replyURL string) ack {
	return ack{status: 200, headers: map[string]string{
		protocol.HeaderReceivedContentRange: fmt.Sprint(total),
		protocol.HeaderReplyURL:             replyURL,
	}}
}

// appError is the expected Ack of a failed notification (context 0x7).
func appError(status int, code protocol.HRESULT) ack {
	return ack{status: status, code: code, headers: map[string]string{
		protocol.HeaderErrorContext: "0x7",
		protocol.HeaderReplyURL:     "",
	}}
}

// ownReplyURL is the reply URL the handler serves for a session created at
// uploadURL.
func ownReplyURL(uploadURL string, id protocol.SessionID) string {
	sep := "?"
	if strings.Contains(uploadURL, "?") {
		sep = "&"
	}
	return uploadURL + sep + "bits_reply=" + id.Bare()
}

// checkAbsolute fails unless u is an absolute http URL.
func checkAbsolute(t testing.TB, u string) {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
		t.Errorf("BITS-Reply-URL %q is not an absolute http URL", u)
	}
}

// uploadAll sends data as one session in fragments of step bytes and
// returns the session and the final Ack.
func uploadAll(t testing.TB, c *client.Client, uploadURL string, data []byte, step int) (*client.Session, *client.Ack) {
	t.Helper()
	s := create(t, c, uploadURL)
	var a *client.Ack
	if len(data) == 0 {
		var err error
		a, err = s.Fragment(context.Background(), nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s, a
	}
	for first := 0; first < len(data); first += step {
		last := min(first+step, len(data)) - 1
		a = fragment(t, s, data, int64(first), int64(last))
		if last < len(data)-1 && a.Status != 200 {
			t.Fatalf("fragment %d-%d: status %d", first, last, a.Status)
		}
	}
	return s, a
}

// reloadConfig loads the server's current configuration and drops the
// idle connections of the clients and of fetch: the old server closes its
// keep-alive connections when it stops, and a BITS_POST on a connection
// closing under it fails without a retry. Caddy returns from a reload
// once the old server began to shut down, and it may still accept (and
// then reset) a connection for a moment; a few plain GETs ride that out
// before the test sends non-idempotent requests.
func reloadConfig(srv *server, clients ...*client.Client) {
	srv.t.Helper()
	srv.load()
	time.Sleep(50 * time.Millisecond)
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := probe.Get(srv.URL("/"))
		if err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	plainHTTP.CloseIdleConnections()
}

// reloadOptions switches the server to the bits_upload options opts for
// the rest of the (sub)test, and back to after when it ends.
func reloadOptions(t *testing.T, srv *server, c *client.Client, opts, after string) {
	t.Helper()
	srv.Options = opts
	reloadConfig(srv, c)
	t.Cleanup(func() {
		srv.Options = after
		reloadConfig(srv, c)
	})
}
