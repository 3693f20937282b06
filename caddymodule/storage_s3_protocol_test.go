package caddymodule_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caddy-bits/caddy-bits/client"
	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// s3Step is one fragment of an upload kept in S3, and the Ack it must
// get: status and BITS-Received-Content-Range. With forged, the bytes of
// the fragment that the session holds already are sent inverted, so that
// writing them again would show in the object.
type s3Step struct {
	first, last int64
	forged      bool
	status      int
	received    int64
}

// sendS3Steps sends the steps of an upload of data, in order, and checks
// each Ack.
func sendS3Steps(t *testing.T, s *client.Session, data []byte, steps []s3Step) {
	t.Helper()
	held := int64(0)
	for i, st := range steps {
		body := data
		if st.forged {
			body = append([]byte(nil), data...)
			for j := st.first; j < min(st.last+1, held); j++ {
				body[j] ^= 0xff
			}
		}
		a := fragment(t, s, body, st.first, st.last)
		if a.Status != st.status || a.Header.Get(protocol.HeaderReceivedContentRange) != itoa(int(st.received)) {
			t.Fatalf("step %d (bytes %d-%d): status %d, received %q; want %d, %d (headers %v)",
				i, st.first, st.last, a.Status, a.Header.Get(protocol.HeaderReceivedContentRange), st.status, st.received, a.Header)
		}
		checkAck(t, a, ack{status: st.status, headers: received(itoa(int(st.received)))})
		if st.status == 200 {
			held = st.received
		}
	}
}

// partFiles returns the local part files of a session directory, by
// name, with their sizes.
func partFiles(t testing.TB, sessionDir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(sessionDir, "s3-parts"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	files := make(map[string]int64)
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = fi.Size()
	}
	return files
}

// multipartUploads returns the keys of the unfinished multipart uploads
// of the bucket, with their upload ids.
func multipartUploads(t testing.TB, c *s3.Client, bucket string) map[string]string {
	t.Helper()
	out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("listing multipart uploads: %v", err)
	}
	ups := make(map[string]string)
	for _, u := range out.Uploads {
		ups[aws.ToString(u.Key)] = aws.ToString(u.UploadId)
	}
	return ups
}

// waitForParts waits until the multipart upload at key holds n parts,
// and returns its upload id.
func waitForParts(t testing.TB, c *s3.Client, bucket, key string, n int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if id, ok := multipartUploads(t, c, bucket)[key]; ok {
			out, err := c.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(id)})
			if err != nil {
				t.Fatalf("listing the parts of %s: %v", key, err)
			}
			if len(out.Parts) >= n {
				return id
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no multipart upload of %d parts at %s after 10 s", n, key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestS3Retransmissions sends fragments that overlap bytes already held,
// on both sides of part boundaries, as a client retrying would: each Ack
// reports exactly the bytes held, and the object is byte-exact. Bytes
// held that are sent again with other contents are kept, as the local
// storage keeps them (TestFragmentDecisionTable): only the new tail of an
// overlapping fragment is written.
func TestS3Retransmissions(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, "re/"))
	bc := s3Client(s3srv)
	c := newClient()
	const P = int64(s3Part)

	for _, tc := range []struct {
		name  string
		total int64
		steps []s3Step
	}{
		{
			name:  "across part boundaries",
			total: 2*P + 12345,
			steps: []s3Step{
				{first: 0, last: P + 99, status: 200, received: P + 100},
				// The same bytes again across the boundary, and new ones.
				{first: P - 200, last: P + 499, status: 200, received: P + 500},
				// Entirely held, across the boundary.
				{first: P - 50, last: P + 50, status: 200, received: P + 500},
				// Entirely held, in the part sent to the bucket, other bytes.
				{first: 10, last: 1009, forged: true, status: 200, received: P + 500},
				// Other bytes in both parts, then new ones.
				{first: P - 300, last: P + 2999, forged: true, status: 200, received: P + 3000},
				{first: P + 3000, last: 2*P + 99, status: 200, received: 2*P + 100},
				{first: 2*P - 5000, last: 2*P + 4999, forged: true, status: 200, received: 2*P + 5000},
				// The last fragment, overlapping with other bytes.
				{first: 2*P + 4000, last: 2*P + 12344, forged: true, status: 200, received: 2*P + 12345},
				// A retransmitted last fragment.
				{first: 2*P + 12000, last: 2*P + 12344, forged: true, status: 200, received: 2*P + 12345},
			},
		},
		{
			name:  "fragments ending on a part boundary",
			total: P + 1000,
			steps: []s3Step{
				{first: 0, last: P - 1, status: 200, received: P},
				{first: P - 1, last: P - 1, forged: true, status: 200, received: P},
				{first: 0, last: P - 1, forged: true, status: 200, received: P},
				{first: P - 100, last: P + 99, forged: true, status: 200, received: P + 100},
				{first: 0, last: P + 999, forged: true, status: 200, received: P + 1000},
			},
		},
		{
			name:  "one part",
			total: 1000,
			steps: []s3Step{
				{first: 0, last: 499, status: 200, received: 500},
				{first: 0, last: 499, forged: true, status: 200, received: 500},
				{first: 400, last: 999, forged: true, status: 200, received: 1000},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, int(tc.total))
			path := "/" + strings.ReplaceAll(tc.name, " ", "-") + ".bin"
			key := "re" + path
			s := create(t, c, srv.URL(path))
			sendS3Steps(t, s, data, tc.steps)
			assertObject(t, bc, s3srv.Bucket, key, data)
			a, err := s.Close(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s.WireID}})
			assertObject(t, bc, s3srv.Bucket, key, data)
			assertBucketClean(t, bc, s3srv.Bucket, "re/", srv.SessionDir)
			if dirs := sessionDirs(t, srv.SessionDir); len(dirs) != 0 {
				t.Fatalf("sessions left after Close-Session: %v", dirs)
			}
		})
	}
}

