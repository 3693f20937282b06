package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// TestHTTPSOffersOnlyHTTP1 uploads over HTTPS to a server that prefers
// HTTP/2, as Caddy does. The client must offer exactly http/1.1 in ALPN,
// also after http.DefaultTransport was used in the process (which puts h2
// into its TLS configuration), and speak HTTP/1.1.
func TestHTTPSOffersOnlyHTTP1(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()
	resp, err := http.Get(plain.URL) // initialises http.DefaultTransport
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	f := newTLSFake(t, nil, "h2", "http/1.1")
	f.reply = func(up []byte) []byte { return testData(3000, 2) }
	c := newTestClient(t)
	c.TLSConfig = &tls.Config{RootCAs: f.certPool()}
	c.FragmentSize = 40000
	data := testData(100000, 1)
	res, err := c.Upload(context.Background(), f.url("/up/tls.bin"), bytes.NewReader(data), int64(len(data)), &UploadOptions{KeepReply: true})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/tls.bin", data)
	if sum(res.Reply) != sum(testData(3000, 2)) {
		t.Error("reply differs")
	}
	hellos := f.clientHellos()
	if len(hellos) != 1 || !slices.Equal(hellos[0], []string{"http/1.1"}) {
		t.Errorf("ClientHellos offered %q, want one offering exactly [http/1.1]", hellos)
	}
	protos := f.requestProtos()
	if len(protos) != 8 { // Ping, Create-Session, 3 Fragments, HEAD, GET, Close-Session
		t.Errorf("%d requests, want 8: %q", len(protos), f.sequence())
	}
	for i, p := range protos {
		if p != "HTTP/1.1" {
			t.Errorf("request %d (%s) spoke %s", i, f.sequence()[i], p)
		}
	}
}

// TestHTTPSUserHTTPClient checks what the documentation of HTTPClient
// promises: a supplied client is used as it is (so Go's HTTP/2-capable
// transport speaks HTTP/2 to a server that offers it), and one built on
// NewTransport speaks HTTP/1.1.
func TestHTTPSUserHTTPClient(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{
		{"go default", true, "HTTP/2.0"},
		{"NewTransport", false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTLSFake(t, nil, "h2", "http/1.1")
			cfg := &tls.Config{RootCAs: f.certPool()}
			var rt http.RoundTripper = NewTransport(cfg)
			if tc.h2 {
				rt = &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
			}
			c := newTestClient(t)
			c.HTTPClient = &http.Client{Transport: rt}
			data := testData(20000, 3)
			if _, err := c.Upload(context.Background(), f.url("/up/u.bin"), bytes.NewReader(data), int64(len(data)), nil); err != nil {
				t.Fatal(err)
			}
			checkFile(t, f, "/up/u.bin", data)
			for i, p := range f.requestProtos() {
				if p != tc.proto {
					t.Errorf("request %d spoke %s, want %s", i, p, tc.proto)
				}
			}
		})
	}
}

