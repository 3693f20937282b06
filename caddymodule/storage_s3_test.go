package caddymodule_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-bits/caddy-bits/caddymodule"
	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// s3Part is the part size of the S3 tests: the smallest S3 allows, so
// that a few MiB make uploads of several parts.
const s3Part = 5 << 20

// s3Storage returns the bits_upload lines that keep uploads in srv's
// bucket under prefix.
func s3Storage(srv *testutil.S3Server, prefix string) string {
	return fmt.Sprintf(`storage s3 {
			bucket %s
			prefix "%s"
			endpoint %s
			path_style
			access_key %s
			secret_key %s
			part_size 5MiB
		}`, srv.Bucket, prefix, srv.Endpoint, srv.AccessKey, srv.SecretKey)
}

// s3Client returns a client of srv, to look at the bucket as an
// application would.
func s3Client(srv *testutil.S3Server) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.Endpoint),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
}

// objectSHA returns the SHA-256 and size of the object at key, read
// through the S3 API, or an error wrapping fs.ErrNotExist when there is
// none.
func objectSHA(t testing.TB, c *s3.Client, bucket, key string) (string, int64, error) {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if strings.Contains(err.Error(), "NoSuchKey") || strings.Contains(err.Error(), "404") {
			return "", 0, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
		}
		return "", 0, err
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// objectBytes returns the object at key.
func objectBytes(c *s3.Client, bucket, key string) ([]byte, string, error) {
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, aws.ToString(out.ETag), err
}

// assertObject asserts that the object at key holds exactly want.
func assertObject(t testing.TB, c *s3.Client, bucket, key string, want []byte) {
	t.Helper()
	got, n, err := objectSHA(t, c, bucket, key)
	if err != nil {
		t.Fatalf("reading object %s: %v", key, err)
	}
	if got != sha(want) || n != int64(len(want)) {
		t.Fatalf("object %s: %d bytes sha256 %s, want %d bytes sha256 %s", key, n, got, len(want), sha(want))
	}
}

// assertNoObject asserts that there is no object at key.
func assertNoObject(t testing.TB, c *s3.Client, bucket, key string) {
	t.Helper()
	if _, _, err := objectSHA(t, c, bucket, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("object %s: %v, want none", key, err)
	}
}

// assertBucketClean asserts that the bucket holds no unfinished multipart
// upload and no object under the storage's own prefix, and that the
// local part files of the session directory are gone.
func assertBucketClean(t testing.TB, c *s3.Client, bucket, prefix, sessionDir string) {
	t.Helper()
	assertBucketCleanBut(t, c, bucket, prefix, sessionDir, time.Time{})
}

// assertBucketCleanBut is assertBucketClean, except that an empty
// multipart upload started within 3 seconds of crash is let be: a crash
// of the server, or of the store, in the instant a multipart upload is
// being started leaves one that no session knows (docs/s3.md), for the
// bucket's lifecycle rule to remove.
func assertBucketCleanBut(t testing.TB, c *s3.Client, bucket, prefix, sessionDir string, crash time.Time) {
	t.Helper()
	assertNoUploads(t, c, bucket, crash)
	assertStorageObjectsGone(t, c, bucket, prefix, sessionDir)
}

// assertNoUploads asserts that the bucket holds no unfinished multipart
// upload, but for an empty one started within 3 seconds of crash (unless
// crash is zero).
func assertNoUploads(t testing.TB, c *s3.Client, bucket string, crash time.Time) {
	t.Helper()
	ctx := context.Background()
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("listing multipart uploads: %v", err)
	}
	for _, u := range ups.Uploads {
		if !crash.IsZero() && u.Initiated != nil && u.Initiated.Sub(crash).Abs() < 3*time.Second {
			parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
			if err == nil && len(parts.Parts) == 0 {
				t.Logf("empty multipart upload at %s, started %v from the crash, left for the lifecycle rule", aws.ToString(u.Key), u.Initiated.Sub(crash))
				continue
			}
		}
		t.Errorf("multipart upload left at %s", aws.ToString(u.Key))
	}
}