// TestS3Gaps sends fragments that start past the bytes held: each is
// answered 416 with the number of bytes held, as with the local storage
// (TestFragmentDecisionTable), and nothing of it is written, to the
// local part files or the bucket; a gap that reaches the upload's end
// places nothing.
func TestS3Gaps(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, ""))
	bc := s3Client(s3srv)
	c := newClient()
	const P = int64(s3Part)
	data := randomBytes(t, int(3*P))
	s := create(t, c, srv.URL("/gaps.bin"))

	// A gap before any byte: no local file, no multipart upload.
	sendS3Steps(t, s, data, []s3Step{{first: 100, last: 199, status: 416, received: 0}})
	if files := partFiles(t, srv.SessionDir); len(files) != 0 {
		t.Fatalf("local part files after a gap: %v", files)
	}
	if ups := multipartUploads(t, bc, s3srv.Bucket); len(ups) != 0 {
		t.Fatalf("multipart uploads after a gap: %v", ups)
	}

	forged := append([]byte(nil), data...)
	for i := range forged {
		forged[i] ^= 0xff
	}
	sendS3Steps(t, s, data, []s3Step{{first: 0, last: P + 99, status: 200, received: P + 100}})
	// Gaps in the part being filled, in the next one, and at the end.
	sendS3Steps(t, s, forged, []s3Step{
		{first: P + 101, last: P + 200, status: 416, received: P + 100},
		{first: 2*P + 10, last: 2*P + 20, status: 416, received: P + 100},
		{first: 3*P - 100, last: 3*P - 1, status: 416, received: P + 100},
	})
	assertNoObject(t, bc, s3srv.Bucket, "gaps.bin")
	// Part 2 holds the 100 bytes acknowledged, and no later part exists.
	bare := s.ID.Bare()
	files := partFiles(t, srv.SessionDir)
	if n, ok := files[bare+".2"]; !ok || n != 100 {
		t.Fatalf("local part 2 after the gaps: %d bytes (present %v), want 100; files %v", n, ok, files)
	}
	if _, ok := files[bare+".3"]; ok {
		t.Fatalf("a gap created local part 3: %v", files)
	}

	sendS3Steps(t, s, data, []s3Step{{first: P + 100, last: 3*P - 1, status: 200, received: 3 * P}})
	assertObject(t, bc, s3srv.Bucket, "gaps.bin", data)
	if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
		t.Fatalf("close: %v %+v", err, a)
	}
	assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)
}

