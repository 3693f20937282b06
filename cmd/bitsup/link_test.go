package main

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// shapedLink is a TCP proxy on loopback that models a network link: each
// direction carries at most rate bytes per second and delivers every byte
// delay after it left the sender's side of the bottleneck. Bytes that
// arrive faster than the rate wait in a queue of at most queue worth of
// transmission time; beyond that the proxy stops reading, so the sender's
// TCP backs off as it would behind a full router queue, without losses.
type shapedLink struct {
	ln     net.Listener
	target string
	delay  time.Duration
	rate   float64 // bytes per second; 0: unlimited
	queue  time.Duration

	mu    sync.Mutex
	conns []net.Conn
}

// chunkSize is the most one read of the proxy forwards as a unit.
const chunkSize = 16 << 10

// newShapedLink starts a proxy to target on 127.0.0.1 that stops when the
// benchmark or test ends.
func newShapedLink(tb testing.TB, target string, delay time.Duration, rate float64) *shapedLink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &shapedLink{ln: ln, target: target, delay: delay, rate: rate, queue: 20 * time.Millisecond}
	go l.serve()
	tb.Cleanup(l.close)
	return l
}

// addr is the address clients connect to.
func (l *shapedLink) addr() string { return l.ln.Addr().String() }

func (l *shapedLink) close() {
	l.ln.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

func (l *shapedLink) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, c, s)
		l.mu.Unlock()
		go l.pipe(c.(*net.TCPConn), s.(*net.TCPConn))
		go l.pipe(s.(*net.TCPConn), c.(*net.TCPConn))
	}
}

// chunk is data in flight with the time it reaches the far end.
type chunk struct {
	data []byte
	at   time.Time
}

// pipe carries one direction of a connection.
func (l *shapedLink) pipe(src, dst *net.TCPConn) {
	// Enough room for everything that can be in flight or queued.
	inFlight := make(chan chunk, 4096)
	go func() {
		defer close(inFlight)
		var next time.Time // when the bottleneck is free again
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				now := time.Now()
				if next.Before(now) {
					next = now
				}
				if l.rate > 0 {
					next = next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
				}
				inFlight <- chunk{buf[:n], next.Add(l.delay)}
				if wait := time.Until(next) - l.queue; wait > 0 {
					time.Sleep(wait) // the queue is full: stop reading
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range inFlight {
		if wait := time.Until(c.at); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			for range inFlight {
			}
			return
		}
	}
	_ = dst.CloseWrite()
}

// TestShapedLink checks the proxy's model: the round trip of a small
// message takes twice the delay, and a bulk transfer takes its size over
// the rate.
func TestShapedLink(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				c.Write(buf)
				io.Copy(io.Discard, c) // then a bulk transfer
				c.Write([]byte{2})
			}()
		}
	}()
	const delay, rate, size = 30 * time.Millisecond, 4e6, 2e6
	l := newShapedLink(t, echo.Addr().String(), delay, rate)
	c, err := net.Dial("tcp", l.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 1)
	c.Write([]byte{1})
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Errorf("round trip %v, want at least %v", rtt, 2*delay)
	}
	start = time.Now()
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 2 {
		t.Fatal(err)
	}
	if took, least := time.Since(start), time.Duration(size/rate*float64(time.Second))+2*delay; took < least {
		t.Errorf("%d bytes took %v, want at least %v at %v bytes/s", int(size), took, least, rate)
	}
}
