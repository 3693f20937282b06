package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// config holds the flags.
type config struct {
	caddy, dir                       string
	largeFiles, largeConc            int
	largeSize                        int64
	smallFiles, smallConc            int
	smallSize                        int64
	tinyFiles, tinyConc              int
	tinySize                         int64
	hugeSize, deliverySize, fragment int64
	runs                             int
	ping                             bool
	servers                          []string
	peers                            peerFlag
	minimal                          []string // servers also measured with the minimal generator
	url                              string   // a running server to load instead
	pid                              int      // its process, for CPU and memory
	syscallFiles, syscallConc        int
	s3                               s3Config
}

// load is an upload scenario's parameters.
type load struct {
	files    int
	size     int64
	fragment int64
	conc     int
	gen      string
}

// loadOf returns the parameters of an upload scenario, and false for
// another name.
func (cfg *config) loadOf(name string) (load, bool) {
	switch name {
	case "large":
		return load{cfg.largeFiles, cfg.largeSize, cfg.fragment, cfg.largeConc, genLean}, true
	case "small":
		return load{cfg.smallFiles, cfg.smallSize, cfg.fragment, cfg.smallConc, genLean}, true
	case "small-client":
		return load{cfg.smallFiles, cfg.smallSize, cfg.fragment, cfg.smallConc, genClient}, true
	case "tiny":
		return load{cfg.tinyFiles, cfg.tinySize, cfg.fragment, cfg.tinyConc, genLean}, true
	case "huge":
		return load{1, cfg.hugeSize, cfg.fragment, 1, genLean}, true
	}
	return load{}, false
}

// target is a server driven by a generator.
type target struct {
	server serverSpec
	gen    string
}

