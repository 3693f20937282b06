package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestUploadSizes(t *testing.T) {
	for _, size := range []int{0, 1, 5000, 16384, 16385, 100000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			f := newFake(t)
			c := newTestClient(t)
			c.FragmentSize = 16384
			data := testData(size, uint64(size))
			res, err := c.Upload(context.Background(), f.url("/up/file.bin"), bytes.NewReader(data), int64(size), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, f, "/up/file.bin", data)
			frags := fragments(0, int64(size), 16384)
			checkSeq(t, f, seq("Ping", "Create-Session", frags, "Close-Session"))
			if !res.Complete || res.Acked != int64(size) || res.Size != int64(size) || res.Fragments != len(frags) || res.Restarts != 0 {
				t.Errorf("result %+v", res)
			}
			if res.SessionID == "" || res.WireSessionID != res.SessionID.Wire() {
				t.Errorf("session id %q / %q", res.SessionID, res.WireSessionID)
			}
			if n := f.connCount(); n != 1 {
				t.Errorf("%d connections, want 1 (keep-alive)", n)
			}
		})
	}
}

// TestWireFormat checks the exact bytes on the wire: header spellings,
// Content-Length on bodiless packets, Content-Range forms.
func TestWireFormat(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	c.Username, c.Password = "", ""
	data := testData(5000, 1)
	res, err := c.Upload(context.Background(), f.url("/up/w.bin"), bytes.NewReader(data), 5000, &UploadOptions{ContentName: "w.bin"})
	if err != nil {
		t.Fatal(err)
	}
	raw := f.rawBytes()
	reqs := strings.Split(raw, "BITS_POST ")[1:]
	if len(reqs) != 4 {
		t.Fatalf("%d BITS_POST requests on the wire, want 4:\n%s", len(reqs), raw)
	}
	must := [][]string{
		{"/up/w.bin HTTP/1.1\r\n", "BITS-Packet-Type: Ping\r\n", "Content-Length: 0\r\n", "Accept: */*\r\n", "User-Agent: caddy-bits/client\r\n"},
		{"BITS-Packet-Type: Create-Session\r\n", "BITS-Supported-Protocols: {7df0354d-249b-430f-820d-3d2a9bef4931}\r\n", "Content-Length: 0\r\n"},
		{"BITS-Packet-Type: Fragment\r\n", "BITS-Session-Id: " + res.WireSessionID + "\r\n", "Content-Range: bytes 0-4999/5000\r\n", "Content-Length: 5000\r\n", "Content-Name: w.bin\r\n"},
		{"BITS-Packet-Type: Close-Session\r\n", "BITS-Session-Id: " + res.WireSessionID + "\r\n", "Content-Length: 0\r\n", "Content-Name: w.bin\r\n"},
	}
	for i, req := range reqs {
		for _, m := range must[i] {
			if !strings.Contains(req, m) {
				t.Errorf("request %d lacks %q:\n%s", i, m, req)
			}
		}
		if strings.Contains(req, "Transfer-Encoding") {
			t.Errorf("request %d has a Transfer-Encoding:\n%s", i, req)
		}
	}
	if strings.Contains(reqs[0], "BITS-Session-Id") || strings.Contains(reqs[1], "BITS-Session-Id") {
		t.Error("Ping or Create-Session carries a session id")
	}
}

