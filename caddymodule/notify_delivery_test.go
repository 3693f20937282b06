package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestNotifyByValue checks the notification by value byte for byte: the
// body is the upload with an exact Content-Length and its RFC 9530
// Content-Digest, with BITS-Original-Request-URL and BITS-Session-Id; the
// reply is the backend's body.
func TestNotifyByValue(t *testing.T) {
	reply := []byte("thank you, upload received\n")
	be := newHookBackend(t, answerWith(hookAnswer{Body: reply}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()

	for _, size := range []int{3<<20 + 12345, 1, 0} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(t, size)
			upload := srv.URL(fmt.Sprintf("/value-%d.bin", size))
			before := be.hits()
			s, a := uploadAll(t, c, upload, data, 1<<20)
			checkAck(t, a, finalAck(size, ownReplyURL(upload, s.ID)))
			checkAbsolute(t, a.ReplyURL)
			if got := be.hits() - before; got != 1 {
				t.Fatalf("%d notifications, want 1", got)
			}
			rec := be.last()
			if rec.Method != "POST" || rec.RequestURI != "/hook" {
				t.Errorf("notification %s %s, want POST /hook", rec.Method, rec.RequestURI)
			}
			if rec.BodyErr != "" || rec.BodyLen != int64(size) || rec.BodySHA != sha(data) {
				t.Errorf("body: %d bytes sha256 %s (err %q), want %d bytes sha256 %s", rec.BodyLen, rec.BodySHA, rec.BodyErr, size, sha(data))
			}
			if rec.ContentLength != int64(size) || len(rec.TransferEncoding) != 0 {
				t.Errorf("Content-Length %d, Transfer-Encoding %v; want %d and none", rec.ContentLength, rec.TransferEncoding, size)
			}
			if size > 0 {
				if got := rec.Header.Get("Content-Length"); got != fmt.Sprint(size) {
					t.Errorf("Content-Length header %q, want %d", got, size)
				}
			}
			if got, want := rec.Header.Get("Content-Digest"), digestOf(data); got != want {
				t.Errorf("Content-Digest %q, want %q", got, want)
			}
			if got := rec.Header.Get(protocol.HeaderOriginalRequestURL); got != upload {
				t.Errorf("BITS-Original-Request-URL %q, want %q", got, upload)
			}
			if got := rec.Header.Get(protocol.HeaderSessionID); got != s.WireID {
				t.Errorf("BITS-Session-Id %q, want the client's %q", got, s.WireID)
			}
			for _, h := range []string{protocol.HeaderRequestDataFileName, protocol.HeaderResponseDataFileName, "BITS-Request-DataFile-Digest"} {
				if v := rec.Header.Get(h); v != "" {
					t.Errorf("notification by value carries %s %q", h, v)
				}
			}
			// No copy was asked for.
			assertNoFile(t, filepath.Join(srv.Root, fmt.Sprintf("value-%d.bin", size)))
			resp, body := fetch(t, "GET", a.ReplyURL, nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, reply) {
				t.Errorf("reply GET: %d %q, want 200 %q", resp.StatusCode, body, reply)
			}
			if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
				t.Fatalf("close: %v %+v", err, a)
			}
		})
	}

	// The same through the client, which downloads the reply.
	data := randomBytes(t, 200_000)
	res, err := c.Upload(context.Background(), srv.URL("/value-client.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{KeepReply: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Reply, reply) || res.ReplySize != int64(len(reply)) {
		t.Errorf("client reply %q (%d bytes), want %q", res.Reply, res.ReplySize, reply)
	}
	if rec := be.last(); rec.BodySHA != sha(data) || rec.Header.Get(protocol.HeaderSessionID) != res.WireSessionID {
		t.Errorf("client upload: backend got sha %s session %s", rec.BodySHA, rec.Header.Get(protocol.HeaderSessionID))
	}
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
		t.Errorf("sessions left after the client closed them: %v", dirs)
	}
}

