package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// The load generators.
const (
	// genLean speaks raw HTTP/1.1 over one kept-alive connection per
	// worker and checks every Ack.
	genLean = "lean"
	// genMinimal is the same with no parsing beyond the status line and
	// the session id: the cheapest client that can still upload. It exists
	// to show that genLean is not what limits a server's rate.
	genMinimal = "minimal"
	// genClient is the realistic client: package client, as bitsup uses
	// it (with its Ping before each upload).
	genClient = "client"
)

// job is one load: files uploads of size bytes each, conc at a time.
type job struct {
	addr     string // host:port of the server
	prefix   string // URL path prefix of the uploads, such as "/bench"
	data     []byte // the content, repeated to size
	files    int
	size     int64
	fragment int64
	conc     int
	ping     bool // lean and minimal: Ping before each Create-Session
}

// path returns the URL path of upload i.
func (j *job) path(i int64) string {
	return fmt.Sprintf("%s/%d/f%d.bin", j.prefix, i%64, i)
}

// latencies holds the time from sending a request to having its Ack, by
// packet type.
type latencies struct {
	create, fragment, final, close []time.Duration
}

func (l *latencies) add(o *latencies) {
	l.create = append(l.create, o.create...)
	l.fragment = append(l.fragment, o.fragment...)
	l.final = append(l.final, o.final...)
	l.close = append(l.close, o.close...)
}

// fragments returns the latencies of all fragment requests, final or not.
func (l *latencies) fragments() []time.Duration {
	return append(append([]time.Duration(nil), l.fragment...), l.final...)
}

// loadResult is what a load measured on the client side.
type loadResult struct {
	elapsed time.Duration
	genCPU  time.Duration // CPU time of this process during the load
	lat     latencies
}

// runLoad runs j with the named generator.
func runLoad(gen string, j *job) (loadResult, error) {
	if j.size <= 0 || j.fragment <= 0 {
		return loadResult{}, fmt.Errorf("size and fragment must be positive")
	}
	if j.fragment > int64(len(j.data)) && j.size > int64(len(j.data)) {
		return loadResult{}, fmt.Errorf("fragment of %d bytes is larger than the %d bytes of content", j.fragment, len(j.data))
	}
	var newWorker func() (worker, error)
	switch gen {
	case genLean, genMinimal:
		newWorker = func() (worker, error) { return newRawWorker(j, gen == genMinimal), nil }
	case genClient:
		newWorker = func() (worker, error) { return newClientWorker(j), nil }
	default:
		return loadResult{}, fmt.Errorf("unknown generator %q", gen)
	}
	workers := make([]worker, j.conc)
	for k := range workers {
		w, err := newWorker()
		if err != nil {
			return loadResult{}, err
		}
		workers[k] = w
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()

	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	cpu0 := selfCPU()
	start := time.Now()
	for _, w := range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(j.files) {
					return
				}
				if err := w.upload(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("upload %d: %w", i, err)
						next.Store(int64(j.files)) // stop the others
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), genCPU: selfCPU() - cpu0}
	for _, w := range workers {
		res.lat.add(w.latencies())
	}
	return res, firstErr
}

// selfCPU returns the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// worker uploads files one after the other.
type worker interface {
	upload(i int64) error
	latencies() *latencies
	close()
}

// rawWorker is the lean (or minimal) generator's worker: one kept-alive
// connection, one request in flight, request heads formatted into a
// reused buffer and bodies written straight from the content with
// writev.
type rawWorker struct {
	j       *job
	minimal bool

	conn net.Conn
	br   *bufio.Reader // lean
	rbuf []byte        // minimal

	path []byte
	head []byte
	vec  [3][]byte
	sid  []byte
	a    ack
	lat  latencies
}

func newRawWorker(j *job, minimal bool) *rawWorker {
	w := &rawWorker{j: j, minimal: minimal, head: make([]byte, 0, 512), sid: make([]byte, 0, 64)}
	if minimal {
		w.rbuf = make([]byte, 4096)
	}
	per := j.files/j.conc + 1
	frags := int((j.size + j.fragment - 1) / j.fragment)
	w.lat = latencies{
		create:   make([]time.Duration, 0, per),
		fragment: make([]time.Duration, 0, per*(frags-1)),
		final:    make([]time.Duration, 0, per),
		close:    make([]time.Duration, 0, per),
	}
	return w
}

