package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/dustin/go-humanize"

	"github.com/caddy-bits/caddy-bits/internal/repodir"
)

// versitygwEnv names the environment variable that points at a versitygw
// binary, as it does for the tests.
const versitygwEnv = "CADDY_BITS_VERSITYGW"

// versitygwInstall is how to get versitygw, as test.sh does.
const versitygwInstall = "GOBIN=$PWD/.bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// s3Bucket is the bucket the s3 scenario uploads to.
const s3Bucket = "bitsbench"

// The servers of the s3 scenario.
const (
	s3Module = "bits_upload" // Caddy with storage s3, driven by the lean generator
	s3Direct = "direct"      // the SDK's multipart API, called by bitsbench
)

// s3Config holds the flags of the s3 scenario.
type s3Config struct {
	versitygw string
	files     int
	sizes     sizeList
	conc      int
	partSize  byteSize
}

// byteSize is a flag of a positive number of bytes, with an optional unit
// such as KiB, MiB and GiB, or kB, MB and GB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// sizeList is a flag of comma-separated sizes, as byteSize takes them.
type sizeList []int64

func (l *sizeList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.FormatInt(n, 10)
	}
	return strings.Join(s, ",")
}

func (l *sizeList) Set(v string) error {
	var sizes []int64
	for f := range strings.SplitSeq(v, ",") {
		n, err := parseSize(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		sizes = append(sizes, n)
	}
	*l = sizes
	return nil
}

// parseSize parses a positive size such as 1048576, 16MiB or 1GB.
func parseSize(v string) (int64, error) {
	n, err := humanize.ParseBytes(v)
	switch {
	case err != nil || strings.HasPrefix(v, "-"):
		return 0, fmt.Errorf("%q is not a size such as 16MiB or 1048576", v)
	case n == 0:
		return 0, fmt.Errorf("size %q is not positive", v)
	case n > math.MaxInt64:
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return int64(n), nil
}

// partSizeFor returns the part size of an upload of total bytes, as
// s3store chooses it: partSize, or a whole number of MiB large enough
// for the upload to fit in 10,000 parts.
func partSizeFor(partSize, total int64) int64 {
	need := (total + 10_000 - 1) / 10_000
	return max(partSize, (need+1<<20-1)&^(1<<20-1))
}

// findVersitygw returns the versitygw binary to run: the one -versitygw
// names, else $CADDY_BITS_VERSITYGW, else .bin/versitygw in the
// repository above the working directory (where test.sh installs it),
// else versitygw on the PATH.
func findVersitygw(flagValue string) (string, error) {
	for _, p := range []string{flagValue, os.Getenv(versitygwEnv)} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", fmt.Errorf("versitygw %s: not a file", p)
		}
		return p, nil
	}
	if p, err := repodir.Bin("versitygw"); err == nil {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no versitygw binary: give -versitygw PATH or set $%s, or install it into the repository's .bin with %q, as test.sh does", versitygwEnv, versitygwInstall)
}

// gateway is a versitygw process serving a fresh directory with one
// bucket.
type gateway struct {
	cmd       *exec.Cmd
	pid       int
	endpoint  string // http://127.0.0.1:port
	dir       string // the directory it keeps its buckets in
	accessKey string
	secretKey string
	exited    chan struct{} // closed when the process has exited
}

// startGateway starts versitygw on a free 127.0.0.1 port with its
// buckets in a new directory under dir, waits until it answers, and creates s3Bucket.
func startGateway(bin, dir string) (*gateway, error) {
	g := &gateway{dir: filepath.Join(dir, "buckets"), accessKey: "bench" + randomHex(6), secretKey: randomHex(20)}
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	g.endpoint = "http://" + addr
	logPath := filepath.Join(dir, "versitygw.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	g.cmd = exec.Command(bin, "--port", addr, "--quiet", "--keep-alive", "posix", g.dir)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+g.accessKey, "ROOT_SECRET_ACCESS_KEY="+g.secretKey)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting versitygw: %w", err)
	}
	g.pid = g.cmd.Process.Pid
	g.exited = make(chan struct{})
	go func() {
		_ = g.cmd.Wait()
		close(g.exited)
	}()

	ctx := context.Background()
	client, err := g.client(ctx)
	if err != nil {
		g.stop()
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := client.ListBuckets(rctx, &s3.ListBucketsInput{})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-g.exited:
			return nil, fmt.Errorf("versitygw exited: %s", logTail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("versitygw did not answer on %s: %w; its output: %s", addr, err, logTail(logPath))
		}
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)}); err != nil {
		g.stop()
		return nil, fmt.Errorf("creating bucket %s: %w", s3Bucket, err)
	}
	return g, nil
}

