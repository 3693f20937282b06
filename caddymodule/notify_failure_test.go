package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestNotifyRetryAfterFailures lets the backend fail three times with 500
// while the client retries the final fragment: the fourth notification
// succeeds, the upload is committed once and the reply arrives.
func TestNotifyRetryAfterFailures(t *testing.T) {
	reply := []byte("accepted after three failures")
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		if n <= 3 {
			return hookAnswer{Status: 500, Body: []byte("try again")}
		}
		return hookAnswer{Header: copyHeader, Body: reply}
	})
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	c.FragmentSize = 40_000
	data := randomBytes(t, 150_000)
	res, err := c.Upload(context.Background(), srv.URL("/retry.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{KeepReply: true})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	recs := be.recs()
	if len(recs) != 4 {
		t.Fatalf("%d notifications, want 4", len(recs))
	}
	ok := 0
	for i, rec := range recs {
		if rec.BodySHA != sha(data) || rec.BodyLen != int64(len(data)) {
			t.Errorf("notification %d: %d bytes sha %s, want the whole upload", i+1, rec.BodyLen, rec.BodySHA)
		}
		if rec.Header.Get(protocol.HeaderSessionID) != res.WireSessionID {
			t.Errorf("notification %d for session %s, want %s", i+1, rec.Header.Get(protocol.HeaderSessionID), res.WireSessionID)
		}
		if rec.Status == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d successful notifications, want 1", ok)
	}
	if !bytes.Equal(res.Reply, reply) || res.Restarts != 0 {
		t.Errorf("reply %q, restarts %d", res.Reply, res.Restarts)
	}
	assertFile(t, filepath.Join(srv.Root, "retry.bin"), data)
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
		t.Errorf("sessions left: %v", dirs)
	}
}

// TestNotifyFailures checks how each failure of the backend is answered,
// and that the session stays complete but undelivered, so the retry of
// the final fragment notifies again.
func TestNotifyFailures(t *testing.T) {
	good := hookAnswer{Header: copyHeader, Body: []byte("fine")}
	be := newHookBackend(t, nil)
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 10_000)

	// attempt uploads everything but the last byte, then sends the final
	// fragment, expecting want; then the backend is fixed and the retry
	// must notify again and succeed.
	attempt := func(t *testing.T, name string, want ack, fix func()) {
		t.Helper()
		upload := srv.URL("/" + name + ".bin")
		s := create(t, c, upload)
		checkAck(t, fragment(t, s, data, 0, 8999), ack{status: 200, headers: received("9000")})
		// Notifications reaching the backend while it fails (none when
		// it is unreachable).
		reaching := 1
		if name == "unreachable" {
			reaching = 0
		}
		h0 := be.hits()
		checkAck(t, fragment(t, s, data, 9000, 9999), want)
		if got := be.hits() - h0; got != reaching {
			t.Errorf("%d notifications reached the backend, want %d", got, reaching)
		}
		// Complete, not delivered: the data is kept, nothing placed.
		assertFile(t, sessionFile(srv.SessionDir, s.ID, "data"), data)
		assertNoFile(t, filepath.Join(srv.Root, name+".bin"))
		assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "reply"))
		expectStatus(t, "GET", ownReplyURL(upload, s.ID), 404)
		// The client's retry notifies again while the backend still fails.
		checkAck(t, fragment(t, s, data, 9000, 9999), want)
		if got := be.hits() - h0; got != 2*reaching {
			t.Errorf("after the retry %d notifications reached the backend, want %d", got, 2*reaching)
		}
		fix()
		mid := be.hits()
		a := fragment(t, s, data, 9000, 9999)
		checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
		if be.hits() != mid+1 {
			t.Errorf("the retry after the fix made %d notifications, want 1", be.hits()-mid)
		}
		if rec := be.last(); rec.BodySHA != sha(data) || rec.Status != 200 {
			t.Errorf("successful notification: sha %s status %d", rec.BodySHA, rec.Status)
		}
		assertFile(t, filepath.Join(srv.Root, name+".bin"), data)
		resp, body := fetch(t, "GET", a.ReplyURL, nil)
		if resp.StatusCode != 200 || string(body) != "fine" {
			t.Errorf("reply %d %q", resp.StatusCode, body)
		}
		// Cached now.
		checkAck(t, fragment(t, s, data, 9000, 9999), finalAck(len(data), a.ReplyURL))
		if be.hits() != mid+1 {
			t.Errorf("the cached final Ack notified again")
		}
		s.Close(context.Background())
	}

	t.Run("403 relayed", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Status: 403, Body: []byte("forbidden")}))
		attempt(t, "app403", appError(403, 0x80190193), func() { be.setAnswer(answerWith(good)) })
	})
	t.Run("500 relayed", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Status: 500}))
		attempt(t, "app500", appError(500, 0x801901F4), func() { be.setAnswer(answerWith(good)) })
	})
	t.Run("404 close-delimited relayed", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Status: 404, CloseDelimited: true, Body: []byte("no such app")}))
		attempt(t, "app404", appError(404, 0x80190194), func() { be.setAnswer(answerWith(good)) })
	})
	t.Run("204 is no success", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Status: 204}))
		attempt(t, "app204", appError(502, 0x801900CC), func() { be.setAnswer(answerWith(good)) })
	})
	t.Run("302 relayed, not followed", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Status: 302, Header: map[string]string{"Location": be.URL("/elsewhere")}}))
		attempt(t, "app302", appError(302, 0x8019012E), func() { be.setAnswer(answerWith(good)) })
		for _, rec := range be.recs() {
			if rec.RequestURI != "/hook" {
				t.Errorf("the redirect was followed to %s", rec.RequestURI)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		srv.Options = notifyOptions(be.URL("/hook"), "timeout 500ms")
		reloadConfig(srv, c)
		defer func() {
			srv.Options = notifyOptions(be.URL("/hook"))
			reloadConfig(srv, c)
		}()
		be.setAnswer(answerWith(hookAnswer{Delay: 2 * time.Second, Header: copyHeader, Body: []byte("late")}))
		before := be.hits()
		start := time.Now()
		attempt(t, "timeout", appError(408, protocol.ErrorTimeout), func() {
			if d := time.Since(start); d > 3*time.Second { // 4 s if the backend's 2 s were awaited
				t.Errorf("two timed-out notifications took %v with a 500ms timeout", d)
			}
			be.setAnswer(answerWith(good))
		})
		recs := be.recs()[before:]
		for i, rec := range recs[:2] {
			if !rec.Aborted || rec.BodySHA != sha(data) {
				t.Errorf("timed-out notification %d: aborted %v, sha %s; want aborted with the whole body", i+1, rec.Aborted, rec.BodySHA)
			}
		}
	})
	t.Run("reply body stalls past the timeout", func(t *testing.T) {
		reloadOptions(t, srv, c, notifyOptions(be.URL("/hook"), "timeout 500ms"), notifyOptions(be.URL("/hook")))
		be.setAnswer(answerWith(hookAnswer{Stall: 2 * time.Second, Header: copyHeader, Body: randomBytes(t, 4000)}))
		attempt(t, "stall", appError(408, protocol.ErrorTimeout), func() { be.setAnswer(answerWith(good)) })
	})
	t.Run("unreachable", func(t *testing.T) {
		dead := fmt.Sprintf("http://127.0.0.1:%d/hook", testutil.FreePort(t))
		srv.Options = notifyOptions(dead)
		reloadConfig(srv, c)
		defer func() {
			srv.Options = notifyOptions(be.URL("/hook"))
			reloadConfig(srv, c)
		}()
		be.setAnswer(answerWith(good))
		attempt(t, "unreachable", appError(502, protocol.HTTPError(502)), func() {
			// The new config reaches the backend; the session carries
			// over.
			srv.Options = notifyOptions(be.URL("/hook"))
			reloadConfig(srv, c)
		})
	})
}

