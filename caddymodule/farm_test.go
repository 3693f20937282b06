package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// farmNode is one Caddy process of the farm: it keeps its sessions on its
// own disk and names itself in BITS-Host-Id.
type farmNode struct {
	ip       string // listen address and host_id
	root     string
	sessions string
	proc     *testutil.Caddy
}

// holds reports whether the node's root holds path (slash separated,
// relative to the root).
func (n *farmNode) holds(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(n.root, filepath.FromSlash(path)))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// hasSession reports whether the node holds the session id: a running
// node says so in its admin API; of a node that is down, its session
// directory tells what it will find when it starts.
func (n *farmNode) hasSession(id protocol.SessionID) bool {
	if n.proc.Running() {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/bits_upload/sessions/%s", n.proc.AdminPort, id.Bare()))
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
	}
	ids, err := session.Stored(n.sessions)
	return err == nil && slices.Contains(ids, id)
}

// farm is three bits_upload nodes on 127.0.0.2-4 and a load balancer on
// 127.0.0.1, all on one port.
type farm struct {
	port  int
	nodes []*farmNode
	lb    *testutil.Caddy
}

// url returns the load balancer's URL of a path.
func (f *farm) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", f.port, path)
}

// node returns the node whose host id is ip, or nil.
func (f *farm) node(ip string) *farmNode {
	for _, n := range f.nodes {
		if n.ip == ip {
			return n
		}
	}
	return nil
}

// holders returns the nodes whose root holds path.
func (f *farm) holders(t testing.TB, path string) []*farmNode {
	t.Helper()
	var out []*farmNode
	for _, n := range f.nodes {
		if n.holds(t, path) {
			out = append(out, n)
		}
	}
	return out
}

var farmIPs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}

// farmPort returns a port that is free on 127.0.0.1 and on every node
// address.
func farmPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		port := testutil.FreePort(t)
		free := true
		for _, ip := range farmIPs {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("found no port free on 127.0.0.1-4")
	return 0
}

// startFarm starts the three nodes and the load balancer.
func startFarm(t *testing.T) *farm {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2 (%v): the farm test needs the loopback addresses 127.0.0.2-4, "+
			"which Linux binds by default (all of 127/8 is on lo)", err)
	}
	l.Close()

	f := &farm{port: farmPort(t)}
	base := t.TempDir()
	var upstreams []string
	for _, ip := range farmIPs {
		dir := filepath.Join(base, "node-"+ip)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n := &farmNode{ip: ip, root: filepath.Join(dir, "root"), sessions: filepath.Join(dir, "sessions")}
		admin := testutil.FreePort(t)
		n.proc = testutil.StartCaddy(t, dir, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:%d {
	bind %s
	bits_upload {
		root %s
		session_dir %s
		host_id %s
	}
}
`, admin, f.port, ip, n.root, n.sessions, ip), admin)
		f.nodes = append(f.nodes, n)
		upstreams = append(upstreams, net.JoinHostPort(ip, strconv.Itoa(f.port)))
	}

	dir := filepath.Join(base, "lb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	admin := testutil.FreePort(t)
	f.lb = testutil.StartCaddy(t, dir, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy random
		lb_try_duration 5s
		fail_duration 10s
	}
}
`, admin, f.port, strings.Join(upstreams, " ")), admin)
	return f
}

// farmEvent is one BITS request of a recorded upload, or a note.
type farmEvent struct {
	at       time.Duration // when the request was sent
	took     time.Duration
	packet   string // BITS-Packet-Type, or "" for a note
	host     string
	status   int // 0: no response
	code     string
	hostID   string
	received string
	note     string
}

// key groups consecutive events in the log.
func (e farmEvent) key() string {
	return fmt.Sprintf("%s|%s|%d|%s|%s|%s", e.packet, e.host, e.status, e.code, e.hostID, e.note)
}

// recorder is an http.RoundTripper that records the BITS requests of an
// upload.
type recorder struct {
	next  http.RoundTripper
	start time.Time

	mu     sync.Mutex
	events []farmEvent
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	packet, _ := protocol.GetHeader(req.Header, protocol.HeaderPacketType)
	e := farmEvent{packet: packet, host: req.URL.Host, at: time.Since(r.start)}
	resp, err := r.next.RoundTrip(req)
	e.took = time.Since(r.start) - e.at
	if err != nil {
		e.note = "no response: " + shortErr(err)
	} else {
		e.status = resp.StatusCode
		e.code = resp.Header.Get(protocol.HeaderErrorCode)
		e.hostID = resp.Header.Get(protocol.HeaderHostID)
		e.received = resp.Header.Get(protocol.HeaderReceivedContentRange)
	}
	r.add(e)
	return resp, err
}

