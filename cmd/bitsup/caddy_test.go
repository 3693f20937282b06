package main

import (
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Caddy binary the process tests and benchmarks run.
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// TestMain removes the Caddy binary built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binaryPath != "" && os.Getenv("CADDY_BITS_BINARY") == "" {
		os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}

// caddyBinary returns the Caddy binary named by $CADDY_BITS_BINARY, such
// as the xcaddy build, or else one built from ./cmd/caddy once per run.
func caddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CADDY_BITS_BINARY"); p != "" {
		return p
	}
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bitsup-caddy-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "caddy")
		if out, err := exec.Command("go", "build", "-o", binaryPath, "../caddy").CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("building caddy: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// caddyProcess is a Caddy process running a Caddyfile in a directory of
// its own, with its data, config and home directories inside it.
type caddyProcess struct {
	dir       string
	adminPort int
	cmd       *exec.Cmd
	done      chan struct{}
	logs      *syncBuffer
}

// startCaddy writes the Caddyfile into dir and runs Caddy on it until the
// test ends. The Caddyfile must set "admin 127.0.0.1:<adminPort>";
// startCaddy returns once the admin endpoint answers.
func startCaddy(t testing.TB, dir, caddyfile string, adminPort int) *caddyProcess {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &caddyProcess{dir: dir, adminPort: adminPort, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(caddyBinary(t), "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"HOME="+filepath.Join(dir, "home"))
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("caddy output:\n%s", p.logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("caddy exited during start-up:\n%s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not start:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rootCA returns the path of the root certificate of the process's
// internal CA, waiting until Caddy has written it.
func (p *caddyProcess) rootCA(t testing.TB) string {
	t.Helper()
	path := filepath.Join(p.dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(path); err == nil {
			return path
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy wrote no root certificate:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// randomFile writes size random bytes to path and returns their SHA-256.
func randomFile(t testing.TB, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// fileSum returns the SHA-256 of the file at path.
func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// runUntil runs bitsup with args like main does, failing the test when it
// does not return within the timeout.
func runUntil(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, &out, io.Discard)
	if ctx.Err() != nil {
		t.Fatalf("bitsup %q did not return within %v: %v", args, timeout, err)
	}
	return out.String(), err
}