func (w *rawWorker) latencies() *latencies { return &w.lat }

func (w *rawWorker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *rawWorker) upload(i int64) error {
	j := w.j
	w.path = append(w.path[:0], j.prefix...)
	w.path = append(w.path, '/')
	w.path = strconv.AppendInt(w.path, i%64, 10)
	w.path = append(w.path, "/f"...)
	w.path = strconv.AppendInt(w.path, i, 10)
	w.path = append(w.path, ".bin"...)

	if j.ping {
		w.startHead("Ping")
		if _, err := w.roundTrip(0, 0); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}

	w.startHead("Create-Session")
	w.head = append(w.head, "BITS-Supported-Protocols: "+protocol.UploadProtocol+"\r\n"...)
	d, err := w.roundTrip(0, 0)
	if err != nil {
		return fmt.Errorf("create-session: %w", err)
	}
	w.lat.create = append(w.lat.create, d)
	if len(w.sid) == 0 {
		return errors.New("create-session: no BITS-Session-Id")
	}

	for off := int64(0); off < j.size; {
		n := min(j.fragment, j.size-off)
		w.startHead("Fragment")
		w.appendSession()
		w.head = append(w.head, "Content-Range: bytes "...)
		w.head = strconv.AppendInt(w.head, off, 10)
		w.head = append(w.head, '-')
		w.head = strconv.AppendInt(w.head, off+n-1, 10)
		w.head = append(w.head, '/')
		w.head = strconv.AppendInt(w.head, j.size, 10)
		w.head = append(w.head, "\r\n"...)
		d, err := w.roundTrip(off, n)
		if err != nil {
			return fmt.Errorf("fragment at %d: %w", off, err)
		}
		off += n
		if !w.minimal && w.a.received != off {
			return fmt.Errorf("fragment: BITS-Received-Content-Range %d, want %d", w.a.received, off)
		}
		if off == j.size {
			w.lat.final = append(w.lat.final, d)
		} else {
			w.lat.fragment = append(w.lat.fragment, d)
		}
	}

	w.startHead("Close-Session")
	w.appendSession()
	if d, err = w.roundTrip(0, 0); err != nil {
		return fmt.Errorf("close-session: %w", err)
	}
	w.lat.close = append(w.lat.close, d)
	return nil
}

// startHead begins a request head for a packet of the given type.
func (w *rawWorker) startHead(packet string) {
	w.head = append(w.head[:0], "BITS_POST "...)
	w.head = append(w.head, w.path...)
	w.head = append(w.head, " HTTP/1.1\r\nHost: "...)
	w.head = append(w.head, w.j.addr...)
	w.head = append(w.head, "\r\nBITS-Packet-Type: "...)
	w.head = append(w.head, packet...)
	w.head = append(w.head, "\r\n"...)
}

func (w *rawWorker) appendSession() {
	w.head = append(w.head, "BITS-Session-Id: "...)
	w.head = append(w.head, w.sid...)
	w.head = append(w.head, "\r\n"...)
}

// roundTrip ends the head with Content-Length, sends it with n bytes of
// the content from offset off, and reads the Ack, which must be a 200
// (or 201 for Create-Session). It returns how long that took.
func (w *rawWorker) roundTrip(off, n int64) (time.Duration, error) {
	w.head = append(w.head, "Content-Length: "...)
	w.head = strconv.AppendInt(w.head, n, 10)
	w.head = append(w.head, "\r\n\r\n"...)
	if w.conn == nil {
		c, err := net.Dial("tcp", w.j.addr)
		if err != nil {
			return 0, err
		}
		w.conn = c
		if !w.minimal {
			w.br = bufio.NewReaderSize(c, 4096)
		}
	}

	start := time.Now()
	var err error
	if n == 0 {
		_, err = w.conn.Write(w.head)
	} else {
		bufs := net.Buffers(append(w.vec[:0], w.head))
		data := w.j.data
		for n > 0 {
			p := off % int64(len(data))
			seg := data[p:min(int64(len(data)), p+n)]
			bufs = append(bufs, seg)
			off += int64(len(seg))
			n -= int64(len(seg))
		}
		_, err = bufs.WriteTo(w.conn)
	}
	if err == nil {
		if w.minimal {
			err = w.readMinimal()
		} else {
			err = w.readLean()
		}
	}
	d := time.Since(start)
	if err != nil {
		w.close()
	}
	return d, err
}

