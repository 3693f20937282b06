package caddymodule_test

// Fault tests against the built binary: SIGKILL storms, reload storms, a
// full disk and a slow client. They are named TestBinaryFault* so that
// test.sh runs them against the xcaddy build too.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// faultSeed returns the seed of a test's random schedule:
// $CADDY_BITS_FAULT_SEED when set (to repeat a run), else the clock. It is
// always logged.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	if v := os.Getenv("CADDY_BITS_FAULT_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CADDY_BITS_FAULT_SEED=%q: %v", v, err)
		}
		t.Logf("seed %d (from CADDY_BITS_FAULT_SEED)", seed)
		return seed
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (CADDY_BITS_FAULT_SEED=%d repeats this schedule)", seed, seed)
	return seed
}

// faultRecorder is an http.RoundTripper that watches every BITS_POST
// exchange of the fault tests. It keeps, per session id (the
// BITS-Session-Id request header), the highest BITS-Received-Content-Range
// of a 200 or 416 Fragment Ack and reports every later Ack that is lower;
// it collects the answers that are not a success, and notes which URL path
// each session belongs to.
type faultRecorder struct {
	next  http.RoundTripper
	start time.Time

	mu          sync.Mutex
	epoch       string           // the current fault phase, for details
	acked       map[string]int64 // highest Received per wire session id
	ackedWhen   map[string]string
	paths       map[string]string   // wire session id -> URL path
	closing     map[string]bool     // a Close-Session was sent
	history     map[string][]string // per wire session id: its exchanges
	exchanges   int
	regressions []string
	errAnswers  []faultAnswer // non-2xx (and non-416 for Fragment) answers
	transport   []string      // requests that got no response
}

func newFaultRecorder() *faultRecorder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var protos http.Protocols
	protos.SetHTTP1(true)
	tr.Protocols = &protos
	tr.MaxIdleConnsPerHost = 64
	return &faultRecorder{
		next:      tr,
		start:     time.Now(),
		epoch:     "start",
		acked:     map[string]int64{},
		ackedWhen: map[string]string{},
		paths:     map[string]string{},
		closing:   map[string]bool{},
		history:   map[string][]string{},
	}
}

// httpClient returns an HTTP client whose requests go through r.
func (r *faultRecorder) httpClient() *http.Client {
	return &http.Client{Transport: r}
}

// setEpoch names the phase that later exchanges belong to.
func (r *faultRecorder) setEpoch(s string) {
	r.mu.Lock()
	r.epoch = s
	r.mu.Unlock()
}

func (r *faultRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != protocol.Method {
		return r.next.RoundTrip(req)
	}
	packet, _ := protocol.GetHeader(req.Header, protocol.HeaderPacketType)
	id, _ := protocol.GetHeader(req.Header, protocol.HeaderSessionID)
	rng, _ := protocol.GetHeader(req.Header, "Content-Range")
	sent := time.Since(r.start)
	if id != "" {
		r.mu.Lock()
		r.paths[id] = req.URL.Path
		if strings.EqualFold(packet, protocol.PacketCloseSession.String()) {
			r.closing[id] = true
		}
		r.mu.Unlock()
	}
	resp, err := r.next.RoundTrip(req)
	got := time.Since(r.start)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges++
	what := fmt.Sprintf("%s %s session %s range %q sent at %.3fs [%s]", packet, req.URL.Path, id, rng, sent.Seconds(), r.epoch)
	if err != nil {
		r.transport = append(r.transport, fmt.Sprintf("%s: no response at %.3fs: %s", what, got.Seconds(), shortErr(err)))
		if id != "" {
			r.history[id] = append(r.history[id], fmt.Sprintf("%.3fs-%.3fs [%s] %s %q: no response: %s", sent.Seconds(), got.Seconds(), r.epoch, packet, rng, shortErr(err)))
		}
		return resp, err
	}
	code := resp.Header.Get(protocol.HeaderErrorCode)
	if packet == protocol.PacketCreateSession.String() && resp.StatusCode == http.StatusOK {
		if sid := resp.Header.Get(protocol.HeaderSessionID); sid != "" {
			r.paths[sid] = req.URL.Path
			r.history[sid] = append(r.history[sid], fmt.Sprintf("%.3fs-%.3fs [%s] Create-Session %s: 200", sent.Seconds(), got.Seconds(), r.epoch, req.URL.Path))
		}
	}
	if id != "" {
		r.history[id] = append(r.history[id], fmt.Sprintf("%.3fs-%.3fs [%s] %s %q: %d %s received %q", sent.Seconds(), got.Seconds(), r.epoch,
			packet, rng, resp.StatusCode, code, resp.Header.Get(protocol.HeaderReceivedContentRange)))
	}
	isFragment := strings.EqualFold(packet, protocol.PacketFragment.String())
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299 ||
		isFragment && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable
	if !ok {
		name := code
		if h, err := strconv.ParseUint(strings.TrimPrefix(code, "0x"), 16, 32); err == nil && protocol.HRESULT(h).Name() != "" {
			name = protocol.HRESULT(h).Name()
		}
		r.errAnswers = append(r.errAnswers, faultAnswer{
			id: id, packet: packet, status: resp.StatusCode, code: code,
			text: fmt.Sprintf("%s: %d %s at %.3fs", what, resp.StatusCode, name, got.Seconds()),
		})
	}
	if isFragment && ok && id != "" {
		raw := resp.Header.Get(protocol.HeaderReceivedContentRange)
		n, perr := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		desc := fmt.Sprintf("%d %s=%s to %s, answered at %.3fs", resp.StatusCode, protocol.HeaderReceivedContentRange, raw, what, got.Seconds())
		switch {
		case perr != nil || n < 0:
			r.regressions = append(r.regressions, "unparsable Ack: "+desc)
		default:
			if prev, seen := r.acked[id]; seen && n < prev {
				r.regressions = append(r.regressions, fmt.Sprintf("session %s: acknowledged offset went back from %d (%s) to %d (%s)",
					id, prev, r.ackedWhen[id], n, desc))
			}
			if prev, seen := r.acked[id]; !seen || n > prev {
				r.acked[id] = n
				r.ackedWhen[id] = desc
			}
		}
	}
	return resp, err
}

