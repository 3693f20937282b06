package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a server process under test.
type server struct {
	cmd      *exec.Cmd
	pid      int
	addr     string // host:port
	url      string
	root     string // where uploads land; empty when unknown (peers)
	idleRSS  int64
	idleUser time.Duration // CPU time after starting, in user space
	idleSys  time.Duration // and in the kernel
}

// baselineArgs are the arguments of bitsbench that run each kind of
// baseline server.
var baselineArgs = map[string][]string{
	"baseline":               {"serve-baseline"},
	"baseline-nofsync":       {"serve-baseline", "-no-fsync"},
	"baseline-dirsync":       {"serve-baseline", "-dir-fsync"},
	"caddy-baseline":         {"serve-caddy-baseline"},
	"caddy-baseline-dirsync": {"serve-caddy-baseline", "-dir-fsync"},
}

// serverSpec names a server to measure: bits_upload, one of the kinds of
// baselineArgs, or a peer started from a command line.
type serverSpec struct {
	name    string
	cmdline string // peers only
}

// peerFlag collects -peer name=cmdline flags.
type peerFlag []serverSpec

func (p *peerFlag) String() string { return "" }

func (p *peerFlag) Set(v string) error {
	name, cmdline, ok := strings.Cut(v, "=")
	if !ok || name == "" || strings.TrimSpace(cmdline) == "" {
		return fmt.Errorf("want name=cmdline, got %q", v)
	}
	*p = append(*p, serverSpec{name: name, cmdline: cmdline})
	return nil
}

// startServer starts a fresh server in dir and waits until it answers.
// extra, for bits_upload, is more of its subdirectives, such as a notify
// or a storage block.
func startServer(spec serverSpec, self, caddy, dir, extra string) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := &server{addr: addr, url: "http://" + addr}
	kind := spec.name
	switch {
	case spec.cmdline != "":
		// A peer: {addr}, {port}, {dir} and {root} are replaced; uploads
		// are verified only when the command line says where they land.
		r := strings.NewReplacer("{addr}", addr, "{port}", strconv.Itoa(port), "{dir}", dir, "{root}", filepath.Join(dir, "root"))
		if strings.Contains(spec.cmdline, "{root}") {
			s.root = filepath.Join(dir, "root")
			if err := os.MkdirAll(s.root, 0o755); err != nil {
				return nil, err
			}
		}
		args := strings.Fields(r.Replace(spec.cmdline))
		s.cmd = exec.Command(args[0], args[1:]...)
		s.cmd.Dir = dir
	case kind == "bits_upload":
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
`, admin, port, s.root, filepath.Join(dir, "sessions"), extra)
		cfgPath := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		s.cmd = exec.Command(caddy, "run", "--config", cfgPath, "--adapter", "caddyfile")
		s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	case baselineArgs[kind] != nil:
		s.root = filepath.Join(dir, "root")
		args := append(slices.Clone(baselineArgs[kind]), "-addr", addr, "-dir", dir)
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
		return nil, fmt.Errorf("starting %s: %w", kind, err)
	}
	s.pid = s.cmd.Process.Pid
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
	s.idleRSS = procStatus(s.pid, "VmRSS")
	s.idleUser, s.idleSys = procTimes(s.pid)
	return s, nil
}

// cpu returns the CPU time the server has used since it became idle
// after starting, and the part of it spent in user space.
func (s *server) cpu() (total, user time.Duration) {
	u, sys := procTimes(s.pid)
	u, sys = u-s.idleUser, sys-s.idleSys
	return u + sys, u
}

// peakRSS returns the process's peak resident set size in bytes.
func (s *server) peakRSS() int64 { return procStatus(s.pid, "VmHWM") }

// procCPU returns the CPU time (user and system) that process pid, all
// its threads, has used; 0 where /proc is not available.
func procCPU(pid int) time.Duration {
	user, sys := procTimes(pid)
	return user + sys
}

// procTimes returns the user and system CPU time of process pid, all its
// threads; zero where /proc is not available.
func procTimes(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const tick = time.Second / 100 // USER_HZ
	return time.Duration(ut) * tick, time.Duration(st) * tick
}

// procStatus reads a size field of /proc/<pid>/status, in bytes; 0 where
// /proc is not available.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
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
