package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/caddy-bits/caddy-bits/client"
)

// config holds the flags.
type config struct {
	caddy, dir                       string
	largeFiles, largeConc            int
	largeSize                        int64
	smallFiles, smallConc            int
	smallSize                        int64
	hugeSize, deliverySize, fragment int64
	runs                             int
}

// result is one measured run.
type result struct {
	scenario, server string
	bytes            int64
	files            int
	elapsed          time.Duration
	idleRSS, peakRSS int64
	cpu              time.Duration // server CPU time during the run
	runs             int
}

func (r result) mbps() float64 { return float64(r.bytes) / r.elapsed.Seconds() / 1e6 }
func (r result) fps() float64  { return float64(r.files) / r.elapsed.Seconds() }

func run(cfg config, scenarios []string) error {
	if cfg.dir == "" {
		d, err := os.MkdirTemp("", "bitsbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.dir = d
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	caddy, err := filepathAbs(cfg.caddy)
	if err != nil {
		return err
	}
	for _, sc := range scenarios {
		sc = strings.TrimSpace(sc)
		var rs []result
		switch sc {
		case "large":
			rs, err = uploadScenario(cfg, self, caddy, sc, cfg.largeFiles, cfg.largeSize, cfg.largeConc)
		case "small":
			rs, err = uploadScenario(cfg, self, caddy, sc, cfg.smallFiles, cfg.smallSize, cfg.smallConc)
		case "huge":
			rs, err = uploadScenario(cfg, self, caddy, sc, 1, cfg.hugeSize, 1)
		case "delivery":
			var all [2][]result
			for range max(cfg.runs, 1) {
				var one []result
				if one, err = deliveryScenario(cfg, caddy); err != nil {
					break
				}
				all[0], all[1] = append(all[0], one[0]), append(all[1], one[1])
			}
			if err == nil {
				rs = []result{median(all[0]), median(all[1])}
			}
		case "":
			continue
		default:
			err = fmt.Errorf("unknown scenario %q", sc)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc, err)
		}
		report(os.Stdout, rs)
	}
	return nil
}

// uploadScenario uploads files × size bytes, conc at a time, to each
// server in a fresh process.
func uploadScenario(cfg config, self, caddy, name string, files int, size int64, conc int) ([]result, error) {
	data := make([]byte, min(size, 256<<20))
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	kinds := []string{"bits_upload", "baseline", "baseline-nofsync"}
	runs := make(map[string][]result)
	for i := range max(cfg.runs, 1) {
		for k := range kinds {
			// Take turns, starting with another server each round.
			kind := kinds[(k+i)%len(kinds)]
			// Start every measurement with no dirty pages left over from
			// the previous one, whose writeback would otherwise compete.
			syscall.Sync()
			dir := filepath.Join(cfg.dir, name+"-"+kind)
			srv, err := startServer(kind, self, caddy, dir, "")
			if err != nil {
				return nil, err
			}
			res, err := load(srv.url, data, files, size, conc, cfg.fragment)
			res.scenario, res.server = name, kind
			res.idleRSS = srv.idleRSS
			res.peakRSS = srv.peakRSS()
			res.cpu = srv.cpu() - srv.idleCPU
			srv.stop()
			if err == nil {
				err = verify(srv.root, data, files, size)
			}
			os.RemoveAll(dir)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kind, err)
			}
			runs[kind] = append(runs[kind], res)
		}
	}
	var out []result
	for _, kind := range kinds {
		out = append(out, median(runs[kind]))
	}
	return out, nil
}

// median returns the run of median duration, with the highest peak RSS of
// all runs.
func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].elapsed < rs[j].elapsed })
	m := rs[len(rs)/2]
	for _, r := range rs {
		m.peakRSS = max(m.peakRSS, r.peakRSS)
	}
	m.runs = len(rs)
	return m
}