// historyOf returns the exchanges of a session, one per line.
func (r *faultRecorder) historyOf(wireID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "    " + strings.Join(r.history[wireID], "\n    ")
}

// faultAnswer is an error answer of the server.
type faultAnswer struct {
	id, packet, code string
	status           int
	text             string
}

// faultTexts returns the texts of answers.
func faultTexts(as []faultAnswer) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.text)
	}
	return out
}

// faultSessionView is what the recorder knows about one session.
type faultSessionView struct {
	path    string
	acked   int64 // -1: no fragment Ack seen
	closing bool
}

// sessions returns what the recorder knows, keyed by the bare session id
// (the name of the session's directory).
func (r *faultRecorder) sessions() map[string]faultSessionView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]faultSessionView{}
	for wire, path := range r.paths {
		id, err := protocol.ParseSessionID(wire)
		if err != nil {
			continue
		}
		v := faultSessionView{path: path, acked: -1, closing: r.closing[wire]}
		if n, ok := r.acked[wire]; ok {
			v.acked = n
		}
		out[id.Bare()] = v
	}
	return out
}

// report returns copies of the collected findings.
func (r *faultRecorder) report() (exchanges int, regressions []string, errAnswers []faultAnswer, transport []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exchanges, append([]string(nil), r.regressions...), append([]faultAnswer(nil), r.errAnswers...),
		append([]string(nil), r.transport...)
}

// faultFirst returns at most n lines of a list, for error messages.
func faultFirst(lines []string, n int) string {
	if len(lines) <= n {
		return strings.Join(lines, "\n  ")
	}
	return strings.Join(lines[:n], "\n  ") + fmt.Sprintf("\n  ... and %d more", len(lines)-n)
}

// faultPaced is an upload source that reads at a limited rate, like a
// client on a slow link, so that uploads stay in flight while the faults
// happen no matter how fast the machine is.
type faultPaced struct {
	data []byte
	rate int64 // bytes per second
}

func (p *faultPaced) ReadAt(b []byte, off int64) (int, error) {
	time.Sleep(time.Duration(int64(len(b)) * int64(time.Second) / p.rate))
	return bytes.NewReader(p.data).ReadAt(b, off)
}

// faultUpload is one upload of a storm.
type faultUpload struct {
	name  string // destination, slash separated, relative to the root
	data  []byte
	frag  int64
	delay time.Duration // after the storm starts
	rate  int64

	started  atomic.Bool
	done     atomic.Bool
	acked    atomic.Int64
	took     time.Duration
	res      *client.Result
	err      error
	sessions []protocol.SessionID // every session the upload used
}