func TestZeroLengthWire(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	c.SkipPing = true
	if _, err := c.Upload(context.Background(), f.url("/up/empty"), nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/empty", nil)
	checkSeq(t, f, []string{"Create-Session", "Fragment 0--1/0", "Close-Session"})
	raw := f.rawBytes()
	frag := strings.Split(raw, "BITS_POST ")[2]
	if !strings.Contains(frag, "Content-Range: bytes 0--1/0\r\n") || !strings.Contains(frag, "Content-Length: 0\r\n") {
		t.Errorf("zero-length fragment on the wire:\n%s", frag)
	}
}

func TestUploadFile(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	data := testData(70000, 7)
	path := filepath.Join(t.TempDir(), "report.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c.FragmentSize = 32768
	if _, err := c.UploadFile(context.Background(), f.url("/up/report.bin"), path, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/report.bin", data)
	f.mu.Lock()
	h := f.headers[2]
	f.mu.Unlock()
	if got := h.Get("Content-Name"); got != "report.bin" {
		t.Errorf("Content-Name %q", got)
	}
	if _, err := c.UploadFile(context.Background(), f.url("/up/x"), t.TempDir(), nil); err == nil {
		t.Error("uploading a directory succeeded")
	}
}

func TestShrinkOn413(t *testing.T) {
	f := newFake(t)
	f.maxFragment = 20000
	c := newTestClient(t)
	c.FragmentSize = 65536
	data := testData(60000, 2)
	if _, err := c.Upload(context.Background(), f.url("/up/a"), bytes.NewReader(data), 60000, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/a", data)
	checkSeq(t, f, seq("Ping", "Create-Session",
		"Fragment 0-59999/60000", // 413 (the whole file is smaller than 64 KiB)
		"Fragment 0-29999/60000", // 413
		fragments(0, 60000, 15000), "Close-Session"))
}

func TestShrinkFloor(t *testing.T) {
	f := newFake(t)
	f.maxFragment = 3000
	c := newTestClient(t)
	c.FragmentSize = 65536
	c.SkipPing = true
	data := testData(100000, 3)
	res, err := c.Upload(context.Background(), f.url("/up/a"), bytes.NewReader(data), 100000, nil)
	var be *Error
	if !errors.As(err, &be) || be.Status != 413 || be.Code != protocol.HTTPError(413) || be.Packet != protocol.PacketFragment {
		t.Fatalf("err = %v, want a 413 *Error", err)
	}
	want := []string{"Create-Session"}
	for _, n := range []int64{65536, 32768, 16384, 8192, 5120} {
		want = append(want, fmt.Sprintf("Fragment 0-%d/100000", n-1))
	}
	checkSeq(t, f, want)
	if res.Complete {
		t.Error("result claims completion")
	}
}

func TestResyncRewind416(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type != protocol.PacketFragment || n != 3 {
			return false
		}
		// The server lost data: it holds only 1000 bytes now.
		f.store.mu.Lock()
		s := f.store.sessions[p.SessionID]
		s.data = s.data[:1000]
		f.store.mu.Unlock()
		protocol.WriteAck(w, protocol.Ack{Status: 416, Received: 1000, HasReceived: true})
		return true
	}
	c := newTestClient(t)
	c.FragmentSize = 10000
	var prog []Progress
	opts := &UploadOptions{Progress: func(p Progress) { prog = append(prog, p) }}
	data := testData(35000, 4)
	res, err := c.Upload(context.Background(), f.url("/up/r"), bytes.NewReader(data), 35000, opts)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/r", data)
	checkSeq(t, f, seq("Ping", "Create-Session", fragments(0, 35000, 10000)[:3], fragments(1000, 35000, 10000), "Close-Session"))
	if res.Fragments != 7 || len(prog) != 7 {
		t.Errorf("fragments %d, progress calls %d, want 7", res.Fragments, len(prog))
	}
	acked := []int64{10000, 20000, 1000, 11000, 21000, 31000, 35000}
	for i, p := range prog {
		if p.Acked != acked[i] || p.Total != 35000 || p.Fragments != i+1 || p.SessionID != res.SessionID {
			t.Errorf("progress %d = %+v, want acked %d", i, p, acked[i])
		}
	}
}

func TestLostAckResend(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n == 2 {
			f.process(httptest.NewRecorder(), r, p) // the server keeps the data ...
			abort()                                 // ... but the Ack is lost
		}
		return false
	}
	c := newTestClient(t)
	c.FragmentSize = 10000
	data := testData(30000, 5)
	if _, err := c.Upload(context.Background(), f.url("/up/l"), bytes.NewReader(data), 30000, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/l", data)
	fr := fragments(0, 30000, 10000)
	checkSeq(t, f, seq("Ping", "Create-Session", fr[:2], "Ping", fr[1:], "Close-Session"))
}

func TestDropMidFragment(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n == 2 {
			buf := make([]byte, p.ContentLength/2)
			r.Body.Read(buf)
			abort()
		}
		return false
	}
	c := newTestClient(t)
	c.FragmentSize = 20000
	data := testData(50000, 6)
	res, err := c.Upload(context.Background(), f.url("/up/d"), bytes.NewReader(data), 50000, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/d", data)
	fr := fragments(0, 50000, 20000)
	checkSeq(t, f, seq("Ping", "Create-Session", fr[:2], "Ping", fr[1:], "Close-Session"))
	if res.Fragments != 3 {
		t.Errorf("fragments = %d", res.Fragments)
	}
}

func TestSessionNotFoundRestart(t *testing.T) {
	f := newFake(t)
	var firstID protocol.SessionID
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n == 3 {
			f.store.mu.Lock()
			delete(f.store.sessions, p.SessionID) // session expired
			f.store.mu.Unlock()
			f.mu.Lock()
			firstID = p.SessionID
			f.mu.Unlock()
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
	fr := fragments(0, 40000, 10000)
	checkSeq(t, f, seq("Ping", "Create-Session", fr[:3], "Create-Session", fr, "Close-Session"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if res.Restarts != 1 || res.SessionID == firstID || res.Fragments != 6 {
		t.Errorf("result %+v (first session %s)", res, firstID)
	}
	// The Result lists both sessions.
	if len(res.Sessions) != 2 {
		t.Fatalf("%d sessions: %+v", len(res.Sessions), res.Sessions)
	}
	first, last := res.Sessions[0], res.Sessions[1]
	if first.Acked != 20000 || first.Fragments != 2 || !errors.Is(first.Err, ErrSessionNotFound) ||
		first.SessionID != firstID || first.URL != f.url("/up/s") {
		t.Errorf("first session %+v", first)
	}
	if last.Acked != 40000 || last.Fragments != 4 || last.Err != nil || last.SessionID != res.SessionID ||
		last.WireSessionID != res.WireSessionID || last.URL != res.SessionURL {
		t.Errorf("last session %+v, result %+v", last, res)
	}
}

func TestSessionNotFoundRestartCap(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment {
			protocol.WriteAck(w, protocol.ErrorAck(protocol.SessionNotFound("gone")))
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.MaxRestarts = 2
	c.SkipPing = true
	res, err := c.Upload(context.Background(), f.url("/up/s"), bytes.NewReader(testData(10, 1)), 10, nil)
	var be *Error
	if !errors.As(err, &be) || be.Code != protocol.BGSessionNotFound || be.Status != 500 {
		t.Fatalf("err = %v", err)
	}
	want := "fragment: server answered 500 BG_E_SESSION_NOT_FOUND (0x8020001F), context BG_ERROR_CONTEXT_REMOTE_FILE (0x5)"
	if be.Error() != want {
		t.Errorf("Error() = %q, want %q", be.Error(), want)
	}
	if res.Restarts != 2 || f.count("Create-Session") != 3 {
		t.Errorf("restarts %d, creates %d", res.Restarts, f.count("Create-Session"))
	}
}

func TestRetry503(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n >= 2 && n <= 4 {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: protocol.ContextRemoteFile})
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.FragmentSize = 10000
	c.MaxRetries = 3
	data := testData(20000, 9)
	if _, err := c.Upload(context.Background(), f.url("/up/x"), bytes.NewReader(data), 20000, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/x", data)
	fr := fragments(0, 20000, 10000)
	checkSeq(t, f, seq("Ping", "Create-Session", fr[0], fr[1], fr[1], fr[1], fr[1], "Close-Session"))
}

func TestRetriesExhausted(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n >= 2 {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(503) // no BITS headers at all
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.FragmentSize = 10000
	c.MaxRetries = 3
	res, err := c.Upload(context.Background(), f.url("/up/x"), bytes.NewReader(testData(20000, 9)), 20000, nil)
	var be *Error
	if !errors.As(err, &be) || be.Status != 503 || be.Code != protocol.HTTPError(503) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "giving up after 4 consecutive failures") {
		t.Errorf("err = %v", err)
	}
	if f.count("Fragment") != 5 || res.Acked != 10000 || res.Complete {
		t.Errorf("%d fragments, result %+v", f.count("Fragment"), res)
	}
	if be.Error() != "fragment: server answered 503 BG_E_HTTP_ERROR_503 (0x801901F7)" {
		t.Errorf("Error() = %q", be.Error())
	}
}

func TestTransportErrorsExhausted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	c := newTestClient(t)
	c.MaxRetries = 2
	res, err := c.Upload(context.Background(), "http://"+addr+"/up/x", bytes.NewReader([]byte("x")), 1, nil)
	var be *Error
	if err == nil || errors.As(err, &be) || !strings.Contains(err.Error(), "ping: giving up after 3") {
		t.Fatalf("err = %v", err)
	}
	if res == nil || res.Complete {
		t.Errorf("result %+v", res)
	}
}

func TestFatalAnswers(t *testing.T) {
	cases := []struct {
		name    string
		packet  protocol.PacketType
		ack     protocol.Ack
		code    protocol.HRESULT
		retried bool
	}{
		{"403", protocol.PacketCreateSession, protocol.Ack{Status: 403, Code: protocol.EAccessDenied, Context: 5}, protocol.EAccessDenied, false},
		{"400", protocol.PacketFragment, protocol.Ack{Status: 400, Code: protocol.EInvalidArg, Context: 5}, protocol.EInvalidArg, false},
		{"501", protocol.PacketCreateSession, protocol.Ack{Status: 501, Code: protocol.EAccessDenied, Context: 5}, protocol.EAccessDenied, false},
		{"404 bare", protocol.PacketCreateSession, protocol.Ack{Status: 404}, protocol.HTTPError(404), false},
		{"too large", protocol.PacketFragment, protocol.Ack{Status: 500, Code: protocol.BGTooLarge, Context: 5}, protocol.BGTooLarge, false},
		{"409 create", protocol.PacketCreateSession, protocol.Ack{Status: 409, Code: protocol.EAccessDenied, Context: 5}, 0, true},
		{"408 fragment", protocol.PacketFragment, protocol.Ack{Status: 408, Code: protocol.ErrorTimeout, Context: 5}, 0, true},
		{"500 ping", protocol.PacketPing, protocol.Ack{Status: 500, Code: protocol.EFail, Context: 5}, 0, true},
		{"401 ping", protocol.PacketPing, protocol.Ack{Status: 401}, protocol.HTTPError(401), false},
		{"302 fragment", protocol.PacketFragment, protocol.Ack{Status: 302}, protocol.HTTPError(302), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
				if p.Type == tc.packet && n == 1 {
					protocol.WriteAck(w, tc.ack)
					return true
				}
				return false
			}
			c := newTestClient(t)
			data := testData(100, 1)
			_, err := c.Upload(context.Background(), f.url("/up/f"), bytes.NewReader(data), 100, nil)
			if tc.retried {
				if err != nil {
					t.Fatal(err)
				}
				checkFile(t, f, "/up/f", data)
				if f.count(tc.packet.String()) != 2 {
					t.Errorf("%s sent %d times, want 2", tc.packet, f.count(tc.packet.String()))
				}
				return
			}
			var be *Error
			if !errors.As(err, &be) || be.Code != tc.code || be.Status != tc.ack.Status || be.Packet != tc.packet {
				t.Fatalf("err = %#v", err)
			}
			if be.Context != tc.ack.Context || be.Ack == nil {
				t.Errorf("context %v, ack %v", be.Context, be.Ack)
			}
			if f.count(tc.packet.String()) != 1 {
				t.Errorf("%s sent %d times, want 1", tc.packet, f.count(tc.packet.String()))
			}
		})
	}
}

// TestServerApplicationErrors checks the ctx 0x7 rules on the final
// fragment: transient failures re-send the final fragment.
func TestServerApplicationErrors(t *testing.T) {
	cases := []struct {
		status    int
		transient bool
	}{
		{500, true}, {503, true}, {408, true}, {409, true}, {308, true},
		{501, false}, {505, false}, {403, false}, {404, false}, {307, false}, {301, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			f := newFake(t)
			f.reply = func(b []byte) []byte { return []byte("ok") }
			f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
				if p.Type == protocol.PacketFragment && p.Range.IsFinal() && f.count("final") < 2 {
					f.record("final", nil)
					f.process(httptest.NewRecorder(), r, p) // data complete, notification failed
					protocol.WriteAck(w, protocol.Ack{Status: tc.status, Code: protocol.HTTPError(tc.status), Context: protocol.ContextRemoteApplication})
					return true
				}
				return false
			}
			c := newTestClient(t)
			c.FragmentSize = 600
			data := testData(1000, 3)
			res, err := c.Upload(context.Background(), f.url("/up/app"), bytes.NewReader(data), 1000, &UploadOptions{KeepReply: true})
			fr := fragments(0, 1000, 600)
			if !tc.transient {
				var be *Error
				if !errors.As(err, &be) || be.Status != tc.status || be.Context != protocol.ContextRemoteApplication {
					t.Fatalf("err = %v", err)
				}
				checkSeq(t, f, seq("Ping", "Create-Session", fr[0], fr[1], "final"))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkSeq(t, f, seq("Ping", "Create-Session", fr[0], fr[1], "final", fr[1], "final", fr[1],
				"HEAD /reply/"+res.SessionID.Bare(), "GET bytes=0-1", "Close-Session"))
			if string(res.Reply) != "ok" {
				t.Errorf("reply %q", res.Reply)
			}
		})
	}
}

func TestInvalidFragmentAcks(t *testing.T) {
	cases := map[string]func(w http.ResponseWriter){
		"missing": func(w http.ResponseWriter) { protocol.WriteAck(w, protocol.Ack{}) },
		"junk": func(w http.ResponseWriter) {
			w.Header()[protocol.HeaderReceivedContentRange] = []string{"bytes 0-9"}
			protocol.WriteAck(w, protocol.Ack{})
		},
		"beyond":  func(w http.ResponseWriter) { protocol.WriteAck(w, protocol.Ack{Received: 11, HasReceived: true}) },
		"not ack": func(w http.ResponseWriter) { w.Header().Set(protocol.HeaderReceivedContentRange, "10") },
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
				if p.Type == protocol.PacketFragment {
					answer(w)
					return true
				}
				return false
			}
			c := newTestClient(t)
			_, err := c.Upload(context.Background(), f.url("/up/i"), bytes.NewReader(testData(10, 1)), 10, nil)
			var be *Error
			if !errors.As(err, &be) || be.Code != protocol.BGInvalidServerResponse || be.Status != 200 {
				t.Fatalf("err = %v", err)
			}
			if f.count("Fragment") != 1 {
				t.Errorf("%d fragments sent", f.count("Fragment"))
			}
		})
	}
}

