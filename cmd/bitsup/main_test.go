package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
)

// fakeServer is a minimal BITS server that assembles one upload in
// memory, or refuses every fragment with BG_E_TOO_LARGE.
type fakeServer struct {
	mu       sync.Mutex
	data     []byte
	tooLarge bool
	user     string
	reply    []byte
	requests int
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.Method == http.MethodHead || r.Method == http.MethodGet {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.reply))
		return
	}
	if u, _, _ := r.BasicAuth(); u != f.user {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h := w.Header()
	h["BITS-Packet-Type"] = []string{"Ack"}
	h["Content-Length"] = []string{"0"}
	switch r.Header.Get("BITS-Packet-Type") {
	case "Create-Session":
		h["BITS-Protocol"] = []string{"{7df0354d-249b-430f-820d-3d2a9bef4931}"}
		h["BITS-Session-Id"] = []string{"{00000000-0000-4000-8000-000000000001}"}
	case "Fragment":
		if f.tooLarge {
			h["BITS-Error-Code"] = []string{"0x80200020"}
			h["BITS-Error-Context"] = []string{"0x5"}
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var first, last, total int64
		fmt.Sscanf(r.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total)
		body, _ := io.ReadAll(r.Body)
		if int64(len(f.data)) == first {
			f.data = append(f.data, body...)
		}
		h["BITS-Received-Content-Range"] = []string{fmt.Sprint(len(f.data))}
		if int64(len(f.data)) == total && f.reply != nil {
			h["BITS-Reply-URL"] = []string{"http://" + r.Host + "/reply"}
		}
	}
	w.WriteHeader(http.StatusOK)
}

func TestUploadCommand(t *testing.T) {
	fake := &fakeServer{user: "alice", reply: []byte("thanks")}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	data := make([]byte, 300_000)
	rand.Read(data)
	path := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BITSUP_TEST_PW", "secret")
	var out bytes.Buffer
	err := run(context.Background(), []string{"upload", "--user", "alice", path, "--password-env=BITSUP_TEST_PW",
		srv.URL + "/dest.bin", "--fragment-size", "64KiB", "--reply-out", filepath.Join(dir, "reply")}, &out, io.Discard)
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, out.String())
	}
	if sha256.Sum256(fake.data) != sha256.Sum256(data) {
		t.Fatal("server received other bytes")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "reply")); string(got) != "thanks" {
		t.Fatalf("reply %q", got)
	}
	s := out.String()
	if !strings.Contains(s, "acknowledged (100%)") || !strings.Contains(s, "uploaded "+path) || !strings.Contains(s, "reply: ") {
		t.Fatalf("output:\n%s", s)
	}
}

func TestUploadFailureNamesTheError(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{tooLarge: true})
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "in.bin")
	os.WriteFile(path, []byte("hello"), 0o644)
	err := run(context.Background(), []string{"upload", path, srv.URL + "/x"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "BG_E_TOO_LARGE (0x80200020)") ||
		!strings.Contains(err.Error(), "BG_ERROR_CONTEXT_REMOTE_FILE (0x5)") {
		t.Fatalf("error %v, want BG_E_TOO_LARGE with its context", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"upload", "only-one"}, {"ping"}, {"cancel", "http://x/"},
		{"cancel", "http://x/", "not-a-guid"}, {"upload", "a", "b", "--fragment-size", "lots"},
		{"upload", "a", "b", "--bogus", "1"}, {"upload", "a", "b", "--user"},
		{"upload", "a", "b", "--fragment-size", "20MiB"}, {"upload", "a", "b", "--fragment-size=0"},
		{"upload", "a", "b", "--retry-for", "soon"}, {"ping", "http://x/", "--fragment-size", "1MiB"},
		{"ping", "http://x/", "--retry-for", "1m"}, {"upload", "a", "b", "c"}, {"help", "frobnicate"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if err := run(context.Background(), []string{"ping", "http://127.0.0.1:1/", "--password-env", "BITSUP_UNSET_VAR"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "BITSUP_UNSET_VAR is not set") {
		t.Errorf("unset password variable: %v", err)
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"commands:", "upload FILE URL", `"bitsup COMMAND --help"`}},
		{[]string{"-h"}, []string{"commands:"}},
		{[]string{"help"}, []string{"commands:"}},
		{[]string{"help", "cancel"}, []string{"usage: bitsup cancel [flags] URL SESSION-ID", "(default 10m0s)"}},
		{[]string{"upload", "--help"}, []string{"usage: bitsup upload [flags] FILE URL", "--fragment-size SIZE", "(default adaptive)",
			"--retry-for DURATION", "(default 10m0s)", "--ca-cert FILE", "--reply-out FILE", "--user NAME", "--password-env VARIABLE"}},
		{[]string{"upload", "a.bin", "-h"}, []string{"usage: bitsup upload"}},
		{[]string{"ping", "--help"}, []string{"usage: bitsup ping [flags] URL", "--ca-cert FILE"}},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), tc.args, &out, io.Discard); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%q: output lacks %q:\n%s", tc.args, w, out.String())
			}
		}
	}
	var out bytes.Buffer
	run(context.Background(), []string{"ping", "--help"}, &out, io.Discard)
	if strings.Contains(out.String(), "--fragment-size") || strings.Contains(out.String(), "--retry-for") {
		t.Errorf("ping lists flags it does not have:\n%s", out.String())
	}
}

