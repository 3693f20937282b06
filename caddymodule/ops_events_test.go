package caddymodule_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// The handler's events, all of which the tests subscribe to.
var opsEventNames = []string{
	"bits_upload.session_created",
	"bits_upload.session_completed",
	"bits_upload.session_cancelled",
	"bits_upload.session_reaped",
	"bits_upload.notification_failed",
}

// opsOneEvent returns the single event of that name for a session,
// failing the test unless there is exactly one. It checks that the event
// comes from the bits_upload handler.
func opsOneEvent(t *testing.T, name string, id protocol.SessionID) map[string]any {
	t.Helper()
	evs := opsEventsNamed(name, id.Wire())
	if len(evs) != 1 {
		t.Fatalf("%d %s events for session %s, want 1; all events: %+v", len(evs), name, id, opsAllEvents())
	}
	if evs[0].Origin != "http.handlers.bits_upload" {
		t.Errorf("%s: origin %q, want http.handlers.bits_upload", name, evs[0].Origin)
	}
	return evs[0].Data
}

// opsCheckData compares event data with want, field by field, with Go
// types (sizes are int64).
func opsCheckData(t *testing.T, name string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no field %q (data %v)", name, k, got)
			continue
		}
		if g != w {
			t.Errorf("%s: %s = %#v, want %#v", name, k, g, w)
		}
	}
}

