package caddymodule_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestOpsMetricsCounters drives known traffic through the handler and
// checks the exact change of every caddy_bits_upload_ sample on the admin
// endpoint's /metrics, then reloads the config and checks that nothing
// was reset.
func TestOpsMetricsCounters(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	ctx := context.Background()
	before := opsScrape(t)

	// A Ping.
	checkAck(t, send(t, c, srv.URL("/m/x"), &client.Packet{Type: protocol.PacketPing}), ack{status: 200})

	// Three complete uploads of 1000, 2000 and 3000 bytes, two fragments
	// each; the first is closed, the others stay open (finished).
	var done []*client.Session
	for i, size := range []int{1000, 2000, 3000} {
		data := randomBytes(t, size)
		s := create(t, c, srv.URL("/m/up"+itoa(i)+".bin"))
		half := int64(size / 2)
		checkAck(t, fragment(t, s, data, 0, half-1), ack{status: 200, headers: received(itoa(size / 2))})
		checkAck(t, fragment(t, s, data, half, int64(size)-1), ack{status: 200, headers: received(itoa(size))})
		assertFile(t, filepath.Join(srv.Root, "m", "up"+itoa(i)+".bin"), data)
		done = append(done, s)
	}
	a, err := done[0].Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})

	// A fourth session: 100 bytes, then a gap (416), then a changed total
	// (400); then it is cancelled.
	data := randomBytes(t, 300)
	s := create(t, c, srv.URL("/m/cancelled.bin"))
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
	checkAck(t, fragment(t, s, data, 200, 299), ack{status: 416, headers: received("100")})
	a, err = s.Fragment(ctx, data[100:200], 100, 301)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
	a, err = s.Cancel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})

	// A fragment for a session that never existed.
	ghost := c.ResumeSession(srv.URL("/m/ghost.bin"), "{6B29FC40-CA47-1067-B31D-00DD010662DA}")
	a, err = ghost.Fragment(ctx, data[:10], 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 500, code: protocol.BGSessionNotFound})

	// A packet type the protocol does not know: counted under "unknown",
	// never under the client's string.
	a = send(t, c, srv.URL("/m/x"), &client.Packet{
		Type:   protocol.PacketPing,
		Header: http.Header{protocol.HeaderPacketType: {"Make-Coffee"}},
	})
	if a.Status != http.StatusBadRequest {
		t.Errorf("unknown packet type: status %d, want 400", a.Status)
	}

	after := opsScrape(t)
	opsCheckDeltas(t, before, after, map[string]float64{
		opsPackets("Ping", "ok"):                         1,
		opsPackets("Create-Session", "ok"):               4,
		opsPackets("Fragment", "ok"):                     7,
		opsPackets("Fragment", "resync"):                 1,
		opsPackets("Fragment", "rejected"):               1,
		opsPackets("Fragment", "not_found"):              1,
		opsPackets("Close-Session", "ok"):                1,
		opsPackets("Cancel-Session", "ok"):               1,
		opsPackets("unknown", "rejected"):                1,
		opsMetric("bytes_received_total"):                6100,
		opsMetric("sessions_created_total"):              4,
		opsMetric("sessions_completed_total"):            3,
		opsMetric("sessions_closed_total"):               1,
		opsMetric("sessions_cancelled_total"):            1,
		opsMetric("commit_duration_seconds_count"):       3,
		opsMetric("sessions_active"):                     2,
		opsMetric("sessions_reaped_total"):               0,
		opsMetric("notification_duration_seconds_count"): 0,
	})
	for k := range after {
		if strings.Contains(k, "Make-Coffee") {
			t.Errorf("client-supplied packet type became a label: %s", k)
		}
	}
	if got, want := after[opsMetric("sessions_active")], float64(len(sessionDirs(t, srv.SessionDir))); got != want {
		t.Errorf("sessions_active %v, want %v (the session directories on disk)", got, want)
	}

	// A reload keeps every value; the counters go on counting.
	srv.Options = "max_size 1GiB"
	srv.load()
	reloaded := opsScrape(t)
	opsCheckDeltas(t, after, reloaded, map[string]float64{})
	if reloaded[opsMetric("sessions_created_total")] == 0 || reloaded[opsMetric("sessions_active")] != after[opsMetric("sessions_active")] {
		t.Errorf("after reload: sessions_created_total %v, sessions_active %v (before %v)",
			reloaded[opsMetric("sessions_created_total")], reloaded[opsMetric("sessions_active")], after[opsMetric("sessions_active")])
	}
	c.CloseIdleConnections()
	a, err = done[1].Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	opsCheckDeltas(t, reloaded, opsScrape(t), map[string]float64{
		opsPackets("Close-Session", "ok"):  1,
		opsMetric("sessions_closed_total"): 1,
		opsMetric("sessions_active"):       -1,
	})
}

