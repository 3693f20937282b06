package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// opsSessionInfo is a session as the admin API reports it.
type opsSessionInfo struct {
	ID           string    `json:"id"`
	Destination  string    `json:"destination"`
	URL          string    `json:"url"`
	Received     int64     `json:"received"`
	Total        int64     `json:"total"`
	State        string    `json:"state"`
	Created      time.Time `json:"created"`
	LastActivity time.Time `json:"last_activity"`
	User         string    `json:"user"`
	Client       string    `json:"client"`
	ReplyURL     string    `json:"reply_url"`
	SessionDir   string    `json:"session_dir"`
}

// opsDecode decodes an admin API answer strictly: a field the test does
// not know fails it.
func opsDecode(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
}

// opsKeys returns the sorted keys of a JSON object.
func opsKeys(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %v", body, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// opsCheckInfo compares the reported session with what the test knows.
func opsCheckInfo(t *testing.T, what string, got opsSessionInfo, want opsSessionInfo, start time.Time) {
	t.Helper()
	if got.ID != want.ID || got.Destination != want.Destination || got.URL != want.URL ||
		got.Received != want.Received || got.Total != want.Total || got.State != want.State ||
		got.User != want.User || got.Client != want.Client || got.SessionDir != want.SessionDir || got.ReplyURL != want.ReplyURL {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
	now := time.Now()
	if got.Created.Before(start.Add(-time.Second)) || got.Created.After(now) {
		t.Errorf("%s: created %v, want between %v and %v", what, got.Created, start, now)
	}
	if got.LastActivity.Before(got.Created) || got.LastActivity.After(now) {
		t.Errorf("%s: last_activity %v, want between created %v and %v", what, got.LastActivity, got.Created, now)
	}
	if got.Created.Location() != time.UTC || got.LastActivity.Location() != time.UTC {
		t.Errorf("%s: times %v / %v are not UTC", what, got.Created, got.LastActivity)
	}
}

// TestOpsAdminAPI lists, reads and cancels live sessions through the
// admin API, and checks its answers to bad requests.
func TestOpsAdminAPI(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	ctx := context.Background()
	start := time.Now()

	// One session half uploaded, one without a fragment, one finished.
	half := randomBytes(t, 1000)
	s1 := create(t, c, srv.URL("/adm/one.bin"))
	checkAck(t, fragment(t, s1, half, 0, 499), ack{status: 200, headers: received("500")})
	s2 := create(t, c, srv.URL("/adm/two.bin?x=1"))
	full := randomBytes(t, 100)
	s3 := create(t, c, srv.URL("/adm/three.bin"))
	checkAck(t, fragment(t, s3, full, 0, 99), ack{status: 200, headers: received("100")})

	want := []opsSessionInfo{
		{ID: s1.WireID, Destination: filepath.Join(srv.Root, "adm", "one.bin"), URL: srv.URL("/adm/one.bin"),
			Received: 500, Total: 1000, State: "receiving", Client: "127.0.0.1", SessionDir: srv.SessionDir},
		{ID: s2.WireID, Destination: filepath.Join(srv.Root, "adm", "two.bin"), URL: srv.URL("/adm/two.bin?x=1"),
			Received: 0, Total: -1, State: "created", Client: "127.0.0.1", SessionDir: srv.SessionDir},
		{ID: s3.WireID, Destination: filepath.Join(srv.Root, "adm", "three.bin"), URL: srv.URL("/adm/three.bin"),
			Received: 100, Total: 100, State: "finished", Client: "127.0.0.1", SessionDir: srv.SessionDir},
	}

	t.Run("list", func(t *testing.T) {
		status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions")
		if status != http.StatusOK {
			t.Fatalf("GET list: status %d: %s", status, body)
		}
		var list []opsSessionInfo
		opsDecode(t, body, &list)
		if len(list) != len(want) {
			t.Fatalf("GET list: %d sessions, want %d: %s", len(list), len(want), body)
		}
		for i := range want {
			opsCheckInfo(t, "list["+itoa(i)+"]", list[i], want[i], start)
		}
		if !list[0].LastActivity.After(list[0].Created) {
			t.Errorf("the fragment did not advance last_activity: %+v", list[0])
		}
		var raw []json.RawMessage
		opsDecode(t, body, &raw)
		wantKeys := []string{"client", "created", "destination", "id", "last_activity", "received", "session_dir", "state", "total", "url"}
		if got := opsKeys(t, raw[0]); !slices.Equal(got, wantKeys) {
			t.Errorf("JSON fields %v, want %v", got, wantKeys)
		}
	})

	t.Run("get one", func(t *testing.T) {
		for _, id := range []string{s1.ID.Bare(), s1.WireID, string(s1.ID)} {
			status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+id)
			if status != http.StatusOK {
				t.Fatalf("GET %s: status %d: %s", id, status, body)
			}
			var got opsSessionInfo
			opsDecode(t, body, &got)
			opsCheckInfo(t, "GET "+id, got, want[0], start)
		}
	})

	t.Run("delete", func(t *testing.T) {
		before := opsScrape(t)
		status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+s1.ID.Bare())
		if status != http.StatusOK {
			t.Fatalf("DELETE: status %d: %s", status, body)
		}
		opsCheckDeltas(t, before, opsScrape(t), map[string]float64{
			opsMetric("sessions_cancelled_total"): 1,
			opsMetric("sessions_active"):          -1,
		})
		var got opsSessionInfo
		opsDecode(t, body, &got)
		opsCheckInfo(t, "DELETE answer", got, want[0], start)
		dirs := sessionDirs(t, srv.SessionDir)
		if slices.Contains(dirs, s1.ID.Bare()) || len(dirs) != 2 {
			t.Fatalf("session directories after DELETE: %v, want only %s and %s", dirs, s2.ID.Bare(), s3.ID.Bare())
		}
		assertNoFile(t, filepath.Join(srv.Root, "adm", "one.bin"))

		// The client finds its session gone, and may cancel or close it.
		checkAck(t, fragment(t, s1, half, 500, 999), ack{status: 500, code: protocol.BGSessionNotFound})
		for _, op := range []func(context.Context) (*client.Ack, error){s1.Cancel, s1.Close} {
			a, err := op(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s1.WireID}})
		}
		if status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+s1.ID.Bare()); status != http.StatusNotFound {
			t.Errorf("GET after DELETE: status %d, want 404: %s", status, body)
		}
		if status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+s1.ID.Bare()); status != http.StatusNotFound {
			t.Errorf("second DELETE: status %d, want 404: %s", status, body)
		}

		// Cancelling a finished session keeps its committed file.
		if status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+s3.WireID); status != http.StatusOK {
			t.Fatalf("DELETE finished: status %d: %s", status, body)
		}
		assertFile(t, filepath.Join(srv.Root, "adm", "three.bin"), full)
		if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 1 || dirs[0] != s2.ID.Bare() {
			t.Errorf("session directories: %v, want only %s", dirs, s2.ID.Bare())
		}
		status, body = opsAdmin(t, http.MethodGet, "/bits_upload/sessions")
		var list []opsSessionInfo
		opsDecode(t, body, &list)
		if status != http.StatusOK || len(list) != 1 || list[0].ID != s2.WireID {
			t.Errorf("list after DELETEs: status %d, %s; want only %s", status, body, s2.WireID)
		}
	})

	t.Run("delete during a fragment", func(t *testing.T) {
		// DELETE waits for the fragment in flight, then removes the
		// session with everything that fragment stored.
		data := randomBytes(t, 4000)
		s := create(t, c, srv.URL("/adm/busy.bin"))
		pr, pw := ioPipe()
		fragDone := make(chan *client.Ack, 1)
		go func() {
			req, _ := http.NewRequest(protocol.Method, srv.URL("/adm/busy.bin"), pr)
			req.ContentLength = 2000
			req.Header[protocol.HeaderPacketType] = []string{"Fragment"}
			req.Header[protocol.HeaderSessionID] = []string{s.WireID}
			req.Header["Content-Range"] = []string{"bytes 0-1999/4000"}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				fragDone <- nil
				return
			}
			resp.Body.Close()
			fragDone <- &client.Ack{Status: resp.StatusCode, Header: resp.Header, PacketType: resp.Header.Get(protocol.HeaderPacketType)}
		}()
		if _, err := pw.Write(data[:1000]); err != nil {
			t.Fatal(err)
		}
		// The fragment holds the session now (its first bytes arrived).
		if !opsWaitFor(10*time.Second, func() bool {
			_, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+s.ID.Bare())
			var info opsSessionInfo
			return json.Unmarshal(body, &info) == nil && info.Total == 4000
		}) {
			t.Fatal("the slow fragment never reached the session")
		}
		delDone := make(chan opsSessionInfo, 1)
		go func() {
			status, body := opsAdmin(t, http.MethodDelete, "/bits_upload/sessions/"+s.ID.Bare())
			var info opsSessionInfo
			if status != http.StatusOK || json.Unmarshal(body, &info) != nil {
				t.Errorf("DELETE: status %d: %s", status, body)
			}
			delDone <- info
		}()
		select {
		case info := <-delDone:
			t.Fatalf("DELETE returned while a fragment was in flight: %+v", info)
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := pw.Write(data[1000:2000]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		checkAck(t, <-fragDone, ack{status: 200, headers: received("2000")})
		if info := <-delDone; info.ID != s.WireID || info.Received != 2000 || info.Total != 4000 {
			t.Errorf("DELETE answered %+v, want session %s with 2000 of 4000 bytes", info, s.WireID)
		}
		assertNoSession(t, srv.SessionDir, s.ID)
		checkAck(t, fragment(t, s, data, 2000, 3999), ack{status: 500, code: protocol.BGSessionNotFound})
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			status       int
		}{
			{http.MethodGet, "/bits_upload/sessions/6B29FC40-CA47-1067-B31D-00DD010662DA", http.StatusNotFound},
			{http.MethodDelete, "/bits_upload/sessions/{6B29FC40-CA47-1067-B31D-00DD010662DA}", http.StatusNotFound},
			{http.MethodGet, "/bits_upload/sessions/not-a-guid", http.StatusBadRequest},
			{http.MethodGet, "/bits_upload/sessions/6B29FC40-CA47-1067-B31D-00DD010662D", http.StatusBadRequest},
			{http.MethodDelete, "/bits_upload/sessions/..%2F..%2Fetc", http.StatusBadRequest},
			{http.MethodPost, "/bits_upload/sessions", http.StatusMethodNotAllowed},
			{http.MethodDelete, "/bits_upload/sessions", http.StatusMethodNotAllowed},
			{http.MethodPost, "/bits_upload/sessions/" + s2.ID.Bare(), http.StatusMethodNotAllowed},
			{http.MethodPut, "/bits_upload/sessions/" + s2.ID.Bare(), http.StatusMethodNotAllowed},
		} {
			if status, body := opsAdmin(t, tc.method, tc.path); status != tc.status {
				t.Errorf("%s %s: status %d, want %d: %s", tc.method, tc.path, status, tc.status, body)
			}
		}
		// None of that touched the remaining session.
		if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 1 || dirs[0] != s2.ID.Bare() {
			t.Errorf("session directories: %v, want only %s", dirs, s2.ID.Bare())
		}
	})
}

