package s3store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// testPart is the part size of the tests: the smallest S3 allows.
const testPart = MinPartSize

// counter is an http.RoundTripper that counts the requests it sends, by
// operation.
type counter struct {
	next http.RoundTripper
	n    atomic.Int64
	mu   sync.Mutex
	ops  map[string]int
}

func newCounter() *counter {
	return &counter{next: http.DefaultTransport.(*http.Transport).Clone(), ops: make(map[string]int)}
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.ops[operation(req)]++
	c.mu.Unlock()
	return c.next.RoundTrip(req)
}

// Count returns the number of requests sent so far.
func (c *counter) Count() int64 { return c.n.Load() }

// Ops returns the requests sent so far by operation, and starts counting
// again.
func (c *counter) Ops() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := c.ops
	c.ops = make(map[string]int)
	return ops
}

// operation names the S3 operation of a request.
func operation(req *http.Request) string {
	q := req.URL.Query()
	_, uploads := q["uploads"]
	switch {
	case req.Method == http.MethodPost && uploads:
		return "CreateMultipartUpload"
	case req.Method == http.MethodPut && q.Has("partNumber") && req.Header.Get("X-Amz-Copy-Source") != "":
		return "UploadPartCopy"
	case req.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case req.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case req.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case req.Method == http.MethodPut:
		return "PutObject"
	case req.Method == http.MethodHead:
		return "HeadObject"
	case req.Method == http.MethodGet:
		return "GetObject"
	case req.Method == http.MethodDelete:
		return "DeleteObject"
	}
	return req.Method
}

// env is a session store whose storage is a Storage on a versitygw
// gateway of its own.
type env struct {
	t     testing.TB
	srv   *testutil.S3Server
	cnt   *counter
	cfg   Config
	st    *Storage
	raw   *s3.Client // not counted
	dir   string
	store *session.Store
	clock *testutil.Clock
}

// newEnv starts a gateway and opens a store on it, with the test part
// size; mod may change the configuration first.
func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	srv := testutil.StartS3(t)
	e := &env{t: t, srv: srv, cnt: newCounter(), dir: t.TempDir(), clock: testutil.NewClock(time.Now().Truncate(time.Second))}
	e.cfg = Config{
		Bucket:    srv.Bucket,
		Endpoint:  srv.Endpoint,
		PathStyle: true,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		PartSize:  testPart,
		TailDir:   t.TempDir(),
	}
	if mod != nil {
		mod(&e.cfg)
	}
	raw := e.cfg
	e.raw = newStorage(t, raw).client
	counted := e.cfg
	counted.HTTPClient = &http.Client{Transport: e.cnt}
	e.st = newStorage(t, counted)
	e.cnt.Ops()
	e.cnt.n.Store(0)
	e.store = e.open(e.dir, e.st)
	return e
}

// newStorage returns a Storage for cfg, failing the test if it cannot.
func newStorage(t testing.TB, cfg Config) *Storage {
	t.Helper()
	st, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return st
}

// open opens a session store in dir with storage st, closed when the test
// ends.
func (e *env) open(dir string, st *Storage) *session.Store {
	e.t.Helper()
	store, err := session.Open(dir, session.Options{Storage: st, Now: e.clock.Now})
	if err != nil {
		e.t.Fatalf("Open(%s): %v", dir, err)
	}
	e.t.Cleanup(func() { _ = store.Close() })
	return store
}

// create makes a session of store with its destination at path.
func (e *env) create(store *session.Store, path string, digest bool) *session.Session {
	e.t.Helper()
	sess, err := store.Create(session.CreateInfo{Root: "/", Path: path, URL: "https://example.com/up/" + path, User: "alice", Client: "192.0.2.1:1234", Digest: digest})
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return sess
}