// TestOpsEvents checks the payload of every event the handler emits:
// created, completed, cancelled (by the client and through the admin API)
// and, with their own configs, reaped and notification_failed.
func TestOpsEvents(t *testing.T) {
	ctx := context.Background()

	t.Run("lifecycle", func(t *testing.T) {
		opsResetEvents()
		srv := opsServer(t, "", "")
		opsLoadWithEvents(srv, opsEventNames...)
		c := newClient()
		url := srv.URL("/ev/done.bin")
		data := randomBytes(t, 4000)

		s := create(t, c, url)
		dest := filepath.Join(srv.Root, "ev", "done.bin")
		opsCheckData(t, "session_created", opsOneEvent(t, "bits_upload.session_created", s.ID), map[string]any{
			"session_id":  s.ID.Wire(),
			"destination": dest,
			"url":         url,
			"user":        "",
			"remote_ip":   "127.0.0.1",
		})
		checkAck(t, fragment(t, s, data, 0, 1999), ack{status: 200, headers: received("2000")})
		if evs := opsEventsNamed("bits_upload.session_completed", s.ID.Wire()); len(evs) != 0 {
			t.Fatalf("session_completed before the last byte: %+v", evs)
		}
		checkAck(t, fragment(t, s, data, 2000, 3999), ack{status: 200, headers: received("4000")})
		completed := opsOneEvent(t, "bits_upload.session_completed", s.ID)
		opsCheckData(t, "session_completed", completed, map[string]any{
			"session_id":  s.ID.Wire(),
			"destination": dest,
			"size":        int64(4000),
			"committed":   true,
			"reply_url":   "",
			"user":        "",
		})
		// Without a notification no digest is computed, so there is none
		// to report.
		if v, ok := completed["sha256"]; ok {
			t.Errorf("session_completed of a plain upload carries sha256 %v", v)
		}
		if ms, ok := completed["duration_ms"].(int64); !ok || ms < 0 {
			t.Errorf("session_completed: duration_ms %#v, want a non-negative int64", completed["duration_ms"])
		}
		// A repeated final fragment is not a second completion.
		checkAck(t, fragment(t, s, data, 2000, 3999), ack{status: 200, headers: received("4000")})
		opsOneEvent(t, "bits_upload.session_completed", s.ID)
		// Closing is not cancelling.
		a, err := s.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		if evs := opsEventsNamed("bits_upload.session_cancelled", s.ID.Wire()); len(evs) != 0 {
			t.Errorf("Close-Session emitted session_cancelled: %+v", evs)
		}

		// Cancelled by the client, part way.
		part := randomBytes(t, 300)
		s = create(t, c, srv.URL("/ev/cancelled.bin"))
		checkAck(t, fragment(t, s, part, 0, 99), ack{status: 200, headers: received("100")})
		a, err = s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		opsCheckData(t, "session_cancelled", opsOneEvent(t, "bits_upload.session_cancelled", s.ID), map[string]any{
			"session_id":  s.ID.Wire(),
			"destination": filepath.Join(srv.Root, "ev", "cancelled.bin"),
			"received":    int64(100),
			"total":       int64(300),
			"committed":   false,
			"user":        "",
		})
		// A repeated Cancel-Session is answered, but not emitted again.
		a, err = s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		opsOneEvent(t, "bits_upload.session_cancelled", s.ID)

		// Cancelled through the admin API, before its first fragment.
		s = create(t, c, srv.URL("/ev/admin.bin"))
		if status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+s.ID.Bare()); status != http.StatusOK {
			t.Fatalf("DELETE: status %d: %s", status, body)
		}
		opsCheckData(t, "session_cancelled (admin)", opsOneEvent(t, "bits_upload.session_cancelled", s.ID), map[string]any{
			"session_id": s.ID.Wire(),
			"received":   int64(0),
			"total":      int64(-1),
			"committed":  false,
		})

		// Nothing else was emitted: no reaping, no notification.
		for _, e := range opsAllEvents() {
			if e.Name == "bits_upload.session_reaped" || e.Name == "bits_upload.notification_failed" {
				t.Errorf("unexpected event %+v", e)
			}
		}
	})

	t.Run("reaped", func(t *testing.T) {
		opsResetEvents()
		srv := opsServer(t, "session_timeout 1s", "")
		opsLoadWithEvents(srv, opsEventNames...)
		c := newClient()
		data := randomBytes(t, 100)
		start := time.Now()
		s := create(t, c, srv.URL("/ev/idle.bin"))
		checkAck(t, fragment(t, s, data, 0, 49), ack{status: 200, headers: received("50")})
		if !opsWaitFor(10*time.Second, func() bool {
			return len(opsEventsNamed("bits_upload.session_reaped", s.ID.Wire())) > 0
		}) {
			t.Fatalf("no session_reaped event within 10 s; events: %+v", opsAllEvents())
		}
		reaped := opsOneEvent(t, "bits_upload.session_reaped", s.ID)
		opsCheckData(t, "session_reaped", reaped, map[string]any{
			"session_id":  s.ID.Wire(),
			"destination": filepath.Join(srv.Root, "ev", "idle.bin"),
			"received":    int64(50),
			"total":       int64(100),
			"finished":    false,
			"user":        "",
		})
		la, err := time.Parse(time.RFC3339Nano, reaped["last_activity"].(string))
		if err != nil || la.Before(start.Add(-time.Second)) || la.After(time.Now()) {
			t.Errorf("session_reaped: last_activity %v (%v), want a time during the test", reaped["last_activity"], err)
		}
		assertNoSession(t, srv.SessionDir, s.ID)
		if evs := opsEventsNamed("bits_upload.session_cancelled", ""); len(evs) != 0 {
			t.Errorf("reaping emitted session_cancelled: %+v", evs)
		}
	})

	t.Run("notification_failed", func(t *testing.T) {
		opsResetEvents()
		app := newOpsApp(t, http.StatusInternalServerError)
		srv := opsServer(t, "notify "+app.srv.URL+"/hook", "")
		opsLoadWithEvents(srv, opsEventNames...)
		c := newClient()
		data := randomBytes(t, 700)
		s := create(t, c, srv.URL("/ev/notify.bin"))
		checkAck(t, fragment(t, s, data, 0, 699), ack{status: 500, code: protocol.HTTPError(500),
			headers: map[string]string{protocol.HeaderErrorContext: "0x7"}})
		opsCheckData(t, "notification_failed", opsOneEvent(t, "bits_upload.notification_failed", s.ID), map[string]any{
			"session_id":  s.ID.Wire(),
			"destination": filepath.Join(srv.Root, "ev", "notify.bin"),
			"size":        int64(700),
			"result":      "app_error",
			"status":      500,
			"error_code":  protocol.HTTPError(500).String(),
		})
		if evs := opsEventsNamed("bits_upload.session_completed", s.ID.Wire()); len(evs) != 0 {
			t.Errorf("session_completed after a failed notification: %+v", evs)
		}
		// The retry succeeds (the application answers 200 now) and completes.
		a := fragment(t, s, data, 0, 699)
		checkAck(t, a, ack{status: 200, headers: received("700")})
		opsCheckData(t, "session_completed", opsOneEvent(t, "bits_upload.session_completed", s.ID), map[string]any{
			"size":      int64(700),
			"sha256":    sha(data),
			"committed": false,
			"reply_url": a.ReplyURL,
		})
		opsOneEvent(t, "bits_upload.notification_failed", s.ID)
	})

	t.Run("only subscribed events", func(t *testing.T) {
		opsResetEvents()
		srv := opsServer(t, "", "")
		opsLoadWithEvents(srv, "bits_upload.session_cancelled")
		c := newClient()
		data := randomBytes(t, 10)
		s := create(t, c, srv.URL("/ev/only.bin"))
		checkAck(t, fragment(t, s, data, 0, 9), ack{status: 200, headers: received("10")})
		a, err := s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		evs := opsAllEvents()
		if len(evs) != 1 || evs[0].Name != "bits_upload.session_cancelled" {
			t.Errorf("events %+v, want exactly one session_cancelled", evs)
		}
	})
}
