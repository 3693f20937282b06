package caddymodule_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// sameFinalAck checks that a repeated final Ack is identical to the first.
func sameFinalAck(t testing.TB, first, again *client.Ack) {
	t.Helper()
	if again.Status != first.Status {
		t.Errorf("repeated final Ack: status %d, first was %d", again.Status, first.Status)
	}
	for _, h := range []string{protocol.HeaderPacketType, protocol.HeaderReplyURL, protocol.HeaderReceivedContentRange,
		protocol.HeaderSessionID, protocol.HeaderErrorCode, protocol.HeaderErrorContext, "Content-Length"} {
		if a, b := first.Header.Get(h), again.Header.Get(h); a != b {
			t.Errorf("repeated final Ack: %s %q, first was %q", h, b, a)
		}
	}
}

// TestNotifyFinalAckCached repeats the final fragment, one after the other
// and concurrently: the backend is notified once and every Ack is the
// same.
func TestNotifyFinalAckCached(t *testing.T) {
	var mu sync.Mutex
	delay := time.Duration(0)
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		mu.Lock()
		defer mu.Unlock()
		return hookAnswer{Body: []byte("reply " + strconv.Itoa(n)), Delay: delay}
	})
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 10_000)

	t.Run("sequential", func(t *testing.T) {
		upload := srv.URL("/cached.bin")
		s, first := uploadAll(t, c, upload, data, 6000)
		checkAck(t, first, finalAck(len(data), ownReplyURL(upload, s.ID)))
		for _, r := range [][2]int64{{6000, 9999}, {0, 9999}, {9999, 9999}, {6000, 9999}} {
			sameFinalAck(t, first, fragment(t, s, data, r[0], r[1]))
		}
		if be.hits() != 1 {
			t.Errorf("%d notifications, want 1", be.hits())
		}
		_, body := fetch(t, "GET", first.ReplyURL, nil)
		if string(body) != "reply 1" {
			t.Errorf("reply %q", body)
		}
		s.Close(context.Background())
	})

	t.Run("concurrent", func(t *testing.T) {
		mu.Lock()
		delay = 300 * time.Millisecond
		mu.Unlock()
		before := be.hits()
		upload := srv.URL("/concurrent.bin")
		s := create(t, c, upload)
		checkAck(t, fragment(t, s, data, 0, 5999), ack{status: 200, headers: received("6000")})
		acks := make([]*client.Ack, 5)
		var wg sync.WaitGroup
		for i := range acks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := s.Fragment(context.Background(), data[6000:], 6000, int64(len(data)))
				if err != nil {
					t.Error(err)
					return
				}
				acks[i] = a
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		checkAck(t, acks[0], finalAck(len(data), ownReplyURL(upload, s.ID)))
		for _, a := range acks[1:] {
			sameFinalAck(t, acks[0], a)
		}
		if got := be.hits() - before; got != 1 {
			t.Errorf("%d notifications for concurrent final fragments, want 1", got)
		}
		s.Close(context.Background())
	})
}

// TestNotifyFinalAckCachedAcrossRestart kills and restarts a Caddy
// process after a delivery: the repeated final fragment still gets the
// identical Ack, the reply is still served with the same validators, and
// the backend is not notified again.
func TestNotifyFinalAckCachedAcrossRestart(t *testing.T) {
	reply := randomBytes(t, 5000)
	be := newHookBackend(t, answerWith(hookAnswer{Header: copyHeader, Body: reply}))
	dir := t.TempDir()
	root, sessions := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessions, notifyOptions(be.URL("/hook"))), admin)
	upload := "http://127.0.0.1:" + strconv.Itoa(port) + "/restart.bin"

	c := newClient()
	data := randomBytes(t, 50_000)
	s, first := uploadAll(t, c, upload, data, 30_000)
	checkAck(t, first, finalAck(len(data), ownReplyURL(upload, s.ID)))
	sameFinalAck(t, first, fragment(t, s, data, 30_000, 49_999))
	head, _ := fetch(t, "HEAD", first.ReplyURL, nil)
	assertFile(t, filepath.Join(root, "restart.bin"), data)

	p.Restart()
	c.CloseIdleConnections()
	plainHTTP.CloseIdleConnections()
	sameFinalAck(t, first, fragment(t, s, data, 30_000, 49_999))
	sameFinalAck(t, first, fragment(t, s, data, 0, 49_999))
	if be.hits() != 1 {
		t.Errorf("%d notifications, want 1", be.hits())
	}
	resp, body := fetch(t, "GET", first.ReplyURL, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, reply) {
		t.Errorf("reply after restart: %d, %d bytes", resp.StatusCode, len(body))
	}
	for _, h := range []string{"ETag", "Last-Modified", "Content-Length"} {
		if resp.Header.Get(h) != head.Header.Get(h) {
			t.Errorf("%s after restart %q, before %q", h, resp.Header.Get(h), head.Header.Get(h))
		}
	}
	assertFile(t, filepath.Join(root, "restart.bin"), data)
	if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	expectStatus(t, "GET", first.ReplyURL, 404)
	if dirs := sessionDirs(t, sessions); len(dirs) != 0 {
		t.Errorf("sessions left: %v", dirs)
	}
}