func TestNoProgress(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment {
			protocol.WriteAck(w, protocol.Ack{Received: 0, HasReceived: true}) // never advances
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.MaxRetries = 2
	_, err := c.Upload(context.Background(), f.url("/up/i"), bytes.NewReader(testData(10, 1)), 10, nil)
	var be *Error
	if !errors.As(err, &be) || be.Code != protocol.BGNoProgress {
		t.Fatalf("err = %v", err)
	}
	if f.count("Fragment") != 3 {
		t.Errorf("%d fragments sent", f.count("Fragment"))
	}
}

func TestCreateSessionValidation(t *testing.T) {
	good := func(w http.ResponseWriter) http.Header {
		h := w.Header()
		h[protocol.HeaderPacketType] = []string{"Ack"}
		h[protocol.HeaderProtocol] = []string{protocol.UploadProtocol}
		h[protocol.HeaderSessionID] = []string{"{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}"}
		h["Content-Length"] = []string{"0"}
		return h
	}
	cases := []struct {
		name   string
		answer func(w http.ResponseWriter)
		code   protocol.HRESULT // 0: success
	}{
		{"200", func(w http.ResponseWriter) { good(w); w.WriteHeader(200) }, 0},
		{"201", func(w http.ResponseWriter) { good(w); w.WriteHeader(201) }, 0},
		{"upper-case protocol", func(w http.ResponseWriter) {
			good(w)[protocol.HeaderProtocol] = []string{strings.ToUpper(protocol.UploadProtocol)}
		}, 0},
		{"204", func(w http.ResponseWriter) { good(w); w.WriteHeader(204) }, protocol.BGInvalidServerResponse},
		{"no protocol", func(w http.ResponseWriter) { delete(good(w), protocol.HeaderProtocol) }, protocol.BGInvalidServerResponse},
		{"other protocol", func(w http.ResponseWriter) {
			good(w)[protocol.HeaderProtocol] = []string{"{00000000-0000-0000-0000-000000000000}"}
		}, protocol.BGClientServerProtocolMis},
		{"no session id", func(w http.ResponseWriter) { delete(good(w), protocol.HeaderSessionID) }, protocol.BGInvalidServerResponse},
		{"not an ack", func(w http.ResponseWriter) { delete(good(w), protocol.HeaderPacketType) }, protocol.BGInvalidServerResponse},
		{"bad host id", func(w http.ResponseWriter) { good(w)[protocol.HeaderHostID] = []string{"a/b"} }, protocol.BGInvalidServerResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.answer(w) }))
			defer srv.Close()
			c := newTestClient(t)
			s, a, err := c.CreateSession(context.Background(), srv.URL+"/up/c")
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if s.WireID != "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}" || s.ID != "{a0ff5911-4144-45b3-bf27-27afc8ec8a67}" || s.URL != srv.URL+"/up/c" {
					t.Errorf("session %+v", s)
				}
				return
			}
			var be *Error
			if !errors.As(err, &be) || be.Code != tc.code || s != nil || a == nil {
				t.Fatalf("err = %v, session %v, ack %v", err, s, a)
			}
		})
	}
}