// logTail returns the last lines of the log at path, for an error
// message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimSpace(b)
	if len(b) > 1000 {
		b = b[len(b)-1000:]
	}
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// client returns a new S3 client for the gateway, configured as the s3
// storage configures its own: static credentials, path-style URLs, and
// checksums only where an operation requires them.
func (g *gateway) client(ctx context.Context) (*s3.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(g.accessKey, g.secretKey, "")),
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(g.endpoint)
		o.UsePathStyle = true
	}), nil
}

// stop kills the gateway and waits until it is gone.
func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
}

// storageBlock returns the storage subdirective of bits_upload that
// places uploads in the gateway's bucket.
func (g *gateway) storageBlock(partSize int64) string {
	return fmt.Sprintf(`storage s3 {
			bucket %s
			endpoint %s
			path_style
			access_key %s
			secret_key %s
			part_size %d
		}`, s3Bucket, g.endpoint, g.accessKey, g.secretKey, partSize)
}

// s3Set is the measurement of one file size: the median run of each
// path, and the ratio of the module's rate to the direct one in each
// round.
type s3Set struct {
	module, direct result
	ratios         []float64
}

// s3Scenario measures uploads into an S3 bucket served by versitygw: by
// BITS through Caddy with storage s3, against the same files sent
// straight to the gateway with the SDK's multipart API, the two taking
// turns, for each size of cfg.s3.sizes.
func s3Scenario(w io.Writer, cfg config, caddy string) error {
	sc := cfg.s3
	if sc.files <= 0 || sc.conc <= 0 {
		return errors.New("-s3-files and -s3-concurrency must be positive")
	}
	if sc.partSize < 5<<20 {
		return fmt.Errorf("-s3-part-size %d is below S3's least part size of 5 MiB", sc.partSize)
	}
	bin, err := findVersitygw(sc.versitygw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(cfg.dir, "s3-versitygw-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gw, err := startGateway(bin, dir)
	if err != nil {
		return err
	}
	defer gw.stop()
	var sets []s3Set
	for _, size := range sc.sizes {
		set, err := s3Measure(cfg, caddy, gw, size)
		if err != nil {
			return fmt.Errorf("%s files: %w", humanize.IBytes(uint64(size)), err)
		}
		sets = append(sets, set)
	}
	reportS3(w, cfg, bin, sets)
	return nil
}

// s3Measure measures one file size: -runs rounds, each of one run of
// each path, taking turns.
func s3Measure(cfg config, caddy string, gw *gateway, size int64) (s3Set, error) {
	data, err := content(size)
	if err != nil {
		return s3Set{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(&repeatReader{data: data, size: size}, 0, size)); err != nil {
		return s3Set{}, err
	}
	sum := h.Sum(nil)

	var set s3Set
	var modules, directs []result
	for i := range max(cfg.runs, 1) {
		var round [2]result
		for k := range 2 {
			// Take turns, starting with the other path each round, after
			// writing back what the previous run left dirty.
			syscall.Sync()
			var r result
			var keys []string
			var err error
			if (k+i)%2 == 0 {
				r, keys, err = s3ModuleRun(cfg, caddy, gw, data, size, i)
			} else {
				r, keys, err = s3DirectRun(cfg, gw, data, size, i)
			}
			if err == nil {
				err = gw.verify(keys, sum)
			}
			if err != nil {
				return s3Set{}, err
			}
			round[(k+i)%2] = r
		}
		modules, directs = append(modules, round[0]), append(directs, round[1])
		set.ratios = append(set.ratios, round[0].mbps()/round[1].mbps())
	}
	set.module, set.direct = median(modules), median(directs)
	return set, nil
}

// s3ModuleRun uploads the files by BITS through a fresh Caddy with
// storage s3, sc.conc at a time, with the lean generator. It returns the
// objects' keys.
func s3ModuleRun(cfg config, caddy string, gw *gateway, data []byte, size int64, round int) (result, []string, error) {
	sc := cfg.s3
	dir := filepath.Join(cfg.dir, fmt.Sprintf("s3-%s-%d", s3Module, round))
	srv, err := startServer(serverSpec{name: s3Module}, "", caddy, dir, gw.storageBlock(int64(sc.partSize)))
	if err != nil {
		return result{}, nil, fmt.Errorf("%s: %w (server log in %s)", s3Module, err, dir)
	}
	j := &job{addr: srv.addr, prefix: fmt.Sprintf("/%s-%d", s3Module, round), data: data, files: sc.files,
		size: size, fragment: cfg.fragment, conc: sc.conc, ping: cfg.ping}
	store0 := procCPU(gw.pid)
	lr, err := runLoad(genLean, j)
	res := result{
		scenario: "s3", server: s3Module, gen: genLean,
		bytes: int64(sc.files) * size, files: sc.files,
		elapsed: lr.elapsed, genCPU: lr.genCPU, lat: lr.lat,
		idleRSS: srv.idleRSS, peakRSS: srv.peakRSS(),
		storeCPU: procCPU(gw.pid) - store0,
	}
	res.cpu, res.userCPU = srv.cpu()
	srv.stop()
	if err != nil {
		return result{}, nil, fmt.Errorf("%s: %w (server log in %s)", s3Module, err, dir)
	}
	os.RemoveAll(dir)
	keys := make([]string, sc.files)
	for i := range keys {
		keys[i] = strings.TrimPrefix(j.path(int64(i)), "/")
	}
	return res, keys, nil
}

// s3DirectRun uploads the files straight to the gateway with the SDK's
// multipart API, sc.conc at a time, each in parts of the size the s3
// storage would use, one part after the other. It returns the objects'
// keys.
func s3DirectRun(cfg config, gw *gateway, data []byte, size int64, round int) (result, []string, error) {
	sc := cfg.s3
	ctx := context.Background()
	client, err := gw.client(ctx)
	if err != nil {
		return result{}, nil, err
	}
	keys := make([]string, sc.files)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%d/%d/f%d.bin", s3Direct, round, i%64, i)
	}
	part := partSizeFor(int64(sc.partSize), size)
	src := &repeatReader{data: data, size: size}

	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	cpu0, store0 := selfCPU(), procCPU(gw.pid)
	start := time.Now()
	for range min(sc.conc, sc.files) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(sc.files) {
					return
				}
				if err := putMultipart(ctx, client, keys[i], src, size, part); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", keys[i], err)
						next.Store(int64(sc.files)) // stop the others
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	res := result{
		scenario: "s3", server: s3Direct, gen: "sdk",
		bytes: int64(sc.files) * size, files: sc.files,
		elapsed: time.Since(start), genCPU: selfCPU() - cpu0,
		storeCPU: procCPU(gw.pid) - store0,
	}
	if firstErr != nil {
		return result{}, nil, fmt.Errorf("%s: %w", s3Direct, firstErr)
	}
	return res, keys, nil
}

// putMultipart uploads size bytes of src to key in s3Bucket with one
// multipart upload, in parts of part bytes sent one after the other.
func putMultipart(ctx context.Context, client *s3.Client, key string, src io.ReaderAt, size, part int64) error {
	out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s3Bucket), Key: aws.String(key),
	})
	if err != nil {
		return fmt.Errorf("creating the multipart upload: %w", err)
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+part, n+1 {
		p, err := client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s3Bucket), Key: aws.String(key), UploadId: out.UploadId,
			PartNumber: aws.Int32(n), ContentLength: aws.Int64(min(part, size-off)),
			Body: io.NewSectionReader(src, off, min(part, size-off)),
		})
		if err != nil {
			_, _ = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s3Bucket), Key: aws.String(key), UploadId: out.UploadId,
			})
			return fmt.Errorf("uploading part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{ETag: p.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s3Bucket), Key: aws.String(key), UploadId: out.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fmt.Errorf("completing the multipart upload: %w", err)
	}
	return nil
}

