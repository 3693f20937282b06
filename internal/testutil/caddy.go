package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/repodir"
)

// CaddyBinaryEnv names the environment variable that points the process
// tests at a Caddy binary with this module, such as the xcaddy build.
const CaddyBinaryEnv = "CADDY_BITS_BINARY"

// The Caddy binary CaddyBinary built for this test run.
var (
	caddyOnce     sync.Once
	caddyPath     string
	errCaddyBuild error
)

// CaddyBinary returns the Caddy binary the process tests run: the one
// named by $CADDY_BITS_BINARY, or else one built from cmd/caddy of this
// repository once per test run. A package that calls it removes the built
// binary with RemoveBuiltCaddy in its TestMain.
func CaddyBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(CaddyBinaryEnv); p != "" {
		return p
	}
	caddyOnce.Do(func() {
		root, err := repodir.Root()
		if err != nil {
			errCaddyBuild = err
			return
		}
		dir, err := os.MkdirTemp("", "caddy-bits-bin-")
		if err != nil {
			errCaddyBuild = err
			return
		}
		caddyPath = filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", caddyPath, "./cmd/caddy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			errCaddyBuild = fmt.Errorf("building caddy: %v\n%s", err, out)
		}
	})
	if errCaddyBuild != nil {
		t.Fatal(errCaddyBuild)
	}
	return caddyPath
}

// RemoveBuiltCaddy deletes the binary that CaddyBinary built, if it built
// one.
func RemoveBuiltCaddy() {
	if caddyPath != "" {
		_ = os.RemoveAll(filepath.Dir(caddyPath))
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stdout and stderr, and for reading while they go on.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Caddy is a Caddy process (see CaddyBinary) running a Caddyfile in a
// directory of its own, with its data, config and home directories
// inside it.
type Caddy struct {
	// Dir is the process's working directory.
	Dir string
	// Config is the path of its Caddyfile.
	Config string
	// AdminPort is the port of its admin endpoint on 127.0.0.1.
	AdminPort int
	// Logs holds what the process wrote since it last started.
	Logs *SyncBuffer

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// StartCaddy writes the Caddyfile into dir and runs Caddy on it, and
// returns once its admin endpoint answers. The Caddyfile must set
// "admin 127.0.0.1:<adminPort>". The process is killed when the test
// ends, and its output logged if the test failed.
func StartCaddy(t testing.TB, dir, caddyfile string, adminPort int) *Caddy {
	t.Helper()
	c := &Caddy{t: t, Dir: dir, Config: filepath.Join(dir, "Caddyfile"), AdminPort: adminPort}
	if err := os.WriteFile(c.Config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("caddy output:\n%s", c.Logs.String())
		}
	})
	return c
}

// Start starts the process (again, after Kill) on its Caddyfile and waits
// until its admin endpoint answers.
func (c *Caddy) Start() {
	c.t.Helper()
	c.Logs = &SyncBuffer{}
	c.cmd = exec.Command(CaddyBinary(c.t), "run", "--config", c.Config, "--adapter", "caddyfile")
	c.cmd.Dir = c.Dir
	c.cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(c.Dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.Dir, "config"),
		"HOME="+filepath.Join(c.Dir, "home"))
	c.cmd.Stdout, c.cmd.Stderr = c.Logs, c.Logs
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	c.done = done
	go func() {
		_ = c.cmd.Wait()
		close(done)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", c.AdminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			c.t.Fatalf("caddy exited during start-up:\n%s", c.Logs.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("caddy did not start:\n%s", c.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the process is up.
func (c *Caddy) Running() bool {
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to die.
func (c *Caddy) Kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Restart kills the process and starts it again on the same Caddyfile.
func (c *Caddy) Restart() {
	c.t.Helper()
	c.Kill()
	c.Start()
}

// Reload replaces the Caddyfile and asks the running process to load it,
// as `caddy reload` does.
func (c *Caddy) Reload(caddyfile string) {
	c.t.Helper()
	if err := os.WriteFile(c.Config, []byte(caddyfile), 0o600); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, CaddyBinary(c.t), "reload", "--config", c.Config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", c.AdminPort))
	cmd.Dir = c.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// RootCA returns the path of the root certificate of the process's
// internal CA, waiting until Caddy has written it.
func (c *Caddy) RootCA() string {
	c.t.Helper()
	path := filepath.Join(c.Dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(path); err == nil {
			return path
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("caddy wrote no root certificate:\n%s", c.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