// readLean reads and checks an Ack.
func (w *rawWorker) readLean() error {
	a := &w.a
	if err := readAck(w.br, a); err != nil {
		return err
	}
	if a.close {
		w.close()
	}
	if a.status != http.StatusOK && a.status != http.StatusCreated {
		if len(a.errorCode) > 0 {
			return fmt.Errorf("status %d, BITS-Error-Code %s", a.status, a.errorCode)
		}
		return fmt.Errorf("status %d", a.status)
	}
	if !a.isAck {
		return errors.New("response is not a BITS Ack")
	}
	if len(a.sessionID) > 0 {
		w.sid = append(w.sid[:0], a.sessionID...)
	}
	return nil
}

// readMinimal reads a response head on the assumption that the body is
// empty, as every Ack's is, and checks only that the status is 200. It
// keeps BITS-Session-Id when there is one.
func (w *rawWorker) readMinimal() error {
	n := 0
	for {
		m, err := w.conn.Read(w.rbuf[n:])
		n += m
		if n >= 4 && bytes.Equal(w.rbuf[n-4:n], []byte("\r\n\r\n")) {
			break
		}
		if err != nil {
			return err
		}
		if n == len(w.rbuf) {
			return errors.New("response head too long")
		}
	}
	b := w.rbuf[:n]
	if n < 12 || string(b[9:12]) != "200" {
		return fmt.Errorf("response %q", b[:min(n, 12)])
	}
	if _, v, ok := bytes.Cut(b, []byte("Session-Id: ")); ok {
		v, _, _ = bytes.Cut(v, []byte("\r"))
		w.sid = append(w.sid[:0], v...)
	}
	return nil
}

// clientWorker uploads with package client.
type clientWorker struct {
	j   *job
	c   *client.Client
	src *repeatReader
	lat latencies
}

func newClientWorker(j *job) *clientWorker {
	w := &clientWorker{j: j, src: &repeatReader{data: j.data, size: j.size}}
	t := http.DefaultTransport.(*http.Transport).Clone()
	var protos http.Protocols
	protos.SetHTTP1(true)
	t.Protocols = &protos
	t.MaxIdleConnsPerHost = 4
	w.c = &client.Client{
		FragmentSize: j.fragment,
		RetryDelay:   50 * time.Millisecond,
		HTTPClient:   &http.Client{Transport: &timedTransport{base: t, lat: &w.lat}},
	}
	return w
}

func (w *clientWorker) latencies() *latencies { return &w.lat }

func (w *clientWorker) close() { w.c.CloseIdleConnections() }

func (w *clientWorker) upload(i int64) error {
	url := "http://" + w.j.addr + w.j.path(i)
	_, err := w.c.Upload(context.Background(), url, w.src, w.j.size, nil)
	return err
}

// timedTransport records the latency of each BITS request that goes
// through it. Acks have an empty body, so the round trip ends with the
// Ack.
type timedTransport struct {
	base http.RoundTripper
	lat  *latencies
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	d := time.Since(start)
	pt, _ := protocol.GetHeader(req.Header, protocol.HeaderPacketType)
	switch pt {
	case "Create-Session":
		t.lat.create = append(t.lat.create, d)
	case "Fragment":
		cr, _ := protocol.GetHeader(req.Header, "Content-Range")
		if r, err := protocol.ParseContentRange(cr); err == nil && r.IsFinal() {
			t.lat.final = append(t.lat.final, d)
		} else {
			t.lat.fragment = append(t.lat.fragment, d)
		}
	case "Close-Session":
		t.lat.close = append(t.lat.close, d)
	}
	return resp, nil
}
