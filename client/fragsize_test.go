package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

func TestFragmentSizer(t *testing.T) {
	s := (&Client{}).newFragmentSizer()
	if s.size != DefaultFragmentSize || s.floor != DefaultMinFragmentSize || s.ceiling != MaxFragmentSize || !s.adaptive {
		t.Fatalf("new sizer %+v", s)
	}
	// A fast Ack grows the size to what the link carries in the 2 s
	// target: 1 MiB in 400 ms makes 5 MiB.
	s.acked(s.size, 400*time.Millisecond, 0)
	if s.size != 5*mib {
		t.Errorf("after 1 MiB in 400 ms: size %d, want 5 MiB", s.size)
	}
	// A very fast one reaches the cap, and the size never goes beyond.
	for range 3 {
		s.acked(s.size, 10*time.Millisecond, 0)
		if s.size != MaxFragmentSize {
			t.Errorf("after a fast Ack: size %d, want %d", s.size, MaxFragmentSize)
		}
	}
	s.acked(s.size, 0, 0)
	if s.size != MaxFragmentSize {
		t.Errorf("after an Ack in no time: size %d", s.size)
	}
	// Acks between half and twice the 2 s target keep the size.
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		s.acked(s.size, d, 0)
		if s.size != MaxFragmentSize {
			t.Errorf("after an Ack in %v: size %d", d, s.size)
		}
	}
	// A slow Ack shrinks it to what the link carried in 2 s.
	s.acked(MaxFragmentSize, 20*time.Second, 0)
	if want := int64(MaxFragmentSize * 2 / 20); s.size != want {
		t.Errorf("after 13 MiB in 20 s: size %d, want %d", s.size, want)
	}
	// Never below the floor.
	s.acked(s.size, time.Hour, 0)
	if s.size != DefaultMinFragmentSize {
		t.Errorf("after an Ack in an hour: size %d", s.size)
	}
	// A short fast fragment (the last of an upload) does not grow it; a
	// short slow one shrinks it.
	s.size = 1 * mib
	s.acked(100, time.Millisecond, 0)
	if s.size != 1*mib {
		t.Errorf("short fast fragment: size %d", s.size)
	}
	s.acked(512*kib, 8*time.Second, 0)
	if s.size != 128*kib {
		t.Errorf("short slow fragment: size %d", s.size)
	}
}

func TestFragmentSizerRoundTrip(t *testing.T) {
	// 100 round trips of 50 ms: the target is 5 s, so 1 MiB in 2 s is
	// fast, and the size grows to 2.5 MiB ...
	s := (&Client{}).newFragmentSizer()
	s.acked(s.size, 2*time.Second, 50*time.Millisecond)
	if s.size != 5*mib/2 {
		t.Errorf("size %d, want 2.5 MiB", s.size)
	}
	// ... which the 2 s target without the round trip keeps.
	s.acked(s.size, 2*time.Second, 0)
	if s.size != 5*mib/2 {
		t.Errorf("size %d, want 2.5 MiB", s.size)
	}
	// The target is at most 30 s.
	if got := s.target(time.Second); got != 30*time.Second {
		t.Errorf("target for a 1 s round trip: %v", got)
	}
	if got := s.target(time.Millisecond); got != 2*time.Second {
		t.Errorf("target for a 1 ms round trip: %v", got)
	}
}

func TestFragmentSizer413(t *testing.T) {
	s := (&Client{}).newFragmentSizer()
	s.size = 4 * mib
	if !s.tooLarge(4*mib) || s.size != 2*mib || s.ceiling != 2*mib {
		t.Fatalf("after a 413: %+v", s)
	}
	for range 3 {
		s.acked(s.size, time.Millisecond, 0)
	}
	if s.size != 2*mib {
		t.Errorf("grew past a 413: size %d", s.size)
	}
	s.size = 6 * kib
	if !s.tooLarge(6*kib) || s.size != DefaultMinFragmentSize {
		t.Errorf("413 near the floor: %+v", s)
	}
	if s.tooLarge(DefaultMinFragmentSize) {
		t.Error("a 413 at the floor did not fail")
	}
	s = (&Client{}).newFragmentSizer()
	s.timedOut(s.size)
	if s.size != 512*kib {
		t.Errorf("after a timeout: size %d", s.size)
	}
}

func TestFragmentSizerFixed(t *testing.T) {
	s := (&Client{FragmentSize: 64 * kib}).newFragmentSizer()
	s.acked(64*kib, time.Millisecond, 0)
	s.acked(64*kib, time.Hour, 0)
	s.timedOut(64 * kib)
	if s.size != 64*kib {
		t.Errorf("fixed size changed to %d", s.size)
	}
	if !s.tooLarge(64*kib) || s.size != 32*kib {
		t.Errorf("fixed size after a 413: %d", s.size)
	}
}