// TestNotifyByReference checks the notification by reference: an empty
// body, the absolute path of the complete upload (readable during the
// request) with its digest, and the reply the backend writes to
// BITS-Response-DataFile-Name as what the client downloads; and an empty
// reply when it writes none.
func TestNotifyByReference(t *testing.T) {
	be := newHookBackend(t, nil)
	// Through Caddy's http transport module.
	srv := newServer(t, notifyOptions(be.URL("/ref"), "type reference", "transport http {\n\t\t\t\tdial_timeout 3s\n\t\t\t}"))
	c := newClient()
	c.FragmentSize = 64 << 10

	t.Run("reply file", func(t *testing.T) {
		reply := randomBytes(t, 70_000)
		be.setAnswer(answerWith(hookAnswer{ReplyFile: reply}))
		data := randomBytes(t, 300_001)
		res, err := c.Upload(context.Background(), srv.URL("/ref/a.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{KeepReply: true})
		if err != nil {
			t.Fatal(err)
		}
		rec := be.last()
		checkReferenceRecord(t, rec, data, srv.URL("/ref/a.bin"), res.WireSessionID)
		if !bytes.Equal(res.Reply, reply) {
			t.Errorf("client reply: %d bytes sha %s, want %d bytes sha %s", len(res.Reply), sha(res.Reply), len(reply), sha(reply))
		}
		if res.ReplyURL != ownReplyURL(srv.URL("/ref/a.bin"), res.SessionID) {
			t.Errorf("reply URL %q", res.ReplyURL)
		}
		// Nothing is copied without the header, and the session (with its
		// upload and reply files) is gone after Close-Session.
		assertNoFile(t, filepath.Join(srv.Root, "ref", "a.bin"))
		assertNoFile(t, rec.Header.Get(protocol.HeaderRequestDataFileName))
		assertNoFile(t, rec.Header.Get(protocol.HeaderResponseDataFileName))
	})

	t.Run("no reply file", func(t *testing.T) {
		be.setAnswer(nil)
		data := randomBytes(t, 5000)
		upload := srv.URL("/ref/b.bin")
		s, a := uploadAll(t, c, upload, data, 4096)
		checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
		rec := be.last()
		checkReferenceRecord(t, rec, data, upload, s.WireID)
		// Delivered: the upload's file is gone, the (empty) reply stays.
		assertNoFile(t, rec.Header.Get(protocol.HeaderRequestDataFileName))
		resp, body := fetch(t, "GET", a.ReplyURL, nil)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
			t.Errorf("empty reply: status %d, %d bytes, Content-Length %q; want 200, 0, \"0\"", resp.StatusCode, len(body), resp.Header.Get("Content-Length"))
		}
		resp, _ = fetch(t, "HEAD", a.ReplyURL, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "0" {
			t.Errorf("empty reply HEAD: status %d Content-Length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
		}
		s.Close(context.Background())

		// Through the client: a 0-byte reply.
		res, err := c.Upload(context.Background(), srv.URL("/ref/c.bin"), bytes.NewReader(data), int64(len(data)), &client.UploadOptions{KeepReply: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.ReplyURL == "" || res.ReplySize != 0 || len(res.Reply) != 0 {
			t.Errorf("client: reply URL %q, %d bytes; want a URL and 0 bytes", res.ReplyURL, res.ReplySize)
		}
	})
}

// checkReferenceRecord checks a notification by reference.
func checkReferenceRecord(t *testing.T, rec hookRecord, data []byte, upload, wireID string) {
	t.Helper()
	if rec.Method != "POST" || rec.RequestURI != "/ref" {
		t.Errorf("notification %s %s, want POST /ref", rec.Method, rec.RequestURI)
	}
	if rec.BodyLen != 0 || rec.ContentLength != 0 {
		t.Errorf("by reference: body of %d bytes, Content-Length %d; want empty", rec.BodyLen, rec.ContentLength)
	}
	if !rec.FileAbs || rec.FileErr != "" || rec.FileLen != int64(len(data)) || rec.FileSHA != sha(data) {
		t.Errorf("%s %q: abs %v, %d bytes sha %s (err %q); want %d bytes sha %s", protocol.HeaderRequestDataFileName,
			rec.Header.Get(protocol.HeaderRequestDataFileName), rec.FileAbs, rec.FileLen, rec.FileSHA, rec.FileErr, len(data), sha(data))
	}
	if got, want := rec.Header.Get("BITS-Request-DataFile-Digest"), digestOf(data); got != want {
		t.Errorf("BITS-Request-DataFile-Digest %q, want %q", got, want)
	}
	if p := rec.Header.Get(protocol.HeaderResponseDataFileName); !filepath.IsAbs(p) {
		t.Errorf("%s %q is not an absolute path", protocol.HeaderResponseDataFileName, p)
	}
	if got := rec.Header.Get(protocol.HeaderOriginalRequestURL); got != upload {
		t.Errorf("BITS-Original-Request-URL %q, want %q", got, upload)
	}
	if got := rec.Header.Get(protocol.HeaderSessionID); got != wireID {
		t.Errorf("BITS-Session-Id %q, want %q", got, wireID)
	}
	if v := rec.Header.Get("Content-Digest"); v != "" {
		t.Errorf("by reference: Content-Digest %q for an empty body", v)
	}
}

// TestNotifyCopyToDestination checks that the upload reaches its
// destination exactly when the backend asks for it, that the session's
// data file is deleted once the upload is delivered either way, and that
// the overwrite rule applies to the copy without a second notification.
func TestNotifyCopyToDestination(t *testing.T) {
	be := newHookBackend(t, nil)
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 100_000)

	t.Run("copy", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Header: copyHeader, Body: []byte("ok")}))
		s, a := uploadAll(t, c, srv.URL("/copy.bin"), data, 30_000)
		checkAck(t, a, finalAck(len(data), ownReplyURL(srv.URL("/copy.bin"), s.ID)))
		assertFile(t, filepath.Join(srv.Root, "copy.bin"), data)
		assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "data"))
		s.Close(context.Background())
		assertFile(t, filepath.Join(srv.Root, "copy.bin"), data)
	})

	t.Run("copy with an empty header value", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{CloseDelimited: true, Header: map[string]string{protocol.HeaderCopyFileToDest: ""}}))
		s, a := uploadAll(t, c, srv.URL("/copy-empty.bin"), data, 100_000)
		checkAck(t, a, finalAck(len(data), ownReplyURL(srv.URL("/copy-empty.bin"), s.ID)))
		assertFile(t, filepath.Join(srv.Root, "copy-empty.bin"), data)
	})

	t.Run("no copy", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Body: []byte("ok")}))
		s, a := uploadAll(t, c, srv.URL("/nocopy.bin"), data, 30_000)
		checkAck(t, a, finalAck(len(data), ownReplyURL(srv.URL("/nocopy.bin"), s.ID)))
		assertNoFile(t, filepath.Join(srv.Root, "nocopy.bin"))
		// The data file is gone, the reply stays until Close-Session.
		assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "data"))
		if !sessionStored(t, srv.SessionDir, s.ID) {
			t.Errorf("session gone before Close-Session")
		}
		// A repeated final fragment neither notifies again nor copies.
		checkAck(t, fragment(t, s, data, 90_000, 99_999), finalAck(len(data), a.ReplyURL))
		assertNoFile(t, filepath.Join(srv.Root, "nocopy.bin"))
		if a, _ := s.Close(context.Background()); a == nil || a.Status != 200 {
			t.Fatalf("close: %+v", a)
		}
		assertNoFile(t, filepath.Join(srv.Root, "nocopy.bin"))
		assertNoSession(t, srv.SessionDir, s.ID)
	})

	t.Run("destination appeared meanwhile", func(t *testing.T) {
		be.setAnswer(answerWith(hookAnswer{Header: copyHeader, Body: []byte("ok")}))
		dest := filepath.Join(srv.Root, "raced.bin")
		s := create(t, c, srv.URL("/raced.bin"))
		checkAck(t, fragment(t, s, data, 0, 49_999), ack{status: 200, headers: received("50000")})
		if err := os.WriteFile(dest, []byte("first"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := be.hits()
		// allow_overwrite is off: the copy is refused with 403.
		checkAck(t, fragment(t, s, data, 50_000, 99_999), ack{status: 403, code: protocol.EAccessDenied})
		checkAck(t, fragment(t, s, data, 50_000, 99_999), ack{status: 403, code: protocol.EAccessDenied})
		if got := be.hits() - before; got != 1 {
			t.Errorf("%d notifications for one upload whose copy was refused, want 1", got)
		}
		if b, _ := os.ReadFile(dest); string(b) != "first" {
			t.Errorf("existing destination changed to %d bytes", len(b))
		}
		// With overwriting allowed, the retry copies, still without
		// notifying again.
		srv.Options = notifyOptions(be.URL("/hook")) + "\n\t\tallow_overwrite"
		reloadConfig(srv, c)
		a := fragment(t, s, data, 50_000, 99_999)
		checkAck(t, a, finalAck(len(data), ownReplyURL(srv.URL("/raced.bin"), s.ID)))
		assertFile(t, dest, data)
		if got := be.hits() - before; got != 1 {
			t.Errorf("%d notifications, want 1", got)
		}
		srv.Options = notifyOptions(be.URL("/hook"))
		reloadConfig(srv, c)
	})
}

// TestNotifyStaticReplyURL checks BITS-Static-Response-URL: it is the
// Ack's BITS-Reply-URL verbatim, and nothing is served at the handler's own
// reply URL.
func TestNotifyStaticReplyURL(t *testing.T) {
	const static = "http://static.example.com/replies/42?sig=a%2Fb&x=1"
	be := newHookBackend(t, answerWith(hookAnswer{
		Header: map[string]string{protocol.HeaderStaticResponseURL: static},
		Body:   []byte("ignored"),
	}))
	for _, mode := range []string{"value", "reference"} {
		t.Run(mode, func(t *testing.T) {
			srv := newServer(t, notifyOptions(be.URL("/hook"), "type "+mode))
			c := newClient()
			data := randomBytes(t, 2000)
			upload := srv.URL("/static.bin")
			s, a := uploadAll(t, c, upload, data, 2000)
			checkAck(t, a, finalAck(len(data), static))
			expectStatus(t, "GET", ownReplyURL(upload, s.ID), 404)
			expectStatus(t, "HEAD", ownReplyURL(upload, s.ID), 404)
			assertNoFile(t, sessionFile(srv.SessionDir, s.ID, "reply"))
			// Cached as is.
			checkAck(t, fragment(t, s, data, 1000, 1999), finalAck(len(data), static))
			if be.hits() == 0 {
				t.Fatal("no notification")
			}
		})
	}
}

// TestNotifyUnusableStaticReplyURL answers a BITS-Static-Response-URL a
// client cannot download: the notification fails (502, context 0x7) and
// is not cached.
func TestNotifyUnusableStaticReplyURL(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Header: map[string]string{protocol.HeaderStaticResponseURL: "ftp://static.example.com/r"}}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 100)
	upload := srv.URL("/badstatic.bin")
	s, a := uploadAll(t, c, upload, data, 100)
	checkAck(t, a, appError(502, protocol.HTTPError(502)))
	be.setAnswer(answerWith(hookAnswer{Header: map[string]string{protocol.HeaderStaticResponseURL: "https://static.example.com/r"}}))
	checkAck(t, fragment(t, s, data, 0, 99), finalAck(len(data), "https://static.example.com/r"))
	if be.hits() != 2 {
		t.Errorf("%d notifications, want 2", be.hits())
	}
	s.Close(context.Background())
}

