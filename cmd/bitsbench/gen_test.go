package main

import (
	"bufio"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestGenerators uploads with every generator to the baseline handler and
// checks the files.
func TestGenerators(t *testing.T) {
	addr, dir := startBaseline(t, true, false)
	data, err := content(3000)
	if err != nil {
		t.Fatal(err)
	}
	for _, gen := range []string{genLean, genMinimal, genClient} {
		t.Run(gen, func(t *testing.T) {
			// 7,000 bytes in 3,000-byte fragments: two full ones and a
			// short final one.
			j := &job{addr: addr, prefix: "/bench", data: data, files: 20, size: 7000,
				fragment: 3000, conc: 3, ping: gen == genLean}
			res, err := runLoad(gen, j)
			if err != nil {
				t.Fatalf("runLoad: %v", err)
			}
			if err := verify(filepath.Join(dir, "root"), data, 20, 7000); err != nil {
				t.Fatal(err)
			}
			l := res.lat
			if len(l.create) != 20 || len(l.fragment) != 40 || len(l.final) != 20 || len(l.close) != 20 {
				t.Errorf("latencies of %d creates, %d fragments, %d final fragments, %d closes; want 20, 40, 20, 20",
					len(l.create), len(l.fragment), len(l.final), len(l.close))
			}
			if err := os.RemoveAll(filepath.Join(dir, "root", "bench")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// startBaseline serves a baseline in a fresh directory for the test and
// returns its address and directory.
func startBaseline(t *testing.T, noFsync, dirFsync bool) (addr, dir string) {
	t.Helper()
	dir = t.TempDir()
	b, err := newBaseline(dir, noFsync, dirFsync)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), dir
}

// TestBaselineSyncs uploads to the fsync baseline and to the one that
// also syncs the directory, and checks the files.
func TestBaselineSyncs(t *testing.T) {
	for _, dirFsync := range []bool{false, true} {
		t.Run("dirFsync="+strconv.FormatBool(dirFsync), func(t *testing.T) {
			addr, dir := startBaseline(t, false, dirFsync)
			data, err := content(4096)
			if err != nil {
				t.Fatal(err)
			}
			j := &job{addr: addr, prefix: "/bench", data: data, files: 10, size: 4096,
				fragment: 4096, conc: 2}
			if _, err := runLoad(genLean, j); err != nil {
				t.Fatalf("runLoad: %v", err)
			}
			if err := verify(filepath.Join(dir, "root"), data, 10, 4096); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCaddyBaseline uploads to the baseline's handler running in Caddy
// and checks the files.
func TestCaddyBaseline(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir := t.TempDir()
	if err := startCaddyBaseline(addr, dir, false, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	data, err := content(5000)
	if err != nil {
		t.Fatal(err)
	}
	j := &job{addr: addr, prefix: "/bench", data: data, files: 10, size: 5000, fragment: 2000, conc: 2}
	if _, err := runLoad(genLean, j); err != nil {
		t.Fatalf("runLoad: %v", err)
	}
	if err := verify(filepath.Join(dir, "root"), data, 10, 5000); err != nil {
		t.Fatal(err)
	}
}

// TestLeanChecksAcks makes sure the lean generator fails an upload whose
// fragment Ack reports the wrong offset.
func TestLeanChecksAcks(t *testing.T) {
	l, err := newFakeServer(t, "HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Session-Id: {x}\r\nBITS-Received-Content-Range: 1\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := content(100)
	_, err = runLoad(genLean, &job{addr: l, prefix: "/x", data: data, files: 1, size: 100, fragment: 100, conc: 1})
	if err == nil || !strings.Contains(err.Error(), "BITS-Received-Content-Range 1, want 100") {
		t.Errorf("runLoad = %v, want an error about BITS-Received-Content-Range", err)
	}
}

func TestParseStraceSummary(t *testing.T) {
	in := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.006000          30       200           fsync
 30.00    0.003000           5       600       200 read
 10.00    0.001000           1      1000           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           5      1800       200 total
`
	c, err := parseStraceSummary(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 3 || c["fsync"] != (syscallCount{200, 0}) || c["read"] != (syscallCount{600, 200}) || c["write"] != (syscallCount{1000, 0}) {
		t.Errorf("got %v", c)
	}
	if _, err := parseStraceSummary(strings.NewReader("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n")); err == nil {
		t.Error("no error for output without a summary")
	}
}

// newFakeServer answers every request with resp and returns its address.
func newFakeServer(t *testing.T, resp string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var n int64
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						line = strings.TrimSpace(line)
						if line == "" {
							break
						}
						if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
							n, _ = strconv.ParseInt(v, 10, 64)
						}
					}
					if _, err := br.Discard(int(n)); err != nil {
						return
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), nil
}
