package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
)

// The link the shaped benchmarks upload through: 100 Mbit/s each way and
// a round trip of 50 ms, a fast office uplink to a server in another
// region.
const (
	shapedDelay = 25 * time.Millisecond // one way
	shapedRate  = 12.5e6                // bytes per second
)

// sizing is a fragment size setting of the benchmarks; 0 is adaptive.
type sizing int64

func (s sizing) String() string {
	switch {
	case s == 0:
		return "adaptive"
	case s%(1<<20) == 0:
		return fmt.Sprintf("fixed-%dMiB", s>>20)
	}
	return fmt.Sprintf("fixed-%dKiB", s>>10)
}

// plainCaddyfile is a bits_upload site on 127.0.0.1 with the defaults.
const plainCaddyfile = `{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
}
http://127.0.0.1:%d {
	bits_upload {
		root ./uploads
	}
}
`

// BenchmarkFragmentSizing compares adaptive fragment sizes with fixed
// ones, uploading to the built Caddy with bits_upload through loopback
// and through a proxy that shapes loopback into a 100 Mbit/s link with a
// 50 ms round trip. Each iteration uploads the file once with every
// sizing, in an order that rotates from one iteration to the next, so that
// the sizings share the machine's noise; the metrics are the median
// throughput of each sizing and the median over the iterations of the
// ratio of the adaptive one to the fixed size with the best median. The
// shaped run also reports what the proxy carries as a plain
// TCP stream, shaped and unshaped, to show that the link, not the proxy,
// limits the uploads.
//
//	go test -run '^$' -bench FragmentSizing -benchtime 5x ./cmd/bitsup
func BenchmarkFragmentSizing(b *testing.B) {
	dir := b.TempDir()
	admin, port := testutil.FreePort(b), testutil.FreePort(b)
	testutil.StartCaddy(b, dir, fmt.Sprintf(plainCaddyfile, admin, port), admin)
	target := fmt.Sprintf("127.0.0.1:%d", port)

	b.Run("loopback", func(b *testing.B) {
		benchSizings(b, dir, target, 256<<20, []sizing{0, 256 << 10, 1 << 20, 4 << 20, client.MaxFragmentSize})
	})
	b.Run("shaped", func(b *testing.B) {
		link := newShapedLink(b, target, shapedDelay, shapedRate)
		benchSizings(b, dir, link.addr(), 64<<20, []sizing{0, 1 << 20, 4 << 20, client.MaxFragmentSize})
		b.ReportMetric(streamRate(b, shapedDelay, shapedRate, 64<<20), "tcp-stream-MB/s")
		b.ReportMetric(streamRate(b, 0, 0, 1<<30), "unshaped-proxy-MB/s")
	})
}

// benchSizings uploads a file of size bytes to addr with each sizing per
// iteration and reports the medians.
func benchSizings(b *testing.B, dir, addr string, size int64, sizings []sizing) {
	src := filepath.Join(dir, "src.bin")
	want := randomFile(b, src, size)
	rates := map[sizing][]float64{}
	frags := map[sizing][]float64{}
	checked := map[sizing]bool{}
	round := 0
	for b.Loop() {
		for i := range sizings {
			s := sizings[(round+i)%len(sizings)]
			c := &client.Client{FragmentSize: int64(s)}
			name := fmt.Sprintf("bench/%s-%d.bin", s, round)
			syscall.Sync() // no writeback of earlier runs during this one
			start := time.Now()
			res, err := c.UploadFile(context.Background(), "http://"+addr+"/"+name, src, nil)
			took := time.Since(start)
			c.CloseIdleConnections()
			if err != nil {
				b.Fatalf("%s: %v", s, err)
			}
			dst := filepath.Join(dir, "uploads", filepath.FromSlash(name))
			if !checked[s] {
				if fileSum(b, dst) != want {
					b.Fatalf("%s: the uploaded file differs from the source", s)
				}
				checked[s] = true
			}
			os.Remove(dst)
			rates[s] = append(rates[s], float64(size)/took.Seconds()/1e6)
			frags[s] = append(frags[s], float64(res.Fragments))
		}
		round++
	}
	var best sizing
	for _, s := range sizings {
		m := median(rates[s])
		b.ReportMetric(m, s.String()+"-MB/s")
		if s != 0 && (best == 0 || m > median(rates[best])) {
			best = s
		}
	}
	// The ratio is taken per iteration, between uploads that ran one
	// after the other, and its median reported: slow drifts of the
	// machine's load cancel out.
	var ratios []float64
	for i := range rates[0] {
		ratios = append(ratios, rates[0][i]/rates[best][i])
	}
	b.ReportMetric(median(frags[0]), "adaptive-fragments")
	b.ReportMetric(median(ratios), "adaptive/best-fixed")
	b.SetBytes(size * int64(len(sizings)))
}