// TestNotifyURLResolution checks that the upload URL's query string is
// appended to the notification URL, that a relative notification URL is
// resolved against the upload URL (here reaching the backend through a
// reverse_proxy of the same site), and that header placeholders are those
// of the final fragment's request.
func TestNotifyURLResolution(t *testing.T) {
	be := newHookBackend(t, answerWith(hookAnswer{Body: []byte("r")}))
	srv := newServer(t, notifyOptions(be.URL("/hook")))
	c := newClient()
	data := randomBytes(t, 1000)
	if err := os.MkdirAll(filepath.Join(srv.Root, "up", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, upload string) (*client.Session, *client.Ack, hookRecord) {
		t.Helper()
		before := be.hits()
		s, a := uploadAll(t, c, upload, data, 600)
		checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
		if got := be.hits() - before; got != 1 {
			t.Fatalf("%d notifications, want 1", got)
		}
		rec := be.last()
		if rec.BodySHA != sha(data) {
			t.Errorf("body sha %s, want %s", rec.BodySHA, sha(data))
		}
		if got := rec.Header.Get(protocol.HeaderOriginalRequestURL); got != upload {
			t.Errorf("BITS-Original-Request-URL %q, want %q", got, upload)
		}
		return s, a, rec
	}

	t.Run("query appended", func(t *testing.T) {
		upload := srv.URL("/up/file.bin?account=86433")
		s, a, rec := run(t, upload)
		if rec.RequestURI != "/hook?account=86433" {
			t.Errorf("notification URI %q, want /hook?account=86433", rec.RequestURI)
		}
		if want := srv.URL("/up/file.bin?account=86433&bits_reply=" + s.ID.Bare()); a.ReplyURL != want {
			t.Errorf("reply URL %q, want %q", a.ReplyURL, want)
		}
		resp, body := fetch(t, "GET", a.ReplyURL, nil)
		if resp.StatusCode != 200 || string(body) != "r" {
			t.Errorf("reply GET %d %q", resp.StatusCode, body)
		}
	})

	t.Run("query combined", func(t *testing.T) {
		srv.Options = notifyOptions(be.URL("/hook?source=bits&x=%2F"))
		reloadConfig(srv, c)
		_, _, rec := run(t, srv.URL("/up/file2.bin?account=86433"))
		if rec.RequestURI != "/hook?source=bits&x=%2F&account=86433" {
			t.Errorf("notification URI %q, want /hook?source=bits&x=%%2F&account=86433", rec.RequestURI)
		}
	})

	t.Run("relative URL through the site", func(t *testing.T) {
		srv.Site = "handle /up/hooks/* {\n\t\treverse_proxy " + be.Addr() + "\n\t}"
		srv.Options = notifyOptions("../hooks/done")
		reloadConfig(srv, c)
		defer func() {
			srv.Site = ""
			srv.Options = notifyOptions(be.URL("/hook"))
			reloadConfig(srv, c)
		}()
		upload := srv.URL("/up/sub/file.bin?account=7")
		_, _, rec := run(t, upload)
		if rec.Method != "POST" || rec.RequestURI != "/up/hooks/done?account=7" {
			t.Errorf("notification %s %q, want POST /up/hooks/done?account=7", rec.Method, rec.RequestURI)
		}
		if rec.Header.Get("X-Forwarded-Host") == "" && rec.Header.Get("Via") == "" && rec.Header.Get("X-Forwarded-For") == "" {
			t.Errorf("the notification did not come through the reverse proxy: %v", rec.Header)
		}
	})

	t.Run("placeholder in the URL", func(t *testing.T) {
		port := be.Addr()[strings.LastIndex(be.Addr(), ":")+1:]
		srv.Options = notifyOptions("http://{http.request.host}:" + port + "/hook/{http.request.uri.path.file}")
		reloadConfig(srv, c)
		_, _, rec := run(t, srv.URL("/up/file4.bin?account=2"))
		if rec.RequestURI != "/hook/file4.bin?account=2" {
			t.Errorf("notification URI %q, want /hook/file4.bin?account=2", rec.RequestURI)
		}
	})

	t.Run("header placeholders", func(t *testing.T) {
		srv.Options = notifyOptions(be.URL("/hook"),
			"header X-Upload-Host {http.request.host}",
			"header X-Upload-Hostport {http.request.hostport}",
			"header X-Upload-Path {http.request.uri.path}",
			"header X-Upload-Method {http.request.method}",
			"header X-Static fixed",
			"header X-Multi one",
			"header X-Multi two",
		)
		reloadConfig(srv, c)
		_, _, rec := run(t, srv.URL("/up/file3.bin?account=1"))
		for name, want := range map[string]string{
			"X-Upload-Host":     "127.0.0.1",
			"X-Upload-Hostport": srv.Addr(),
			"X-Upload-Path":     "/up/file3.bin",
			"X-Upload-Method":   protocol.Method,
			"X-Static":          "fixed",
		} {
			if got := rec.Header.Values(name); len(got) != 1 || got[0] != want {
				t.Errorf("%s %q, want exactly %q", name, got, want)
			}
		}
		if got := strings.Join(rec.Header.Values("X-Multi"), ","); got != "one,two" {
			t.Errorf("X-Multi %q, want one,two", got)
		}
	})
}

// TestNotifyStaleReplyFileNotAdopted lets a notification by reference
// fail after the backend wrote a reply file; the retry succeeds without
// writing one. The reply must be what the successful notification
// produced (nothing, an empty reply), not the failed attempt's leftover.
func TestNotifyStaleReplyFileNotAdopted(t *testing.T) {
	be := newHookBackend(t, func(n int, rec *hookRecord) hookAnswer {
		if n == 1 {
			return hookAnswer{Status: 500, ReplyFile: []byte("partial reply of a failed attempt")}
		}
		return hookAnswer{}
	})
	srv := newServer(t, notifyOptions(be.URL("/ref"), "type reference"))
	c := newClient()
	data := randomBytes(t, 1000)
	upload := srv.URL("/stale.bin")
	s, a := uploadAll(t, c, upload, data, 1000)
	checkAck(t, a, appError(500, 0x801901F4))
	a = fragment(t, s, data, 0, 999)
	checkAck(t, a, finalAck(len(data), ownReplyURL(upload, s.ID)))
	if be.hits() != 2 {
		t.Fatalf("%d notifications, want 2", be.hits())
	}
	resp, body := fetch(t, "GET", a.ReplyURL, nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("reply: %d %q; want 200 and an empty reply", resp.StatusCode, body)
	}
	s.Close(context.Background())
}