// faultStormUploads makes n uploads with random sizes in [minSize,
// maxSize], fragment sizes in 64-256 KiB, start delays in [0, spread) and
// the given rate. The first one is the anchor: maxSize bytes, starting at
// once, at anchorRate, so that it outlasts the whole storm.
func faultStormUploads(t *testing.T, rng *rand.Rand, n, minSize, maxSize int, spread time.Duration, rate, anchorRate int64) []*faultUpload {
	t.Helper()
	ups := make([]*faultUpload, n)
	for i := range ups {
		u := &faultUpload{
			name:  fmt.Sprintf("storm/dir-%d/file-%02d.bin", i%4, i),
			frag:  int64(64<<10 + rng.IntN(49)*4<<10), // 64 KiB to 256 KiB, 4 KiB steps
			delay: time.Duration(rng.Int64N(int64(spread))),
			rate:  rate,
		}
		size := minSize + rng.IntN(maxSize-minSize+1)
		if i == 0 {
			size, u.delay, u.rate, u.frag = maxSize, 0, anchorRate, 256<<10
		}
		u.data = randomBytes(t, size)
		ups[i] = u
	}
	return ups
}

// faultStormClient returns the BITS client of one storm upload.
func faultStormClient(hc *http.Client, u *faultUpload) *client.Client {
	return &client.Client{
		HTTPClient:     hc,
		FragmentSize:   u.frag,
		RetryDelay:     50 * time.Millisecond,
		MaxRetryDelay:  500 * time.Millisecond,
		MaxRetries:     100,
		RequestTimeout: 10 * time.Second,
	}
}

// faultStormOptions returns the upload options of one storm upload.
func faultStormOptions(u *faultUpload) *client.UploadOptions {
	return &client.UploadOptions{
		Progress: func(p client.Progress) {
			// Called from the upload's goroutine; sessions is read only
			// after the upload returned.
			u.acked.Store(p.Acked)
			if len(u.sessions) == 0 || u.sessions[len(u.sessions)-1] != p.SessionID {
				u.sessions = append(u.sessions, p.SessionID)
			}
		},
	}
}

// faultRunStorm starts every upload after its delay and returns a channel that
// is closed when all of them have returned.
func faultRunStorm(ctx context.Context, hc *http.Client, base string, ups []*faultUpload) <-chan struct{} {
	all := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer u.done.Store(true)
			select {
			case <-time.After(u.delay):
			case <-ctx.Done():
				u.err = ctx.Err()
				u.res = &client.Result{}
				return
			}
			u.started.Store(true)
			c := faultStormClient(hc, u)
			defer c.CloseIdleConnections()
			start := time.Now()
			u.res, u.err = c.Upload(ctx, base+"/"+u.name, &faultPaced{data: u.data, rate: u.rate}, int64(len(u.data)), faultStormOptions(u))
			u.took = time.Since(start)
		}()
	}
	go func() {
		wg.Wait()
		close(all)
	}()
	return all
}

// faultInFlight counts the uploads that started and have not returned, and the
// bytes acknowledged to them.
func faultInFlight(ups []*faultUpload) (n int, acked int64, done int) {
	for _, u := range ups {
		switch {
		case u.done.Load():
			done++
		case u.started.Load():
			n++
			acked += u.acked.Load()
		}
	}
	return n, acked, done
}

// faultWaitStorm waits for the uploads, failing the test if they hang.
func faultWaitStorm(t *testing.T, all <-chan struct{}, limit time.Duration, ups []*faultUpload) {
	t.Helper()
	select {
	case <-all:
	case <-time.After(limit):
		n, acked, done := faultInFlight(ups)
		t.Fatalf("uploads still running after %v: %d in flight (%d bytes acknowledged), %d done", limit, n, acked, done)
	}
}

// faultCheckStorm asserts that every upload completed byte-exact at its
// destination without starting over.
func faultCheckStorm(t *testing.T, root string, ups []*faultUpload) {
	t.Helper()
	var total int64
	var slowest time.Duration
	for i, u := range ups {
		total += int64(len(u.data))
		slowest = max(slowest, u.took)
		if u.err != nil {
			t.Errorf("upload %d (%s, %d bytes): %v (result %+v)", i, u.name, len(u.data), u.err, u.res)
			continue
		}
		if !u.res.Complete || u.res.Acked != int64(len(u.data)) {
			t.Errorf("upload %d (%s): complete %v, acked %d of %d", i, u.name, u.res.Complete, u.res.Acked, len(u.data))
		}
		if u.res.Restarts != 0 {
			t.Errorf("upload %d (%s): Result.Restarts %d, want 0: the server lost a session (sessions used: %v)", i, u.name, u.res.Restarts, u.sessions)
		}
		testutil.CheckFile(t, filepath.Join(root, filepath.FromSlash(u.name)), u.data)
	}
	t.Logf("%d uploads, %.1f MiB, all byte-exact: %v; slowest upload took %v", len(ups), float64(total)/(1<<20),
		!t.Failed(), slowest.Round(time.Millisecond))
}

