package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// deliveries is a server application that records every notification it
// gets: the session, the node that sent it (X-Bits-Node) and the SHA-256
// of the body. It asks for each upload to be placed.
type deliveries struct {
	mu   sync.Mutex
	seen map[string][]delivery
}

type delivery struct {
	node, sum string
}

func (d *deliveries) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	if _, err := io.Copy(h, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	id := r.Header.Get(protocol.HeaderSessionID)
	d.seen[id] = append(d.seen[id], delivery{node: r.Header.Get("X-Bits-Node"), sum: hex.EncodeToString(h.Sum(nil))})
	d.mu.Unlock()
	w.Header().Set(protocol.HeaderCopyFileToDest, "true")
	_, _ = io.WriteString(w, "ok "+id)
}

// scrapeNode returns the value of each sample of a node's metrics.
func scrapeNode(t testing.TB, adminPort int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		t.Fatalf("scraping node metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// TestBinarySharedFarm runs three nodes with S3 storage and shared
// sessions on 127.0.0.2-4, without host_id, behind a Caddy load balancer
// that sends each request to the next node in turn, so that most packets
// reach a node that does not own their session and are forwarded. One
// node is killed with SIGKILL in the middle of 30 uploads and started
// again: its sessions are taken over by the others. Every upload must
// land byte for byte, every notification must be delivered once (again
// only if the killed node was delivering it), and no multipart upload may
// be left behind.
func TestBinarySharedFarm(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2 (%v): the farm test needs 127.0.0.2-4", err)
	}
	l.Close()
	s3srv := testutil.StartS3(t)
	app := &deliveries{seen: map[string][]delivery{}}
	appSrv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = appSrv.Serve(appLn) }()
	t.Cleanup(func() { _ = appSrv.Close() })

	port := farmPort(t)
	base := t.TempDir()
	var nodes []*farmNode
	var upstreams []string
	for _, ip := range farmIPs {
		dir := filepath.Join(base, "node-"+ip)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n := &farmNode{ip: ip, sessions: filepath.Join(dir, "sessions")}
		admin := testutil.FreePort(t)
		n.proc = testutil.StartCaddy(t, dir, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	metrics
}
:%d {
	bind %s
	bits_upload {
		session_dir %s
		%s
		sessions shared {
			forward_timeout 1s
		}
		notify http://%s/app {
			header X-Bits-Node %s
		}
	}
}
`, admin, port, ip, n.sessions, s3Storage(s3srv, "farm/"), appLn.Addr(), ip), admin)
		nodes = append(nodes, n)
		upstreams = append(upstreams, net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	lbDir := filepath.Join(base, "lb")
	if err := os.MkdirAll(lbDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lbAdmin := testutil.FreePort(t)
	testutil.StartCaddy(t, lbDir, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy round_robin
		lb_try_duration 5s
		fail_duration 2s
	}
}
`, lbAdmin, port, strings.Join(upstreams, " ")), lbAdmin)
	lbURL := func(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", port, path) }

	const uploads, parallel = 30, 5
	sizes := make([]int, uploads)
	for i := range sizes {
		switch i {
		case 0:
			sizes[i] = 0
		case 1:
			sizes[i] = 1
		case 2:
			sizes[i] = s3Part
		case 3:
			sizes[i] = 3*s3Part + 5
		default:
			sizes[i] = 1 + (i*2_345_678)%(3*s3Part)
		}
	}
	datas := make([][]byte, uploads)
	for i := range datas {
		datas[i] = randomBytes(t, sizes[i])
	}
	c := farmClient(nil)
	c.FragmentSize = 1 << 20
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	victim := nodes[1]
	var killOnce sync.Once
	var killedAt time.Time
	done := make(chan int, uploads)
	results := make([]*client.Result, uploads)
	errs := make([]error, uploads)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = c.Upload(ctx, lbURL(fmt.Sprintf("/u/%02d.bin", i)), bytes.NewReader(datas[i]), int64(len(datas[i])), &client.UploadOptions{KeepReply: true})
			done <- i
		}()
	}
	go func() {
		// Kill a node once a third of the uploads are done, while the
		// others are in flight, and start it again two seconds later.
		for n := 0; n < uploads/3; n++ {
			<-done
		}
		killOnce.Do(func() {
			killedAt = time.Now()
			victim.proc.Kill()
		})
		time.Sleep(2 * time.Second)
		victim.proc.Start()
	}()
	wg.Wait()
	elapsed := time.Since(start)
	if killedAt.IsZero() {
		t.Fatal("the node was never killed")
	}
	for !victim.proc.Running() {
		time.Sleep(50 * time.Millisecond)
	}

	bc := s3Client(s3srv)
	var total int64
	for i := range uploads {
		if errs[i] != nil {
			t.Errorf("upload %d (%d bytes): %v", i, sizes[i], errs[i])
			continue
		}
		total += int64(sizes[i])
		assertObject(t, bc, s3srv.Bucket, fmt.Sprintf("farm/u/%02d.bin", i), datas[i])
		if want := "ok " + results[i].WireSessionID; string(results[i].Reply) != want {
			t.Errorf("upload %d: reply %q, want %q", i, results[i].Reply, want)
		}
		app.mu.Lock()
		got := app.seen[results[i].WireSessionID]
		app.mu.Unlock()
		if len(got) == 0 {
			t.Errorf("upload %d: never delivered", i)
			continue
		}
		for j, d := range got {
			if d.sum != sha(datas[i]) {
				t.Errorf("upload %d: delivery %d had sha256 %s, want %s", i, j, d.sum, sha(datas[i]))
			}
			// Only a delivery by the killed node may have gone
			// unrecorded, and so be repeated.
			if j < len(got)-1 && d.node != victim.ip {
				t.Errorf("upload %d: delivered %d times (%v); only one by the killed node %s may repeat", i, len(got), got, victim.ip)
			}
		}
	}

	var forwards, unreachable, takeovers float64
	for _, n := range nodes {
		m := scrapeNode(t, n.proc.AdminPort)
		forwards += m[`caddy_bits_upload_forwards_total{result="ok"}`]
		unreachable += m[`caddy_bits_upload_forwards_total{result="unreachable"}`]
		takeovers += m["caddy_bits_upload_takeovers_total"]
	}
	t.Logf("%d uploads, %d bytes in %v; node %s killed at %v and restarted 2 s later; forwards: %v ok, %v to an unreachable node; takeovers: %v (the restarted node's counters start again at 0)",
		uploads, total, elapsed.Round(time.Millisecond), victim.ip, killedAt.Sub(start).Round(time.Millisecond), forwards, unreachable, takeovers)
	if forwards < float64(uploads) {
		t.Errorf("%v packets forwarded; behind a round-robin balancer most packets reach a node that does not own their session", forwards)
	}

	// Nothing is left but, perhaps, an empty multipart upload the killed
	// node had just started.
	assertNoUploads(t, bc, s3srv.Bucket, killedAt)
}
