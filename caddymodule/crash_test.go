package caddymodule_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestKillAndRestart kills Caddy with SIGKILL between fragments and in the
// middle of one, restarts it, and finishes the upload: the server never
// reports fewer bytes than it acknowledged, and the result is byte-exact.
func TestKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	root, sessions := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessions, ""), admin)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/crash/file.bin"

	c := newClient()
	data := randomBytes(t, 8<<20)
	s := create(t, c, url)
	const mib = 1 << 20
	for i := int64(0); i < 3; i++ {
		checkAck(t, fragment(t, s, data, i*mib, (i+1)*mib-1), ack{status: 200, headers: received(strconv.FormatInt((i+1)*mib, 10))})
	}

	p.Restart()
	c.CloseIdleConnections()
	// A retransmission of an acknowledged fragment: the server still holds
	// everything it acknowledged.
	checkAck(t, fragment(t, s, data, 2*mib, 3*mib-1), ack{status: 200, headers: received(strconv.FormatInt(3*mib, 10))})

	// Kill while a fragment is half sent.
	pr, pw := io.Pipe()
	go func() {
		req, _ := http.NewRequest(protocol.Method, url, pr)
		req.ContentLength = mib
		req.Header[protocol.HeaderPacketType] = []string{"Fragment"}
		req.Header[protocol.HeaderSessionID] = []string{s.WireID}
		req.Header["Content-Range"] = []string{"bytes 3145728-4194303/8388608"}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(data[3*mib : 3*mib+300_000]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the server write what arrived
	p.Restart()
	pw.CloseWithError(io.ErrClosedPipe)
	c.CloseIdleConnections()

	// Resume like a Windows client: resend from its own idea of the offset
	// and adopt the server's.
	a := fragment(t, s, data, 3*mib, 4*mib-1)
	if a.Status != 200 || !a.HasReceived || a.Received < 3*mib {
		t.Fatalf("after the restart the server reports %d (status %d), fewer than the %d acknowledged", a.Received, a.Status, 3*mib)
	}
	next := a.Received
	for next < int64(len(data)) {
		last := min(next+mib, int64(len(data))) - 1
		a := fragment(t, s, data, next, last)
		if a.Status != 200 || a.Received != last+1 {
			t.Fatalf("fragment %d-%d: status %d received %d", next, last, a.Status, a.Received)
		}
		next = a.Received
	}
	assertFile(t, filepath.Join(root, "crash", "file.bin"), data)

	// The finished session is remembered across another crash.
	p.Restart()
	c.CloseIdleConnections()
	checkAck(t, fragment(t, s, data, 7*mib, 8*mib-1), ack{status: 200, headers: received(strconv.Itoa(8 * mib))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s.WireID}})
	p.Restart()
	c.CloseIdleConnections()
	// A repeated Close after a restart still succeeds.
	a, err = s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	assertFile(t, filepath.Join(root, "crash", "file.bin"), data)
	if dirs := sessionDirs(t, sessions); len(dirs) != 0 {
		t.Fatalf("sessions left: %v", dirs)
	}
	_ = client.Packet{}
}
