package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a minimal BITS server that assembles one upload in
// memory, or refuses every fragment with BG_E_TOO_LARGE.
type fakeServer struct {
	mu       sync.Mutex
	data     []byte
	tooLarge bool
	user     string
	reply    []byte
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
