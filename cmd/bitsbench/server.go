package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a server process under test.
type server struct {
	cmd     *exec.Cmd
	url     string
	root    string
	idleRSS int64
	idleCPU time.Duration
}

// startServer starts a fresh server of the given kind in dir and waits
// until it answers. notify, for bits_upload, is a notify subdirective.
func startServer(kind, self, caddy, dir, notify string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &server{url: "http://" + addr}
	switch kind {
	case "bits_upload":
		admin, err := freePort()
		if err != nil {
			return nil, err
		}
		s.root = filepath.Join(dir, "root")
		cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	log {
		level WARN
	}
}


:%d {
	bind 127.0.0.1
	bits_upload {
		root %s
		session_dir %s
		%s
	}
}
`, admin, port, s.root, filepath.Join(dir, "sessions"), notify)
		cfgPath := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		s.cmd = exec.Command(caddy, "run", "--config", cfgPath, "--adapter", "caddyfile")
		s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	case "baseline", "baseline-nofsync":
		s.root = filepath.Join(dir, "root")
		args := []string{"serve-baseline", "-addr", addr, "-dir", dir}
		if kind == "baseline-nofsync" {
			args = append(args, "-no-fsync")
		}
		s.cmd = exec.Command(self, args...)
	default:
		return nil, fmt.Errorf("unknown server %q", kind)
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("BITS_POST", s.url+"/", http.NoBody)
		req.Header["BITS-Packet-Type"] = []string{"Ping"}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not start: %v", kind, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	s.idleRSS = s.status("VmRSS")
	s.idleCPU = s.cpu()
	return s, nil
}

// cpu returns the CPU time (user and system) the process has used.
func (s *server) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// peakRSS returns the process's peak resident set size in bytes.
func (s *server) peakRSS() int64 { return s.status("VmHWM") }

// status reads a size field of /proc/<pid>/status, in bytes; 0 where
// /proc is not available.
func (s *server) status(field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// stop kills the process.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func filepathAbs(p string) (string, error) { return filepath.Abs(p) }