// assertStorageObjectsGone asserts that no object of the storage and no
// local part file is left but the farm's key and closed sessions'
// tombstones.
func assertStorageObjectsGone(t testing.TB, c *s3.Client, bucket, prefix, sessionDir string) {
	t.Helper()
	objs, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix + ".bits/")})
	if err != nil {
		t.Fatalf("listing objects: %v", err)
	}
	for _, o := range objs.Contents {
		key := aws.ToString(o.Key)
		switch {
		case key == prefix+".bits/key":
			// The farm's key, with shared sessions.
		case strings.HasPrefix(key, prefix+".bits/sessions/"):
			// A closed session's tombstone, with shared sessions.
			got, _, err := objectBytes(c, bucket, key)
			if err != nil || !strings.Contains(string(got), `"closed":true`) {
				t.Errorf("shared state of an open session left at %s: %s %v", key, got, err)
			}
		default:
			t.Errorf("object of the storage left at %s", key)
		}
	}
	entries, err := os.ReadDir(filepath.Join(sessionDir, "s3-parts"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("local part file left: %s", e.Name())
	}
}

// TestS3Upload uploads through Caddy into a real S3 gateway: uploads of
// no part, one part and several parts, of the sizes on either side of a
// part's, land byte for byte at prefix + path, with nothing left behind;
// an existing object is neither replaced nor touched; and a second upload
// of the same path is refused before a byte is sent.
func TestS3Upload(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, "up/"))
	bc := s3Client(s3srv)
	c := newClient()
	c.FragmentSize = 1 << 20

	for _, size := range []int{0, 1, s3Part - 1, s3Part, s3Part + 1, 2*s3Part + 3<<20 + 11, 3*s3Part + 5} {
		t.Run(itoa(size), func(t *testing.T) {
			data := randomBytes(t, size)
			path := "/dir/file-" + itoa(size) + ".bin"
			res, err := c.Upload(context.Background(), srv.URL(path), bytes.NewReader(data), int64(size), nil)
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			if !res.Complete || res.Acked != int64(size) {
				t.Fatalf("result %+v", res)
			}
			assertObject(t, bc, s3srv.Bucket, "up/dir/file-"+itoa(size)+".bin", data)
			assertNoFile(t, filepath.Join(srv.Root, "dir", "file-"+itoa(size)+".bin"))
			if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
				t.Fatalf("sessions left after Close-Session: %v", dirs)
			}
			assertBucketClean(t, bc, s3srv.Bucket, "up/", srv.SessionDir)
		})
	}

	t.Run("existing object", func(t *testing.T) {
		key := "up/taken.bin"
		old := []byte("the application's own object")
		if _, err := bc.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(s3srv.Bucket), Key: aws.String(key), Body: bytes.NewReader(old)}); err != nil {
			t.Fatal(err)
		}
		a := send(t, c, srv.URL("/taken.bin"), &client.Packet{Type: protocol.PacketCreateSession, Header: http.Header{protocol.HeaderSupportedProtocols: {protocol.UploadProtocol}}})
		checkAck(t, a, ack{status: 403, code: protocol.EAccessDenied})
		assertObject(t, bc, s3srv.Bucket, key, old)
	})

	t.Run("object appears during the upload", func(t *testing.T) {
		data := randomBytes(t, s3Part+100)
		s := create(t, c, srv.URL("/race.bin"))
		a := fragment(t, s, data, 0, s3Part+49)
		checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(s3Part + 50)}})
		other := []byte("written by someone else meanwhile")
		if _, err := bc.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(s3srv.Bucket), Key: aws.String("up/race.bin"), Body: bytes.NewReader(other)}); err != nil {
			t.Fatal(err)
		}
		a = fragment(t, s, data, s3Part+50, int64(len(data))-1)
		checkAck(t, a, ack{status: 403, code: protocol.EAccessDenied})
		assertObject(t, bc, s3srv.Bucket, "up/race.bin", other)
		if a, err := s.Cancel(context.Background()); err != nil || a.Status != 200 {
			t.Fatalf("cancel: %v %+v", err, a)
		}
		assertBucketClean(t, bc, s3srv.Bucket, "up/", srv.SessionDir)
	})

	t.Run("cancel", func(t *testing.T) {
		data := randomBytes(t, 2*s3Part+1)
		s := create(t, c, srv.URL("/cancelled.bin"))
		fragment(t, s, data, 0, 2*s3Part-1)
		if a, err := s.Cancel(context.Background()); err != nil || a.Status != 200 {
			t.Fatalf("cancel: %v %+v", err, a)
		}
		assertNoObject(t, bc, s3srv.Bucket, "up/cancelled.bin")
		assertBucketClean(t, bc, s3srv.Bucket, "up/", srv.SessionDir)
	})
}

