package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestRetryDelayJitter(t *testing.T) {
	var asked []int64
	pick := int64(0)
	c := &Client{RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second, randN: func(n int64) int64 {
		asked = append(asked, n)
		if pick < 0 {
			return n - 1
		}
		return pick
	}}
	ms := time.Millisecond
	// The lowest draw gives half of each delay, the highest all of it.
	for i, want := range []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms} {
		if got := c.retryDelay(i + 1); got != want {
			t.Errorf("lowest retryDelay(%d) = %v, want %v", i+1, got, want)
		}
	}
	pick = -1
	for i, want := range []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms} {
		if got := c.retryDelay(i + 1); got != want {
			t.Errorf("highest retryDelay(%d) = %v, want %v", i+1, got, want)
		}
	}
	if want := int64(50*ms) + 1; asked[0] != want {
		t.Errorf("random draw over [0, %d), want [0, %d)", asked[0], want)
	}
	pick = 12345
	if got := c.retryDelay(1); got != 50*ms+12345 {
		t.Errorf("retryDelay(1) = %v", got)
	}
	if got := (&Client{RetryDelay: -1}).retryDelay(3); got != 0 {
		t.Errorf("negative delay: %v", got)
	}

	// The default source spreads the delays over [d/2, d].
	c = &Client{RetryDelay: 400 * ms, MaxRetryDelay: time.Second}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := c.retryDelay(1)
		if d < 200*ms || d > 400*ms {
			t.Fatalf("retryDelay(1) = %v, want within [200ms, 400ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays in 1000 draws", len(seen))
	}
}

// TestRetriesAreJittered checks that an upload waits the jittered delays:
// each retry draws from the random source over half its backoff.
func TestRetriesAreJittered(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n <= 3 {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: protocol.ContextRemoteFile})
			return true
		}
		return false
	}
	var mu sync.Mutex
	var asked []int64
	c := newTestClient(t)
	c.RetryDelay, c.MaxRetryDelay = 2*time.Millisecond, time.Second
	c.randN = func(n int64) int64 {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, n)
		return 0
	}
	data := testData(100, 1)
	if _, err := c.Upload(context.Background(), f.url("/up/j"), bytes.NewReader(data), 100, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/j", data)
	want := []int64{int64(time.Millisecond) + 1, int64(2*time.Millisecond) + 1, int64(4*time.Millisecond) + 1}
	if !slices.Equal(asked, want) {
		t.Errorf("random draws over %v, want %v", asked, want)
	}
}

// TestNoProgressTimeout: with NoProgressTimeout and MaxRetries 0 the
// count of retries is unbounded, and the time bounds it.
func TestNoProgressTimeout(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: protocol.ContextRemoteFile})
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.MaxRetries = 0
	c.NoProgressTimeout = 300 * time.Millisecond
	c.RetryDelay, c.MaxRetryDelay = 10*time.Millisecond, 10*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Upload(ctx, f.url("/up/np"), bytes.NewReader([]byte("abc")), 3, nil)
	elapsed := time.Since(start)
	var be *Error
	if !errors.As(err, &be) || be.Status != 503 || !strings.Contains(err.Error(), "without progress") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if elapsed < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the no-progress timeout", elapsed)
	}
	// 300 ms of 5-10 ms delays: far more attempts than DefaultMaxRetries.
	if n := f.count("Fragment"); n <= DefaultMaxRetries+1 {
		t.Errorf("%d fragments sent: the count of retries was limited", n)
	}
}

// TestNoProgressTimeoutRestartsOnProgress: every fragment fails once and
// each wait is at least 20 ms, so the failures span more than the 100 ms
// timeout in all; progress between them restarts the clock.
func TestNoProgressTimeoutRestartsOnProgress(t *testing.T) {
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment && n%2 == 1 {
			protocol.WriteAck(w, protocol.Ack{Status: 503, Code: protocol.EFail, Context: protocol.ContextRemoteFile})
			return true
		}
		return false
	}
	c := newTestClient(t)
	c.MaxRetries = 0
	c.NoProgressTimeout = 100 * time.Millisecond
	c.RetryDelay, c.MaxRetryDelay = 40*time.Millisecond, 40*time.Millisecond
	c.FragmentSize = 1000
	data := testData(8000, 2)
	if _, err := c.Upload(context.Background(), f.url("/up/rp"), bytes.NewReader(data), 8000, nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/rp", data)
	if n := f.count("Fragment"); n != 16 {
		t.Errorf("%d fragments sent, want 16", n)
	}
}