// result is one measured run, or the median of several.
type result struct {
	scenario, server, gen string
	bytes                 int64
	files                 int
	elapsed               time.Duration
	idleRSS, peakRSS      int64
	cpu                   time.Duration // server CPU time during the run
	userCPU               time.Duration // the part of cpu spent in user space
	storeCPU              time.Duration // s3: versitygw's CPU time during the run
	genCPU                time.Duration // generator CPU time during the run
	lat                   latencies     // of all runs
	runs                  int
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
	defer removeRetired()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	caddy, err := filepath.Abs(cfg.caddy)
	if err != nil {
		return err
	}
	for _, sc := range scenarios {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		var rs []result
		ld, isLoad := cfg.loadOf(sc)
		switch {
		case cfg.url != "":
			if !isLoad {
				return fmt.Errorf("%s: only upload scenarios can load -url", sc)
			}
			rs, err = externalScenario(cfg, sc, ld)
		case isLoad:
			rs, err = uploadScenario(cfg, self, caddy, sc, ld)
		case sc == "delivery":
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
		case sc == "s3":
			err = s3Scenario(os.Stdout, cfg, caddy)
			if err == nil {
				continue
			}
		case sc == "syscalls":
			err = syscallScenario(os.Stdout, cfg, self, caddy)
			if err == nil {
				continue
			}
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

// targets returns the servers that cfg names, each driven by gen, and
// after them those that -minimal names, driven by the minimal generator.
func (cfg *config) targets(gen string) []target {
	var specs []serverSpec
	for _, s := range cfg.servers {
		if s = strings.TrimSpace(s); s != "" {
			specs = append(specs, serverSpec{name: s})
		}
	}
	specs = append(specs, cfg.peers...)
	var ts []target
	for _, s := range specs {
		ts = append(ts, target{s, gen})
	}
	if gen == genLean {
		for _, s := range specs {
			if slices.Contains(cfg.minimal, s.name) {
				ts = append(ts, target{s, genMinimal})
			}
		}
	}
	return ts
}

// content returns size bytes of random content, or 256 MiB that repeat.
func content(size int64) ([]byte, error) {
	data := make([]byte, min(size, 256<<20))
	if _, err := rand.Read(data); err != nil {
		return nil, err
	}
	return data, nil
}

// uploadScenario uploads ld.files × ld.size bytes, ld.conc at a time, to
// each target's server in a fresh process.
func uploadScenario(cfg config, self, caddy, name string, ld load) ([]result, error) {
	data, err := content(ld.size)
	if err != nil {
		return nil, err
	}
	targets := cfg.targets(ld.gen)
	if len(targets) == 0 {
		return nil, fmt.Errorf("no servers to measure")
	}
	runs := make([][]result, len(targets))
	for i := range max(cfg.runs, 1) {
		for k := range targets {
			// Take turns, starting with another target each round.
			ti := (k + i) % len(targets)
			t := targets[ti]
			// Start every measurement with no dirty pages left over from
			// the previous one, whose writeback would otherwise compete.
			syscall.Sync()
			dir := filepath.Join(cfg.dir, fmt.Sprintf("%s-%s-%s-%d", name, t.server.name, t.gen, i))
			srv, err := startServer(t.server, self, caddy, dir, "")
			if err != nil {
				return nil, err
			}
			j := &job{addr: srv.addr, prefix: "/bench", data: data, files: ld.files, size: ld.size,
				fragment: ld.fragment, conc: ld.conc, ping: cfg.ping}
			lr, err := runLoad(t.gen, j)
			res := result{
				scenario: name, server: t.server.name, gen: t.gen,
				bytes: int64(ld.files) * ld.size, files: ld.files,
				elapsed: lr.elapsed, genCPU: lr.genCPU, lat: lr.lat,
				idleRSS: srv.idleRSS, peakRSS: srv.peakRSS(),
			}
			res.cpu, res.userCPU = srv.cpu()
			srv.stop()
			if err == nil && srv.root != "" {
				err = verify(srv.root, data, ld.files, ld.size)
			}
			if err != nil {
				return nil, fmt.Errorf("%s with %s generator: %w (server log in %s)", t.server.name, t.gen, err, dir)
			}
			if err := retire(dir); err != nil {
				return nil, err
			}
			runs[ti] = append(runs[ti], res)
		}
	}
	var out []result
	for _, rs := range runs {
		out = append(out, median(rs))
	}
	return out, nil
}

// externalScenario loads the server at cfg.url, which bitsbench did not
// start, -runs times. The uploads go to fresh names under
// /bitsbench-<time>/ and are not verified.
func externalScenario(cfg config, name string, ld load) ([]result, error) {
	u, err := url.Parse(cfg.url)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http://host:port", cfg.url)
	}
	data, err := content(ld.size)
	if err != nil {
		return nil, err
	}
	var rs []result
	for range max(cfg.runs, 1) {
		j := &job{addr: u.Host, prefix: fmt.Sprintf("%s/bitsbench-%d", strings.TrimSuffix(u.Path, "/"), time.Now().UnixNano()),
			data: data, files: ld.files, size: ld.size, fragment: ld.fragment, conc: ld.conc, ping: cfg.ping}
		var user0, sys0 time.Duration
		var idle int64
		if cfg.pid > 0 {
			user0, sys0 = procTimes(cfg.pid)
			idle = procStatus(cfg.pid, "VmRSS")
		}
		lr, err := runLoad(ld.gen, j)
		if err != nil {
			return nil, err
		}
		r := result{scenario: name, server: cfg.url, gen: ld.gen, bytes: int64(ld.files) * ld.size, files: ld.files,
			elapsed: lr.elapsed, genCPU: lr.genCPU, lat: lr.lat}
		if cfg.pid > 0 {
			user, sys := procTimes(cfg.pid)
			r.cpu, r.userCPU = user-user0+sys-sys0, user-user0
			// The peak since the process started, against the resident
			// size before this run.
			r.idleRSS, r.peakRSS = idle, procStatus(cfg.pid, "VmHWM")
		}
		rs = append(rs, r)
	}
	return []result{median(rs)}, nil
}

// median returns the run of median duration, with the highest peak RSS of
// all runs and the latencies of all runs.
func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].elapsed < rs[j].elapsed })
	m := rs[len(rs)/2]
	var lat latencies
	for _, r := range rs {
		m.peakRSS = max(m.peakRSS, r.peakRSS)
		lat.add(&r.lat)
	}
	m.lat = lat
	m.runs = len(rs)
	return m
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

	data, err := content(cfg.deliverySize)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.dir, "delivery")
	syscall.Sync()
	srv, err := startServer(serverSpec{name: "bits_upload"}, "", caddy, dir, "notify "+app.URL+"/done")
	if err != nil {
		return nil, err
	}
	j := &job{addr: srv.addr, prefix: "/bench", data: data, files: 1, size: cfg.deliverySize, fragment: cfg.fragment, conc: 1}
	_, err = runLoad(genLean, j)
	peak := srv.peakRSS()
	srv.stop()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	mu.Lock()
	delivered := result{scenario: "delivery", server: "bits_upload", gen: "by value", bytes: got, files: 1, elapsed: took, idleRSS: srv.idleRSS, peakRSS: peak}
	mu.Unlock()

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
	base := result{scenario: "delivery", server: "baseline", gen: "POST", bytes: got, files: 1, elapsed: took}
	mu.Unlock()
	os.RemoveAll(dir)
	return []result{delivered, base}, nil
}