func (r *recorder) add(e farmEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// note records a note.
func (r *recorder) note(format string, args ...any) {
	r.add(farmEvent{at: time.Since(r.start), note: fmt.Sprintf(format, args...)})
}

// noted returns the time of the first note containing s.
func (r *recorder) noted(s string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.packet == "" && strings.Contains(e.note, s) {
			return e.at, true
		}
	}
	return 0, false
}

// log returns the recorded sequence, with runs of alike requests folded
// into one line.
func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i := 0; i < len(r.events); {
		e := r.events[i]
		j := i + 1
		for j < len(r.events) && r.events[j].key() == e.key() {
			j++
		}
		last := r.events[j-1]
		if e.packet == "" {
			fmt.Fprintf(&b, "  %7.3fs  ** %s\n", e.at.Seconds(), e.note)
			i = j
			continue
		}
		fmt.Fprintf(&b, "  %7.3fs  %-14s -> %-16s", e.at.Seconds(), e.packet, e.host)
		if e.status != 0 {
			fmt.Fprintf(&b, " %d", e.status)
		}
		if e.code != "" {
			fmt.Fprintf(&b, " %s", e.code)
			if h, err := strconv.ParseUint(strings.TrimPrefix(e.code, "0x"), 16, 32); err == nil {
				fmt.Fprintf(&b, " (%s)", protocol.HRESULT(h).Name())
			}
		}
		if e.hostID != "" {
			fmt.Fprintf(&b, " BITS-Host-Id: %s", e.hostID)
		}
		if e.note != "" {
			fmt.Fprintf(&b, " %s", e.note)
		}
		if j-i > 1 {
			fmt.Fprintf(&b, "  x%d (until %.3fs)", j-i, last.at.Seconds())
		} else if e.took >= 100*time.Millisecond {
			fmt.Fprintf(&b, " (took %.3fs)", e.took.Seconds())
		}
		if last.received != "" {
			fmt.Fprintf(&b, "  received %s", last.received)
		}
		b.WriteByte('\n')
		i = j
	}
	return b.String()
}

// shortErr shortens a transport error for the log.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// farmClient returns a BITS client for the farm tests; rec, when not nil,
// records its requests.
func farmClient(rec *recorder) *client.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var protos http.Protocols
	protos.SetHTTP1(true)
	tr.Protocols = &protos
	tr.MaxIdleConnsPerHost = 8
	var rt http.RoundTripper = tr
	if rec != nil {
		rec.next = tr
		rt = rec
	}
	return &client.Client{
		HTTPClient:    &http.Client{Transport: rt},
		FragmentSize:  256 << 10,
		RetryDelay:    20 * time.Millisecond,
		MaxRetryDelay: 250 * time.Millisecond,
		MaxRetries:    30,
	}
}

