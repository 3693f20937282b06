package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestNotifyReplyDownload checks how a body reply is served: a
// close-delimited backend answer is taken whole, single ranges give 206
// with Content-Range, HEAD gives Content-Length, Accept-Ranges,
// Last-Modified and a stable ETag, If-Range and If-Unmodified-Since work,
// and the client downloads the whole reply.
func TestNotifyReplyDownload(t *testing.T) {
	reply := randomBytes(t, 10_000)
	be := newHookBackend(t, answerWith(hookAnswer{Body: reply, CloseDelimited: true}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 4000)
	upload := srv.URL("/reply.bin")
	s, a := uploadAll(t, c, upload, data, 4000)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	checkAbsolute(t, a.ReplyURL)
	if rec := be.last(); rec.BodySHA != sha(data) {
		t.Fatalf("backend got sha %s", rec.BodySHA)
	}
	n := len(reply)

	// HEAD, twice: the same validators.
	head, _ := fetch(t, "HEAD", a.ReplyURL, nil)
	if head.StatusCode != 200 {
		t.Fatalf("HEAD: status %d", head.StatusCode)
	}
	if got := head.Header.Get("Content-Length"); got != fmt.Sprint(n) {
		t.Errorf("HEAD Content-Length %q, want %d", got, n)
	}
	if got := head.Header.Get("Accept-Ranges"); got != "bytes" {
		t.Errorf("HEAD Accept-Ranges %q, want bytes", got)
	}
	etag, lastMod := head.Header.Get("ETag"), head.Header.Get("Last-Modified")
	if etag == "" || lastMod == "" {
		t.Fatalf("HEAD: ETag %q, Last-Modified %q; want both", etag, lastMod)
	}
	if _, err := http.ParseTime(lastMod); err != nil {
		t.Errorf("Last-Modified %q: %v", lastMod, err)
	}
	if enc := head.Header.Get("Content-Encoding"); enc != "" {
		t.Errorf("HEAD Content-Encoding %q", enc)
	}
	time.Sleep(1100 * time.Millisecond) // a Last-Modified taken from the clock would move
	head2, _ := fetch(t, "HEAD", a.ReplyURL, nil)
	if head2.Header.Get("ETag") != etag || head2.Header.Get("Last-Modified") != lastMod {
		t.Errorf("validators changed: ETag %q -> %q, Last-Modified %q -> %q", etag, head2.Header.Get("ETag"), lastMod, head2.Header.Get("Last-Modified"))
	}

	// Whole GET.
	resp, body := fetch(t, "GET", a.ReplyURL, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, reply) || resp.Header.Get("Content-Length") != fmt.Sprint(n) {
		t.Errorf("GET: %d, %d bytes, Content-Length %q", resp.StatusCode, len(body), resp.Header.Get("Content-Length"))
	}
	if resp.Header.Get("ETag") != etag {
		t.Errorf("GET ETag %q, HEAD had %q", resp.Header.Get("ETag"), etag)
	}

	// Single ranges.
	for _, tc := range []struct {
		rng         string
		first, last int
	}{
		{"bytes=5-9", 5, 9},
		{"bytes=0-0", 0, 0},
		{"bytes=9990-", 9990, 9999},
		{"bytes=-10", 9990, 9999},
		{"bytes=9000-20000", 9000, 9999},
	} {
		resp, body := fetch(t, "GET", a.ReplyURL, map[string]string{"Range": tc.rng})
		wantCR := fmt.Sprintf("bytes %d-%d/%d", tc.first, tc.last, n)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != wantCR || !bytes.Equal(body, reply[tc.first:tc.last+1]) {
			t.Errorf("Range %s: %d, Content-Range %q, %d bytes; want 206, %q, %d bytes", tc.rng, resp.StatusCode,
				resp.Header.Get("Content-Range"), len(body), wantCR, tc.last-tc.first+1)
		}
		if got := resp.Header.Get("Content-Length"); got != fmt.Sprint(tc.last-tc.first+1) {
			t.Errorf("Range %s: Content-Length %q", tc.rng, got)
		}
	}
	resp, _ = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": fmt.Sprintf("bytes=%d-", n)})
	if resp.StatusCode != 416 {
		t.Errorf("Range beyond the end: %d, want 416", resp.StatusCode)
	}

	// If-Range: the current ETag gives the range, a stale one the whole
	// reply.
	resp, body = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": "bytes=5-9", "If-Range": etag})
	if resp.StatusCode != 206 || !bytes.Equal(body, reply[5:10]) {
		t.Errorf("If-Range with the ETag: %d, %d bytes; want 206, 5", resp.StatusCode, len(body))
	}
	resp, body = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": "bytes=5-9", "If-Range": `"stale"`})
	if resp.StatusCode != 200 || !bytes.Equal(body, reply) {
		t.Errorf("If-Range with another ETag: %d, %d bytes; want 200, %d", resp.StatusCode, len(body), n)
	}
	resp, body = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": "bytes=5-9", "If-Range": lastMod})
	if resp.StatusCode != 206 || !bytes.Equal(body, reply[5:10]) {
		t.Errorf("If-Range with Last-Modified: %d, %d bytes; want 206, 5", resp.StatusCode, len(body))
	}
	// If-Unmodified-Since, as Windows sends on follow-up GETs.
	resp, body = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": "bytes=100-199", "If-Unmodified-Since": lastMod})
	if resp.StatusCode != 206 || !bytes.Equal(body, reply[100:200]) {
		t.Errorf("If-Unmodified-Since Last-Modified: %d, want 206", resp.StatusCode)
	}
	lm, _ := http.ParseTime(lastMod)
	resp, _ = fetch(t, "GET", a.ReplyURL, map[string]string{"Range": "bytes=100-199", "If-Unmodified-Since": lm.Add(-time.Hour).Format(http.TimeFormat)})
	if resp.StatusCode != 412 {
		t.Errorf("If-Unmodified-Since an hour earlier: %d, want 412", resp.StatusCode)
	}

	// A repeated final fragment answers the same reply URL; the reply is
	// unchanged.
	checkAck(t, fragment(t, s, data, 0, 3999), finalAck(len(data), a.ReplyURL))
	if be.hits() != 1 {
		t.Errorf("%d notifications, want 1", be.hits())
	}

	// Close-Session ends it.
	if a, _ := s.Close(context.Background()); a == nil || a.Status != 200 {
		t.Fatalf("close: %+v", a)
	}
	expectStatus(t, "GET", a.ReplyURL, 404)
	expectStatus(t, "HEAD", a.ReplyURL, 404)
	assertNoSession(t, srv.SessionDir, s.ID)

	// The client (HEAD, then ranged GETs) gets it whole.
	res, err := c.Upload(context.Background(), srv.URL("/reply-client.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{KeepReply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Reply, reply) {
		t.Errorf("client reply: %d bytes sha %s, want %d bytes sha %s", len(res.Reply), sha(res.Reply), n, sha(reply))
	}
}

// TestNotifyReplyNotCompressed serves a reply through a site whose encode
// handler compresses application/octet-stream: the reply must still be
// sent as stored, with its ranges.
func TestNotifyReplyNotCompressed(t *testing.T) {
	reply := []byte(strings.Repeat("a compressible reply line\n", 400))
	be := newHookBackend(t, answerWith(hookAnswer{Body: reply}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	srv.Site = `encode {
		gzip
		minimum_length 1
		match {
			header Content-Type application/octet-stream*
		}
	}
	handle /control {
		header Content-Type application/octet-stream
		respond "` + strings.Repeat("x", 2000) + `" 200
	}`
	reloadConfig(srv)

	// The control: this encode setup does compress octet-streams.
	resp, _ := fetch(t, "GET", srv.URL("/control"), map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("control response not compressed (Content-Encoding %q); the test setup is wrong", resp.Header.Get("Content-Encoding"))
	}

	c := newClient()
	data := randomBytes(t, 3000)
	upload := srv.URL("/gz.bin")
	s, a := uploadAll(t, c, upload, data, 3000)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	gz := map[string]string{"Accept-Encoding": "gzip"}
	resp, body := fetch(t, "GET", a.ReplyURL, gz)
	if enc := resp.Header.Get("Content-Encoding"); resp.StatusCode != 200 || enc != "" || !bytes.Equal(body, reply) {
		t.Errorf("GET with Accept-Encoding gzip: %d, Content-Encoding %q, %d bytes; want 200, none, %d bytes", resp.StatusCode, enc, len(body), len(reply))
	}
	if got := resp.Header.Get("Content-Length"); got != fmt.Sprint(len(reply)) {
		t.Errorf("Content-Length %q, want %d", got, len(reply))
	}
	resp, body = fetch(t, "GET", a.ReplyURL, map[string]string{"Accept-Encoding": "gzip", "Range": "bytes=5-9"})
	if enc := resp.Header.Get("Content-Encoding"); resp.StatusCode != 206 || enc != "" || !bytes.Equal(body, reply[5:10]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 5-9/%d", len(reply)) {
		t.Errorf("ranged GET with Accept-Encoding gzip: %d, Content-Encoding %q, Content-Range %q, %q", resp.StatusCode, enc, resp.Header.Get("Content-Range"), body)
	}
	resp, _ = fetch(t, "HEAD", a.ReplyURL, gz)
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Length") != fmt.Sprint(len(reply)) {
		t.Errorf("HEAD with Accept-Encoding gzip: Content-Encoding %q, Accept-Ranges %q, Content-Length %q",
			resp.Header.Get("Content-Encoding"), resp.Header.Get("Accept-Ranges"), resp.Header.Get("Content-Length"))
	}
	s.Close(context.Background())
}

// TestNotifyReplyIsolation checks that a reply is served only with its own
// session id at its own upload URL.
func TestNotifyReplyIsolation(t *testing.T) {
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		return hookAnswer{Body: []byte(rec.Header.Get(protocol.HeaderSessionID))}
	})
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 100)
	urlA, urlB := srv.URL("/iso/a.bin"), srv.URL("/iso/b.bin")
	sa, ackA := uploadAll(t, c, urlA, data, 100)
	sb, ackB := uploadAll(t, c, urlB, data, 100)
	checkAck(t, ackA, finalAck(len(data), ownReplyURL(urlA, sa.ID)))
	checkAck(t, ackB, finalAck(len(data), ownReplyURL(urlB, sb.ID)))

	for u, want := range map[string]string{ackA.ReplyURL: sa.WireID, ackB.ReplyURL: sb.WireID} {
		resp, body := fetch(t, "GET", u, nil)
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET %s: %d %q, want 200 %q", u, resp.StatusCode, body, want)
		}
	}
	for _, u := range []string{
		ownReplyURL(urlA, sb.ID),                  // A's URL, B's id
		ownReplyURL(urlB, sa.ID),                  // B's URL, A's id
		ownReplyURL(srv.URL("/iso/c.bin"), sa.ID), // A's id at another path
		ownReplyURL(srv.URL("/iso/A.bin"), sa.ID), // another case
		ownReplyURL(srv.URL("/iso/"), sa.ID),
		ownReplyURL(urlA, "{00000000-0000-0000-0000-000000000001}"), // unknown id
	} {
		for _, m := range []string{"GET", "HEAD"} {
			resp, body := fetch(t, m, u, nil)
			if resp.StatusCode != 404 || strings.Contains(string(body), "{") {
				t.Errorf("%s %s: %d %q, want 404", m, u, resp.StatusCode, body)
			}
		}
	}
	// A session that is not finished has no reply.
	sc := create(t, c, srv.URL("/iso/c.bin"))
	checkAck(t, fragment(t, sc, data, 0, 49), ack{status: 200, headers: received("50")})
	expectStatus(t, "GET", ownReplyURL(srv.URL("/iso/c.bin"), sc.ID), 404)
	// Other methods with bits_reply are not reply downloads.
	resp, _ := fetch(t, "DELETE", ackA.ReplyURL, nil)
	if resp.StatusCode != 299 {
		t.Errorf("DELETE at a reply URL: %d, want the next handler's 299", resp.StatusCode)
	}
}

