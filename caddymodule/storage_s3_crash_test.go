package caddymodule_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// s3Crash is an upload to a Caddy process that keeps uploads in S3, and
// that a test kills and restarts.
type s3Crash struct {
	t        *testing.T
	s3srv    *testutil.S3Server
	bc       *s3.Client
	p        *testutil.Caddy
	sessions string
	key      string
	c        *client.Client
	s        *client.Session
	data     []byte
	// acked is the number of bytes the server acknowledged last.
	acked int64
}

// startS3Crash starts versitygw and a Caddy process that keeps uploads in
// it, and opens a session for an upload of size bytes.
func startS3Crash(t *testing.T, size int) *s3Crash {
	t.Helper()
	s3srv := testutil.StartS3(t)
	dir := t.TempDir()
	root, sessions := filepath.Join(dir, "root"), filepath.Join(dir, "sessions")
	port, admin := testutil.FreePort(t), testutil.FreePort(t)
	x := &s3Crash{
		t:        t,
		s3srv:    s3srv,
		bc:       s3Client(s3srv),
		p:        testutil.StartCaddy(t, dir, siteCaddyfile(admin, port, root, sessions, s3Storage(s3srv, "crash/")), admin),
		sessions: sessions,
		key:      "crash/file.bin",
		c:        newClient(),
		data:     randomBytes(t, size),
	}
	x.s = create(t, x.c, "http://127.0.0.1:"+strconv.Itoa(port)+"/file.bin")
	return x
}

// total returns the upload's length.
func (x *s3Crash) total() int64 { return int64(len(x.data)) }

// upTo sends 1 MiB fragments from the bytes acknowledged to end, each
// acknowledged exactly.
func (x *s3Crash) upTo(end int64) {
	x.t.Helper()
	for x.acked < end {
		last := min(x.acked+1<<20, end) - 1
		checkAck(x.t, fragment(x.t, x.s, x.data, x.acked, last), ack{status: 200, headers: received(strconv.FormatInt(last+1, 10))})
		x.acked = last + 1
	}
}

// killMidFragment starts sending the 1 MiB fragment that follows the
// bytes acknowledged, and kills the process once n of its bytes have had
// the time to arrive.
func (x *s3Crash) killMidFragment(n int64) {
	x.t.Helper()
	pr, pw := io.Pipe()
	first := x.acked
	go func() {
		req, _ := http.NewRequest(protocol.Method, x.s.URL, pr)
		req.ContentLength = 1 << 20
		req.Header[protocol.HeaderPacketType] = []string{"Fragment"}
		req.Header[protocol.HeaderSessionID] = []string{x.s.WireID}
		req.Header["Content-Range"] = []string{fmt.Sprintf("bytes %d-%d/%d", first, first+1<<20-1, x.total())}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(x.data[first : first+n]); err != nil {
		x.t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the server write what arrived
	x.p.Kill()
	pw.CloseWithError(io.ErrClosedPipe)
}

// resume starts the killed process again and sends the fragment that
// follows the bytes acknowledged again, as a client does after a failed
// request; the server's offset, never less than it acknowledged, is then
// adopted.
func (x *s3Crash) resume() {
	x.t.Helper()
	x.p.Start()
	x.c.CloseIdleConnections()
	first := x.acked
	last := min(first+1<<20, x.total()) - 1
	a := fragment(x.t, x.s, x.data, first, last)
	if a.Status != 200 || !a.HasReceived || a.Received < x.acked || a.Received > x.total() {
		x.t.Fatalf("after the restart the fragment %d-%d gets status %d, received %d (present %v); %d were acknowledged",
			first, last, a.Status, a.Received, a.HasReceived, x.acked)
	}
	x.acked = a.Received
}

// finish sends the rest of the upload and Close-Session, and checks the
// object and that no session or local part file is left.
func (x *s3Crash) finish() {
	x.t.Helper()
	x.upTo(x.total())
	assertObject(x.t, x.bc, x.s3srv.Bucket, x.key, x.data)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := x.s.Close(ctx)
	if err != nil {
		x.t.Fatal(err)
	}
	checkAck(x.t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: x.s.WireID}})
	assertObject(x.t, x.bc, x.s3srv.Bucket, x.key, x.data)
	if files := partFiles(x.t, x.sessions); len(files) != 0 {
		x.t.Fatalf("local part files left: %v", files)
	}
	if dirs := sessionDirs(x.t, x.sessions); len(dirs) != 0 {
		x.t.Fatalf("sessions left: %v", dirs)
	}
}

// TestS3KillAndRestart kills a Caddy that keeps uploads in S3 with
// SIGKILL: once the part completed first is in the bucket (while it is
// recorded and its local file deleted), right after the fragment that
// completed the second part (its upload in flight), in the middle of a
// fragment whose bytes that arrived completed the third part and began
// the fourth, and after the last fragment. Each time it is restarted and
// the upload resumed from the offset the server reports, which is never
// less than what it acknowledged; the object is byte-exact, and neither
// a multipart upload nor a local part is left.
func TestS3KillAndRestart(t *testing.T) {
	const P = int64(s3Part)
	x := startS3Crash(t, int(4*P+12345))

	x.upTo(P)
	waitForParts(t, x.bc, x.s3srv.Bucket, x.key, 1)
	x.p.Kill()
	x.resume()

	x.upTo(2 * P)
	x.p.Kill()
	x.resume()

	x.upTo(3*P - 512<<10)
	x.killMidFragment(900_000)
	x.resume()

	// After the last fragment the object is in place, and its
	// retransmission gets the final Ack.
	x.upTo(x.total())
	assertObject(t, x.bc, x.s3srv.Bucket, x.key, x.data)
	x.p.Kill()
	x.p.Start()
	x.c.CloseIdleConnections()
	checkAck(t, fragment(t, x.s, x.data, x.total()-100, x.total()-1), ack{status: 200, headers: received(strconv.FormatInt(x.total(), 10))})

	x.finish()
	assertBucketClean(t, x.bc, x.s3srv.Bucket, "crash/", x.sessions)
}

// TestS3KillStartingMultipartUpload kills Caddy right after the fragment
// that completed the first part, while its multipart upload is being
// created, and resumes: the object is byte-exact and no local part is
// left. A multipart upload the store created in the instant before the
// kill, whose id was not recorded yet, cannot be found again (S3 lists
// multipart uploads without the metadata that would tell whose it is):
// it may be left, for the bucket's lifecycle rule, but empty, since no
// part is sent before the upload's id is recorded.
func TestS3KillStartingMultipartUpload(t *testing.T) {
	const P = int64(s3Part)
	x := startS3Crash(t, int(2*P+100))
	x.upTo(P)
	x.p.Kill()
	x.resume()
	x.finish()

	ctx := context.Background()
	ups, err := x.bc.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(x.s3srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		if aws.ToString(u.Key) != x.key {
			t.Errorf("multipart upload left at %s", aws.ToString(u.Key))
			continue
		}
		parts, err := x.bc.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(x.s3srv.Bucket), Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			t.Fatal(err)
		}
		if len(parts.Parts) != 0 {
			t.Errorf("multipart upload left at %s with %d parts", x.key, len(parts.Parts))
		}
	}
}