// TestS3Reaper lets sessions idle past session_timeout: one with a part in
// its multipart upload and the rest in a local file, and one with local
// bytes only. The reaper aborts the multipart upload and deletes the
// local files, places nothing, and a later fragment is told that the
// session does not exist.
func TestS3Reaper(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, "")+"\n\t\tsession_timeout 2s")
	bc := s3Client(s3srv)
	c := newClient()
	const P = int64(s3Part)
	data := randomBytes(t, int(2*P+100))
	parted := create(t, c, srv.URL("/parted.bin"))
	checkAck(t, fragment(t, parted, data, 0, P+99), ack{status: 200, headers: received(itoa(int(P + 100)))})
	local := create(t, c, srv.URL("/local.bin"))
	checkAck(t, fragment(t, local, data, 0, 999), ack{status: 200, headers: received("1000")})
	waitForParts(t, bc, s3srv.Bucket, "parted.bin", 1)
	files := partFiles(t, srv.SessionDir)
	if files[parted.ID.Bare()+".2"] != 100 || files[local.ID.Bare()+".1"] != 1000 {
		t.Fatalf("local part files before reaping: %v, want 100 bytes of part 2 of %s and 1000 of part 1 of %s", files, parted.ID, local.ID)
	}

	deadline := time.Now().Add(8 * time.Second)
	for len(sessionDirs(t, srv.SessionDir)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle sessions not reaped after 8 s: %v", sessionDirs(t, srv.SessionDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
	assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)
	assertNoObject(t, bc, s3srv.Bucket, "parted.bin")
	assertNoObject(t, bc, s3srv.Bucket, "local.bin")

	checkAck(t, fragment(t, parted, data, P+100, int64(len(data))-1), ack{status: 500, code: protocol.BGSessionNotFound})
	checkAck(t, fragment(t, local, data, 1000, 1999), ack{status: 500, code: protocol.BGSessionNotFound})
	assertNoObject(t, bc, s3srv.Bucket, "parted.bin")
	assertNoObject(t, bc, s3srv.Bucket, "local.bin")
	assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)
}

// TestS3Overwrite checks allow_overwrite with the S3 storage: an object
// at the destination, there before the session or put there during it,
// is replaced byte for byte by an upload of no part, one part or
// several.
func TestS3Overwrite(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, "ow/")+"\n\t\tallow_overwrite")
	bc := s3Client(s3srv)
	c := newClient()
	c.FragmentSize = 2 << 20
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := bc.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(s3srv.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}

	for _, size := range []int{0, 1000, s3Part, 2*s3Part + 5} {
		t.Run(itoa(size), func(t *testing.T) {
			path := "/replaced-" + itoa(size) + ".bin"
			key := "ow" + path
			put(key, randomBytes(t, 3000))
			data := randomBytes(t, size)
			res, err := c.Upload(context.Background(), srv.URL(path), bytes.NewReader(data), int64(size), nil)
			if err != nil {
				t.Fatalf("upload over an existing object: %v", err)
			}
			if !res.Complete || res.Acked != int64(size) {
				t.Fatalf("result %+v", res)
			}
			assertObject(t, bc, s3srv.Bucket, key, data)
			assertBucketClean(t, bc, s3srv.Bucket, "ow/", srv.SessionDir)
		})
	}

	t.Run("object appears during the upload", func(t *testing.T) {
		data := randomBytes(t, s3Part+100)
		s := create(t, c, srv.URL("/race.bin"))
		checkAck(t, fragment(t, s, data, 0, s3Part+49), ack{status: 200, headers: received(itoa(s3Part + 50))})
		put("ow/race.bin", []byte("written by someone else meanwhile"))
		checkAck(t, fragment(t, s, data, s3Part+50, int64(len(data))-1), ack{status: 200, headers: received(itoa(len(data)))})
		assertObject(t, bc, s3srv.Bucket, "ow/race.bin", data)
		if a, err := s.Close(context.Background()); err != nil || a.Status != 200 {
			t.Fatalf("close: %v %+v", err, a)
		}
		assertObject(t, bc, s3srv.Bucket, "ow/race.bin", data)
		assertBucketClean(t, bc, s3srv.Bucket, "ow/", srv.SessionDir)
	})
}