// streamRate sends size bytes as one TCP stream through a proxy with the
// given shaping (none when rate is 0) to a server that discards them, and
// returns the rate in MB/s.
func streamRate(b *testing.B, delay time.Duration, rate float64, size int64) float64 {
	b.Helper()
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := sink.Accept()
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte{1})
		c.Close()
		got <- n
	}()
	l := newShapedLink(b, sink.Addr().String(), delay, rate)
	c, err := net.Dial("tcp", l.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.CopyN(c, zeros{}, size); err != nil {
		b.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	if n := <-got; n != size {
		b.Fatalf("the sink got %d bytes of %d", n, size)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6
}

// zeros reads zeros.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkHTTPSvsHTTP uploads one 256 MiB file with bitsup (its command
// line, as users run it) to the built Caddy over plain HTTP and over
// HTTPS with Caddy's internal CA, alternating, and reports the median
// throughput of each and the median of their ratio per iteration.
//
//	go test -run '^$' -bench HTTPSvsHTTP -benchtime 5x ./cmd/bitsup
func BenchmarkHTTPSvsHTTP(b *testing.B) {
	dir := b.TempDir()
	admin, httpPort, httpsPort, redirectPort := testutil.FreePort(b), testutil.FreePort(b), testutil.FreePort(b), testutil.FreePort(b)
	p := testutil.StartCaddy(b, dir, fmt.Sprintf(`{
	skip_install_trust
	admin 127.0.0.1:%d
	persist_config off
	http_port %d
	https_port %d
}
http://127.0.0.1:%d, https://localhost:%d {
	tls internal
	bits_upload {
		root ./uploads
	}
}
`, admin, redirectPort, httpsPort, httpPort, httpsPort), admin)
	ca := p.RootCA()
	const size = 256 << 20
	src := filepath.Join(dir, "src.bin")
	want := randomFile(b, src, size)
	urls := map[string]string{
		"http":  fmt.Sprintf("http://127.0.0.1:%d/", httpPort),
		"https": fmt.Sprintf("https://localhost:%d/", httpsPort),
	}
	order := []string{"http", "https"}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := runUntil(b, time.Minute, "ping", urls["https"]+"x", "--ca-cert", ca); err == nil {
			break
		} else if time.Now().After(deadline) {
			b.Fatalf("the HTTPS site does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rates := map[string][]float64{}
	round := 0
	for b.Loop() {
		for i := range order {
			scheme := order[(round+i)%len(order)]
			name := fmt.Sprintf("%s-%d.bin", scheme, round)
			syscall.Sync()
			start := time.Now()
			out, err := runUntil(b, 10*time.Minute, "upload", src, urls[scheme]+name, "--ca-cert", ca)
			took := time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v\n%s", scheme, err, out)
			}
			dst := filepath.Join(dir, "uploads", name)
			if round == 0 && fileSum(b, dst) != want {
				b.Fatalf("%s: the uploaded file differs from the source", scheme)
			}
			if !strings.Contains(out, "uploaded ") {
				b.Fatalf("%s: output %q", scheme, out)
			}
			os.Remove(dst)
			rates[scheme] = append(rates[scheme], size/took.Seconds()/1e6)
		}
		round++
	}
	var ratios []float64
	for i := range rates["http"] {
		ratios = append(ratios, rates["https"][i]/rates["http"][i])
	}
	b.ReportMetric(median(rates["http"]), "http-MB/s")
	b.ReportMetric(median(rates["https"]), "https-MB/s")
	b.ReportMetric(median(ratios), "https/http")
	b.SetBytes(2 * size)
}