func TestCloseSession(t *testing.T) {
	cases := []struct {
		name    string
		answers []protocol.Ack
		ok      bool
		closes  int
	}{
		{"503 twice", []protocol.Ack{{Status: 503, Code: protocol.EFail, Context: 5}, {Status: 503, Code: protocol.EFail, Context: 5}}, true, 3},
		{"501 retried", []protocol.Ack{{Status: 501, Code: protocol.EFail, Context: 5}}, true, 2},
		{"session not found", []protocol.Ack{{Status: 500, Code: protocol.BGSessionNotFound, Context: 5}}, true, 1},
		{"403", []protocol.Ack{{Status: 403, Code: protocol.EAccessDenied, Context: 5}}, false, 1},
		{"409", []protocol.Ack{{Status: 409, Code: protocol.EAccessDenied, Context: 7}}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
				if p.Type == protocol.PacketCloseSession && n <= len(tc.answers) {
					protocol.WriteAck(w, tc.answers[n-1])
					return true
				}
				return false
			}
			c := newTestClient(t)
			data := testData(100, 1)
			res, err := c.Upload(context.Background(), f.url("/up/c"), bytes.NewReader(data), 100, nil)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if !tc.ok {
				var be *Error
				if !errors.As(err, &be) || be.Packet != protocol.PacketCloseSession {
					t.Errorf("err = %v", err)
				}
			}
			if !res.Complete {
				t.Error("upload not complete")
			}
			checkFile(t, f, "/up/c", data)
			if f.count("Close-Session") != tc.closes {
				t.Errorf("%d Close-Session, want %d", f.count("Close-Session"), tc.closes)
			}
		})
	}
}