// TestNotifyFailedDeliveryAcrossRestart restarts the process after a
// failed notification: the session is still complete and undelivered, and
// the retry notifies.
func TestNotifyFailedDeliveryAcrossRestart(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Status: 503}))
	dir := t.TempDir()
	root, sessions := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessions, notifyOptions(be.URL("/hook"))), admin)
	upload := "http://127.0.0.1:" + strconv.Itoa(port) + "/failed.bin"
	c := newClient()
	data := randomBytes(t, 20_000)
	s, a := uploadAll(t, c, upload, data, 20_000)
	checkAck(t, a, appError(503, 0x801901F7))
	p.Restart()
	c.CloseIdleConnections()
	be.setAnswer(answerWith(hookAnswer{Header: copyHeader, Body: []byte("ok")}))
	a = fragment(t, s, data, 0, 19_999)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	if be.hits() != 2 {
		t.Errorf("%d notifications, want 2", be.hits())
	}
	if rec := be.last(); rec.BodySHA != sha(data) {
		t.Errorf("notification after restart: sha %s", rec.BodySHA)
	}
	assertFile(t, filepath.Join(root, "failed.bin"), data)
}

// TestNotifyReloadDuringDelivery reloads the config while the backend
// holds a notification: the delivery completes and is answered with the
// final Ack, and the backend got the whole upload.
func TestNotifyReloadDuringDelivery(t *testing.T) {
	reply := []byte("slow reply")
	got := make(chan struct{}, 1)
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		select {
		case got <- struct{}{}:
		default:
		}
		return hookAnswer{Delay: 1500 * time.Millisecond, Header: copyHeader, Body: reply}
	})
	srv := newServer(t, notifyOptions(be.URL("/hook"), "header X-Config v1"))
	c := newClient()
	data := randomBytes(t, 2<<20)
	upload := srv.URL("/slow.bin")
	s := create(t, c, upload)
	checkAck(t, fragment(t, s, data, 0, 1<<20-1), ack{status: 200, headers: received("1048576")})

	done := make(chan *client.Ack, 1)
	go func() {
		a, err := s.Fragment(context.Background(), data[1<<20:], 1<<20, int64(len(data)))
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no notification")
	}
	srv.Options = notifyOptions(be.URL("/hook"), "header X-Config v2", "timeout 1m") + "\n\t\tmax_size 100MiB"
	reloadConfig(srv, c)
	var a *client.Ack
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no final Ack")
	}
	if a == nil {
		t.FailNow()
	}
	c.CloseIdleConnections() // the old server closes the connection it answered on
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	rec := be.last()
	if be.hits() != 1 || rec.Aborted || rec.BodyLen != int64(len(data)) || rec.BodySHA != sha(data) {
		t.Errorf("backend: %d notifications, aborted %v, %d bytes sha %s; want 1, false, the whole upload", be.hits(), rec.Aborted, rec.BodyLen, rec.BodySHA)
	}
	if v := rec.Header.Get("X-Config"); v != "v1" {
		t.Errorf("in-flight notification has X-Config %q, want v1 (the config it started with)", v)
	}
	assertFile(t, filepath.Join(srv.Root, "slow.bin"), data)
	resp, body := fetch(t, "GET", a.ReplyURL, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, reply) {
		t.Errorf("reply after the reload: %d %q", resp.StatusCode, body)
	}
	sameFinalAck(t, a, fragment(t, s, data, 1<<20, 2<<20-1))
	if be.hits() != 1 {
		t.Errorf("%d notifications, want 1", be.hits())
	}
	s.Close(context.Background())

	// The new config is in force for the next upload.
	be.setAnswer(answerWith(hookAnswer{Body: reply}))
	s2, a2 := uploadAll(t, c, srv.URL("/after.bin"), data[:1000], 1000)
	checkAck(t, a2, finalAck(1000, ownReplyURL(srv.URL("/after.bin"), s2.ID)))
	if v := be.last().Header.Get("X-Config"); v != "v2" {
		t.Errorf("after the reload X-Config %q, want v2", v)
	}
}