// faultCheckCrash inspects the session directory while the server is
// dead: every session's data file must hold at least the bytes that were
// acknowledged to its client, and exactly the client's bytes, in order.
// A session directory whose id no client ever used (its Create-Session Ack
// was lost in a kill) must hold no data.
func faultCheckCrash(t *testing.T, sessionDir string, rec *faultRecorder, byName map[string][]byte) (checked int) {
	t.Helper()
	known := rec.sessions()
	for _, dir := range sessionDirs(t, sessionDir) {
		dataPath := filepath.Join(sessionDir, "active", dir+".data")
		held, err := os.ReadFile(dataPath)
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("session %s: %v", dir, err)
			continue
		}
		v, ok := known[dir]
		if !ok {
			if len(held) > 0 {
				t.Errorf("session %s, which no client used, holds %d bytes", dir, len(held))
			}
			continue
		}
		src, ok := byName[strings.TrimPrefix(v.path, "/")]
		if !ok {
			t.Errorf("session %s: unknown path %s", dir, v.path)
			continue
		}
		checked++
		if len(held) > len(src) {
			t.Errorf("session %s (%s): data file holds %d bytes, the upload has %d", dir, v.path, len(held), len(src))
			continue
		}
		if sha(held) != sha(src[:len(held)]) {
			t.Errorf("session %s (%s): the %d bytes of its data file are not the first %d bytes of the upload", dir, v.path, len(held), len(held))
		}
		if !v.closing && int64(len(held)) < v.acked {
			t.Errorf("session %s (%s): data file holds %d bytes at the crash, but %d were acknowledged", dir, v.path, len(held), v.acked)
		}
	}
	return checked
}

// faultCheckRecorder asserts what every storm shares: no acknowledged offset
// went back, and no fragment was answered BG_E_SESSION_NOT_FOUND (the
// session was lost) or with any other error. It returns the error answers
// to Close-Session, and the requests that got no response, for the caller
// to judge.
func faultCheckRecorder(t *testing.T, rec *faultRecorder) (closeErrs []faultAnswer, transport []string) {
	t.Helper()
	exchanges, regressions, errAnswers, transport := rec.report()
	t.Logf("%d BITS exchanges, %d without a response, %d error answers", exchanges, len(transport), len(errAnswers))
	if len(regressions) > 0 {
		t.Errorf("%d acknowledged offsets regressed:\n  %s", len(regressions), faultFirst(regressions, 20))
	}
	var others []faultAnswer
	for _, a := range errAnswers {
		if a.packet == protocol.PacketCloseSession.String() {
			closeErrs = append(closeErrs, a)
		} else {
			others = append(others, a)
		}
	}
	if len(others) > 0 {
		t.Errorf("%d error answers:\n  %s", len(others), faultFirst(faultTexts(others), 20))
		for i, a := range others {
			if i == 3 {
				break
			}
			if a.id != "" {
				t.Logf("exchanges of session %s:\n%s", a.id, rec.historyOf(a.id))
			}
		}
	}
	return closeErrs, transport
}