// verify checks that each object, as a file in the gateway's directory,
// has the SHA-256 sum want, and then deletes it.
func (g *gateway) verify(keys []string, want []byte) error {
	for _, key := range keys {
		p := filepath.Join(g.dir, s3Bucket, filepath.FromSlash(key))
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("object %s: %w", key, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("object %s: %w", key, err)
		}
		if !bytes.Equal(h.Sum(nil), want) {
			return fmt.Errorf("object %s differs from what was uploaded", key)
		}
	}
	ctx := context.Background()
	client, err := g.client(ctx)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s3Bucket), Key: aws.String(key)}); err != nil {
			return fmt.Errorf("deleting object %s: %w", key, err)
		}
	}
	return nil
}

// reportS3 prints the s3 scenario's results: for each file size the
// median run of each path, the ratio of their rates, the CPU time of
// Caddy, of versitygw and of bitsbench (the load generator, or the SDK
// client of the direct path), Caddy's memory, and then the ratio of each
// round and the Ack latencies of the module path.
func reportS3(w io.Writer, cfg config, bin string, sets []s3Set) {
	sc := cfg.s3
	fmt.Fprintf(w, "s3: %d files, %d at a time, fragments of %s, parts of %s, versitygw %s\n",
		sc.files, sc.conc, humanize.IBytes(uint64(cfg.fragment)), humanize.IBytes(uint64(sc.partSize)), bin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfile size\tpath\tgenerator\truns\tuploads\tMB\tseconds\tMB/s\tratio\tCaddy CPU s\tversitygw CPU s\tgenerator CPU s\ttotal CPU s\tCaddy idle RSS MiB\tCaddy peak-idle MiB\t")
	for _, s := range sets {
		for _, r := range []result{s.module, s.direct} {
			ratio, caddyCPU, idle, over := "-", "-", "-", "-"
			if r.server == s3Module {
				ratio = fmt.Sprintf("%.2f", s.module.mbps()/s.direct.mbps())
				caddyCPU = fmt.Sprintf("%.2f", r.cpu.Seconds())
				idle = fmt.Sprintf("%.1f", float64(r.idleRSS)/(1<<20))
				over = fmt.Sprintf("%.1f", float64(r.peakRSS-r.idleRSS)/(1<<20))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.0f\t%.2f\t%.1f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n",
				r.scenario, humanize.IBytes(uint64(r.bytes/int64(r.files))), r.server, r.gen, r.runs, r.files,
				float64(r.bytes)/1e6, r.elapsed.Seconds(), r.mbps(), ratio, caddyCPU,
				r.storeCPU.Seconds(), r.genCPU.Seconds(), (r.cpu + r.storeCPU + r.genCPU).Seconds(), idle, over)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, s := range sets {
		rs := make([]string, len(s.ratios))
		for i, r := range s.ratios {
			rs[i] = fmt.Sprintf("%.2f", r)
		}
		fmt.Fprintf(w, "s3 %s: %s ÷ %s in each round: %s\n", humanize.IBytes(uint64(s.module.bytes/int64(s.module.files))),
			s3Module, s3Direct, strings.Join(rs, " "))
	}
	lat := make([]result, 0, len(sets))
	for _, s := range sets {
		m := s.module
		m.scenario = "s3 " + humanize.IBytes(uint64(m.bytes/int64(m.files)))
		lat = append(lat, m)
	}
	reportLatencies(w, lat)
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
