package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
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

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestBinaryExampleUpload runs Caddyfile.example (on a free port) with the
// Caddy binary named by $CADDY_BITS_BINARY, such as the xcaddy build, or
// else one built from ./cmd/caddy, and uploads 100 MiB to it with bitsup.
func TestBinaryExampleUpload(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	cfg := strings.Replace(string(example), ":8080 {", fmt.Sprintf(":%d {", port), 1)
	cfg = strings.Replace(cfg, "persist_config off", fmt.Sprintf("persist_config off\n\tadmin 127.0.0.1:%d", admin), 1)
	if !strings.Contains(cfg, fmt.Sprintf(":%d {", port)) || !strings.Contains(cfg, fmt.Sprintf("admin 127.0.0.1:%d", admin)) {
		t.Fatal("Caddyfile.example no longer has the expected shape")
	}
	testutil.StartCaddy(t, dir, cfg, admin)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)

	in := filepath.Join(dir, "in.bin")
	want := randomFile(t, in, 100<<20)
	if _, err := runUntil(t, 2*time.Minute, "ping", url+"/x"); err != nil {
		t.Fatalf("ping: %v", err)
	}
	out, err := runUntil(t, 2*time.Minute, "upload", in, url+"/cli/100MiB.bin")
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
	if fileSum(t, filepath.Join(dir, "uploads", "cli", "100MiB.bin")) != want {
		t.Fatal("the uploaded file differs from the source")
	}
}

// httpsCaddyfile is the ordinary production setup on 127.0.0.1 and
// localhost: Caddy's internal CA, basic_auth and bits_upload, with a
// notified prefix whose application is at notifyURL.
const httpsCaddyfile = `{
	skip_install_trust
	admin 127.0.0.1:%[1]d
	persist_config off
	http_port %[2]d
	https_port %[3]d
}
https://localhost:%[3]d, https://127.0.0.1:%[3]d {
	tls internal
	basic_auth {
		alice %[4]s
	}
	handle /notified/* {
		bits_upload {
			root ./uploads
			notify %[5]s
		}
	}
	handle {
		bits_upload {
			root ./uploads
		}
	}
}
`

// httpsServer is a Caddy process running httpsCaddyfile.
type httpsServer struct {
	*testutil.Caddy
	port int
	ca   string
}

// startHTTPSServer runs httpsCaddyfile in dir, with the password of alice
// in $BITSUP_TEST_PW.
func startHTTPSServer(t testing.TB, dir, notifyURL string) *httpsServer {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BITSUP_TEST_PW", "s3cret pw")
	admin, httpPort, port := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, fmt.Sprintf(httpsCaddyfile, admin, httpPort, port, hash, notifyURL), admin)
	s := &httpsServer{Caddy: p, port: port, ca: p.RootCA()}
	// Wait until the site serves its certificate.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := runUntil(t, time.Minute, "ping", s.url("localhost", "/x"), "--ca-cert", s.ca, "--user", "alice", "--password-env", "BITSUP_TEST_PW")
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTPS site does not answer pings: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *httpsServer) url(host, path string) string {
	return fmt.Sprintf("https://%s%s", net.JoinHostPort(host, fmt.Sprint(s.port)), path)
}