// faultLogLines returns the lines of Caddy's output that mention a session.
func faultLogLines(logs []string, wireID string) string {
	id, err := protocol.ParseSessionID(wireID)
	if err != nil {
		return ""
	}
	var out []string
	for i, l := range logs {
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(strings.ToLower(line), id.Bare()) {
				out = append(out, fmt.Sprintf("    [process %d] %s", i+1, line))
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestBinaryFaultKillStorm runs 50 concurrent uploads through the client
// while the server is killed with SIGKILL and restarted five times at
// random moments. Sessions survive kill -9: every upload completes
// byte-exact without starting over, no acknowledged offset ever goes back,
// and at every crash each session's data file holds at least the
// acknowledged bytes, all of them the client's.
func TestBinaryFaultKillStorm(t *testing.T) {
	const uploads, kills = 50, 5
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	root, sessionDir := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	p := testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessionDir, ""), admin)
	base := "http://127.0.0.1:" + strconv.Itoa(port)

	// Uploads of 50 KiB to 4 MiB start over the first 3 s at 1 MiB/s; the
	// anchor (4 MiB at 640 KiB/s, 6.4 s of sending) outlasts the at most
	// 4 s between the first and the last kill, so every kill hits uploads
	// in flight.
	ups := faultStormUploads(t, rng, uploads, 50<<10, 4<<20, 3*time.Second, 1<<20, 640<<10)
	byName := map[string][]byte{}
	for _, u := range ups {
		byName[u.name] = u.data
	}
	gaps := make([]time.Duration, kills)
	for i := range gaps {
		gaps[i] = 300*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond)))
	}
	t.Logf("kill schedule (gaps): %v", gaps)

	rec := newFaultRecorder()
	hc := rec.httpClient()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	rec.start = began
	all := faultRunStorm(ctx, hc, base, ups)

	var logs []string // the output of each killed process
	for k, gap := range gaps {
		time.Sleep(gap)
		n, acked, done := faultInFlight(ups)
		killedAt := time.Since(began)
		p.Kill()
		logs = append(logs, p.Logs.String())
		rec.setEpoch(fmt.Sprintf("after kill %d", k+1))
		checked := faultCheckCrash(t, sessionDir, rec, byName)
		p.Start()
		t.Logf("%6.3fs kill %d: %d uploads in flight (%.1f MiB acknowledged to them), %d done; %d session data files checked at the crash; up again after %v",
			killedAt.Seconds(), k+1, n, float64(acked)/(1<<20), done, checked, (time.Since(began) - killedAt).Round(time.Millisecond))
		if n == 0 {
			t.Errorf("kill %d hit no upload in flight", k+1)
		}
	}
	rec.setEpoch("after the storm")
	faultWaitStorm(t, all, 80*time.Second, ups)
	t.Logf("%6.3fs all uploads returned", time.Since(began).Seconds())

	faultCheckStorm(t, root, ups)
	closeErrs, transport := faultCheckRecorder(t, rec)
	t.Logf("requests broken by the kills: %d", len(transport))

	// Left-over sessions can only be ones whose Create-Session Ack a kill
	// swallowed: no client ever used them.
	known := rec.sessions()
	var orphans []string
	for _, d := range sessionDirs(t, sessionDir) {
		if v, ok := known[d]; ok {
			t.Errorf("session %s (%s, %d acknowledged) left on disk after its upload completed", d, v.path, v.acked)
			continue
		}
		orphans = append(orphans, d)
	}
	t.Logf("orphaned sessions (Create-Session Ack lost in a kill): %d", len(orphans))

	// A Close-Session repeated because a kill swallowed the Ack of the
	// first must get 200 ("a repeated request for a session that was
	// already closed or cancelled gets 200 too, so a lost Ack never makes
	// the client start over"). The client takes BG_E_SESSION_NOT_FOUND to a
	// Close-Session after a complete upload as closed, so the uploads above
	// pass either way; a Cancel-Session in the same spot fails.
	if len(closeErrs) > 0 {
		logs = append(logs, p.Logs.String())
		for _, a := range closeErrs {
			t.Logf("%s\n  exchanges of the session:\n%s\n  server log lines of the session:\n%s", a.text, rec.historyOf(a.id), faultLogLines(logs, a.id))
		}
		t.Errorf("%d Close-Session answered with an error after a kill, want 200:\n  %s", len(closeErrs), faultFirst(faultTexts(closeErrs), 10))
	}
}