// TestAdaptiveFragments uploads over a simulated link: 4 MiB/s for
// fragments that start before 12 MiB, then 256 KiB/s, with 10 ms of
// latency per fragment; the server refuses fragments above 3 MiB in a
// second upload.
func TestAdaptiveFragments(t *testing.T) {
	// The fake server advances the clock by each fragment's time on the link.
	clock := testutil.NewClock(time.Unix(1e9, 0))
	f := newFake(t)
	f.noRaw = true
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		if p.Type == protocol.PacketFragment {
			rate := int64(4 * mib)
			if p.Range.First >= 12*mib {
				rate = 256 * kib
			}
			clock.Advance(10*time.Millisecond + time.Duration(p.Range.Len()*int64(time.Second)/rate))
		}
		return false
	}
	c := newTestClient(t)
	c.now = clock.Now
	c.SkipPing = true
	data := testData(30*mib, 21)
	var sizes []int64
	opts := &UploadOptions{Progress: func(p Progress) { sizes = append(sizes, p.FragmentSize) }}
	if _, err := c.Upload(context.Background(), f.url("/up/adaptive"), bytes.NewReader(data), int64(len(data)), opts); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/adaptive", data)
	// 1 MiB takes 0.26 s, so the size grows to what the link carries in
	// 2 s at that rate: 1 MiB * 2 / 0.26 = 8065969 bytes. Those take
	// 1.93 s, within the target, so the size stays. The fragment at
	// 16.4 MiB takes 30.78 s: the size drops to 8065969 * 2 / 30.78 =
	// 524117 bytes, which take 2.01 s, and stays.
	want := []string{"1048576", "8065969", "8065969", "8065969"}
	for range 11 {
		want = append(want, "524117")
	}
	want = append(want, fmt.Sprint(30*mib-1*mib-3*8065969-11*524117))
	if got := fragmentSizes(f); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("fragment sizes\n got %v\nwant %v", got, want)
	}
	if sizes[0] != 8065969 || sizes[3] != 524117 {
		t.Errorf("progress reported next sizes %v", sizes)
	}

	f.maxFragment = 3 * mib
	f.mu.Lock()
	f.log = nil
	f.mu.Unlock()
	data = testData(10*mib, 22)
	if _, err := c.Upload(context.Background(), f.url("/up/capped"), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	checkFile(t, f, "/up/capped", data)
	// 1 MiB passes, 8065969 bytes get 413 and so do their half; the
	// quarter passes, and although it is fast the size never grows past
	// it again.
	want = []string{"1048576", "8065969", "4032984", "2016492", "2016492", "2016492", "2016492", fmt.Sprint(10*mib - 1*mib - 4*2016492)}
	if got := fragmentSizes(f); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("fragment sizes with 413 above 3 MiB\n got %v\nwant %v", got, want)
	}
}

// fragmentSizes returns the sizes of the fragments the fake saw, in order.
func fragmentSizes(f *fakeServer) []string {
	var out []string
	for _, e := range f.sequence() {
		var first, last, total int64
		if _, err := fmt.Sscanf(e, "Fragment %d-%d/%d", &first, &last, &total); err == nil {
			out = append(out, fmt.Sprint(last-first+1))
		}
	}
	return out
}

// TestExchangeTimeExcludesDial: the round trip that sets the target time
// of fragments is measured on the connection, without its dial, so that
// the first request of an upload does not inflate it.
func TestExchangeTimeExcludesDial(t *testing.T) {
	// The fake server advances the clock by each fragment's time on the link.
	clock := testutil.NewClock(time.Unix(1e9, 0))
	f := newFake(t)
	f.hook = func(f *fakeServer, w http.ResponseWriter, r *http.Request, p *protocol.Packet, n int) bool {
		clock.Advance(10 * time.Millisecond)
		return false
	}
	tr := NewTransport(nil)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		clock.Advance(5 * time.Second)
		return dial(ctx, network, addr)
	}
	c := newTestClient(t)
	c.HTTPClient = &http.Client{Transport: tr}
	c.now = clock.Now
	for i := range 2 {
		a, err := c.Send(context.Background(), f.url("/up/x"), &Packet{Type: protocol.PacketPing})
		if err != nil {
			t.Fatal(err)
		}
		if a.exchange != 10*time.Millisecond {
			t.Errorf("request %d: exchange took %v, want 10ms", i+1, a.exchange)
		}
	}
	if n := f.connCount(); n != 1 {
		t.Errorf("%d connections", n)
	}
}