// TestNotifyCancelAfterDelivery cancels a session whose upload was
// delivered and copied: the destination stays, the session and its reply
// go.
func TestNotifyCancelAfterDelivery(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Header: copyHeader, Body: []byte("reply")}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 20_000)
	upload := srv.URL("/cancel.bin")
	s, a := uploadAll(t, c, upload, data, 8000)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	expectStatus(t, "GET", a.ReplyURL, 200)
	sessionAck := ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s.WireID}}
	for range 2 {
		ca, err := s.Cancel(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, ca, sessionAck)
	}
	assertFile(t, filepath.Join(srv.Root, "cancel.bin"), data)
	assertNoSession(t, srv.SessionDir, s.ID)
	expectStatus(t, "GET", a.ReplyURL, 404)
	expectStatus(t, "HEAD", a.ReplyURL, 404)
	if be.hits() != 1 {
		t.Errorf("%d notifications, want 1", be.hits())
	}

	// Cancel without a copy: nothing anywhere.
	be.setAnswer(answerWith(hookAnswer{Body: []byte("reply")}))
	upload = srv.URL("/cancel2.bin")
	s, a = uploadAll(t, c, upload, data, 20_000)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	if ca, err := s.Cancel(context.Background()); err != nil || ca.Status != 200 {
		t.Fatalf("cancel: %v %+v", err, ca)
	}
	assertNoFile(t, filepath.Join(srv.Root, "cancel2.bin"))
	assertNoSession(t, srv.SessionDir, s.ID)
	expectStatus(t, "GET", a.ReplyURL, 404)
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
		t.Errorf("sessions left: %v", dirs)
	}
}