// TestNotifyReplyTooLarge checks max_reply_size: a larger reply fails the
// notification with BG_E_TOO_LARGE (context 0x7), nothing is cached, and
// the retry notifies again.
func TestNotifyReplyTooLarge(t *testing.T) {
	for _, mode := range []string{"value", "reference"} {
		t.Run(mode, func(t *testing.T) {
			big, small := randomBytes(t, 2000), randomBytes(t, 1024)
			answer := func(b []byte) hookAnswer {
				if mode == "reference" {
					return hookAnswer{ReplyFile: b, Header: copyHeader}
				}
				return hookAnswer{Body: b, Header: copyHeader}
			}
			be := newHookBackend(t, answerWith(answer(big)))
			srv := newServer(t, notifyOptions(be.URL("/hook"), "type "+mode, "max_reply_size 1KiB"))
			c := newClient()
			data := randomBytes(t, 3000)
			upload := srv.URL("/big-reply.bin")
			s := create(t, c, upload)
			checkAck(t, fragment(t, s, data, 0, 1999), ack{status: 200, headers: received("2000")})
			tooLarge := appError(500, protocol.BGTooLarge)
			checkAck(t, fragment(t, s, data, 2000, 2999), tooLarge)
			assertNoFile(t, filepath.Join(srv.Root, "big-reply.bin"))
			assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "reply"))
			expectStatus(t, "GET", ownReplyURL(upload, s.ID), 404)
			checkAck(t, fragment(t, s, data, 2000, 2999), tooLarge)
			if be.hits() != 2 {
				t.Errorf("%d notifications, want 2 (nothing cached)", be.hits())
			}
			// Exactly max_reply_size is fine.
			be.setAnswer(answerWith(answer(small)))
			a := fragment(t, s, data, 2000, 2999)
			checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
			if be.hits() != 3 {
				t.Errorf("%d notifications, want 3", be.hits())
			}
			resp, body := fetch(t, "GET", a.ReplyURL, nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, small) {
				t.Errorf("reply: %d, %d bytes; want 200, %d", resp.StatusCode, len(body), len(small))
			}
			assertFile(t, filepath.Join(srv.Root, "big-reply.bin"), data)
			s.Close(context.Background())
		})
	}
}
