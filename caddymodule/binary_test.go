package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The caddy binary built from ./cmd/caddy for tests that need a real
// process: kill -9, restarts.
var (
	binaryOnce sync.Once
	binaryDir  string
	binaryPath string
	binaryErr  error
)

// caddyBinary returns the Caddy binary the process tests run: the one
// named by $CADDY_BITS_BINARY (such as the xcaddy build), or else one built
// from ./cmd/caddy once per test run.
func caddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CADDY_BITS_BINARY"); p != "" {
		return p
	}
	binaryOnce.Do(func() {
		binaryDir, binaryErr = os.MkdirTemp("", "caddy-bits-bin-")
		if binaryErr != nil {
			return
		}
		binaryPath = filepath.Join(binaryDir, "caddy")
		cmd := exec.Command("go", "build", "-o", binaryPath, "../cmd/caddy")
		out, err := cmd.CombinedOutput()
		if err != nil {
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

// process is a Caddy process running a Caddyfile.
type process struct {
	t         *testing.T
	dir       string
	config    string
	adminPort int
	cmd       *exec.Cmd
	done      chan struct{}
	logs      *syncBuffer
}

// startProcess writes the Caddyfile and runs the built binary on it, in a
// working directory of its own, and waits until its admin endpoint
// answers. The process is killed when the test ends.
func startProcess(t *testing.T, dir, caddyfile string, adminPort int) *process {
	t.Helper()
	p := &process{t: t, dir: dir, config: filepath.Join(dir, "Caddyfile"), adminPort: adminPort}
	if err := os.WriteFile(p.config, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("caddy output:\n%s", p.logs.String())
		}
	})
	return p
}

func (p *process) start() {
	p.t.Helper()
	p.logs = &syncBuffer{}
	p.cmd = exec.Command(caddyBinary(p.t), "run", "--config", p.config, "--adapter", "caddyfile")
	p.cmd.Dir = p.dir
	p.cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(p.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(p.dir, "config"))
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", p.adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("caddy exited during start-up:\n%s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("caddy did not start:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether the process is up.
func (p *process) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to die.
func (p *process) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// restart kills the process and starts it again on the same config.
func (p *process) restart() {
	p.t.Helper()
	p.kill()
	p.start()
}

// reload replaces the Caddyfile and asks the running process to load it,
// as `caddy reload` does.
func (p *process) reload(caddyfile string) {
	p.t.Helper()
	if err := os.WriteFile(p.config, []byte(caddyfile), 0o644); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBinary(p.t), "reload", "--config", p.config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", p.adminPort))
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// siteCaddyfile returns a Caddyfile for a process: admin on adminPort, one
// site on 127.0.0.1:port with a bits_upload handler.
func siteCaddyfile(adminPort, port int, root, sessionDir, options string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:%d {
	bind 127.0.0.1
	bits_upload {
		root %s
		session_dir %s
		%s
	}
}
`, adminPort, port, root, sessionDir, strings.TrimSpace(options))
}