// TestS3StoreDown stops the S3 gateway in the middle of an upload: the
// fragments that need the store get 503 with BG_E_HTTP_ERROR_503, which
// Windows clients retry, nothing acknowledged is lost, and once the store
// is back the upload resumes where the server says and lands intact.
func TestS3StoreDown(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, "")+"\n\t\tdrain_timeout 1s")
	bc := s3Client(s3srv)
	c := newClient()
	data := randomBytes(t, 3*s3Part+12345)
	s := create(t, c, srv.URL("/down.bin"))
	step := int64(1 << 20)
	next := int64(0)
	for ; next < s3Part+step; next += step {
		checkAck(t, fragment(t, s, data, next, next+step-1), ack{status: 200})
	}

	stopped := time.Now()
	s3srv.Stop()
	refused := false
	for next < int64(len(data)) {
		last := min(next+step, int64(len(data))) - 1
		a, err := s.Fragment(context.Background(), data[next:last+1], next, int64(len(data)))
		if err != nil {
			t.Fatalf("fragment %d-%d: %v", next, last, err)
		}
		if a.Status != 200 {
			checkAck(t, a, ack{status: 503, code: protocol.HTTPError(503)})
			refused = true
			break
		}
		next = a.Received
	}
	if !refused {
		t.Fatal("the whole upload was acknowledged with the store down")
	}

	s3srv.Start()
	assertNoObject(t, bc, s3srv.Bucket, "down.bin")
	// Resume as a client does: from the offset the server reports.
	a, err := s.Fragment(context.Background(), data[0:1], 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkAck(t, a, ack{status: 200})
	if a.Received < s3Part+step || a.Received > next {
		t.Fatalf("after the outage the server wants byte %d; it had acknowledged up to %d", a.Received, next)
	}
	for next = a.Received; next < int64(len(data)); next = a.Received {
		last := min(next+step, int64(len(data))) - 1
		a = fragment(t, s, data, next, last)
		if a.Status != 200 {
			t.Fatalf("fragment %d-%d after the outage: %d %s", next, last, a.Status, a.Header.Get(protocol.HeaderErrorCode))
		}
	}
	assertObject(t, bc, s3srv.Bucket, "down.bin", data)
	if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	assertBucketCleanBut(t, bc, s3srv.Bucket, "", srv.SessionDir, stopped)
}

// objectApp is a server application for uploads kept in S3: it reads the
// upload named by a notification by reference through its presigned URL
// (with no credentials), or the body of one by value, and answers with a
// reply that names what it read.
type objectApp struct {
	mu   sync.Mutex
	seen []http.Header
	sums []string
	errs []string
}

func (a *objectApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if u := r.Header.Get("BITS-Request-DataFile-URL"); u != "" {
		resp, err := http.Get(u) //nolint:gosec,noctx // the test's own server
		if err != nil {
			a.fail(w, err.Error())
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			a.fail(w, "GET of the presigned URL: "+resp.Status)
			return
		}
		body = resp.Body
	}
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		a.fail(w, err.Error())
		return
	}
	sum := hex.EncodeToString(h.Sum(nil))
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Clone())
	a.sums = append(a.sums, sum)
	a.mu.Unlock()
	w.Header().Set(protocol.HeaderCopyFileToDest, "true")
	_, _ = io.WriteString(w, "got "+sum)
}

func (a *objectApp) fail(w http.ResponseWriter, msg string) {
	a.mu.Lock()
	a.errs = append(a.errs, msg)
	a.mu.Unlock()
	http.Error(w, msg, http.StatusInternalServerError)
}

