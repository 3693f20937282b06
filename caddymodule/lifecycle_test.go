package caddymodule_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestCloseAndCancel covers Close-Session and Cancel-Session before and
// after completion, and their repetition.
func TestCloseAndCancel(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 1000)
	ctx := context.Background()
	sessionAck := func(s *client.Session) ack {
		return ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s.WireID}}
	}

	t.Run("close before completion discards the data", func(t *testing.T) {
		s := create(t, c, srv.URL("/partial-close.bin"))
		checkAck(t, fragment(t, s, data, 0, 499), ack{status: 200, headers: received("500")})
		for range 2 {
			a, err := s.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkAck(t, a, sessionAck(s))
		}
		assertNoSession(t, srv.SessionDir, s.ID)
		assertNoFile(t, filepath.Join(srv.Root, "partial-close.bin"))
		checkAck(t, fragment(t, s, data, 500, 999), ack{status: 500, code: protocol.BGSessionNotFound})
	})

	t.Run("cancel before completion", func(t *testing.T) {
		s := create(t, c, srv.URL("/partial-cancel.bin"))
		checkAck(t, fragment(t, s, data, 0, 499), ack{status: 200, headers: received("500")})
		a, err := s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, sessionAck(s))
		// The Ack came after everything was gone.
		assertNoSession(t, srv.SessionDir, s.ID)
		assertNoFile(t, filepath.Join(srv.Root, "partial-cancel.bin"))
		a, err = s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, sessionAck(s))
		a, err = s.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, sessionAck(s))
	})

	t.Run("cancel after commit keeps the file", func(t *testing.T) {
		s := create(t, c, srv.URL("/kept.bin"))
		checkAck(t, fragment(t, s, data, 0, 999), ack{status: 200, headers: received("1000")})
		a, err := s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, sessionAck(s))
		assertFile(t, filepath.Join(srv.Root, "kept.bin"), data)
		assertNoSession(t, srv.SessionDir, s.ID)
	})
}

// TestReaper lets a session idle past a 2 s timeout: it must be deleted
// within a few seconds, and its client told to start over.
func TestReaper(t *testing.T) {
	srv := newServer(t, "session_timeout 2s")
	c := newClient()
	data := randomBytes(t, 100)
	idle := create(t, c, srv.URL("/idle.bin"))
	checkAck(t, fragment(t, idle, data, 0, 49), ack{status: 200, headers: received("50")})
	busy := create(t, c, srv.URL("/busy.bin"))
	deadline := time.Now().Add(6 * time.Second)
	for {
		// Keep the other session active meanwhile.
		checkAck(t, send(t, c, srv.URL("/busy.bin"), &client.Packet{
			Type: protocol.PacketFragment, SessionID: busy.WireID,
			Header: http.Header{"Content-Range": {"bytes 0--1/10"}},
		}), ack{status: 200, headers: received("0")})
		if len(sessionDirs(t, srv.SessionDir)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle session not reaped after 6 s: %v", sessionDirs(t, srv.SessionDir))
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertNoSession(t, srv.SessionDir, idle.ID)
	checkAck(t, fragment(t, idle, data, 50, 99), ack{status: 500, code: protocol.BGSessionNotFound})
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 1 || dirs[0] != busy.ID.Bare() {
		t.Fatalf("active session reaped: %v", dirs)
	}
}

// TestReloadMidUpload reloads the config between fragments, and while a
// slow fragment is in flight; the session lives on.
func TestReloadMidUpload(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 4<<20)
	s := create(t, c, srv.URL("/reload.bin"))
	checkAck(t, fragment(t, s, data, 0, 1<<20-1), ack{status: 200, headers: received("1048576")})

	// The new config applies to the existing session at once.
	srv.Options = "max_size 1MiB"
	reloadConfig(srv, c) // the old server closes its kept-alive connections
	checkAck(t, fragment(t, s, data, 1<<20, 2<<20-1), ack{status: 500, code: protocol.BGTooLarge})
	srv.Options = "max_size 100MiB"
	reloadConfig(srv, c)
	checkAck(t, fragment(t, s, data, 1<<20, 2<<20-1), ack{status: 200, headers: received("2097152")})

	// A fragment trickling in while the config is reloaded twice.
	pr, pw := ioPipe()
	done := make(chan *client.Ack, 1)
	go func() {
		req, _ := http.NewRequest(protocol.Method, srv.URL("/reload.bin"), pr)
		req.ContentLength = 1 << 20
		req.Header[protocol.HeaderPacketType] = []string{"Fragment"}
		req.Header[protocol.HeaderSessionID] = []string{s.WireID}
		req.Header["Content-Range"] = []string{"bytes 2097152-3145727/4194304"}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		resp.Body.Close()
		done <- &client.Ack{Status: resp.StatusCode, Header: resp.Header, PacketType: resp.Header.Get(protocol.HeaderPacketType)}
	}()
	chunk := data[2<<20 : 3<<20]
	if _, err := pw.Write(chunk[:1000]); err != nil {
		t.Fatal(err)
	}
	srv.Options = "max_size 200MiB"
	srv.load()
	srv.Options = ""
	srv.load()
	c.CloseIdleConnections()
	if _, err := pw.Write(chunk[1000:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	checkAck(t, <-done, ack{status: 200, headers: received("3145728")})
	checkAck(t, fragment(t, s, data, 3<<20, 4<<20-1), ack{status: 200, headers: received("4194304")})
	assertFile(t, filepath.Join(srv.Root, "reload.bin"), data)
}

// TestOverlappingRetries sends the same fragments from many goroutines at
// once, as a client retrying while its first attempt is still in flight
// would: writes must never interleave. A newer request takes the session
// over from one still reading its body, which is answered 503 (a client
// that still listens retries it); every other answer is 200.
func TestOverlappingRetries(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 2<<20)
	s := create(t, c, srv.URL("/overlap.bin"))
	const step = 256 << 10
	for first := int64(0); first < int64(len(data)); first += step {
		var wg sync.WaitGroup
		var ok atomic.Int32
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each sender starts a little earlier, overlapping held bytes.
				from := max(first-step/2, 0)
				a, err := s.Fragment(context.Background(), data[from:first+step], from, int64(len(data)))
				if err != nil {
					// A request taken over may lose its connection before
					// its answer arrives.
					return
				}
				switch a.Status {
				case 200:
					ok.Add(1)
				case 503:
					checkAck(t, a, ack{status: 503, code: protocol.HTTPError(503)})
				default:
					t.Errorf("status %d", a.Status)
				}
			}()
		}
		wg.Wait()
		if ok.Load() == 0 {
			// The last request was taken over by nobody: resend in turn.
			a := fragment(t, s, data, first, first+step-1)
			checkAck(t, a, ack{status: 200, headers: received(strconv.FormatInt(min(first+step, int64(len(data))), 10))})
		}
	}
	assertFile(t, filepath.Join(srv.Root, "overlap.bin"), data)
}