// TestNotifyClientHangsUpDuringDelivery drops the client's connection
// while the backend holds the notification: the delivery still completes,
// and the client's retry of the final fragment gets its Ack without a
// second notification.
func TestNotifyClientHangsUpDuringDelivery(t *testing.T) {
	got := make(chan struct{}, 1)
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		select {
		case got <- struct{}{}:
		default:
		}
		return hookAnswer{Delay: time.Second, Header: copyHeader, Body: []byte("r")}
	})
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 100_000)
	upload := srv.URL("/hangup.bin")
	s := create(t, c, upload)
	checkAck(t, fragment(t, s, data, 0, 49_999), ack{status: 200, headers: received("50000")})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Fragment(ctx, data[50_000:], 50_000, int64(len(data)))
		errc <- err
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no notification")
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled final fragment got an Ack")
	}
	a := fragment(t, s, data, 50_000, 99_999)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	recs := be.recs()
	if len(recs) != 1 || recs[0].Aborted || recs[0].BodySHA != sha(data) {
		t.Errorf("backend: %d notifications, first aborted %v, sha %s; want 1 complete delivery", len(recs), recs[0].Aborted, recs[0].BodySHA)
	}
	assertFile(t, filepath.Join(srv.Root, "hangup.bin"), data)
	s.Close(context.Background())
}

// TestNotifyCrashDuringDelivery kills the process while the backend holds
// the notification: nothing was recorded, so after the restart the retry
// of the final fragment notifies again and succeeds.
func TestNotifyCrashDuringDelivery(t *testing.T) {
	got := make(chan struct{}, 1)
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		if n == 1 {
			got <- struct{}{}
			return hookAnswer{Delay: 3 * time.Second, Header: copyHeader, Body: []byte("lost")}
		}
		return hookAnswer{Header: copyHeader, Body: []byte("second")}
	})
	dir := t.TempDir()
	root, sessions := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessions, notifyOptions(be.URL("/hook"))), admin)
	upload := "http://127.0.0.1:" + strconv.Itoa(port) + "/crash.bin"
	c := newClient()
	data := randomBytes(t, 30_000)
	s := create(t, c, upload)
	checkAck(t, fragment(t, s, data, 0, 19_999), ack{status: 200, headers: received("20000")})
	go s.Fragment(context.Background(), data[20_000:], 20_000, int64(len(data)))
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no notification")
	}
	p.Restart()
	c.CloseIdleConnections()
	a := fragment(t, s, data, 20_000, 29_999)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	recs := be.recs()
	if len(recs) != 2 || recs[1].BodySHA != sha(data) {
		t.Fatalf("%d notifications (want 2), the second with sha %s", len(recs), recs[len(recs)-1].BodySHA)
	}
	if !recs[0].Aborted {
		t.Errorf("the first notification was not cut off by the crash")
	}
	_, body := fetch(t, "GET", a.ReplyURL, nil)
	if string(body) != "second" {
		t.Errorf("reply %q, want second", body)
	}
	assertFile(t, filepath.Join(root, "crash.bin"), data)
}