// load runs the uploads and times them.
func load(base string, data []byte, files int, size int64, conc int, fragment int64) (result, error) {
	src := &repeatReader{data: data, size: size}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			c := &client.Client{FragmentSize: fragment, RetryDelay: 50 * time.Millisecond}
			defer c.CloseIdleConnections()
			for {
				i := next.Add(1) - 1
				if i >= int64(files) {
					return
				}
				url := fmt.Sprintf("%s/bench/%d/f%d.bin", base, i%64, i)
				if _, err := c.Upload(context.Background(), url, src, size, nil); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("upload %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return result{bytes: int64(files) * size, files: files, elapsed: time.Since(start)}, firstErr
}

// verify checks that every file arrived byte for byte.
func verify(root string, data []byte, files int, size int64) error {
	want := sha256.New()
	if _, err := io.Copy(want, io.NewSectionReader(&repeatReader{data: data, size: size}, 0, size)); err != nil {
		return err
	}
	sum := want.Sum(nil)
	for i := range files {
		p := filepath.Join(root, "bench", fmt.Sprint(i%64), fmt.Sprintf("f%d.bin", i))
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), sum) {
			return fmt.Errorf("%s differs from what was uploaded", p)
		}
	}
	return nil
}

// repeatReader is an io.ReaderAt of size bytes that repeats data.
type repeatReader struct {
	data []byte
	size int64
}

func (r *repeatReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < r.size {
		k := copy(p[n:], r.data[off%int64(len(r.data)):])
		if rem := r.size - off; int64(k) > rem {
			k = int(rem)
		}
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// deliveryScenario uploads one file to bits_upload with a by-value
// notification and measures the delivery as the application sees it,
// against a plain POST of the same file from disk to the same application.
func deliveryScenario(cfg config, caddy string) ([]result, error) {
	var mu sync.Mutex
	var took time.Duration
	var got int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n, _ := io.Copy(io.Discard, r.Body)
		mu.Lock()
		took, got = time.Since(start), n
		mu.Unlock()
		w.Header().Set("BITS-Copy-File-To-Destination", "1")
	}))
	defer app.Close()

	data := make([]byte, min(cfg.deliverySize, 256<<20))
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.dir, "delivery")
	syscall.Sync()
	srv, err := startServer("bits_upload", "", caddy, dir, "notify "+app.URL+"/done")
	if err != nil {
		return nil, err
	}
	res, err := load(srv.url, data, 1, cfg.deliverySize, 1, cfg.fragment)
	peak := srv.peakRSS()
	srv.stop()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	mu.Lock()
	delivered := result{scenario: "delivery", server: "bits_upload", bytes: got, files: 1, elapsed: took, idleRSS: srv.idleRSS, peakRSS: peak}
	mu.Unlock()
	_ = res

	// The baseline: the same bytes POSTed from a file with net/http.
	path := filepath.Join(dir, "file.bin")
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, io.NewSectionReader(&repeatReader{data: data, size: cfg.deliverySize}, 0, cfg.deliverySize))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return nil, err
	}
	f, err = os.Open(path)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/done", f)
	req.ContentLength = cfg.deliverySize
	resp, err := http.DefaultClient.Do(req)
	f.Close()
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	mu.Lock()
	base := result{scenario: "delivery", server: "baseline", bytes: got, files: 1, elapsed: took}
	mu.Unlock()
	os.RemoveAll(dir)
	return []result{delivered, base}, nil
}

// report prints a scenario's results with ratios to the baseline.
func report(w io.Writer, rs []result) {
	var base result
	for _, r := range rs {
		if r.server == "baseline" {
			base = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\truns\tfiles\tMB\tseconds\tMB/s\tfiles/s\tratio\tserver CPU s\tidle RSS MiB\tpeak RSS MiB\tpeak-idle MiB\t")
	for _, r := range rs {
		ratio := r.mbps() / base.mbps()
		idle, peak, over := "-", "-", "-"
		if r.peakRSS > 0 {
			idle = fmt.Sprintf("%.1f", float64(r.idleRSS)/(1<<20))
			peak = fmt.Sprintf("%.1f", float64(r.peakRSS)/(1<<20))
			over = fmt.Sprintf("%.1f", float64(r.peakRSS-r.idleRSS)/(1<<20))
		}
		cpu := "-"
		if r.cpu > 0 {
			cpu = fmt.Sprintf("%.2f", r.cpu.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.2f\t%.1f\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t\n",
			r.scenario, r.server, max(r.runs, 1), r.files, float64(r.bytes)/1e6, r.elapsed.Seconds(), r.mbps(), r.fps(), ratio, cpu, idle, peak, over)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
