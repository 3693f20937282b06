package caddymodule_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// opsServer returns a server like newServer's, with extra site directives,
// without loading it yet: the caller may change its paths first, and then
// calls load() or opsLoadWithEvents.
func opsServer(t *testing.T, options, site string) *server {
	t.Helper()
	dir := t.TempDir()
	return &server{
		t:          t,
		port:       testutil.FreePort(t),
		Root:       filepath.Join(dir, "root"),
		SessionDir: filepath.Join(dir, "sessions"),
		Options:    options,
		Site:       site,
		tester: caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
			AdminPort:          adminPort,
			LoadRequestTimeout: 30 * time.Second,
		}),
	}
}

// adminURL is the address of a path on the in-process Caddy's admin API.
func opsAdminURL(path string) string {
	return fmt.Sprintf("http://localhost:%d%s", adminPort, path)
}

// adminDo sends a request to the admin API and returns the status and
// body.
func opsAdmin(t testing.TB, method, path string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, opsAdminURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, body
}

// --- metrics ---------------------------------------------------------------

// opsMetrics is one scrape of the admin endpoint's /metrics: the value of
// every sample, keyed by its name and labels exactly as exposed, such as
// caddy_bits_upload_packets_total{packet_type="Ping",result="ok"}.
type opsMetrics map[string]float64