func TestHostID(t *testing.T) {
	a, b := newFake(t), newFake(t)
	b.store = a.store // shared storage, as for a farm node answering for itself
	a.hostID = "127.0.0.1:" + b.port()
	a.hostIDCount = 1
	a.hostIDSecs = 110
	c := newTestClient(t)
	c.FragmentSize = 10000
	data := testData(25000, 11)
	res, err := c.Upload(context.Background(), a.url("/up/h?x=1"), bytes.NewReader(data), 25000, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, a, "/up/h", data)
	checkSeq(t, a, []string{"Ping", "Create-Session"})
	checkSeq(t, b, seq("Ping", fragments(0, 25000, 10000), "Close-Session"))
	if res.HostID != a.hostID || res.SessionURL != b.url("/up/h?x=1") || res.FellBack {
		t.Errorf("result %+v", res)
	}
	want := SessionResult{SessionID: res.SessionID, WireSessionID: res.WireSessionID, URL: b.url("/up/h?x=1"), HostID: a.hostID, Acked: 25000, Fragments: 3}
	if len(res.Sessions) != 1 || res.Sessions[0] != want {
		t.Errorf("sessions %+v, want [%+v]", res.Sessions, want)
	}
}

func TestHostIDFallback(t *testing.T) {
	a := newFake(t)
	deadAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens there
	a.hostID = deadAddr
	a.hostIDCount = 1
	a.hostStore = newFakeStore() // the session lives only on the dead node
	c := newTestClient(t)
	c.HostIDFallbackOverride = 30 * time.Millisecond
	c.MaxRetries = 1000
	c.FragmentSize = 10000
	data := testData(15000, 12)
	start := time.Now()
	res, err := c.Upload(context.Background(), a.url("/up/fb"), bytes.NewReader(data), 15000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("fell back before the timeout")
	}
	checkFile(t, a, "/up/fb", data)
	checkSeq(t, a, seq("Ping", "Create-Session", "Ping", "Fragment 0-9999/15000", // 500 BG_E_SESSION_NOT_FOUND
		"Create-Session", fragments(0, 15000, 10000), "Close-Session"))
	if res.Restarts != 1 || res.HostID != "" {
		t.Errorf("result %+v", res)
	}
	// The first session is handed to the dead node, falls back to the
	// original URL, where it is unknown; the second completes there.
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

func TestHostIDNoFallbackWithoutTimeout(t *testing.T) {
	a := newFake(t)
	a.hostID = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens there
	a.hostIDCount = 1
	c := newTestClient(t)
	c.MaxRetries = 3
	_, err := c.Upload(context.Background(), a.url("/up/nf"), bytes.NewReader([]byte("abc")), 3, nil)
	if err == nil || !strings.Contains(err.Error(), "ping: giving up after 4") {
		t.Fatalf("err = %v", err)
	}
	checkSeq(t, a, []string{"Ping", "Create-Session"})
}

func TestReply(t *testing.T) {
	f := newFake(t)
	replyData := testData(100000, 13)
	f.reply = func(up []byte) []byte { return replyData }
	c := newTestClient(t)
	c.FragmentSize = 40000
	var out bytes.Buffer
	data := testData(50000, 14)
	res, err := c.Upload(context.Background(), f.url("/up/rep"), bytes.NewReader(data), 50000, &UploadOptions{Reply: &out, KeepReply: true, MaxReplySize: 200000})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/rep", data)
	checkSeq(t, f, seq("Ping", "Create-Session", fragments(0, 50000, 40000),
		"HEAD /reply/"+res.SessionID.Bare(), "GET bytes=0-99999", "Close-Session"))
	if sum(out.Bytes()) != sum(replyData) || sum(res.Reply) != sum(replyData) || res.ReplySize != 100000 {
		t.Errorf("reply: %d bytes written, %d kept, size %d", out.Len(), len(res.Reply), res.ReplySize)
	}
	if res.ReplyURL != f.url("/reply/"+res.SessionID.Bare()) {
		t.Errorf("reply URL %q", res.ReplyURL)
	}
	f.mu.Lock()
	get := f.headers[len(f.headers)-2]
	f.mu.Unlock()
	if get.Get("Accept-Encoding") != "identity" || get.Get("Range") != "bytes=0-99999" {
		t.Errorf("GET headers %v", get)
	}
}

func TestReplyRelativeURL(t *testing.T) {
	f := newFake(t)
	f.reply = func(up []byte) []byte { return []byte("relative reply") }
	f.relReply = true
	c := newTestClient(t)
	res, err := c.Upload(context.Background(), f.url("/up/dir/file"), bytes.NewReader([]byte("x")), 1, &UploadOptions{KeepReply: true})
	if err != nil {
		t.Fatal(err)
	}
	want := f.url("/up/dir/reply/%7B" + strings.ToUpper(res.SessionID.Bare()) + "%7D/responsefile.bin")
	if res.ReplyURL != want || string(res.Reply) != "relative reply" {
		t.Errorf("reply URL %q (want %q), reply %q", res.ReplyURL, want, res.Reply)
	}
}

func TestReplyResume(t *testing.T) {
	f := newFake(t)
	replyData := testData(100000, 15)
	f.reply = func(up []byte) []byte { return replyData }
	f.replyHook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, data []byte, n int) bool {
		if r.Method == http.MethodGet && n == 1 {
			w.Header().Set("Content-Range", "bytes 0-99999/100000")
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[:30000])
			w.(http.Flusher).Flush()
			abort()
		}
		return false
	}
	c := newTestClient(t)
	var out bytes.Buffer
	res, err := c.Upload(context.Background(), f.url("/up/rr"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{Reply: &out})
	if err != nil {
		t.Fatal(err)
	}
	checkSeq(t, f, seq("Ping", "Create-Session", "Fragment 0-2/3",
		"HEAD /reply/"+res.SessionID.Bare(), "GET bytes=0-99999", "GET bytes=30000-99999", "Close-Session"))
	if sum(out.Bytes()) != sum(replyData) || res.ReplySize != 100000 {
		t.Errorf("reply: %d bytes", out.Len())
	}
}