// TestS3Notify checks notifications of uploads kept in S3, by value (the
// bytes read back from the bucket) and by reference (the bucket, the key
// and a presigned URL that reads the object without credentials, with the
// reply in the response body), each followed by the copy to the
// destination the application asks for.
func TestS3Notify(t *testing.T) {
	s3srv := testutil.StartS3(t)
	bc := s3Client(s3srv)
	for _, mode := range []string{"value", "reference"} {
		t.Run(mode, func(t *testing.T) {
			app := &objectApp{}
			hs := httptest.NewServer(app)
			t.Cleanup(hs.Close)
			prefix := mode + "/"
			srv := newServer(t, s3Storage(s3srv, prefix)+"\n\t\t"+notifyOptions(hs.URL+"/hook", "type "+mode))
			c := newClient()
			c.FragmentSize = 2 << 20
			for _, size := range []int{0, 1000, 2*s3Part + 5} {
				data := randomBytes(t, size)
				path := "/n-" + itoa(size) + ".bin"
				res, err := c.Upload(context.Background(), srv.URL(path), bytes.NewReader(data), int64(size), &client.UploadOptions{KeepReply: true})
				if err != nil {
					t.Fatalf("upload of %d bytes: %v (application errors %v)", size, err, app.errs)
				}
				app.mu.Lock()
				hdr, sum := app.seen[len(app.seen)-1], app.sums[len(app.sums)-1]
				app.mu.Unlock()
				if sum != sha(data) {
					t.Errorf("%d bytes: the application read sha256 %s, want %s", size, sum, sha(data))
				}
				if want := "got " + sha(data); string(res.Reply) != want {
					t.Errorf("%d bytes: reply %q, want %q", size, res.Reply, want)
				}
				if got, want := hdr.Get("Content-Digest")+hdr.Get("BITS-Request-DataFile-Digest"), digestOf(data); got != want {
					t.Errorf("%d bytes: digest %q, want %q", size, got, want)
				}
				if mode == "reference" {
					if hdr.Get("BITS-Request-DataFile-Bucket") != s3srv.Bucket || !strings.HasPrefix(hdr.Get("BITS-Request-DataFile-Key"), prefix+".bits/") {
						t.Errorf("%d bytes: bucket %q key %q", size, hdr.Get("BITS-Request-DataFile-Bucket"), hdr.Get("BITS-Request-DataFile-Key"))
					}
					for _, h := range []string{protocol.HeaderRequestDataFileName, protocol.HeaderResponseDataFileName} {
						if v := hdr.Get(h); v != "" {
							t.Errorf("%d bytes: a notification of an object carries %s %q", size, h, v)
						}
					}
				} else if v := hdr.Get("BITS-Request-DataFile-URL"); v != "" {
					t.Errorf("%d bytes: a notification by value carries a URL %q", size, v)
				}
				assertObject(t, bc, s3srv.Bucket, prefix+"n-"+itoa(size)+".bin", data)
			}
			if len(app.errs) != 0 {
				t.Errorf("application errors: %v", app.errs)
			}
			assertBucketClean(t, bc, s3srv.Bucket, prefix, srv.SessionDir)
		})
	}
}

// TestS3RestartResumes closes the session store (a config with another
// session_dir unloads it) in the middle of an upload, opens it again, and
// finishes the upload from the offset the server reports: the parts
// already in the bucket are found again from the session's record.
func TestS3RestartResumes(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, ""))
	bc := s3Client(s3srv)
	c := newClient()
	data := randomBytes(t, 2*s3Part+777)
	s := create(t, c, srv.URL("/resumed.bin"))
	checkAck(t, fragment(t, s, data, 0, s3Part+999), ack{status: 200})

	// A config with another session_dir closes the store; then load the
	// first one again.
	sessionDir := srv.SessionDir
	srv.SessionDir = filepath.Join(t.TempDir(), "other")
	srv.load()
	srv.SessionDir = sessionDir
	srv.load()

	a := fragment(t, s, data, 0, 0)
	checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderReceivedContentRange: itoa(s3Part + 1000)}})
	checkAck(t, fragment(t, s, data, s3Part+1000, int64(len(data))-1), ack{status: 200})
	assertObject(t, bc, s3srv.Bucket, "resumed.bin", data)
	if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)
}