// scrapeMetrics reads the admin endpoint's /metrics.
func opsScrape(t testing.TB) opsMetrics {
	t.Helper()
	status, body := opsAdmin(t, http.MethodGet, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", status, body)
	}
	m := opsMetrics{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("unparsable metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("unparsable metrics value in %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// bitsMetric names a sample of the handler's metrics: name without the
// caddy_bits_upload_ prefix, labels as alternating names and values in
// alphabetical order of the names (the exposition order).
func opsMetric(name string, labels ...string) string {
	key := "caddy_bits_upload_" + name
	if len(labels) == 0 {
		return key
	}
	var parts []string
	for i := 0; i+1 < len(labels); i += 2 {
		parts = append(parts, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	return key + "{" + strings.Join(parts, ",") + "}"
}

// packets is the key of a packets_total sample.
func opsPackets(packetType, result string) string {
	return opsMetric("packets_total", "packet_type", packetType, "result", result)
}

// bitsDeltas returns after-before for every caddy_bits_upload_ sample in
// either scrape whose value changed (a sample missing from a scrape counts
// as 0).
func opsBitsDeltas(before, after opsMetrics) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if strings.HasPrefix(k, "caddy_bits_upload_") && v != before[k] {
			d[k] = v - before[k]
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok && strings.HasPrefix(k, "caddy_bits_upload_") && v != 0 {
			d[k] = -v
		}
	}
	return d
}

// checkDeltas compares the changes of the handler's metrics between two
// scrapes with want, exactly: every sample that changed must be in want
// with that change, and every sample in want must have changed by that
// much. Samples of histogram buckets and sums, whose values depend on
// timing, are ignored unless listed; ignore lists further samples to
// skip.
func opsCheckDeltas(t testing.TB, before, after opsMetrics, want map[string]float64, ignore ...string) {
	t.Helper()
	got := opsBitsDeltas(before, after)
	skip := func(k string) bool {
		if _, listed := want[k]; listed {
			return false
		}
		if strings.Contains(k, "_bucket{") || strings.HasSuffix(k, "_sum") {
			return true
		}
		for _, p := range ignore {
			if k == p {
				return true
			}
		}
		return false
	}
	for k, v := range got {
		if skip(k) {
			continue
		}
		if w, ok := want[k]; !ok {
			t.Errorf("%s changed by %v, want no change", k, v)
		} else if v != w {
			t.Errorf("%s changed by %v, want %v", k, v, w)
		}
	}
	for k, w := range want {
		if _, ok := got[k]; !ok && w != 0 {
			t.Errorf("%s did not change (value %v), want a change of %v", k, after[k], w)
		}
	}
}

// --- events ----------------------------------------------------------------

func init() {
	caddy.RegisterModule(opsEventRecorder{})
}

// opsEvent is an event the recorder saw.
type opsEvent struct {
	Name   string
	Origin string
	Data   map[string]any
}

// recorded holds every event any opsEventRecorder handled in this process.
var opsRecorded struct {
	mu     sync.Mutex
	events []opsEvent
}

// opsEventRecorder is the event handler module
// events.handlers.bits_test_recorder: it records every event it is given.
type opsEventRecorder struct{}

// CaddyModule returns the Caddy module information.
func (opsEventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.bits_test_recorder",
		New: func() caddy.Module { return new(opsEventRecorder) },
	}
}

// Handle records the event.
func (opsEventRecorder) Handle(_ context.Context, e caddy.Event) error {
	rec := opsEvent{Name: e.Name(), Data: maps.Clone(e.Data)}
	if o := e.Origin(); o != nil {
		rec.Origin = string(o.CaddyModule().ID)
	}
	opsRecorded.mu.Lock()
	opsRecorded.events = append(opsRecorded.events, rec)
	opsRecorded.mu.Unlock()
	return nil
}

// resetEvents forgets the events recorded so far.
func opsResetEvents() {
	opsRecorded.mu.Lock()
	opsRecorded.events = nil
	opsRecorded.mu.Unlock()
}

// eventsNamed returns the recorded events with the given name whose
// session_id is id (any session when id is empty).
func opsEventsNamed(name, id string) []opsEvent {
	opsRecorded.mu.Lock()
	defer opsRecorded.mu.Unlock()
	var out []opsEvent
	for _, e := range opsRecorded.events {
		if e.Name == name && (id == "" || e.Data["session_id"] == id) {
			out = append(out, e)
		}
	}
	return out
}

// allEvents returns every recorded event.
func opsAllEvents() []opsEvent {
	opsRecorded.mu.Lock()
	defer opsRecorded.mu.Unlock()
	return append([]opsEvent(nil), opsRecorded.events...)
}

// opsLoadWithEvents loads the server's Caddyfile, adapted to JSON, with
// an events app whose subscription sends the named events to the
// recorder.
func opsLoadWithEvents(s *server, events ...string) {
	s.t.Helper()
	raw, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile()), nil)
	if err != nil {
		s.t.Fatalf("adapting the Caddyfile: %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		s.t.Fatal(err)
	}
	apps, ok := cfg["apps"].(map[string]any)
	if !ok {
		s.t.Fatalf("adapted config has no apps: %s", raw)
	}
	apps["events"] = map[string]any{
		"subscriptions": []any{map[string]any{
			"events":   events,
			"handlers": []any{map[string]any{"handler": "bits_test_recorder"}},
		}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.tester.InitServer(string(b), "json")
	if s.t.Failed() {
		s.t.FailNow()
	}
}

// --- authentication ----------------------------------------------------------

// basicAuthSite returns a basic_auth site directive for the given users
// and passwords (alternating).
func opsBasicAuth(t testing.TB, userPasswords ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("basic_auth {\n")
	for i := 0; i+1 < len(userPasswords); i += 2 {
		hash, err := bcrypt.GenerateFromPassword([]byte(userPasswords[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\t\t%s %s\n", userPasswords[i], hash)
	}
	b.WriteString("\t}")
	return b.String()
}

// --- server application ----------------------------------------------------------

// opsApp is a minimal server application for notifications: it answers
// each notification with the next status of a script (200 once the script
// is used up), with the body "reply to <n>".
type opsApp struct {
	srv *httptest.Server

	mu       sync.Mutex
	statuses []int
	hits     int
}

func newOpsApp(t testing.TB, statuses ...int) *opsApp {
	t.Helper()
	a := &opsApp{statuses: statuses}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		a.hits++
		n := a.hits
		status := http.StatusOK
		if len(a.statuses) > 0 {
			status, a.statuses = a.statuses[0], a.statuses[1:]
		}
		a.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprintf(w, "reply to %d", n)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// Hits returns the number of notifications received.
func (a *opsApp) Hits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func opsWaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