// percentile returns the nearest-rank p-th percentile of ds (sorted in
// place), or 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

// ms formats the p-th percentile of ds in milliseconds, or "-".
func ms(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(percentile(ds, p))/1e6)
}

// report prints a scenario's results with ratios to the baseline (the
// one driven by the same generator as the first row, if there is one),
// and then the Ack latencies by packet type.
func report(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	var base result
	for _, r := range rs {
		if r.server == "baseline" && (r.gen == rs[0].gen || base.elapsed == 0) {
			base = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tgenerator\truns\tuploads\tMB\tseconds\tuploads/s\tMB/s\tratio\tserver CPU s\tserver CPU µs/upload\tof which user µs\tgenerator CPU s\tidle RSS MiB\tpeak-idle MiB\tAck p50 ms\tAck p99 ms\t")
	for _, r := range rs {
		ratio := "-"
		if base.elapsed > 0 {
			ratio = fmt.Sprintf("%.2f", r.mbps()/base.mbps())
		}
		idle, over := "-", "-"
		if r.peakRSS > 0 {
			idle = fmt.Sprintf("%.1f", float64(r.idleRSS)/(1<<20))
			over = fmt.Sprintf("%.1f", float64(r.peakRSS-r.idleRSS)/(1<<20))
		}
		cpu, per, user, gcpu := "-", "-", "-", "-"
		if r.cpu > 0 {
			cpu = fmt.Sprintf("%.2f", r.cpu.Seconds())
			per = fmt.Sprintf("%.0f", float64(r.cpu.Microseconds())/float64(r.files))
			user = fmt.Sprintf("%.0f", float64(r.userCPU.Microseconds())/float64(r.files))
		}
		if r.genCPU > 0 {
			gcpu = fmt.Sprintf("%.2f", r.genCPU.Seconds())
		}
		frags := r.lat.fragments()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f\t%.2f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.scenario, r.server, r.gen, max(r.runs, 1), r.files, float64(r.bytes)/1e6, r.elapsed.Seconds(),
			r.fps(), r.mbps(), ratio, cpu, per, user, gcpu, idle, over, ms(frags, 50), ms(frags, 99))
	}
	tw.Flush()
	reportLatencies(w, rs)
}

// reportLatencies prints the Ack latencies of rs by packet type, after an
// empty line.
func reportLatencies(w io.Writer, rs []result) {
	fmt.Fprintln(w)
	if !slices.ContainsFunc(rs, func(r result) bool { return len(r.lat.create) > 0 }) {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "Ack latency ms\tserver\tgenerator\tcreate p50\tp99\tfragment p50\tp99\tfinal fragment p50\tp99\tclose p50\tp99\t")
	for _, r := range rs {
		if len(r.lat.create) == 0 {
			continue
		}
		l := r.lat
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.scenario, r.server, r.gen,
			ms(l.create, 50), ms(l.create, 99), ms(l.fragment, 50), ms(l.fragment, 99),
			ms(l.final, 50), ms(l.final, 99), ms(l.close, 50), ms(l.close, 99))
	}
	tw.Flush()
	fmt.Fprintln(w)
}
