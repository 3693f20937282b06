package caddymodule_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// received is the header map of a successful fragment Ack.
func received(n string) map[string]string {
	return map[string]string{protocol.HeaderReceivedContentRange: n}
}

// TestFragmentDecisionTable walks one session through every row of the
// fragment decision table and checks both the Acks and the bytes on disk.
func TestFragmentDecisionTable(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	url := srv.URL("/table.bin")
	data := randomBytes(t, 300)
	s := create(t, c, url)

	// In order.
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
	// Gap: nothing written, 416 with the next expected offset and no error
	// code.
	checkAck(t, fragment(t, s, data, 150, 199), ack{status: 416, headers: received("100")})
	// Full retransmission of held bytes.
	checkAck(t, fragment(t, s, data, 0, 99), ack{status: 200, headers: received("100")})
	checkAck(t, fragment(t, s, data, 10, 49), ack{status: 200, headers: received("100")})
	// Overlap whose held part carries different bytes: only the new tail
	// may be written, the held bytes must stay.
	forged := append([]byte(nil), data...)
	for i := 50; i < 100; i++ {
		forged[i] ^= 0xff
	}
	checkAck(t, fragment(t, s, forged, 50, 149), ack{status: 200, headers: received("150")})
	// Total changed.
	a, err := s.Fragment(context.Background(), data[150:200], 150, 301)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
	// Final fragment.
	checkAck(t, fragment(t, s, data, 150, 299), ack{status: 200, headers: received("300")})
	assertFile(t, filepath.Join(srv.Root, "table.bin"), data)
	// A repeated final fragment gets the same final Ack.
	checkAck(t, fragment(t, s, data, 150, 299), ack{status: 200, headers: received("300")})
	checkAck(t, fragment(t, s, data, 299, 299), ack{status: 200, headers: received("300")})
	assertFile(t, filepath.Join(srv.Root, "table.bin"), data)
}

// TestFragmentRangeErrors sends fragments whose headers break the rules.
// None of them may change what the session holds.
func TestFragmentRangeErrors(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	url := srv.URL("/errors.bin")
	data := randomBytes(t, 100)
	s := create(t, c, url)
	checkAck(t, fragment(t, s, data, 0, 49), ack{status: 200, headers: received("50")})

	for _, tc := range []struct {
		name  string
		rng   string
		body  []byte
		extra http.Header
	}{
		{"end beyond total", "bytes 50-100/100", data[50:], nil},
		{"first after last", "bytes 60-50/100", nil, nil},
		{"body shorter than range", "bytes 50-99/100", data[50:90], nil},
		{"body longer than range", "bytes 50-59/100", data[50:80], nil},
		{"not bytes", "items 50-99/100", data[50:], nil},
		{"no total", "bytes 50-99", data[50:], nil},
		{"star total", "bytes 50-99/*", data[50:], nil},
		{"negative", "bytes -50-99/100", data[50:], nil},
		{"garbage", "yes please", data[50:], nil},
		{"empty", "", data[50:], nil},
		{"compressed", "bytes 50-99/100", data[50:], http.Header{"Content-Encoding": {"gzip"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Range": {tc.rng}}
			if tc.rng == "" {
				h["Content-Range"] = nil
			}
			for k, v := range tc.extra {
				h[k] = v
			}
			a := send(t, c, url, &client.Packet{Type: protocol.PacketFragment, SessionID: s.WireID, Header: h, Body: tc.body})
			checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
		})
	}
	// The session still holds exactly its first 50 bytes and completes.
	checkAck(t, fragment(t, s, data, 50, 99), ack{status: 200, headers: received("100")})
	assertFile(t, filepath.Join(srv.Root, "errors.bin"), data)
}

// TestEmptyUploads completes 0-byte uploads in each accepted form.
func TestEmptyUploads(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	for i, rng := range []string{"bytes 0--1/0", "bytes */0", "bytes 0-0/0", "BYTES 0--1/0"} {
		name := "/empty-" + itoa(i)
		s := create(t, c, srv.URL(name))
		a := send(t, c, srv.URL(name), &client.Packet{
			Type: protocol.PacketFragment, SessionID: s.WireID,
			Header: http.Header{"Content-Range": {rng}},
		})
		checkAck(t, a, ack{status: 200, headers: received("0")})
		assertFile(t, filepath.Join(srv.Root, name), nil)
	}
	// "bytes 0-0/0" with a byte of body is a length mismatch.
	s := create(t, c, srv.URL("/empty-bad"))
	a := send(t, c, srv.URL("/empty-bad"), &client.Packet{
		Type: protocol.PacketFragment, SessionID: s.WireID,
		Header: http.Header{"Content-Range": {"bytes 0-0/0"}}, Body: []byte{'x'},
	})
	checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
	assertNoFile(t, filepath.Join(srv.Root, "empty-bad"))
}

// TestMaxSize refuses an upload larger than max_size on its first
// fragment, with nothing written, and accepts one of exactly max_size.
func TestMaxSize(t *testing.T) {
	srv := newServer(t, "max_size 1KiB")
	c := newClient()
	data := randomBytes(t, 1025)
	s := create(t, c, srv.URL("/big.bin"))
	a := fragment(t, s, data, 0, 99)
	checkAck(t, a, ack{status: 500, code: protocol.BGTooLarge})
	assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "data"))
	assertNoFile(t, filepath.Join(srv.Root, "big.bin"))

	var err error
	_, err = c.Upload(context.Background(), srv.URL("/ok.bin"), bytesReader(data[:1024]), 1024, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(srv.Root, "ok.bin"), data[:1024])
	_, err = c.Upload(context.Background(), srv.URL("/big2.bin"), bytesReader(data), 1025, nil)
	var ce *client.Error
	if !asClientError(err, &ce) || ce.Code != protocol.BGTooLarge {
		t.Fatalf("upload over max_size: %v, want BG_E_TOO_LARGE", err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "big2.bin")); !os.IsNotExist(err) {
		t.Fatal("oversized upload reached its destination")
	}
}