// TestS3SessionDirOfAnotherStorage checks that a session_dir holding a
// session of the local storage is refused to the S3 storage, whose bytes
// are elsewhere, and that the refusal loses nothing.
func TestS3SessionDirOfAnotherStorage(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, "")
	c := newClient()
	data := randomBytes(t, 1000)
	s := create(t, c, srv.URL("/kept.bin"))
	checkAck(t, fragment(t, s, data, 0, 499), ack{status: 200})

	// A config with another session_dir unloads the first store.
	sessionDir := srv.SessionDir
	srv.SessionDir = filepath.Join(t.TempDir(), "other")
	srv.load()

	srv.SessionDir = sessionDir
	srv.Options = s3Storage(s3srv, "")
	status, body := opsPostConfig(t, srv, func(map[string]any) {})
	if status == 200 || !strings.Contains(body, "holds sessions stored in local") {
		t.Fatalf("loading the S3 storage on a session_dir of the local one: %d %s, want a refusal naming the local storage", status, body)
	}

	srv.Options = ""
	srv.load()
	checkAck(t, fragment(t, s, data, 500, 999), ack{status: 200})
	assertFile(t, filepath.Join(srv.Root, "kept.bin"), data)
}

// TestS3Caddyfile checks the storage s3 block: every option, placeholders
// left for provisioning, and clear errors for a wrong block.
func TestS3Caddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`s3 {
		bucket uploads
		prefix bits/
		endpoint https://minio.internal:9000
		region eu-west-1
		path_style
		access_key {env.S3_KEY}
		secret_key {env.S3_SECRET}
		part_size 64MiB
		request_timeout 1m
		ca_file /etc/ssl/minio.pem
	}`)
	var s caddymodule.S3Storage
	if err := s.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := caddymodule.S3Storage{
		Bucket: "uploads", Prefix: "bits/", Endpoint: "https://minio.internal:9000", Region: "eu-west-1",
		PathStyle: true, AccessKey: "{env.S3_KEY}", SecretKey: "{env.S3_SECRET}", PartSize: 64 << 20,
		RequestTimeout: caddy.Duration(time.Minute), CAFile: "/etc/ssl/minio.pem",
	}
	if s != want {
		t.Fatalf("parsed %+v\nwant   %+v", s, want)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := s.StorageKey(); got != "s3:https://minio.internal:9000/uploads/bits/" {
		t.Errorf("StorageKey %q", got)
	}

	for _, tc := range []struct{ block, want string }{
		{"s3 {\n\tbucketz x\n}", `unrecognized storage s3 option "bucketz"`},
		{"s3 {\n\tbucket\n}", "wrong argument count"},
		{"s3 {\n\tbucket a b\n}", "wrong argument count"},
		{"s3 {\n\tpath_style yes\n}", "wrong argument count"},
		{"s3 {\n\tpart_size lots\n}", "parsing part_size"},
		{"s3 {\n\tpart_size 6GiB\n}", "over 5 GiB"},
		{"s3 {\n\trequest_timeout soon\n}", "parsing request_timeout"},
		{"s3 extra", "wrong argument count"},
	} {
		var s caddymodule.S3Storage
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.block))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.block, err, tc.want)
		}
	}
	for _, tc := range []struct {
		s    caddymodule.S3Storage
		want string
	}{
		{caddymodule.S3Storage{}, "bucket is required"},
		{caddymodule.S3Storage{Bucket: "b", PartSize: 1 << 20}, "not between 5 MiB and 5 GiB"},
		{caddymodule.S3Storage{Bucket: "b", RequestTimeout: -1}, "must not be negative"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v): %v, want an error containing %q", tc.s, err, tc.want)
		}
	}
}

// TestS3Unreachable checks that a handler whose store cannot be reached,
// or refuses the credentials, fails to load with an error that says so,
// rather than accepting uploads it cannot keep.
func TestS3Unreachable(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, "")
	for _, tc := range []struct{ name, storage, want string }{
		{"wrong secret", strings.Replace(s3Storage(s3srv, ""), s3srv.SecretKey, "wrong"+s3srv.SecretKey[5:], 1), "denied"},
		{"no such bucket", strings.Replace(s3Storage(s3srv, ""), "bucket "+s3srv.Bucket, "bucket no-such-bucket", 1), "does not exist"},
		{"half the credentials", strings.Replace(s3Storage(s3srv, ""), "secret_key "+s3srv.SecretKey, "", 1), "set both or neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Options = tc.storage
			srv.SessionDir = filepath.Join(t.TempDir(), "sessions")
			status, body := opsPostConfig(t, srv, func(map[string]any) {})
			if status == 200 || !strings.Contains(body, tc.want) {
				t.Fatalf("load: %d %s, want an error containing %q", status, body, tc.want)
			}
		})
	}
}