// TestBinaryHTTPS uploads through HTTPS with Caddy's internal CA and
// basic_auth, as bitsup users run it: byte-exact uploads, the reply of a
// notified upload, cancel, and the failures that must end at once.
func TestBinaryHTTPS(t *testing.T) {
	dir := t.TempDir()
	reply := make([]byte, 300_000)
	for i := range reply {
		reply[i] = byte(i*7 + i/1000)
	}
	var (
		appMu   sync.Mutex
		appSums [][32]byte
	)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		appMu.Lock()
		appSums = append(appSums, [32]byte(h.Sum(nil)))
		appMu.Unlock()
		w.Write(reply)
	}))
	defer app.Close()
	s := startHTTPSServer(t, dir, app.URL+"/hook")
	auth := []string{"--ca-cert", s.ca, "--user", "alice", "--password-env", "BITSUP_TEST_PW"}

	t.Run("server offers h2", func(t *testing.T) {
		// The server speaks HTTP/2 to clients that offer it, as Caddy does
		// by default: bitsup must work all the same.
		pool, err := client.LoadRootCAs(s.ca)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("the server negotiated %q with a client offering h2, want h2", p)
		}
	})

	t.Run("upload", func(t *testing.T) {
		in := filepath.Join(dir, "big.bin")
		want := randomFile(t, in, 64<<20)
		out, err := runUntil(t, 2*time.Minute, append([]string{"upload", in, s.url("localhost", "/tls/big.bin")}, auth...)...)
		if err != nil {
			t.Fatalf("upload: %v\n%s", err, out)
		}
		if fileSum(t, filepath.Join(dir, "uploads", "tls", "big.bin")) != want {
			t.Fatal("the uploaded file differs from the source")
		}
	})

	t.Run("reply of a notified upload", func(t *testing.T) {
		in := filepath.Join(dir, "notified.bin")
		want := randomFile(t, in, 3<<20+17)
		replyOut := filepath.Join(dir, "reply.bin")
		out, err := runUntil(t, 2*time.Minute, append([]string{"upload", in, s.url("127.0.0.1", "/notified/n.bin"), "--reply-out", replyOut}, auth...)...)
		if err != nil {
			t.Fatalf("upload: %v\n%s", err, out)
		}
		if fileSum(t, replyOut) != sha256.Sum256(reply) {
			t.Fatal("the reply differs from what the application answered")
		}
		appMu.Lock()
		defer appMu.Unlock()
		if len(appSums) != 1 || appSums[0] != want {
			t.Fatalf("the application got %d notifications, want 1 with the upload", len(appSums))
		}
		if !strings.Contains(out, "reply: https://127.0.0.1:") || !strings.Contains(out, "saved to "+replyOut) {
			t.Errorf("output:\n%s", out)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		pool, err := client.LoadRootCAs(s.ca)
		if err != nil {
			t.Fatal(err)
		}
		c := &client.Client{TLSConfig: &tls.Config{RootCAs: pool}, Username: "alice", Password: "s3cret pw"}
		defer c.CloseIdleConnections()
		ctx := context.Background()
		url := s.url("localhost", "/tls/cancelled.bin")
		sess, _, err := c.CreateSession(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := sess.Fragment(ctx, []byte("some of it"), 0, 100); err != nil || a.Err(protocol.PacketFragment) != nil {
			t.Fatalf("fragment: %v %v", a, err)
		}
		out, err := runUntil(t, time.Minute, append([]string{"cancel", url, sess.WireID}, auth...)...)
		if err != nil || !strings.Contains(out, "cancelled") {
			t.Fatalf("cancel: %v\n%s", err, out)
		}
		a, err := sess.Fragment(ctx, []byte("more"), 10, 100)
		if err != nil || !errors.Is(a.Err(protocol.PacketFragment), client.ErrSessionNotFound) {
			t.Errorf("fragment after cancel: %+v, %v; want BG_E_SESSION_NOT_FOUND", a, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "uploads", "tls", "cancelled.bin")); !os.IsNotExist(err) {
			t.Errorf("the cancelled upload exists: %v", err)
		}
	})

	in := filepath.Join(dir, "small.bin")
	randomFile(t, in, 1000)
	// With noRetries a retry would wait an hour, so returning at all shows
	// that the failure ended the upload at the first attempt.
	t.Run("wrong password", func(t *testing.T) {
		noRetries(t)
		t.Setenv("BITSUP_WRONG_PW", "guess")
		_, err := runUntil(t, time.Minute, "upload", in, s.url("localhost", "/tls/x.bin"), "--ca-cert", s.ca, "--user", "alice", "--password-env", "BITSUP_WRONG_PW")
		want := `the server rejected the credentials (401): check the user name "alice" and the password in $BITSUP_WRONG_PW: ping: server answered 401`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		noRetries(t)
		_, err := runUntil(t, time.Minute, "upload", in, s.url("localhost", "/tls/x.bin"), "--user", "alice", "--password-env", "BITSUP_TEST_PW")
		want := "the server's certificate is not trusted: pass --ca-cert FILE"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}