func TestTLSConfigWithHTTPClient(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t)
	c.HTTPClient = &http.Client{}
	c.TLSConfig = &tls.Config{}
	_, err := c.Upload(context.Background(), f.url("/up/x"), bytes.NewReader([]byte("x")), 1, nil)
	if err == nil || !strings.Contains(err.Error(), "TLSConfig cannot be combined with HTTPClient") {
		t.Fatalf("err = %v", err)
	}
	if err := c.Cancel(context.Background(), f.url("/up/x"), protocol.SessionID("{00000000-0000-4000-8000-000000000001}")); err == nil ||
		!strings.Contains(err.Error(), "TLSConfig cannot be combined") {
		t.Fatalf("Cancel: err = %v", err)
	}
	if n := len(f.sequence()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// TestTLSFailuresAreNotRetried checks that certificate and handshake
// failures end an upload at the first attempt, with a *TLSError that
// names the cause, while the retry budget would allow many more.
func TestTLSFailuresAreNotRetried(t *testing.T) {
	cases := []struct {
		name   string
		server func(t *testing.T) *fakeServer
		url    func(f *fakeServer) string
		client func(f *fakeServer) *tls.Config
		reason string
		check  func(err error) bool
	}{
		{
			name:   "unknown authority",
			server: func(t *testing.T) *fakeServer { return newTLSFake(t, nil, "h2", "http/1.1") },
			client: func(f *fakeServer) *tls.Config { return nil },
			reason: "the server's certificate is not trusted",
			check:  func(err error) bool { _, ok := errors.AsType[x509.UnknownAuthorityError](err); return ok },
		},
		{
			name:   "wrong host name",
			server: func(t *testing.T) *fakeServer { return newTLSFake(t, nil, "http/1.1") },
			url:    func(f *fakeServer) string { return "https://localhost:" + f.port() + "/up/x" },
			client: func(f *fakeServer) *tls.Config { return &tls.Config{RootCAs: f.certPool()} },
			reason: "not valid for the host name",
			check:  func(err error) bool { _, ok := errors.AsType[x509.HostnameError](err); return ok },
		},
		{
			name: "protocol version",
			server: func(t *testing.T) *fakeServer {
				return newTLSFake(t, &tls.Config{MinVersion: tls.VersionTLS13}, "http/1.1")
			},
			client: func(f *fakeServer) *tls.Config {
				return &tls.Config{RootCAs: f.certPool(), MaxVersion: tls.VersionTLS12}
			},
			reason: "the server refused the TLS handshake",
			check:  func(err error) bool { return strings.Contains(err.Error(), "protocol version") },
		},
		{
			name:   "plain HTTP server",
			server: func(t *testing.T) *fakeServer { return newFake(t) },
			url:    func(f *fakeServer) string { return "https://127.0.0.1:" + f.port() + "/up/x" },
			client: func(f *fakeServer) *tls.Config { return nil },
			reason: "the server does not speak TLS",
			check:  func(err error) bool { return true },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.server(t)
			url := f.url("/up/x")
			if tc.url != nil {
				url = tc.url(f)
			}
			c := newTestClient(t)
			c.TLSConfig = tc.client(f)
			c.MaxRetries = 5
			_, err := c.Upload(context.Background(), url, bytes.NewReader([]byte("abc")), 3, nil)
			te, ok := errors.AsType[*TLSError](err)
			if !ok || te.Packet != protocol.PacketPing || !strings.Contains(err.Error(), tc.reason) || !tc.check(err) {
				t.Fatalf("err = %v, want a *TLSError of the Ping saying %q", err, tc.reason)
			}
			if n := f.connCount(); n != 1 {
				t.Errorf("%d connections, want 1: the failure was retried", n)
			}
			if n := len(f.sequence()); n != 0 {
				t.Errorf("the server saw %d requests", n)
			}
			// Ping and Cancel report the same error.
			if err := c.Ping(context.Background(), url); !errors.As(err, &te) {
				t.Errorf("Ping: %v", err)
			}
			if err := c.Cancel(context.Background(), url, protocol.SessionID("{00000000-0000-4000-8000-000000000001}")); !errors.As(err, &te) || te.Packet != protocol.PacketCancelSession {
				t.Errorf("Cancel: %v", err)
			}
			if n := f.connCount(); n != 3 {
				t.Errorf("%d connections after Ping and Cancel, want 3", n)
			}
		})
	}
}

func TestLoadRootCAs(t *testing.T) {
	f := newTLSFake(t, nil, "http/1.1")
	dir := t.TempDir()
	ca := filepath.Join(dir, "root.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := LoadRootCAs(ca)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t)
	c.TLSConfig = &tls.Config{RootCAs: pool}
	if err := c.Ping(context.Background(), f.url("/up/x")); err != nil {
		t.Fatalf("Ping with the loaded CA: %v", err)
	}
	junk := filepath.Join(dir, "junk.crt")
	os.WriteFile(junk, []byte("not a certificate\n"), 0o644)
	if _, err := LoadRootCAs(ca, junk); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("junk file: %v", err)
	}
	if _, err := LoadRootCAs(filepath.Join(dir, "missing.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