// TestBinaryFaultReloadStorm runs 40 concurrent uploads while `caddy
// reload` loads alternating configurations every 200 ms. In-flight uploads
// keep their sessions across reloads: all complete byte-exact, none starts
// over, and the server never answers with an error.
func TestBinaryFaultReloadStorm(t *testing.T) {
	const uploads = 40
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	dir := t.TempDir()
	root, sessionDir := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	configs := []string{
		siteCaddyfile(admin, port, root, sessionDir, "session_timeout 1h\nmax_size 1GiB"),
		siteCaddyfile(admin, port, root, sessionDir, "session_timeout 2h\nmax_size 2GiB"),
	}
	p := testutil.StartCaddy(t, dir, configs[0], admin)
	base := "http://127.0.0.1:" + strconv.Itoa(port)

	// The anchor (3 MiB at 768 KiB/s) keeps the storm going for 4 s.
	ups := faultStormUploads(t, rng, uploads, 50<<10, 3<<20, 1500*time.Millisecond, 3<<19, 768<<10)
	rec := newFaultRecorder()
	hc := rec.httpClient()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	rec.start = began
	all := faultRunStorm(ctx, hc, base, ups)

	const every = 200 * time.Millisecond
	reloads, during := 0, 0
	var slowest time.Duration
	next := began
	for {
		next = next.Add(every)
		select {
		case <-all:
		case <-time.After(time.Until(next)):
		}
		n, _, done := faultInFlight(ups)
		if done == uploads {
			break
		}
		reloads++
		rec.setEpoch(fmt.Sprintf("reload %d", reloads))
		start := time.Now()
		p.Reload(configs[reloads%2])
		took := time.Since(start)
		slowest = max(slowest, took)
		if n > 0 {
			during++
		}
		if reloads <= 3 || reloads%5 == 0 {
			t.Logf("%6.3fs reload %d (%d uploads in flight, %d done) took %v", start.Sub(began).Seconds(), reloads, n, done, took.Round(time.Millisecond))
		}
		if time.Since(began) > 60*time.Second {
			t.Errorf("uploads still running after 60 s")
			break
		}
	}
	faultWaitStorm(t, all, 30*time.Second, ups)
	t.Logf("%6.3fs all uploads returned after %d reloads (%d with uploads in flight; slowest reload %v)",
		time.Since(began).Seconds(), reloads, during, slowest.Round(time.Millisecond))
	if during < 5 {
		t.Errorf("only %d reloads happened while uploads were in flight, want at least 5", during)
	}

	// The last configuration is the one running.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", admin))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantTimeout := []string{`"session_timeout":3600000000000`, `"session_timeout":7200000000000`}[reloads%2]
	if !bytes.Contains(cfg, []byte(wantTimeout)) {
		t.Errorf("running config lacks %s after %d reloads:\n%s", wantTimeout, reloads, cfg)
	}

	faultCheckStorm(t, root, ups)
	closeErrs, transport := faultCheckRecorder(t, rec)
	if len(closeErrs) > 0 {
		t.Errorf("%d Close-Session error answers during reloads, want none:\n  %s", len(closeErrs), faultFirst(faultTexts(closeErrs), 20))
	}
	if len(transport) > 0 {
		// An old server closing an idle kept-alive connection as a
		// client picks it up; the client pings and resends.
		t.Logf("requests without a response during reloads (retried by the client):\n  %s", faultFirst(transport, 10))
	}
	if dirs := sessionDirs(t, sessionDir); len(dirs) != 0 {
		t.Errorf("sessions left after every upload was closed: %v", dirs)
	}
}