// TestBinaryFarm runs three bits_upload nodes, each with its own host_id and
// local session storage, behind a Caddy load balancer with a random policy,
// all four as processes of the built binary (hence the name, which puts it
// among the binary-level tests).
// Clients follow BITS-Host-Id to the node that holds their session; when
// that node dies they fall back to the load balancer, are told the session
// is gone, and start over on a live node.
func TestBinaryFarm(t *testing.T) {
	start := time.Now()
	f := startFarm(t)
	t.Logf("farm up in %v: nodes %v on port %d, load balancer %s", time.Since(start).Round(time.Millisecond), farmIPs, f.port, f.url("/"))

	t.Run("CreateSessionAck", func(t *testing.T) {
		c := farmClient(nil)
		defer c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Ping(ctx, f.url("/farm/ack.bin")); err != nil {
			t.Fatalf("Ping through the load balancer: %v", err)
		}
		s, a, err := c.CreateSession(ctx, f.url("/farm/ack.bin"))
		if err != nil {
			t.Fatalf("Create-Session through the load balancer: %v (ack %+v)", err, a)
		}
		checkAck(t, a, ack{status: 200, headers: map[string]string{
			protocol.HeaderHostIDFallbackTimeout: "86400",
			protocol.HeaderProtocol:              protocol.UploadProtocol,
		}})
		n := f.node(a.Header.Get(protocol.HeaderHostID))
		if n == nil {
			t.Fatalf("BITS-Host-Id %q, want one of %v", a.Header.Get(protocol.HeaderHostID), farmIPs)
		}
		if want := fmt.Sprintf("http://%s:%d/farm/ack.bin", n.ip, f.port); s.URL != want {
			t.Errorf("session URL %q, want %q (the host id with the load balancer's port)", s.URL, want)
		}
		for _, m := range f.nodes {
			if got := m.hasSession(s.ID); got != (m == n) {
				t.Errorf("node %s holds session %s: %v, want %v", m.ip, s.ID, got, m == n)
			}
		}
		// The session lives only on its node: another node does not know it.
		for _, m := range f.nodes {
			if m == n {
				continue
			}
			other := c.ResumeSession(fmt.Sprintf("http://%s:%d/farm/ack.bin", m.ip, f.port), s.WireID)
			a, err := other.Fragment(ctx, []byte("x"), 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			checkAck(t, a, ack{status: 500, code: protocol.BGSessionNotFound})
			break
		}
		a, err = s.Cancel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200})
		if n.hasSession(s.ID) {
			t.Errorf("session %s still on %s after Cancel-Session", s.ID, n.ip)
		}
	})

	t.Run("Uploads", func(t *testing.T) {
		const uploads, parallel = 30, 6
		sizes := make([]int, uploads)
		for i := range sizes {
			switch i {
			case 0:
				sizes[i] = 1
			case 1:
				sizes[i] = 256<<10 - 1
			case 2:
				sizes[i] = 256 << 10
			case 3:
				sizes[i] = 256<<10 + 1
			case 4:
				sizes[i] = 3 << 20
			default:
				sizes[i] = 1 + (i*1_234_567)%(3<<20)
			}
		}
		c := farmClient(nil)
		defer c.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()

		type outcome struct {
			data []byte
			res  *client.Result
			err  error
		}
		out := make([]outcome, uploads)
		for i := range out {
			out[i].data = randomBytes(t, sizes[i])
		}
		began := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		for i := range out {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				o := &out[i]
				o.res, o.err = c.Upload(ctx, f.url(fmt.Sprintf("/farm/file-%d.bin", i)), bytes.NewReader(o.data), int64(len(o.data)), nil)
			}()
		}
		wg.Wait()
		total := 0
		for _, o := range out {
			total += len(o.data)
		}
		t.Logf("%d uploads, %.1f MiB, %d at a time, in %v", uploads, float64(total)/(1<<20), parallel, time.Since(began).Round(time.Millisecond))

		perNode := map[string]int{}
		for i, o := range out {
			name := fmt.Sprintf("farm/file-%d.bin", i)
			if o.err != nil {
				t.Errorf("%s (%d bytes): %v", name, len(o.data), o.err)
				continue
			}
			if !o.res.Complete || o.res.Restarts != 0 || o.res.FellBack {
				t.Errorf("%s: complete %v, restarts %d, fell back %v; want a clean upload", name, o.res.Complete, o.res.Restarts, o.res.FellBack)
			}
			n := f.node(o.res.HostID)
			if n == nil {
				t.Errorf("%s: Result.HostID %q, want one of %v", name, o.res.HostID, farmIPs)
				continue
			}
			if u, err := url.Parse(o.res.SessionURL); err != nil || u.Host != net.JoinHostPort(n.ip, strconv.Itoa(f.port)) {
				t.Errorf("%s: session URL %q, want host %s:%d", name, o.res.SessionURL, n.ip, f.port)
			}
			holders := f.holders(t, name)
			if len(holders) != 1 || holders[0] != n {
				var ips []string
				for _, h := range holders {
					ips = append(ips, h.ip)
				}
				t.Errorf("%s is on nodes %v, want exactly on %s (its host id)", name, ips, n.ip)
				continue
			}
			assertFile(t, filepath.Join(n.root, "farm", fmt.Sprintf("file-%d.bin", i)), o.data)
			perNode[n.ip]++
		}
		t.Logf("uploads per node: %v", perNode)
		if len(perNode) < 2 {
			t.Errorf("all uploads went to %v; the random load balancer should spread them over at least 2 nodes", perNode)
		}
		// Every session was closed on the node that held it.
		for _, n := range f.nodes {
			if dirs := sessionDirs(t, n.sessions); len(dirs) != 0 {
				t.Errorf("node %s: sessions left after Close-Session: %v", n.ip, dirs)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("NodeDeath", func(t *testing.T) {
		const size, killAt = 8 << 20, 2 << 20
		data := randomBytes(t, size)
		rec := &recorder{start: time.Now()}
		c := farmClient(rec)
		defer c.CloseIdleConnections()
		c.FragmentSize = 64 << 10
		c.HostIDFallbackOverride = 2 * time.Second

		var (
			dead      *farmNode
			deadID    protocol.SessionID
			killErr   string
			restarted bool
		)
		progress := func(p client.Progress) {
			if dead == nil && p.Acked >= killAt {
				var on []*farmNode
				for _, n := range f.nodes {
					if n.hasSession(p.SessionID) {
						on = append(on, n)
					}
				}
				if len(on) != 1 {
					killErr = fmt.Sprintf("session %s is on %d nodes, want 1", p.SessionID, len(on))
					return
				}
				dead, deadID = on[0], p.SessionID
				on[0].proc.Kill()
				rec.note("SIGKILL node %s (session %s, %d of %d bytes acknowledged)", dead.ip, p.SessionID, p.Acked, p.Total)
			}
			if dead != nil && p.Restarts > 0 && !restarted {
				restarted = true
				rec.note("upload restarted: new session %s, %d bytes acknowledged", p.SessionID, p.Acked)
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		const name = "farm/death.bin"
		res, err := c.Upload(ctx, f.url("/"+name), bytes.NewReader(data), size, &client.UploadOptions{Progress: progress})
		t.Logf("request sequence (times from the start of the upload):\n%s", rec.log())
		if killErr != "" {
			t.Fatal(killErr)
		}
		if dead == nil {
			t.Fatalf("the node was never killed (upload error %v)", err)
		}
		if err != nil {
			t.Fatalf("upload after node %s died: %v (result %+v)", dead.ip, err, res)
		}
		t.Logf("result: host id %s, restarts %d, fell back %v, fragments %d, session %s",
			res.HostID, res.Restarts, res.FellBack, res.Fragments, res.SessionID)
		if killed, ok := rec.noted("SIGKILL"); ok {
			t.Logf("from the kill to the end of the upload: %v", (time.Since(rec.start) - killed).Round(time.Millisecond))
		}

		if !res.Complete {
			t.Errorf("upload not complete: %+v", res)
		}
		if res.Restarts < 1 {
			t.Errorf("Result.Restarts %d, want at least 1 (the session was lost with its node)", res.Restarts)
		}
		if !res.FellBack && res.HostID == dead.ip {
			t.Errorf("Result: host id %s (the dead node), fell back %v; want a fallback or another host", res.HostID, res.FellBack)
		}
		n := f.node(res.HostID)
		switch {
		case n == nil:
			t.Fatalf("Result.HostID %q, want one of %v", res.HostID, farmIPs)
		case n == dead:
			t.Fatalf("Result.HostID is the dead node %s", dead.ip)
		}
		if res.SessionID == deadID {
			t.Errorf("the last session %s is the one on the dead node", res.SessionID)
		}
		holders := f.holders(t, name)
		if len(holders) != 1 || holders[0] != n {
			t.Fatalf("%s is on %d nodes, want exactly on %s", name, len(holders), n.ip)
		}
		assertFile(t, filepath.Join(n.root, filepath.FromSlash(name)), data)
		if !dead.hasSession(deadID) {
			t.Errorf("the partial session %s is gone from the dead node %s; it should stay until it is reaped", deadID, dead.ip)
		}
		if n.hasSession(res.SessionID) {
			t.Errorf("session %s still on %s after Close-Session", res.SessionID, n.ip)
		}

		// The log shows the protocol at work: the client reached the load
		// balancer again after the kill, and a live node answered
		// BG_E_SESSION_NOT_FOUND there.
		rec.mu.Lock()
		events := append([]farmEvent(nil), rec.events...)
		rec.mu.Unlock()
		lb := net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port))
		var killed, notFound, recreated bool
		for _, e := range events {
			switch {
			case !killed && e.packet == "Create-Session" && e.hostID != dead.ip:
				t.Errorf("the session was created with BITS-Host-Id %q, but its directory is on %s", e.hostID, dead.ip)
			case e.packet == "" && strings.HasPrefix(e.note, "SIGKILL"):
				killed = true
			case killed && e.host == lb && e.packet == "Fragment" && e.status == 500 && e.code == protocol.BGSessionNotFound.String():
				notFound = true
			case notFound && e.host == lb && e.packet == "Create-Session" && e.status == 200:
				recreated = e.hostID != dead.ip
			}
		}
		if !notFound || !recreated {
			t.Errorf("after the kill: BG_E_SESSION_NOT_FOUND through the load balancer %v, new session on a live node %v; want both", notFound, recreated)
		}
	})
	t.Logf("farm test took %v", time.Since(start).Round(time.Millisecond))
}