func TestReplyEmpty(t *testing.T) {
	for _, noHead := range []bool{false, true} {
		t.Run(fmt.Sprint("noHead=", noHead), func(t *testing.T) {
			f := newFake(t)
			f.reply = func(up []byte) []byte { return []byte{} }
			f.noHead = noHead
			c := newTestClient(t)
			c.SkipPing = true
			res, err := c.Upload(context.Background(), f.url("/up/e"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{KeepReply: true})
			if err != nil {
				t.Fatal(err)
			}
			want := seq("Create-Session", "Fragment 0-2/3", "HEAD /reply/"+res.SessionID.Bare())
			if noHead {
				want = append(want, "GET bytes=0-") // answered 416 bytes */0
			}
			checkSeq(t, f, append(want, "Close-Session"))
			if res.ReplySize != 0 || len(res.Reply) != 0 || res.ReplyURL == "" {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestReplyWithoutRangeSupport(t *testing.T) {
	replyData := testData(5000, 16)
	ignoreRange := func(abortFirst bool) replyHookFunc {
		return func(f *fakeServer, w http.ResponseWriter, r *http.Request, data []byte, n int) bool {
			if r.Method != http.MethodGet {
				return false
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.WriteHeader(200)
			if abortFirst && n == 1 {
				w.Write(data[:1000])
				w.(http.Flusher).Flush()
				abort()
			}
			w.Write(data)
			return true
		}
	}
	t.Run("full 200", func(t *testing.T) {
		f := newFake(t)
		f.reply = func(up []byte) []byte { return replyData }
		f.replyHook = ignoreRange(false)
		c := newTestClient(t)
		res, err := c.Upload(context.Background(), f.url("/up/n"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{KeepReply: true})
		if err != nil {
			t.Fatal(err)
		}
		if sum(res.Reply) != sum(replyData) {
			t.Error("reply differs")
		}
	})
	t.Run("resume refused", func(t *testing.T) {
		f := newFake(t)
		f.reply = func(up []byte) []byte { return replyData }
		f.replyHook = ignoreRange(true)
		c := newTestClient(t)
		res, err := c.Upload(context.Background(), f.url("/up/n"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{KeepReply: true})
		var be *Error
		if !errors.As(err, &be) || be.Code != BGInsufficientRangeSupport || be.Packet != protocol.PacketUnknown {
			t.Fatalf("err = %v", err)
		}
		if res.ReplySize != 1000 || !res.Complete {
			t.Errorf("result %+v", res)
		}
		if f.count("Close-Session") != 0 {
			t.Error("session closed after a failed reply download")
		}
	})
}

func TestReplyTooLarge(t *testing.T) {
	f := newFake(t)
	f.reply = func(up []byte) []byte { return make([]byte, 5000) }
	c := newTestClient(t)
	_, err := c.Upload(context.Background(), f.url("/up/big"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{KeepReply: true, MaxReplySize: 1000})
	var be *Error
	if !errors.As(err, &be) || be.Code != protocol.BGTooLarge {
		t.Fatalf("err = %v", err)
	}
	if f.count("GET") != 0 {
		t.Error("reply fetched although HEAD announced it too large")
	}
}

func TestReplyNotFound(t *testing.T) {
	f := newFake(t)
	f.reply = func(up []byte) []byte { return []byte("r") }
	f.replyHook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, data []byte, n int) bool {
		http.NotFound(w, r)
		return true
	}
	c := newTestClient(t)
	_, err := c.Upload(context.Background(), f.url("/up/nf"), bytes.NewReader([]byte("abc")), 3, nil)
	var be *Error
	if !errors.As(err, &be) || be.Status != 404 || be.Error() != "reply: server answered 404 BG_E_HTTP_ERROR_404 (0x80190194)" {
		t.Fatalf("err = %v", err)
	}
}

func TestSkipReply(t *testing.T) {
	f := newFake(t)
	f.reply = func(up []byte) []byte { return []byte("r") }
	c := newTestClient(t)
	c.SkipPing = true
	res, err := c.Upload(context.Background(), f.url("/up/s"), bytes.NewReader([]byte("abc")), 3, &UploadOptions{SkipReply: true})
	if err != nil {
		t.Fatal(err)
	}
	checkSeq(t, f, []string{"Create-Session", "Fragment 0-2/3", "Close-Session"})
	if res.ReplyURL == "" {
		t.Error("no reply URL in the result")
	}
}

func TestBasicAuth(t *testing.T) {
	f := newFake(t)
	f.user, f.pass = "alice", "s3cret"
	f.reply = func(up []byte) []byte { return []byte("reply") }
	c := newTestClient(t)
	c.Username, c.Password = "alice", "s3cret"
	if _, err := c.Upload(context.Background(), f.url("/up/auth"), bytes.NewReader([]byte("abc")), 3, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	for i, h := range f.headers {
		if !strings.HasPrefix(h.Get("Authorization"), "Basic ") {
			t.Errorf("request %d (%s) without Basic credentials", i, f.log[i])
		}
	}
	f.mu.Unlock()

	c2 := newTestClient(t)
	c2.Username, c2.Password = "alice", "wrong"
	_, err := c2.Upload(context.Background(), f.url("/up/auth2"), bytes.NewReader([]byte("abc")), 3, nil)
	var be *Error
	if !errors.As(err, &be) || be.Status != 401 || be.Packet != protocol.PacketPing {
		t.Fatalf("err = %v", err)
	}
}

func TestContextCancel(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: 5})
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.RetryDelay, c.MaxRetryDelay = time.Minute, time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Upload(ctx, f.url("/up/cc"), bytes.NewReader([]byte("abc")), 3, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	if f.count("Cancel-Session") != 0 {
		t.Error("context cancellation sent Cancel-Session")
	}
}

func TestLocalFileShrank(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	_, err := c.Upload(context.Background(), f.url("/up/short"), bytes.NewReader([]byte("abc")), 10, nil)
	var be *Error
	if !errors.As(err, &be) || be.Code != BGLocalFileChanged || be.Context != ContextLocalFile {
		t.Fatalf("err = %v", err)
	}
}

func TestUploadArguments(t *testing.T) {
	c := newTestClient(t)
	for _, url := range []string{"ftp://x/y", "http:///nohost", "://bad"} {
		if _, err := c.Upload(context.Background(), url, bytes.NewReader(nil), 0, nil); err == nil {
			t.Errorf("Upload(%q) succeeded", url)
		}
	}
	if _, err := c.Upload(context.Background(), "http://127.0.0.1:1/x", nil, 5, nil); err == nil {
		t.Error("nil source accepted")
	}
	if _, err := c.Upload(context.Background(), "http://127.0.0.1:1/x", bytes.NewReader(nil), -1, nil); err == nil {
		t.Error("negative size accepted")
	}
}

func TestCancel(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	s, _, err := c.CreateSession(context.Background(), f.url("/up/cancel"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(context.Background(), f.url("/up/cancel"), s.ID); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	got := f.headers[len(f.headers)-1].Get(protocol.HeaderSessionID)
	f.mu.Unlock()
	if got != s.ID.Wire() {
		t.Errorf("Cancel-Session carried session id %q", got)
	}
	var b [16]byte
	err = c.Cancel(context.Background(), f.url("/up/cancel"), protocol.NewSessionID(b))
	var be *Error
	if !errors.As(err, &be) || be.Code != protocol.BGSessionNotFound || be.Packet != protocol.PacketCancelSession {
		t.Fatalf("err = %v", err)
	}
	checkSeq(t, f, []string{"Create-Session", "Cancel-Session", "Cancel-Session"})

	// 5xx is retried.
	f2 := newFake(t)
	f2.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketCancelSession && n == 1 {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: 5})
			return true
		}
		return false
	}
	s2, _, err := c.CreateSession(context.Background(), f2.url("/up/c2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(context.Background(), f2.url("/up/c2"), s2.ID); err != nil {
		t.Fatal(err)
	}
	checkSeq(t, f2, []string{"Create-Session", "Cancel-Session", "Cancel-Session"})
}

// TestLowLevel drives a session packet by packet.
func TestLowLevel(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	ctx := context.Background()
	if err := c.Ping(ctx, f.url("/up/ll")); err != nil {
		t.Fatal(err)
	}
	s, ack, err := c.CreateSession(ctx, f.url("/up/ll"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Status != 200 || !ack.IsAck() || ack.SessionID != s.WireID || ack.Header.Get("Accept-Encoding") != "identity" {
		t.Errorf("create ack %+v", ack)
	}
	// A gap is answered 416 with the server's offset; Err treats it as fine.
	a, err := s.Fragment(ctx, []byte("world"), 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != 416 || !a.HasReceived || a.Received != 0 || a.Err(protocol.PacketFragment) != nil {
		t.Errorf("gap ack %+v", a)
	}
	if a, _ := s.Fragment(ctx, []byte("hello"), 0, 10); a.Status != 200 || a.Received != 5 {
		t.Errorf("ack %+v", a)
	}
	if a, _ := s.Fragment(ctx, []byte("world"), 5, 10); a.Status != 200 || a.Received != 10 {
		t.Errorf("ack %+v", a)
	}
	if a, _ := s.Close(ctx); a.Status != 200 {
		t.Errorf("close ack %+v", a)
	}
	checkFile(t, f, "/up/ll", []byte("helloworld"))
	// An unknown session: raw Ack, no error.
	a, err = c.ResumeSession(f.url("/up/ll"), "{00000000-0000-4000-8000-000000000000}").Fragment(ctx, []byte("x"), 0, 1)
	if err != nil || a.Status != 500 || a.Code != protocol.BGSessionNotFound || a.Context != protocol.ContextRemoteFile {
		t.Errorf("ack %+v, err %v", a, err)
	}
	// Send crafts anything, e.g. an unknown packet type.
	a, err = c.Send(ctx, f.url("/up/ll"), &Packet{Type: protocol.PacketPing, Header: http.Header{"bits-packet-type": {"Bogus"}}})
	if err != nil || a.Status != 400 || a.Code != protocol.EInvalidArg {
		t.Errorf("ack %+v, err %v", a, err)
	}
	// And a body on a Ping.
	a, err = c.Send(ctx, f.url("/up/ll"), &Packet{Type: protocol.PacketPing, Body: []byte("x")})
	if err != nil || a.Status != 400 {
		t.Errorf("ack %+v, err %v", a, err)
	}
	want := []string{"Ping", "Create-Session", "Fragment 5-9/10", "Fragment 0-4/10", "Fragment 5-9/10", "Close-Session",
		"Fragment 0-0/1"}
	got := f.sequence()
	if strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") || len(got) != len(want)+2 {
		t.Errorf("sequence %q", got)
	}
	raw := f.rawBytes()
	if !strings.Contains(raw, "bits-packet-type: Bogus\r\n") || strings.Contains(raw, "BITS-Packet-Type: Ping\r\nbits-packet-type") {
		t.Errorf("header override not verbatim")
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newFake(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.url("/up/x"), http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c := newTestClient(t)
	err := c.Ping(context.Background(), srv.URL+"/up/x")
	var be *Error
	if !errors.As(err, &be) || be.Status != 307 {
		t.Fatalf("err = %v", err)
	}
	if len(target.sequence()) != 0 {
		t.Error("BITS_POST followed a redirect")
	}
}

func TestRequestTimeoutIsTransient(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n == 1 {
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done() // never answer; the client gives up on the request
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.RequestTimeout = 100 * time.Millisecond
	data := testData(100, 17)
	if _, err := c.Upload(context.Background(), f.url("/up/t"), bytes.NewReader(data), 100, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/t", data)
	checkSeq(t, f, []string{"Ping", "Create-Session", "Fragment 0-99/100", "Ping", "Fragment 0-99/100", "Close-Session"})
}

// TestRetryCounterResetsOnProgress: every fragment fails twice, which
// MaxRetries 2 survives only because each success resets the count.
func TestRetryCounterResetsOnProgress(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n%3 != 0 {
			protocol.WriteAck(w, protocol.Ack{Status: 500, Code: protocol.EFail, Context: protocol.ContextRemoteFile})
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.MaxRetries = 2
	c.FragmentSize = 1000
	data := testData(4000, 18)
	res, err := c.Upload(context.Background(), f.url("/up/rc"), bytes.NewReader(data), 4000, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/rc", data)
	if f.count("Fragment") != 12 || res.Fragments != 4 {
		t.Errorf("%d fragments sent, %d acknowledged", f.count("Fragment"), res.Fragments)
	}
}

func TestConcurrentUploads(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	c.FragmentSize = 8192
	var wg sync.WaitGroup
	errs := make([]error, 4)
	datas := make([][]byte, 4)
	for i := range 4 {
		datas[i] = testData(30000+i, uint64(100+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Upload(context.Background(), f.url(fmt.Sprintf("/up/c%d", i)), bytes.NewReader(datas[i]), int64(len(datas[i])), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		checkFile(t, f, fmt.Sprintf("/up/c%d", i), datas[i])
	}
}

// TestProgressIsPerUpload: concurrent uploads on one Client each see their
// own progress callback, and only their own.
func TestProgressIsPerUpload(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	c.FragmentSize = 8192
	var wg sync.WaitGroup
	errs := make([]error, 4)
	seen := make([][]Progress, 4)
	for i := range 4 {
		data := testData(30000+i*1000, uint64(200+i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := &UploadOptions{Progress: func(p Progress) { seen[i] = append(seen[i], p) }}
			_, errs[i] = c.Upload(context.Background(), f.url(fmt.Sprintf("/up/p%d", i)), bytes.NewReader(data), int64(len(data)), opts)
		}()
	}
	wg.Wait()
	for i := range 4 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		total := int64(30000 + i*1000)
		if len(seen[i]) != int((total+8191)/8192) {
			t.Errorf("upload %d: %d progress calls", i, len(seen[i]))
		}
		for _, p := range seen[i] {
			if p.Total != total {
				t.Errorf("upload %d saw progress of an upload of %d bytes", i, p.Total)
			}
		}
		if last := seen[i][len(seen[i])-1]; last.Acked != total {
			t.Errorf("upload %d: last progress %+v", i, last)
		}
	}
}

// failingSource serves data until offset failAt, then fails with err (or
// ends there when err is nil).
type failingSource struct {
	data   []byte
	failAt int64
	err    error
}

func (s *failingSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.failAt {
		if s.err == nil {
			return 0, io.EOF
		}
		return 0, s.err
	}
	n := copy(p, s.data[off:min(int64(len(s.data)), s.failAt)])
	if n < len(p) {
		if s.err == nil {
			return n, io.EOF
		}
		return n, s.err
	}
	return n, nil
}

// TestSourceFailsMidFragment: the source fails while a fragment is being
// sent; the upload ends at once with the source's error, not retried.
func TestSourceFailsMidFragment(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ends", nil, "the upload source ended at offset 150000, before its size 200000"},
		{"fails", errors.New("disk on fire"), "reading the upload source at offset 150000: disk on fire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			c := newTestClient(t)
			c.FragmentSize = 100000
			c.MaxRetries = 3
			src := &failingSource{data: testData(200000, 30), failAt: 150000, err: tc.err}
			res, err := c.Upload(context.Background(), f.url("/up/fail"), src, 200000, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("err = %v does not wrap the source's error", err)
			}
			if tc.err == nil && !errors.Is(err, ErrLocalFileChanged) {
				t.Errorf("err = %v, want BG_E_LOCAL_FILE_CHANGED", err)
			}
			// The server may or may not have seen the broken second
			// fragment; a retry would make a third.
			if n := f.count("Fragment"); n > 2 || res.Acked != 100000 {
				t.Errorf("%d fragments sent, %d bytes acknowledged; want at most 2 and 100000", n, res.Acked)
			}
		})
	}
}