// TestBinaryFaultDiskFull fills the file system that holds root and
// session_dir during an upload: the client gets ERROR_DISK_FULL, the bytes
// the session holds are exactly the acknowledged prefix of the upload, and
// once space is freed the same session resumes and completes byte-exact.
func TestBinaryFaultDiskFull(t *testing.T) {
	mnt := testutil.MountTmpfs(t, "8m")
	dir := t.TempDir()
	root, sessionDir := filepath.Join(mnt, "root"), filepath.Join(mnt, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessionDir, ""), admin)
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/full/big.bin"

	filler := filepath.Join(mnt, "filler")
	testutil.WriteFiller(t, filler, 4<<20)
	free := testutil.FreeSpace(t, mnt)
	const size, frag = 6 << 20, 256 << 10
	data := randomBytes(t, size)
	t.Logf("tmpfs of 8 MiB with a 4 MiB filler: %d bytes free; uploading %d bytes in fragments of %d", free, size, frag)

	// The client retries 5xx; with few retries it gives up with the code.
	rec := newFaultRecorder()
	c := &client.Client{
		HTTPClient:     rec.httpClient(),
		FragmentSize:   frag,
		RetryDelay:     20 * time.Millisecond,
		MaxRetryDelay:  100 * time.Millisecond,
		MaxRetries:     3,
		RequestTimeout: 10 * time.Second,
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := c.Upload(ctx, url, bytes.NewReader(data), size, nil)
	var be *client.Error
	switch {
	case err == nil:
		t.Fatalf("upload of %d bytes onto %d free bytes succeeded: %+v", size, free, res)
	case !errors.As(err, &be):
		t.Fatalf("upload failed with %v, want a *client.Error", err)
	}
	t.Logf("client gave up: %v (acked %d, fragments %d, session %s)", err, res.Acked, res.Fragments, res.SessionID)
	if be.Code != protocol.ErrorDiskFull || be.Context != protocol.ContextRemoteFile || be.Status != http.StatusInternalServerError {
		t.Fatalf("client error: status %d code %s context %s, want 500 %s context %s",
			be.Status, client.CodeString(be.Code), be.Context, client.CodeString(protocol.ErrorDiskFull), protocol.ContextRemoteFile)
	}
	if res.Complete || res.Restarts != 0 || res.Acked <= 0 || res.Acked >= size || res.SessionID == "" {
		t.Fatalf("result %+v: want an incomplete upload of one session with some bytes acknowledged", res)
	}
	_, _, errAnswers, transport := rec.report()
	if len(transport) > 0 {
		t.Errorf("requests without a response: %v", transport)
	}
	for _, a := range errAnswers {
		if a.status != 500 || a.code != protocol.ErrorDiskFull.String() || a.packet != protocol.PacketFragment.String() {
			t.Errorf("unexpected error answer: %s", a.text)
		}
	}
	t.Logf("%d ERROR_DISK_FULL answers (1 + %d retries)", len(errAnswers), c.MaxRetries)

	// The exact Ack of the next fragment.
	s := c.ResumeSession(res.SessionURL, res.WireSessionID)
	a, err := s.Fragment(ctx, data[res.Acked:res.Acked+frag], res.Acked, size)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 500, code: protocol.ErrorDiskFull})
	if a.HasReceived {
		t.Errorf("the error Ack carries %s %d", protocol.HeaderReceivedContentRange, a.Received)
	}
	// Ask the server how much it holds: a fragment it has already.
	a, err = s.Fragment(ctx, data[:1], 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != 200 || !a.HasReceived {
		t.Fatalf("retransmission of byte 0: status %d, received %v/%d", a.Status, a.HasReceived, a.Received)
	}
	held := a.Received
	if held != res.Acked {
		t.Errorf("server holds %d bytes, the client was acknowledged %d", held, res.Acked)
	}
	dataPath := filepath.Join(sessionDir, "active", res.SessionID.Bare()+".data")
	onDisk, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(onDisk)) != held || sha(onDisk) != sha(data[:held]) {
		t.Fatalf("data file: %d bytes, sha256 %s; want the first %d bytes of the upload, sha256 %s",
			len(onDisk), sha(onDisk), held, sha(data[:held]))
	}
	t.Logf("session %s holds the first %d bytes, intact; %d bytes free", res.SessionID, held, testutil.FreeSpace(t, mnt))
	assertNoFile(t, filepath.Join(root, "full", "big.bin"))

	// Free the space and resume the same session from the server's offset.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	next := held
	for next < size {
		last := min(next+frag, size) - 1
		a, err := s.Fragment(ctx, data[next:last+1], next, size)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != 200 || !a.HasReceived || a.Received != last+1 {
			t.Fatalf("fragment %d-%d after freeing space: status %d code %s received %d", next, last, a.Status, a.Header.Get(protocol.HeaderErrorCode), a.Received)
		}
		next = a.Received
	}
	assertFile(t, filepath.Join(root, "full", "big.bin"), data)
	a, err = s.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	if dirs := sessionDirs(t, sessionDir); len(dirs) != 0 {
		t.Errorf("sessions left after Close-Session: %v", dirs)
	}
	assertFile(t, filepath.Join(root, "full", "big.bin"), data)
}