// TestOpsMetricsDisabled checks disable_metrics: with only disabled
// handlers the metrics are not even exposed; next to an enabled handler
// they are, and traffic through the disabled one changes none of them.
func TestOpsMetricsDisabled(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		srv := newServer(t, "disable_metrics")
		c := newClient()
		data := randomBytes(t, 100)
		s := create(t, c, srv.URL("/off.bin"))
		checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
		for k := range opsScrape(t) {
			if strings.HasPrefix(k, "caddy_bits_upload_") {
				t.Errorf("disable_metrics: %s exposed", k)
			}
		}
	})

	t.Run("next to an enabled handler", func(t *testing.T) {
		dir := t.TempDir()
		srv := opsServer(t, "disable_metrics", `handle /on/* {
		bits_upload {
			root `+filepath.Join(dir, "root")+`
			session_dir `+filepath.Join(dir, "sessions")+`
		}
	}`)
		srv.load()
		c := newClient()
		ctx := context.Background()
		before := opsScrape(t)
		if _, ok := before[opsMetric("sessions_created_total")]; !ok {
			t.Fatalf("the enabled handler's metrics are not exposed")
		}

		// Everything through the disabled handler.
		checkAck(t, send(t, c, srv.URL("/off/x"), &client.Packet{Type: protocol.PacketPing}), ack{status: 200})
		data := randomBytes(t, 1000)
		s := create(t, c, srv.URL("/off/a.bin"))
		checkAck(t, fragment(t, s, data, 0, 499), ack{status: 200, headers: received("500")})
		checkAck(t, fragment(t, s, data, 700, 999), ack{status: 416, headers: received("500")})
		checkAck(t, fragment(t, s, data, 500, 999), ack{status: 200, headers: received("1000")})
		assertFile(t, filepath.Join(srv.Root, "off", "a.bin"), data)
		a, err := s.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		s = create(t, c, srv.URL("/off/b.bin"))
		a, err = s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		a, err = c.ResumeSession(srv.URL("/off/c.bin"), "{6B29FC40-CA47-1067-B31D-00DD010662DA}").Fragment(ctx, data[:1], 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 500, code: protocol.BGSessionNotFound})
		// sessions_active counts the sessions of every store, whoever
		// registered it, so it is left out here.
		opsCheckDeltas(t, before, opsScrape(t), map[string]float64{}, opsMetric("sessions_active"))

		// The enabled handler's traffic does count: the scrape sees it.
		mid := opsScrape(t)
		s = create(t, c, srv.URL("/on/a.bin"))
		checkAck(t, fragment(t, s, data, 0, 999), ack{status: 200, headers: received("1000")})
		opsCheckDeltas(t, mid, opsScrape(t), map[string]float64{
			opsPackets("Create-Session", "ok"):         1,
			opsPackets("Fragment", "ok"):               1,
			opsMetric("bytes_received_total"):          1000,
			opsMetric("sessions_created_total"):        1,
			opsMetric("sessions_completed_total"):      1,
			opsMetric("commit_duration_seconds_count"): 1,
			opsMetric("sessions_active"):               1,
		})
	})
}

// TestOpsMetricsReaped lets a session time out and checks
// sessions_reaped_total.
func TestOpsMetricsReaped(t *testing.T) {
	srv := newServer(t, "session_timeout 1s")
	c := newClient()
	before := opsScrape(t)
	data := randomBytes(t, 100)
	s := create(t, c, srv.URL("/idle.bin"))
	checkAck(t, fragment(t, s, data, 0, 49), ack{status: 200, headers: received("50")})
	if !opsWaitFor(10*time.Second, func() bool { return len(sessionDirs(t, srv.SessionDir)) == 0 }) {
		t.Fatalf("session not reaped within 10 s: %v", sessionDirs(t, srv.SessionDir))
	}
	opsCheckDeltas(t, before, opsScrape(t), map[string]float64{
		opsPackets("Create-Session", "ok"):  1,
		opsPackets("Fragment", "ok"):        1,
		opsMetric("bytes_received_total"):   50,
		opsMetric("sessions_created_total"): 1,
		opsMetric("sessions_reaped_total"):  1,
		opsMetric("sessions_active"):        0,
	})
}

// TestOpsMetricsNotifications checks notifications_total by result and
// notification_duration_seconds: one notification answered 200, one 500.
func TestOpsMetricsNotifications(t *testing.T) {
	app := newOpsApp(t, http.StatusOK, http.StatusInternalServerError)
	srv := newServer(t, "notify "+app.srv.URL+"/hook")
	c := newClient()
	before := opsScrape(t)

	ok := randomBytes(t, 1000)
	s := create(t, c, srv.URL("/n/ok.bin"))
	a := fragment(t, s, ok, 0, 999)
	checkAck(t, a, ack{status: 200, headers: received("1000")})
	if a.ReplyURL == "" {
		t.Errorf("no BITS-Reply-URL after a successful notification")
	}

	bad := randomBytes(t, 500)
	s = create(t, c, srv.URL("/n/bad.bin"))
	checkAck(t, fragment(t, s, bad, 0, 499), ack{status: 500, code: protocol.HTTPError(500),
		headers: map[string]string{protocol.HeaderErrorContext: "0x7"}})
	if app.Hits() != 2 {
		t.Fatalf("the application got %d notifications, want 2", app.Hits())
	}

	opsCheckDeltas(t, before, opsScrape(t), map[string]float64{
		opsMetric("notifications_total", "result", "success"):   1,
		opsMetric("notifications_total", "result", "app_error"): 1,
		opsMetric("notification_duration_seconds_count"):        2,
		opsPackets("Create-Session", "ok"):                      2,
		opsPackets("Fragment", "ok"):                            1,
		opsPackets("Fragment", "error"):                         1,
		opsMetric("bytes_received_total"):                       1500,
		opsMetric("sessions_created_total"):                     2,
		opsMetric("sessions_completed_total"):                   1,
		// Without BITS-Copy-File-To-Destination nothing is committed.
		opsMetric("commit_duration_seconds_count"): 0,
		opsMetric("sessions_active"):               2,
	})
	assertNoFile(t, filepath.Join(srv.Root, "n", "ok.bin"))
}
