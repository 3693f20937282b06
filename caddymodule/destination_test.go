package caddymodule_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// createAt sends a Create-Session to a raw request target.
func createAt(t *testing.T, srv *server, target string) *client.Ack {
	t.Helper()
	req := "BITS_POST " + target + " HTTP/1.1\r\nHost: " + srv.Addr() + "\r\nBITS-Packet-Type: Create-Session\r\n" +
		"BITS-Supported-Protocols: " + protocol.UploadProtocol + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	out := rawRequest(t, srv.Addr(), req)
	resp, err := http.ReadResponse(bufioReader(out), nil)
	if err != nil {
		t.Fatalf("%s: %v\n%s", target, err, out)
	}
	resp.Body.Close()
	return &client.Ack{
		Status:     resp.StatusCode,
		Header:     resp.Header,
		PacketType: resp.Header.Get(protocol.HeaderPacketType),
		SessionID:  resp.Header.Get(protocol.HeaderSessionID),
	}
}

// TestDestinationEscapes tries to leave the upload root every way a URL
// can say it. Each must be refused at Create-Session, and nothing may be
// created anywhere.
func TestDestinationEscapes(t *testing.T) {
	srv := newServer(t, "")
	outside := filepath.Join(filepath.Dir(srv.Root), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(srv.Root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(srv.Root, "existing-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		"/../outside/x",
		"/a/../../outside/x",
		"/%2e%2e/outside/x",
		"/%2E%2E%2Foutside%2Fx",
		"/a%2f..%2f..%2foutside%2fx",
		"/..%5coutside%5cx",
		"/a\\..\\x",
		"/x%00.txt",
		"/x%0a.txt",
		"//etc/passwd",
		"/a//b",
		"/./x",
		"/",
		"/dir/",
		"/existing-dir",
		"/link/x",
		"/link",
	} {
		t.Run(target, func(t *testing.T) {
			a := createAt(t, srv, target)
			if a.Status != 400 || a.Header.Get(protocol.HeaderErrorCode) != "0x80070057" || a.Header.Get(protocol.HeaderErrorContext) != "0x5" {
				t.Fatalf("status %d, code %q: want 400 0x80070057", a.Status, a.Header.Get(protocol.HeaderErrorCode))
			}
			if a.SessionID != "" {
				t.Fatalf("a session was created: %s", a.SessionID)
			}
		})
	}
	// An invalid escape never reaches the handler: the HTTP server refuses
	// the request line itself.
	if out := rawRequest(t, srv.Addr(), "BITS_POST /%zz HTTP/1.1\r\nHost: x\r\nBITS-Packet-Type: Create-Session\r\nContent-Length: 0\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 400 ") {
		t.Fatalf("invalid escape answered:\n%s", out)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("files appeared outside the root: %v", entries)
	}
	if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
		t.Fatalf("sessions created for refused targets: %v", dirs)
	}
}

// TestSymlinkSwappedBeforeCommit replaces a parent directory by a link to
// outside the root between Create-Session and the final fragment: the
// commit must not follow it.
func TestSymlinkSwappedBeforeCommit(t *testing.T) {
	srv := newServer(t, "")
	outside := filepath.Join(filepath.Dir(srv.Root), "elsewhere")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClient()
	data := randomBytes(t, 64)
	s := create(t, c, srv.URL("/sub/file.bin"))
	checkAck(t, fragment(t, s, data, 0, 31), ack{status: 200, headers: received("32")})
	if err := os.Symlink(outside, filepath.Join(srv.Root, "sub")); err != nil {
		t.Fatal(err)
	}
	a := fragment(t, s, data, 32, 63)
	checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
	assertNoFile(t, filepath.Join(outside, "file.bin"))
}

// TestOverwriteRules checks the overwrite rule at Create-Session and again
// at commit, where two sessions race for one destination.
func TestOverwriteRules(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	old := []byte("the existing file")
	dest := filepath.Join(srv.Root, "taken.txt")
	if err := os.WriteFile(dest, old, 0o644); err != nil {
		t.Fatal(err)
	}
	_, a, err := c.CreateSession(context.Background(), srv.URL("/taken.txt"))
	if err == nil {
		t.Fatal("create-session for an existing destination succeeded")
	}
	checkAck(t, a, ack{status: 403, code: protocol.EAccessDenied})
	assertFile(t, dest, old)

	// Two sessions for one new destination: the first to complete wins, the
	// second is refused at its final fragment and changes nothing.
	one, two := randomBytes(t, 100), randomBytes(t, 100)
	s1 := create(t, c, srv.URL("/race.bin"))
	s2 := create(t, c, srv.URL("/race.bin"))
	checkAck(t, fragment(t, s2, two, 0, 49), ack{status: 200, headers: received("50")})
	checkAck(t, fragment(t, s1, one, 0, 99), ack{status: 200, headers: received("100")})
	checkAck(t, fragment(t, s2, two, 50, 99), ack{status: 403, code: protocol.EAccessDenied})
	assertFile(t, filepath.Join(srv.Root, "race.bin"), one)

	// With allow_overwrite, both replace.
	srv.Options = "allow_overwrite"
	srv.load()
	fresh := randomBytes(t, 5000)
	if _, err := c.Upload(context.Background(), srv.URL("/taken.txt"), bytesReader(fresh), int64(len(fresh)), nil); err != nil {
		t.Fatal(err)
	}
	assertFile(t, dest, fresh)
	if entries, _ := filepath.Glob(filepath.Join(srv.Root, ".*")); len(entries) != 0 {
		t.Fatalf("temporary files left next to the destination: %v", entries)
	}
}

// TestParentDirectories creates missing parents at commit time and
// refuses a parent that is a file.
func TestParentDirectories(t *testing.T) {
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 3000)
	if _, err := c.Upload(context.Background(), srv.URL("/new/deeper/still/f%20g.bin"), bytesReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(srv.Root, "new", "deeper", "still", "f g.bin"), data)

	if err := os.WriteFile(filepath.Join(srv.Root, "plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, a, err := c.CreateSession(context.Background(), srv.URL("/plain/child.bin"))
	if err == nil {
		t.Fatal("create-session below a file succeeded")
	}
	checkAck(t, a, ack{status: 400, code: protocol.EInvalidArg})
}