// TestNotifyReplyEscapedPath serves the reply of an upload whose URL has
// percent-escapes.
func TestNotifyReplyEscapedPath(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Body: []byte("escaped"), Header: copyHeader}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 100)
	upload := srv.URL("/esc/a%20b%2Bc%25.bin?q=%2F")
	s, a := uploadAll(t, c, upload, data, 100)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	if got := be.last().Header.Get(protocol.HeaderOriginalRequestURL); got != upload {
		t.Errorf("BITS-Original-Request-URL %q, want %q", got, upload)
	}
	resp, body := fetch(t, "GET", a.ReplyURL, nil)
	if resp.StatusCode != 200 || string(body) != "escaped" {
		t.Errorf("reply GET %s: %d %q", a.ReplyURL, resp.StatusCode, body)
	}
	assertFile(t, filepath.Join(srv.Root, "esc", "a b+c%.bin"), data)
	s.Close(context.Background())
}

// TestNotifyReplyExpires checks that a reply is kept while it is being
// downloaded and deleted with its session when the session times out.
func TestNotifyReplyExpires(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Body: []byte("short-lived")}))
	srv := newServer(t, notifyOptions(be.URL("/hook"))+"\n\t\tsession_timeout 1s")
	c := newClient()
	data := randomBytes(t, 100)
	upload := srv.URL("/expire.bin")
	s, a := uploadAll(t, c, upload, data, 100)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	// Downloads count as activity.
	for end := time.Now().Add(1600 * time.Millisecond); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		expectStatus(t, "HEAD", a.ReplyURL, 200)
	}
	deadline := time.Now().Add(4 * time.Second)
	for {
		if !sessionStored(t, srv.SessionDir, s.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle session with a reply was not reaped")
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectStatus(t, "GET", a.ReplyURL, 404)
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 500, code: protocol.BGSessionNotFound})
}

// TestNotifyLargeReply has the client download a reply larger than one of
// its range requests.
func TestNotifyLargeReply(t *testing.T) {
	reply := randomBytes(t, 9<<20+3)
	be := newHookBackend(t, answerWith(hookAnswer{Body: reply}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 1000)
	var got bytes.Buffer
	res, err := c.Upload(context.Background(), srv.URL("/large-reply.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{Reply: &got})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReplySize != int64(len(reply)) || !bytes.Equal(got.Bytes(), reply) {
		t.Errorf("reply: %d bytes sha %s, want %d bytes sha %s", got.Len(), sha(got.Bytes()), len(reply), sha(reply))
	}
}