// write sends content[first:last+1] as a fragment of an upload of
// len(content) bytes.
func (e *env) write(store *session.Store, id protocol.SessionID, content []byte, first, last int64) (session.WriteResult, error) {
	e.t.Helper()
	l, err := store.Acquire(e.t.Context(), id, nil)
	if err != nil {
		e.t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	return l.Write(protocol.Range{First: first, Last: last, Total: int64(len(content))}, bytes.NewReader(content[first:last+1]), session.WriteOptions{})
}

// mustWrite is write that fails the test on an error or fewer bytes
// written than sent past those held.
func (e *env) mustWrite(store *session.Store, id protocol.SessionID, content []byte, first, last int64) session.WriteResult {
	e.t.Helper()
	res, err := e.write(store, id, content, first, last)
	if err != nil {
		e.t.Fatalf("Write [%d, %d]: %v", first, last, err)
	}
	return res
}

// writeAll sends content from byte from on in fragments of the given
// sizes, the last one repeated until the end.
func (e *env) writeAll(store *session.Store, id protocol.SessionID, content []byte, from int64, sizes ...int64) {
	e.t.Helper()
	e.writeUpTo(store, id, content, from, int64(len(content)), sizes...)
}

// writeUpTo is writeAll that stops at byte to.
func (e *env) writeUpTo(store *session.Store, id protocol.SessionID, content []byte, from, to int64, sizes ...int64) {
	e.t.Helper()
	for i := 0; from < to; i++ {
		n := sizes[min(i, len(sizes)-1)]
		last := min(from+n, to) - 1
		e.mustWrite(store, id, content, from, last)
		from = last + 1
	}
}

// settle settles a session under a lease.
func (e *env) settle(store *session.Store, id protocol.SessionID, opts session.SettleOptions) (session.Settlement, error) {
	e.t.Helper()
	l, err := store.Acquire(e.t.Context(), id, nil)
	if err != nil {
		e.t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	return l.Settle(e.t.Context(), opts)
}

// remove removes a session under a lease.
func (e *env) remove(store *session.Store, id protocol.SessionID, reason session.RemoveReason) {
	e.t.Helper()
	l, err := store.Acquire(e.t.Context(), id, nil)
	if err != nil {
		e.t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	if _, err := l.Remove(reason); err != nil {
		e.t.Fatalf("Remove: %v", err)
	}
}

// quiesce waits for the part upload a session may be running in the
// background, so that the requests of a fragment can be counted. The
// caller sends no request for the session meanwhile.
func (e *env) quiesce(st *Storage, id protocol.SessionID) {
	if v, ok := st.open.Load(id); ok {
		_ = v.(*data).wait()
	}
}

// objectSum returns the SHA-256 of the object at key, hex-encoded.
func (e *env) objectSum(key string) string {
	e.t.Helper()
	out, err := e.raw.GetObject(e.t.Context(), &s3.GetObjectInput{Bucket: aws.String(e.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		e.t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		e.t.Fatalf("reading %s: %v", key, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// assertObject fails the test unless the object at key holds exactly
// want.
func (e *env) assertObject(key string, want []byte) {
	e.t.Helper()
	if got, w := e.objectSum(key), testutil.SHA256(want); got != w {
		e.t.Fatalf("object %s: sha256 %s, want %s (%d bytes)", key, got, w, len(want))
	}
}

// putObject writes an object with the raw client.
func (e *env) putObject(key string, body []byte) {
	e.t.Helper()
	_, err := e.raw.PutObject(e.t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(e.cfg.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		e.t.Fatalf("PutObject(%s): %v", key, err)
	}
}

// objects returns the keys of every object in the bucket, sorted.
func (e *env) objects() []string {
	e.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(e.raw, &s3.ListObjectsV2Input{Bucket: aws.String(e.cfg.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(e.t.Context())
		if err != nil {
			e.t.Fatalf("ListObjectsV2: %v", err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys
}

// uploads returns the multipart uploads in progress in the bucket.
func (e *env) uploads() []types.MultipartUpload {
	e.t.Helper()
	out, err := e.raw.ListMultipartUploads(e.t.Context(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.cfg.Bucket)})
	if err != nil {
		e.t.Fatalf("ListMultipartUploads: %v", err)
	}
	return out.Uploads
}

// assertBucket fails the test unless the bucket holds exactly the objects
// keys and no multipart upload is in progress.
func (e *env) assertBucket(keys ...string) {
	e.t.Helper()
	slices.Sort(keys)
	if got := e.objects(); !slices.Equal(got, keys) {
		e.t.Errorf("objects in the bucket: %q, want %q", got, keys)
	}
	if ups := e.uploads(); len(ups) != 0 {
		var names []string
		for _, u := range ups {
			names = append(names, aws.ToString(u.Key))
		}
		e.t.Errorf("multipart uploads left in the bucket: %q", names)
	}
}

// assertTailEmpty fails the test unless the tail directory holds no file
// (of the sessions ids, if any are given).
func (e *env) assertTailEmpty(dir string, ids ...protocol.SessionID) {
	e.t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		e.t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, de := range entries {
		guid, _, _ := strings.Cut(de.Name(), ".")
		if len(ids) == 0 || slices.ContainsFunc(ids, func(id protocol.SessionID) bool { return id.Bare() == guid }) {
			names = append(names, de.Name())
		}
	}
	if len(names) > 0 {
		e.t.Errorf("files left in the tail directory: %s", strings.Join(names, ", "))
	}
}

// copyDir copies the regular files of the directory tree src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}