// TestFlagsAnywhere: flags before, between and after the arguments, and
// "--" before an argument that starts with a dash.
func TestFlagsAnywhere(t *testing.T) {
	fake := &fakeServer{user: "alice"}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	data := make([]byte, 100_000)
	rand.Read(data)
	if err := os.WriteFile("-dash.bin", data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"upload", "--fragment-size=16KiB", "--user", "alice", "--", "-dash.bin", srv.URL + "/d.bin"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, out.String())
	}
	if sha256.Sum256(fake.data) != sha256.Sum256(data) || fake.requests != 2+7+1 { // Ping, Create-Session, 7 fragments, Close-Session
		t.Fatalf("server received other bytes, or %d requests", fake.requests)
	}
}

// noRetries makes every retry wait an hour, so that a test whose command
// retried runs into its context's deadline instead of returning.
func noRetries(t *testing.T) {
	prev := configure
	configure = func(c *client.Client) { c.RetryDelay, c.MaxRetryDelay = time.Hour, time.Hour }
	t.Cleanup(func() { configure = prev })
}

func runFor(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, &out, io.Discard)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%q retried: %v", args, err)
	}
	return out.String(), err
}

func TestAuthFailuresFailAtOnce(t *testing.T) {
	noRetries(t)
	fake := &fakeServer{user: "alice"}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "in.bin")
	os.WriteFile(path, []byte("hello"), 0o644)
	t.Setenv("BITSUP_TEST_PW", "secret")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upload", path, srv.URL + "/x"}, "the server wants credentials (401): pass --user NAME and --password-env VARIABLE"},
		{[]string{"upload", path, srv.URL + "/x", "--user", "bob"}, `the server rejected user "bob" without a password (401)`},
		{[]string{"upload", path, srv.URL + "/x", "--user", "bob", "--password-env", "BITSUP_TEST_PW"},
			`the server rejected the credentials (401): check the user name "bob" and the password in $BITSUP_TEST_PW: ping: server answered 401 BG_E_HTTP_ERROR_401 (0x80190191)`},
		{[]string{"ping", srv.URL + "/x", "--user", "bob", "--password-env", "BITSUP_TEST_PW"}, "the server rejected the credentials (401)"},
		{[]string{"cancel", srv.URL + "/x", "{00000000-0000-4000-8000-000000000001}"}, "the server wants credentials (401)"},
	} {
		fake.mu.Lock()
		fake.requests = 0
		fake.mu.Unlock()
		_, err := runFor(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
		fake.mu.Lock()
		if fake.requests != 1 {
			t.Errorf("%q: %d requests, want 1", tc.args, fake.requests)
		}
		fake.mu.Unlock()
	}
}

func TestNotFoundFailsAtOnce(t *testing.T) {
	noRetries(t)
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n++; http.NotFound(w, r) }))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "in.bin")
	os.WriteFile(path, []byte("hello"), 0o644)
	_, err := runFor(t, "upload", path, srv.URL+"/x")
	if err == nil || !strings.Contains(err.Error(), "nothing at this URL answers BITS (404)") || n != 1 {
		t.Errorf("err %v after %d requests", err, n)
	}
}