// TestS3MultipartUploadGone aborts a session's multipart upload behind
// the server's back, as a bucket's lifecycle rule would, after a part was
// sent to it. The bytes the session acknowledged are lost: the fragment
// that needs the multipart upload, at the latest the last one, is
// answered 500 with BG_E_SESSION_NOT_FOUND (session.ErrDataLost), so that
// the client starts over, and so is every fragment after it. Nothing
// appears at the destination; Cancel-Session cleans up, and a new session
// uploads the file.
func TestS3MultipartUploadGone(t *testing.T) {
	s3srv := testutil.StartS3(t)
	srv := newServer(t, s3Storage(s3srv, ""))
	bc := s3Client(s3srv)
	c := newClient()
	const P = int64(s3Part)
	lost := ack{status: 500, code: protocol.BGSessionNotFound}

	abort := func(t *testing.T, key string) {
		t.Helper()
		id := waitForParts(t, bc, s3srv.Bucket, key, 1)
		if _, err := bc.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s3srv.Bucket), Key: aws.String(key), UploadId: aws.String(id),
		}); err != nil {
			t.Fatalf("aborting the multipart upload at %s: %v", key, err)
		}
	}
	// finish checks that the session, which acknowledged held bytes,
	// failed for good, that nothing is at key, and that a new session
	// uploads the file.
	finish := func(t *testing.T, s *client.Session, path string, data []byte, held int64) {
		t.Helper()
		key := strings.TrimPrefix(path, "/")
		assertNoObject(t, bc, s3srv.Bucket, key)
		// The last fragment sent again gets the same answer.
		checkAck(t, fragment(t, s, data, held, int64(len(data))-1), lost)
		assertNoObject(t, bc, s3srv.Bucket, key)
		a, err := s.Cancel(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		checkAck(t, a, ack{status: 200, headers: map[string]string{protocol.HeaderSessionID: s.WireID}})
		assertNoObject(t, bc, s3srv.Bucket, key)
		assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)

		res, err := c.Upload(context.Background(), srv.URL(path), bytes.NewReader(data), int64(len(data)), nil)
		if err != nil || !res.Complete {
			t.Fatalf("upload in a new session: %v %+v", err, res)
		}
		assertObject(t, bc, s3srv.Bucket, key, data)
		assertBucketClean(t, bc, s3srv.Bucket, "", srv.SessionDir)
	}

	t.Run("last fragment", func(t *testing.T) {
		data := randomBytes(t, int(P+100))
		s := create(t, c, srv.URL("/gone-last.bin"))
		checkAck(t, fragment(t, s, data, 0, P-1), ack{status: 200, headers: received(itoa(int(P)))})
		abort(t, "gone-last.bin")
		checkAck(t, fragment(t, s, data, P, P+99), lost)
		finish(t, s, "/gone-last.bin", data, P)
	})

	t.Run("next fragments", func(t *testing.T) {
		data := randomBytes(t, int(4*P))
		s := create(t, c, srv.URL("/gone-next.bin"))
		checkAck(t, fragment(t, s, data, 0, P+99), ack{status: 200, headers: received(itoa(int(P + 100)))})
		abort(t, "gone-next.bin")
		// Fragments that need nothing from the store may be acknowledged:
		// their bytes are held in local files. Part 2 is complete after
		// the first, and the store's loss must be told no later than the
		// fragment that cannot be written before part 2 is in the bucket,
		// the first of part 4.
		held := P + 100
		for _, last := range []int64{2*P - 1, 3*P - 1, 3*P + 99} {
			a := fragment(t, s, data, held, last)
			if a.Status != 200 {
				checkAck(t, a, lost)
				break
			}
			checkAck(t, a, ack{status: 200, headers: received(itoa(int(last + 1)))})
			if last == 3*P+99 {
				t.Fatalf("the first fragment of part 4 was acknowledged; part 2 cannot be in the bucket")
			}
			held = last + 1
		}
		// The rest of the upload, from the last byte acknowledged.
		checkAck(t, fragment(t, s, data, held, 4*P-1), lost)
		finish(t, s, "/gone-next.bin", data, held)
	})
}
