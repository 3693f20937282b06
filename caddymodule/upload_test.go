package caddymodule_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestUploadSizes uploads files of several sizes over HTTP/1.1 and h2c and
// compares what lands at the destination byte for byte.
func TestUploadSizes(t *testing.T) {
	srv := newServer(t, "")
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)

	for _, proto := range []struct {
		name string
		hc   *http.Client
	}{
		{"http1", nil},
		{"h2c", &http.Client{Transport: h2c}},
	} {
		for _, size := range []int{0, 1, 5 * 1024, 1<<20 + 7, 3<<20 + 12345} {
			t.Run(proto.name+"/"+itoa(size), func(t *testing.T) {
				data := randomBytes(t, size)
				c := newClient()
				c.HTTPClient = proto.hc
				c.FragmentSize = 256 << 10
				var acks []int64
				opts := &client.UploadOptions{Progress: func(p client.Progress) { acks = append(acks, p.Acked) }}
				path := "/" + proto.name + "/dir/file-" + itoa(size) + ".bin"
				res, err := c.Upload(context.Background(), srv.URL(path), bytes.NewReader(data), int64(size), opts)
				if err != nil {
					t.Fatalf("upload: %v", err)
				}
				if !res.Complete || res.Acked != int64(size) || res.Restarts != 0 {
					t.Fatalf("result %+v", res)
				}
				for i := 1; i < len(acks); i++ {
					if acks[i] <= acks[i-1] {
						t.Fatalf("acknowledged offsets not increasing: %v", acks)
					}
				}
				assertFile(t, filepath.Join(srv.Root, proto.name, "dir", "file-"+itoa(size)+".bin"), data)
				if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
					t.Fatalf("session directories left after Close-Session: %v", dirs)
				}
			})
		}
	}
}

// TestAckHeadersOfASession checks every Ack of a plain session, header by
// header, as Windows clients read them.
func TestAckHeadersOfASession(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	url := srv.URL("/report.txt")
	data := randomBytes(t, 10000)

	checkAck(t, send(t, c, url, &client.Packet{Type: protocol.PacketPing}), ack{status: 200})

	a := send(t, c, url, &client.Packet{
		Type:   protocol.PacketCreateSession,
		Header: http.Header{protocol.HeaderSupportedProtocols: {"{7DF0354D-249B-430F-820D-3D2A9BEF4931}"}},
	})
	checkAck(t, a, ack{status: 200, headers: map[string]string{
		protocol.HeaderProtocol: protocol.UploadProtocol,
		"Accept-Encoding":       "identity",
		protocol.HeaderHostID:   "",
	}})
	id, err := protocol.ParseSessionID(a.SessionID)
	if err != nil || a.SessionID != id.Wire() {
		t.Fatalf("session id %q: want an upper-case braced GUID (%v)", a.SessionID, err)
	}
	s := c.ResumeSession(url, a.SessionID)

	a = fragment(t, s, data, 0, 4095)
	checkAck(t, a, ack{status: 200, headers: map[string]string{
		protocol.HeaderReceivedContentRange: "4096",
		protocol.HeaderSessionID:            a.SessionID,
		protocol.HeaderReplyURL:             "",
	}})
	assertNoFile(t, filepath.Join(srv.Root, "report.txt"))
	a = fragment(t, s, data, 4096, 9999)
	checkAck(t, a, ack{status: 200, headers: map[string]string{
		protocol.HeaderReceivedContentRange: "10000",
		protocol.HeaderReplyURL:             "",
	}})
	// Committed with the last byte, before Close-Session.
	assertFile(t, filepath.Join(srv.Root, "report.txt"), data)

	a, err = s.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: id.Wire()}})
	assertFile(t, filepath.Join(srv.Root, "report.txt"), data)
}

// TestConcurrentSessions runs many uploads at once, to distinct and to
// nested destinations.
func TestConcurrentSessions(t *testing.T) {
	srv := newServer(t, "")
	const n = 24
	files := make([][]byte, n)
	errs := make(chan error, n)
	for i := range n {
		files[i] = randomBytes(t, 200_000+i*3_001)
		go func() {
			c := newClient()
			c.FragmentSize = 16 << 10
			_, err := c.Upload(context.Background(), srv.URL("/many/"+itoa(i%4)+"/f"+itoa(i)), bytes.NewReader(files[i]), int64(len(files[i])), nil)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i := range n {
		assertFile(t, filepath.Join(srv.Root, "many", itoa(i%4), "f"+itoa(i)), files[i])
	}
}

// TestHostIDHeaders checks the web-farm headers of the Create-Session Ack.
func TestHostIDHeaders(t *testing.T) {
	for _, tc := range []struct {
		options  string
		fallback string
	}{
		{"host_id node-a.example", "86400"},
		{"host_id 10.0.0.7\n\t\thost_id_fallback_timeout 110s", "110"},
	} {
		srv := newServer(t, tc.options)
		_, a, err := newClient().CreateSession(context.Background(), srv.URL("/x"))
		if err != nil {
			t.Fatal(err)
		}
		want := "node-a.example"
		if tc.fallback == "110" {
			want = "10.0.0.7"
		}
		checkAck(t, a, ack{status: 200, headers: map[string]string{
			protocol.HeaderHostID:                want,
			protocol.HeaderHostIDFallbackTimeout: tc.fallback,
		}})
	}
}

// TestOtherRequestsPassThrough checks that requests other than BITS_POST
// reach the next handler untouched.
func TestOtherRequestsPassThrough(t *testing.T) {
	srv := newServer(t, "")
	for _, method := range []string{"GET", "POST", "PUT", "HEAD", "bits_post"} {
		req, _ := http.NewRequest(method, srv.URL("/file.bin"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 299 || resp.Header.Get("BITS-Packet-Type") != "" {
			t.Errorf("%s: status %d, BITS-Packet-Type %q; want the next handler's 299", method, resp.StatusCode, resp.Header.Get("BITS-Packet-Type"))
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
