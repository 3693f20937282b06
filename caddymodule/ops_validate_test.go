package caddymodule_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// TestOpsValidateNegativeLimits loads JSON configs with a negative
// min_free_space or drain_limit, which the Caddyfile cannot express:
// Caddy must refuse them. (A negative max_sessions_per_user is the JSON of
// "off".)
func TestOpsValidateNegativeLimits(t *testing.T) {
	srv := newServer(t, "") // a running config the refused loads leave in place
	for _, tc := range []struct {
		field string
		want  string
	}{
		{"min_free_space", "min_free_space must not be negative, got -1"},
		{"drain_limit", "drain_limit must not be negative, got -1"},
	} {
		dir := t.TempDir()
		cfg := map[string]any{
			"admin": map[string]any{"listen": opsAdminURL("")[len("http://"):]},
			"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{
				"listen": []string{"127.0.0.1:" + itoa(testutil.FreePort(t))},
				"routes": []any{map[string]any{"handle": []any{map[string]any{
					"handler":     "bits_upload",
					"root":        filepath.Join(dir, "root"),
					"session_dir": filepath.Join(dir, "sessions"),
					tc.field:      -1,
				}}}},
			}}}},
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, opsAdminURL("/load"), strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s -1: status %d, body %s; want 400 with %q", tc.field, resp.StatusCode, body, tc.want)
		}
	}
	// The running config was not disturbed.
	create(t, newClient(), srv.URL("/still.bin"))
}

// opsPostConfig adapts the server's Caddyfile, lets edit change every
// bits_upload handler of the JSON, and posts it to /load. It returns the
// status and body of the answer.
func opsPostConfig(t *testing.T, srv *server, edit func(h map[string]any)) (int, string) {
	t.Helper()
	raw, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(srv.caddyfile()), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	found := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "bits_upload" {
				edit(v)
				found++
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(cfg)
	if found == 0 {
		t.Fatalf("no bits_upload handler in %s", raw)
	}
	return opsLoad(t, cfg)
}

// opsLoad posts cfg as JSON to the admin endpoint's /load and returns the
// status and body of the answer.
func opsLoad(t *testing.T, cfg any) (int, string) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, opsAdminURL("/load"), strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestOpsRefusedConfigLeavesStoreAlone loads configs that Caddy refuses
// (max_sessions_per_user -1) naming the running config's session_dir: the
// running config's sessions, session timeout, metrics and events must be
// as before.
func TestOpsRefusedConfigLeavesStoreAlone(t *testing.T) {
	invalid := func(timeout string) func(h map[string]any) {
		return func(h map[string]any) {
			h["min_free_space"] = -1
			if timeout != "" {
				h["session_timeout"] = timeout
			}
		}
	}

	t.Run("session timeout", func(t *testing.T) {
		srv := newServer(t, "session_timeout 1h")
		c := newClient()
		data := randomBytes(t, 100)
		s := create(t, c, srv.URL("/refused/keep.bin"))
		checkAck(t, fragment(t, s, data, 0, 49), ack{status: 200, headers: received("50")})
		if status, body := opsPostConfig(t, srv, invalid("1s")); status != http.StatusBadRequest {
			t.Fatalf("loading an invalid config: status %d, want 400: %s", status, body)
		}
		time.Sleep(3 * time.Second)
		if !slices.Contains(sessionDirs(t, srv.SessionDir), s.ID.Bare()) {
			t.Fatalf("a refused config's session_timeout 1s was applied to the running config's session_dir: an idle session was reaped after 3 s (running session_timeout 1h); acquireStore calls SetTimeout in Provision and nothing restores it when the config is refused")
		}
		checkAck(t, fragment(t, s, data, 50, 99), ack{status: 200, headers: received("100")})
	})

	t.Run("reaping reported", func(t *testing.T) {
		opsResetEvents()
		srv := opsServer(t, "session_timeout 1s", "")
		opsLoadWithEvents(srv, "bits_upload.session_reaped")
		if status, body := opsPostConfig(t, srv, invalid("")); status != http.StatusBadRequest {
			t.Fatalf("loading an invalid config: status %d, want 400: %s", status, body)
		}
		before := opsScrape(t)
		c := newClient()
		s := create(t, c, srv.URL("/refused/idle.bin"))
		if !opsWaitFor(10*time.Second, func() bool { return len(sessionDirs(t, srv.SessionDir)) == 0 }) {
			t.Fatalf("session not reaped within 10 s")
		}
		time.Sleep(100 * time.Millisecond)
		reaped := opsScrape(t)[opsMetric("sessions_reaped_total")] - before[opsMetric("sessions_reaped_total")]
		events := len(opsEventsNamed("bits_upload.session_reaped", s.ID.Wire()))
		if reaped != 1 || events != 1 {
			t.Fatalf("after a refused config load, reaping of the running config's sessions is no longer reported: sessions_reaped_total +%v, %d session_reaped events; want 1 and 1 (the refused handler's Cleanup resets the store's observer to nil)", reaped, events)
		}
	})
}