// TestBinaryFaultSlowloris trickles a fragment at one byte per second for
// five seconds. Ten uploads of other sessions finish meanwhile. A retry
// for the trickling session takes the session over from the stalled
// request at once: the trickle's body read stops, the byte it delivered
// stays, its connection is closed, and the retry is answered within a
// second.
func TestBinaryFaultSlowloris(t *testing.T) {
	dir := t.TempDir()
	root, sessionDir := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessionDir, ""), admin)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	base := "http://" + addr

	const slowSize, trickle, dupLen = 1 << 20, 5, 64 << 10
	slowData := randomBytes(t, slowSize)
	rec := newFaultRecorder()
	c := &client.Client{HTTPClient: rec.httpClient(), FragmentSize: 256 << 10, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, a, err := c.CreateSession(ctx, base+"/slow/slow.bin")
	if err != nil {
		t.Fatalf("create-session: %v (%+v)", err, a)
	}

	// The trickle: a raw connection sends the headers of a fragment of 5
	// bytes, then one byte per second until the server stops reading.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	if _, err := fmt.Fprintf(conn, "BITS_POST /slow/slow.bin HTTP/1.1\r\nHost: %s\r\nBITS-Packet-Type: Fragment\r\n"+
		"BITS-Session-Id: %s\r\nContent-Range: bytes 0-%d/%d\r\nContent-Length: %d\r\n\r\n",
		addr, slow.WireID, trickle-1, slowSize, trickle); err != nil {
		t.Fatal(err)
	}
	type slowAnswer struct {
		sent   int           // bytes of the body written
		closed time.Duration // when the server closed the connection
	}
	slowDone := make(chan slowAnswer, 1)
	var trickleEnd atomic.Int64
	go func() {
		var out slowAnswer
		defer func() { slowDone <- out }()
		for i := range trickle {
			time.Sleep(time.Second)
			if _, err := conn.Write(slowData[i : i+1]); err != nil {
				break
			}
			out.sent++
		}
		trickleEnd.Store(int64(time.Since(began)))
		// Whatever the server answered, it closes the connection.
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.Copy(io.Discard, conn)
		out.closed = time.Since(began)
	}()

	// A retry of the trickling session, a second after it began: a larger
	// fragment from 0, which must wait for the trickle to finish.
	type dupAnswer struct {
		a   *client.Ack
		err error
		at  time.Duration
	}
	dupDone := make(chan dupAnswer, 1)
	go func() {
		time.Sleep(time.Second)
		dc := &client.Client{HTTPClient: rec.httpClient()}
		ds := dc.ResumeSession(slow.URL, slow.WireID)
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		defer dcancel()
		a, err := ds.Fragment(dctx, slowData[:dupLen], 0, slowSize)
		dupDone <- dupAnswer{a, err, time.Since(began)}
	}()

	// Ten ordinary uploads of 1 MiB on their own sessions, half a second
	// in.
	time.Sleep(500 * time.Millisecond)
	const normals = 10
	type normal struct {
		data []byte
		res  *client.Result
		err  error
		end  time.Duration
	}
	ns := make([]normal, normals)
	for i := range ns {
		ns[i].data = randomBytes(t, 1<<20)
	}
	normalsStart := time.Since(began)
	var wg sync.WaitGroup
	for i := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nctx, ncancel := context.WithTimeout(ctx, 20*time.Second)
			defer ncancel()
			ns[i].res, ns[i].err = c.Upload(nctx, fmt.Sprintf("%s/normal/file-%d.bin", base, i), bytes.NewReader(ns[i].data), 1<<20, nil)
			ns[i].end = time.Since(began)
		}()
	}
	wg.Wait()
	normalsEnd := time.Since(began)
	trickling := trickleEnd.Load() == 0
	t.Logf("%.3fs-%.3fs: %d uploads of 1 MiB while the trickle was in progress: %v", normalsStart.Seconds(), normalsEnd.Seconds(), normals, trickling)
	for i, n := range ns {
		if n.err != nil {
			t.Errorf("normal upload %d: %v", i, n.err)
			continue
		}
		if d := n.end - normalsStart; d > 3*time.Second {
			t.Errorf("normal upload %d took %v, want at most 3 s", i, d)
		}
		testutil.CheckFile(t, filepath.Join(root, "normal", fmt.Sprintf("file-%d.bin", i)), n.data)
	}
	if !trickling {
		t.Errorf("the trickle ended (at %v) before the ordinary uploads did (at %v)", time.Duration(trickleEnd.Load()), normalsEnd)
	}

	da := <-dupDone
	if da.err != nil {
		t.Fatalf("retry of the trickling session: %v", da.err)
	}
	sa := <-slowDone
	t.Logf("trickle: %d of %d bytes sent, connection closed at %.3fs; retry sent at 1s, Ack %d received %d at %.3fs",
		sa.sent, trickle, sa.closed.Seconds(), da.a.Status, da.a.Received, da.at.Seconds())
	if da.at > 2*time.Second {
		t.Errorf("the retry was answered at %v, more than a second after it was sent at 1s: the stalled request kept the session", da.at)
	}
	if sa.sent >= trickle {
		t.Errorf("the trickle sent all %d bytes: the server kept reading the stalled request", sa.sent)
	}
	checkAck(t, da.a, ack{status: 200, headers: received(strconv.Itoa(dupLen))})

	// Finish the slow session and check it.
	next := int64(dupLen)
	for next < slowSize {
		last := min(next+256<<10, slowSize) - 1
		a := fragment(t, slow, slowData, next, last)
		if a.Status != 200 || a.Received != last+1 {
			t.Fatalf("fragment %d-%d: status %d received %d", next, last, a.Status, a.Received)
		}
		next = a.Received
	}
	assertFile(t, filepath.Join(root, "slow", "slow.bin"), slowData)
	if a, err := slow.Close(ctx); err != nil || a.Status != 200 {
		t.Fatalf("close-session: %v %+v", err, a)
	}
	_, _, errAnswers, transport := rec.report()
	if len(errAnswers) > 0 || len(transport) > 0 {
		t.Errorf("error answers %v, requests without a response %v; want none", faultTexts(errAnswers), transport)
	}
	if dirs := sessionDirs(t, sessionDir); len(dirs) != 0 {
		t.Errorf("sessions left: %v", dirs)
	}
}
