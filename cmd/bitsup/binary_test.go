package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryExampleUpload runs Caddyfile.example (on a free port) with the
// Caddy binary named by $CADDY_BITS_BINARY, such as the xcaddy build, or
// else one built from ./cmd/caddy, and uploads 100 MiB to it with bitsup.
func TestBinaryExampleUpload(t *testing.T) {
	dir := t.TempDir()
	caddy := os.Getenv("CADDY_BITS_BINARY")
	if caddy == "" {
		caddy = filepath.Join(dir, "caddy")
		if out, err := exec.Command("go", "build", "-o", caddy, "../caddy").CombinedOutput(); err != nil {
			t.Fatalf("building caddy: %v\n%s", err, out)
		}
	}
	example, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	port, admin := freePort(t), freePort(t)
	cfg := strings.Replace(string(example), ":8080 {", fmt.Sprintf(":%d {", port), 1)
	cfg = strings.Replace(cfg, "persist_config off", fmt.Sprintf("persist_config off\n\tadmin 127.0.0.1:%d", admin), 1)
	if cfg == string(example) {
		t.Fatal("Caddyfile.example no longer has the expected shape")
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddy, "run", "--config", "Caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	logs, _ := os.Create(filepath.Join(dir, "caddy.log"))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "caddy.log"))
			t.Logf("caddy output:\n%s", b)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(url + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("caddy did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	in := filepath.Join(dir, "in.bin")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, want), rand.Reader, 100<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"ping", url + "/x"}, io.Discard, io.Discard); err != nil {
		t.Fatalf("ping: %v", err)
	}
	var out strings.Builder
	if err := run(ctx, []string{"upload", in, url + "/cli/100MiB.bin"}, &out, io.Discard); err != nil {
		t.Fatalf("upload: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	got, err := os.Open(filepath.Join(dir, "uploads", "cli", "100MiB.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	h := sha256.New()
	if _, err := io.Copy(h, got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%x", h.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
		t.Fatal("the uploaded file differs from the source")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
