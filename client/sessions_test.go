package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestResultSessionsRestart: the server loses the first session after two
// fragments; the Result lists both sessions.
func TestResultSessionsRestart(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n == 3 {
			f.store.mu.Lock()
			delete(f.store.sessions, p.SessionID)
			f.store.mu.Unlock()
		}
		return false
	}
	c := newTestClient(t)
	c.FragmentSize = 10000
	data := testData(40000, 8)
	res, err := c.Upload(context.Background(), f.url("/up/s"), bytes.NewReader(data), 40000, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/s", data)
	if len(res.Sessions) != 2 {
		t.Fatalf("%d sessions: %+v", len(res.Sessions), res.Sessions)
	}
	first, last := res.Sessions[0], res.Sessions[1]
	if first.Acked != 20000 || first.Fragments != 2 || !errors.Is(first.Err, ErrSessionNotFound) ||
		first.SessionID == "" || first.SessionID == last.SessionID || first.URL != f.url("/up/s") {
		t.Errorf("first session %+v", first)
	}
	if last.Acked != 40000 || last.Fragments != 4 || last.Err != nil || last.SessionID != res.SessionID ||
		last.WireSessionID != res.WireSessionID || last.URL != res.SessionURL {
		t.Errorf("last session %+v, result %+v", last, res)
	}
	if res.Restarts != 1 || res.Fragments != 6 {
		t.Errorf("result %+v", res)
	}
}

// TestResultSessionsFallback: the first session is handed to a dead
// BITS-Host-Id node, falls back to the original URL, where it is unknown;
// the second session completes there.
func TestResultSessionsFallback(t *testing.T) {
	a := newFake(t)
	deadAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens there
	a.hostID = deadAddr
	a.hostIDCount = 1
	a.hostStore = newFakeStore()
	c := newTestClient(t)
	c.HostIDFallbackOverride = 30 * time.Millisecond
	c.MaxRetries = 1000
	c.FragmentSize = 10000
	data := testData(15000, 12)
	res, err := c.Upload(context.Background(), a.url("/up/fb"), bytes.NewReader(data), 15000, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, a, "/up/fb", data)
	if len(res.Sessions) != 2 {
		t.Fatalf("%d sessions: %+v", len(res.Sessions), res.Sessions)
	}
	first, last := res.Sessions[0], res.Sessions[1]
	if first.HostID != deadAddr || !first.FellBack || first.URL != a.url("/up/fb") || first.Fragments != 0 ||
		!errors.Is(first.Err, ErrSessionNotFound) {
		t.Errorf("first session %+v", first)
	}
	if last.HostID != "" || last.FellBack || last.Fragments != 2 || last.Err != nil || last.SessionID != res.SessionID {
		t.Errorf("last session %+v", last)
	}
}

// TestResultSessionsHostID: a session moved to a live BITS-Host-Id node.
func TestResultSessionsHostID(t *testing.T) {
	a, b := newFake(t), newFake(t)
	b.store = a.store
	a.hostID = "127.0.0.1:" + b.port()
	a.hostIDCount = 1
	c := newTestClient(t)
	data := testData(2500, 11)
	res, err := c.Upload(context.Background(), a.url("/up/h"), bytes.NewReader(data), 2500, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := SessionResult{SessionID: res.SessionID, WireSessionID: res.WireSessionID, URL: b.url("/up/h"), HostID: a.hostID, Acked: 2500, Fragments: 1}
	if len(res.Sessions) != 1 || res.Sessions[0] != want {
		t.Errorf("sessions %+v, want [%+v]", res.Sessions, want)
	}
}