// TestOpsAdminAPINotifyStates checks the states of upload-reply sessions:
// "finished" with the reply URL once the application accepted the upload,
// "complete" while its notification keeps failing.
func TestOpsAdminAPINotifyStates(t *testing.T) {
	app := newOpsApp(t, http.StatusOK, http.StatusServiceUnavailable)
	srv := newServer(t, "notify "+app.srv.URL+"/hook")
	c := newClient()
	start := time.Now()
	data := randomBytes(t, 300)

	ok := create(t, c, srv.URL("/st/ok.bin"))
	a := fragment(t, ok, data, 0, 299)
	checkAck(t, a, ack{status: 200, headers: received("300")})
	failing := create(t, c, srv.URL("/st/failing.bin"))
	checkAck(t, fragment(t, failing, data, 0, 299), ack{status: 503, code: protocol.HTTPError(503),
		headers: map[string]string{protocol.HeaderErrorContext: "0x7"}})

	for _, tc := range []struct {
		s    *client.Session
		want opsSessionInfo
	}{
		{ok, opsSessionInfo{ID: ok.WireID, Destination: filepath.Join(srv.Root, "st", "ok.bin"), URL: srv.URL("/st/ok.bin"),
			Received: 300, Total: 300, State: "finished", Client: "127.0.0.1", ReplyURL: a.ReplyURL, SessionDir: srv.SessionDir}},
		{failing, opsSessionInfo{ID: failing.WireID, Destination: filepath.Join(srv.Root, "st", "failing.bin"), URL: srv.URL("/st/failing.bin"),
			Received: 300, Total: 300, State: "complete", Client: "127.0.0.1", SessionDir: srv.SessionDir}},
	} {
		status, body := opsAdmin(t, http.MethodGet, "/bits_upload/sessions/"+tc.s.ID.Bare())
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", tc.s.WireID, status, body)
		}
		var got opsSessionInfo
		opsDecode(t, body, &got)
		opsCheckInfo(t, tc.want.State, got, tc.want, start)
	}
	if a.ReplyURL == "" {
		t.Error("no BITS-Reply-URL on the accepted upload")
	}
}