// TestCertificates: an untrusted certificate fails at once and says what
// to do; --ca-cert with the server's CA makes the upload work.
func TestCertificates(t *testing.T) {
	noRetries(t)
	fake := &fakeServer{}
	srv := httptest.NewUnstartedServer(fake)
	var handshakes atomic.Int32
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { handshakes.Add(1); return nil, nil }}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "in.bin")
	data := make([]byte, 50_000)
	rand.Read(data)
	os.WriteFile(path, data, 0o644)
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	other := filepath.Join(dir, "other.crt")
	os.WriteFile(other, selfSignedCA(t), 0o644)
	url := srv.URL + "/tls.bin"
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"upload", path, url}, "the server's certificate is not trusted: pass --ca-cert FILE with the certificate of the CA that signed it"},
		{[]string{"ping", url}, "the server's certificate is not trusted: pass --ca-cert FILE"},
		{[]string{"cancel", url, "{00000000-0000-4000-8000-000000000001}"}, "pass --ca-cert FILE"},
		{[]string{"upload", path, url, "--ca-cert", other}, "it is signed neither by the CA in " + other},
		{[]string{"upload", path, "https://localhost:" + port + "/x", "--ca-cert", ca}, "the server's certificate is not valid for localhost: use a host name it names in the URL (example.com, *.example.com, 127.0.0.1, ::1) (ping: tls: failed to verify certificate"},
	} {
		handshakes.Store(0)
		_, err := runFor(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
		if n := handshakes.Load(); n != 1 {
			t.Errorf("%q: %d TLS handshakes, want 1", tc.args, n)
		}
	}
	if _, err := runFor(t, "upload", path, url, "--ca-cert", ca); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(fake.data) != sha256.Sum256(data) {
		t.Fatal("server received other bytes")
	}
	if _, err := runFor(t, "ping", url, "--ca-cert", filepath.Join(dir, "missing.crt")); err == nil || !strings.Contains(err.Error(), "--ca-cert") {
		t.Errorf("missing --ca-cert file: %v", err)
	}
}

// selfSignedCA returns a new CA certificate in PEM.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bitsup test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestRetryFor: --retry-for bounds the retries of a server that is gone;
// --retry-for 0 gives up at the first failure.
func TestRetryFor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/x"
	ln.Close()
	path := filepath.Join(t.TempDir(), "in.bin")
	os.WriteFile(path, []byte("hello"), 0o644)
	start := time.Now()
	_, err = runFor(t, "upload", path, url, "--retry-for", "1s")
	if err == nil || !strings.Contains(err.Error(), "without progress") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %v, before --retry-for 1s", d)
	}
	noRetries(t)
	_, err = runFor(t, "cancel", url, "{00000000-0000-4000-8000-000000000001}", "--retry-for=0")
	if err == nil || !strings.Contains(err.Error(), "giving up after 1 consecutive failures") {
		t.Errorf("err = %v", err)
	}
}

// TestForbiddenFailsAtOnce: a 403 of the BITS server ends the command at
// once with a hint that fits the packet; a 403 of the server application
// is reported as it is.
func TestForbiddenFailsAtOnce(t *testing.T) {
	noRetries(t)
	var mu sync.Mutex
	creates := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["BITS-Packet-Type"] = []string{"Ack"}
		h["Content-Length"] = []string{"0"}
		switch r.Header.Get("BITS-Packet-Type") {
		case "Ping":
			w.WriteHeader(http.StatusOK)
			return
		case "Create-Session":
			mu.Lock()
			creates++
			mu.Unlock()
		}
		h["BITS-Error-Code"] = []string{"0x80070005"}
		h["BITS-Error-Context"] = []string{"0x5"}
		if strings.HasPrefix(r.URL.Path, "/app") {
			h["BITS-Error-Code"] = []string{"0x80190193"}
			h["BITS-Error-Context"] = []string{"0x7"}
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "in.bin")
	os.WriteFile(path, []byte("hello"), 0o644)
	_, err := runFor(t, "upload", path, srv.URL+"/exists.bin")
	if err == nil || !strings.Contains(err.Error(), "the server refused the upload (403): the destination may exist already") ||
		!strings.Contains(err.Error(), "E_ACCESSDENIED (0x80070005)") || creates != 1 {
		t.Errorf("upload: %v after %d Create-Sessions", err, creates)
	}
	_, err = runFor(t, "cancel", srv.URL+"/exists.bin", "{00000000-0000-4000-8000-000000000001}")
	if err == nil || !strings.Contains(err.Error(), "the server refused access (403): the session may belong to another user") {
		t.Errorf("cancel: %v", err)
	}
	_, err = runFor(t, "upload", path, srv.URL+"/app.bin")
	if err == nil || strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "BG_E_HTTP_ERROR_403") {
		t.Errorf("application's 403: %v", err)
	}
}
