package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
	"github.com/caddy-bits/caddy-bits/session"
)

// TestUploadSizes writes uploads around the part size through a session
// store, in fragments of several sizes, and checks the placed object, what
// is left in the bucket and the tail directory, and the requests each
// fragment and session cost: a fragment that completes no part sends none.
func TestUploadSizes(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	cases := []struct {
		size  int64
		frags []int64
		// reqs is the number of requests of the whole session: one
		// CreateMultipartUpload and one UploadPart per part and a
		// CompleteMultipartUpload, or a single PutObject.
		reqs int64
	}{
		{0, []int64{0}, 1},
		{1, []int64{1}, 1},
		{P - 1, []int64{1 << 20, 333_333}, 1},
		{P, []int64{P}, 1},
		{P + 1, []int64{P - 7, 8}, 1 + 2 + 1},
		{3*P + 5, []int64{700_000, 2 << 20, 3 << 20}, 1 + 4 + 1},
		{3*P + 5, []int64{3*P + 5}, 1 + 4 + 1},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_bytes_%d", c.size, i), func(t *testing.T) {
			content := testutil.RandomBytes(uint64(i+1), int(c.size))
			path := fmt.Sprintf("dir/upload-%d.bin", i)
			sess := e.create(e.store, path, false)
			id := sess.ID()
			start := e.cnt.Count()
			var from int64
			for k := 0; from < c.size || (c.size == 0 && k == 0); k++ {
				n := c.frags[min(k, len(c.frags)-1)]
				last := min(from+n, c.size) - 1
				before := e.cnt.Count()
				var res session.WriteResult
				if c.size == 0 {
					l, err := e.store.Acquire(t.Context(), id, nil)
					if err != nil {
						t.Fatal(err)
					}
					res, err = l.Write(protocol.Range{First: 0, Last: -1, Total: 0}, strings.NewReader(""), session.WriteOptions{})
					l.Release()
					if err != nil {
						t.Fatalf("Write of an empty upload: %v", err)
					}
				} else {
					res = e.mustWrite(e.store, id, content, from, last)
				}
				e.quiesce(e.st, id)
				got := e.cnt.Count() - before
				// Parts completed by this fragment, other than the last.
				completed := min((last+1)/P, (c.size-1)/P) - min(from/P, (c.size-1)/P)
				if c.size == 0 {
					completed = 0
				}
				t.Logf("fragment [%d, %d] of %d: %d requests %v", from, last, c.size, got, e.cnt.Ops())
				if completed == 0 && got != 0 {
					t.Errorf("fragment [%d, %d] completed no part but sent %d requests", from, last, got)
				}
				if res.Received != last+1 {
					t.Errorf("received %d after fragment [%d, %d]", res.Received, from, last)
				}
				from = last + 1
			}
			before := e.cnt.Count()
			if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
				t.Fatalf("Settle: %v", err)
			}
			t.Logf("place: %d requests %v", e.cnt.Count()-before, e.cnt.Ops())
			e.assertObject(path, content)
			before = e.cnt.Count()
			e.remove(e.store, id, session.RemovedClosed)
			t.Logf("close: %d requests %v", e.cnt.Count()-before, e.cnt.Ops())
			total := e.cnt.Count() - start
			t.Logf("session of %d bytes: %d requests", c.size, total)
			if total != c.reqs {
				t.Errorf("session of %d bytes sent %d requests, want %d", c.size, total, c.reqs)
			}
			e.assertObject(path, content)
			e.assertTailEmpty(e.cfg.TailDir)
			if ups := e.uploads(); len(ups) != 0 {
				t.Errorf("%d multipart uploads left", len(ups))
			}
		})
	}
	var want []string
	for i := range cases {
		want = append(want, fmt.Sprintf("dir/upload-%d.bin", i))
	}
	e.assertBucket(want...)
}

// TestOverlapAcrossPartBoundary retransmits bytes on both sides of a part
// boundary: only the new bytes are written, and the object is exact.
func TestOverlapAcrossPartBoundary(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(7, 2*P+1000)
	sess := e.create(e.store, "overlap.bin", false)
	id := sess.ID()
	e.mustWrite(e.store, id, content, 0, P-101)
	res := e.mustWrite(e.store, id, content, P-300, P+499)
	if res.Written != 600 || res.Received != P+500 {
		t.Fatalf("overlapping fragment: written %d, received %d; want 600, %d", res.Written, res.Received, P+500)
	}
	// Entirely held: nothing written.
	res = e.mustWrite(e.store, id, content, P-50, P+49)
	if res.Action != protocol.AlreadyHeld || res.Written != 0 {
		t.Fatalf("held fragment: %+v", res)
	}
	res = e.mustWrite(e.store, id, content, P, int64(len(content))-1)
	if res.Written != int64(len(content))-(P+500) || !res.Complete {
		t.Fatalf("last fragment: %+v", res)
	}
	if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	e.assertObject("overlap.bin", content)
	e.remove(e.store, id, session.RemovedClosed)
	e.assertBucket("overlap.bin")
	e.assertTailEmpty(e.cfg.TailDir)
}

// TestGap sends a fragment that starts past the bytes held: the session
// answers Gap, and nothing changes.
func TestGap(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(8, P+10)
	id := e.create(e.store, "gap.bin", false).ID()
	e.mustWrite(e.store, id, content, 0, 999)
	before := e.cnt.Count()
	res := e.mustWrite(e.store, id, content, 2000, P+9)
	if res.Action != protocol.Gap || res.Written != 0 || res.Received != 1000 {
		t.Fatalf("gap fragment: %+v", res)
	}
	if n := e.cnt.Count() - before; n != 0 {
		t.Errorf("a gap sent %d requests", n)
	}
	v, _ := e.st.open.Load(id)
	if n := v.(*data).Size(); n != 1000 {
		t.Errorf("size after a gap: %d, want 1000", n)
	}
	e.writeAll(e.store, id, content, 1000, P)
	if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	e.assertObject("gap.bin", content)
}

// TestCancelReapAndRefusal removes sessions with parts in the bucket by
// cancelling and reaping them, and refuses to place uploads over an
// existing object: nothing is left behind but the objects that were there.
func TestCancelReapAndRefusal(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(9, 3*P+5)

	// Cancel, with two parts in the bucket and one in flight or local.
	id := e.create(e.store, "cancel.bin", false).ID()
	e.mustWrite(e.store, id, content, 0, 3*P-1)
	e.quiesce(e.st, id)
	if len(e.uploads()) != 1 {
		t.Fatalf("want a multipart upload in progress")
	}
	e.remove(e.store, id, session.RemovedCancelled)
	e.assertBucket()
	e.assertTailEmpty(e.cfg.TailDir)

	// Reap, with a part in the bucket and bytes in a local file.
	id = e.create(e.store, "reap.bin", false).ID()
	e.mustWrite(e.store, id, content, 0, 2*P+99)
	e.clock.Advance(session.DefaultTimeout + time.Hour)
	if n := e.store.Reap(); n != 1 {
		t.Fatalf("Reap removed %d sessions, want 1", n)
	}
	e.assertBucket()
	e.assertTailEmpty(e.cfg.TailDir)

	// Refusal to overwrite, for a multipart upload and a single part.
	old := []byte("the object that was there first")
	for _, c := range []struct {
		key     string
		content []byte
	}{{"exists-multi.bin", content}, {"exists-single.bin", content[:P/2]}} {
		e.putObject(c.key, old)
		sess := e.create(e.store, c.key, false)
		if err := e.st.CheckDestination(t.Context(), sess.State().Destination(), false); !errors.Is(err, session.ErrDestinationExists) {
			t.Errorf("CheckDestination(%s) = %v, want ErrDestinationExists", c.key, err)
		}
		e.writeAll(e.store, sess.ID(), c.content, 0, P-3)
		if _, err := e.settle(e.store, sess.ID(), session.SettleOptions{}); !errors.Is(err, session.ErrDestinationExists) {
			t.Fatalf("Settle over %s = %v, want ErrDestinationExists", c.key, err)
		}
		e.assertObject(c.key, old)
		e.remove(e.store, sess.ID(), session.RemovedClosed)
		e.assertObject(c.key, old)
	}
	e.assertBucket("exists-multi.bin", "exists-single.bin")
	e.assertTailEmpty(e.cfg.TailDir)

	// With overwrite, the same upload replaces the object.
	sess := e.create(e.store, "exists-multi.bin", false)
	e.writeAll(e.store, sess.ID(), content, 0, 2*P)
	if _, err := e.settle(e.store, sess.ID(), session.SettleOptions{Overwrite: true}); err != nil {
		t.Fatalf("Settle with overwrite: %v", err)
	}
	e.assertObject("exists-multi.bin", content)
	e.remove(e.store, sess.ID(), session.RemovedClosed)
	e.assertBucket("exists-multi.bin", "exists-single.bin")
}

// TestCrash copies the session directory and the tail directory of a
// store in the middle of an upload, as a process crash leaves them, and
// opens a new store and storage on the copies: the session resumes from
// exactly the bytes acknowledged, and the object comes out exact.
func TestCrash(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	for i, acked := range []int64{P / 2, P + 10, 2*P + 777, 3 * P} {
		t.Run(fmt.Sprint(acked), func(t *testing.T) {
			content := testutil.RandomBytes(uint64(20+i), 4*P+123)
			key := fmt.Sprintf("crash-%d.bin", i)
			id := e.create(e.store, key, i%2 == 1).ID()
			e.writeUpTo(e.store, id, content, 0, acked, 3<<20)
			e.quiesce(e.st, id)

			tail, dir := t.TempDir(), t.TempDir()
			copyDir(t, e.cfg.TailDir, tail)
			copyDir(t, e.dir, dir)
			cfg := e.cfg
			cfg.TailDir = tail
			st := newStorage(t, cfg)
			store := e.open(dir, st)
			sess, err := store.Get(id)
			if err != nil {
				t.Fatalf("session after the crash: %v", err)
			}
			if got := sess.State().Received; got != acked {
				t.Fatalf("received %d after the crash, want %d", got, acked)
			}
			e.writeAll(store, id, content, acked, 2<<20)
			if _, err := e.settle(store, id, session.SettleOptions{}); err != nil {
				t.Fatalf("Settle: %v", err)
			}
			e.assertObject(key, content)
			e.remove(store, id, session.RemovedClosed)
			e.assertTailEmpty(tail, id)
		})
	}
}

// TestStoreDown stops the gateway in the middle of an upload: a fragment
// or the commit fails with ErrStorageUnavailable, nothing acknowledged is
// lost, and once the gateway is back the upload completes exact.
func TestStoreDown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = 10 * time.Second })
	const P = testPart
	content := testutil.RandomBytes(30, 4*P+1)
	id := e.create(e.store, "down.bin", false).ID()
	e.mustWrite(e.store, id, content, 0, P+99)
	e.quiesce(e.st, id)
	e.srv.Stop()

	var failed error
	from := int64(P + 100)
	for from < int64(len(content)) && failed == nil {
		last := min(from+P, int64(len(content))) - 1
		res, err := e.write(e.store, id, content, from, last)
		if err != nil {
			failed = err
		}
		from = res.Received
	}
	if failed == nil {
		_, failed = e.settle(e.store, id, session.SettleOptions{})
	}
	if !errors.Is(failed, session.ErrStorageUnavailable) {
		t.Fatalf("with the store down: %v, want ErrStorageUnavailable", failed)
	}
	t.Logf("with the store down: %v", failed)
	sess, _ := e.store.Get(id)
	received := sess.State().Received
	if received != from {
		t.Fatalf("received %d, but %d acknowledged", received, from)
	}

	e.srv.Start()
	e.writeAll(e.store, id, content, received, P/2)
	if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
		t.Fatalf("Settle after the store came back: %v", err)
	}
	e.assertObject("down.bin", content)
	e.remove(e.store, id, session.RemovedClosed)
	e.assertBucket("down.bin")
	e.assertTailEmpty(e.cfg.TailDir)
}

// TestExpiredMultipartUpload aborts a session's multipart upload behind
// its back, as a store's lifecycle rule would: the next part upload or
// the commit fails with ErrDataLost.
func TestExpiredMultipartUpload(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	content := testutil.RandomBytes(31, 3*P+10)
	id := e.create(e.store, "expired.bin", false).ID()
	e.mustWrite(e.store, id, content, 0, P+99)
	e.quiesce(e.st, id)
	ups := e.uploads()
	if len(ups) != 1 {
		t.Fatalf("%d multipart uploads, want 1", len(ups))
	}
	d, _ := e.st.open.Load(id)
	if err := d.(*data).abort(*ups[0].Key, *ups[0].UploadId); err != nil {
		t.Fatal(err)
	}
	var failed error
	from := int64(P + 100)
	for from < int64(len(content)) && failed == nil {
		res, err := e.write(e.store, id, content, from, min(from+P, int64(len(content)))-1)
		failed, from = err, res.Received
	}
	if failed == nil {
		_, failed = e.settle(e.store, id, session.SettleOptions{})
	}
	if !errors.Is(failed, session.ErrDataLost) || errors.Is(failed, session.ErrStorageUnavailable) {
		t.Fatalf("after the multipart upload expired: %v, want ErrDataLost", failed)
	}
	e.remove(e.store, id, session.RemovedCancelled)
	e.assertBucket()
	e.assertTailEmpty(e.cfg.TailDir)
}

// TestNotifyByValue settles sessions with a notification that reads the
// upload back and asks to place it: the bytes read are the upload's, the
// object is exact, and the staging object is gone.
func TestNotifyByValue(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	for i, size := range []int64{0, 1000, 3*P + 5} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			content := testutil.RandomBytes(uint64(40+i), int(size))
			key := fmt.Sprintf("notify-%d.bin", i)
			id := e.create(e.store, key, true).ID()
			if size == 0 {
				l, _ := e.store.Acquire(t.Context(), id, nil)
				_, err := l.Write(protocol.Range{First: 0, Last: -1, Total: 0}, strings.NewReader(""), session.WriteOptions{})
				l.Release()
				if err != nil {
					t.Fatal(err)
				}
			} else {
				e.writeAll(e.store, id, content, 0, 2<<20)
			}
			var notified int
			e.quiesce(e.st, id)
			before := e.cnt.Count()
			e.cnt.Ops()
			res, err := e.settle(e.store, id, session.SettleOptions{Notify: func(ctx context.Context, d *session.Delivery) (session.FinalInfo, error) {
				notified++
				rc, err := d.Open()
				if err != nil {
					return session.FinalInfo{}, err
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				if err != nil {
					return session.FinalInfo{}, err
				}
				if got, want := testutil.SHA256(b), testutil.SHA256(content); got != want {
					t.Errorf("read back %d bytes, sha256 %s, want %s", len(b), got, want)
				}
				sum, err := d.Digest()
				if err != nil {
					return session.FinalInfo{}, err
				}
				if got := fmt.Sprintf("%x", sum); got != testutil.SHA256(content) {
					t.Errorf("digest %s, want %s", got, testutil.SHA256(content))
				}
				// By reference: the staging object, through a
				// presigned URL.
				bucket, skey, err := e.st.Locate(ctx, d.State().ID)
				if err != nil {
					return session.FinalInfo{}, err
				}
				if bucket != e.cfg.Bucket || !strings.HasPrefix(skey, ".bits/staging/") {
					t.Errorf("located at %s/%s", bucket, skey)
				}
				u, err := e.st.PresignGet(ctx, skey, time.Minute)
				if err != nil {
					return session.FinalInfo{}, err
				}
				resp, err := http.Get(u)
				if err != nil {
					return session.FinalInfo{}, err
				}
				defer resp.Body.Close()
				b, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || testutil.SHA256(b) != testutil.SHA256(content) {
					t.Errorf("presigned GET: %s, %d bytes, sha256 %s", resp.Status, len(b), testutil.SHA256(b))
				}
				return session.FinalInfo{Commit: true}, nil
			}})
			if err != nil {
				t.Fatalf("Settle: %v", err)
			}
			if notified != 1 || !res.Placed {
				t.Fatalf("notified %d times, placed %v", notified, res.Placed)
			}
			t.Logf("settle with a notification by value and by reference, of %d bytes: %d requests %v", size, e.cnt.Count()-before, e.cnt.Ops())
			e.assertObject(key, content)
			e.assertBucket(keysUpTo(i)...)
			e.remove(e.store, id, session.RemovedClosed)
			e.assertTailEmpty(e.cfg.TailDir)
		})
	}
	// An upload the application does not want placed: its staging object
	// goes with its bytes.
	content := testutil.RandomBytes(50, 2*P+3)
	id := e.create(e.store, "unwanted.bin", true).ID()
	e.writeAll(e.store, id, content, 0, P)
	if _, err := e.settle(e.store, id, session.SettleOptions{Notify: func(_ context.Context, d *session.Delivery) (session.FinalInfo, error) {
		rc, err := d.Open()
		if err != nil {
			return session.FinalInfo{}, err
		}
		return session.FinalInfo{}, rc.Close()
	}}); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	e.assertBucket(keysUpTo(2)...)
	e.remove(e.store, id, session.RemovedClosed)
	e.assertTailEmpty(e.cfg.TailDir)
}

// keysUpTo returns the keys of the notified uploads 0 to i.
func keysUpTo(i int) []string {
	var keys []string
	for k := 0; k <= i; k++ {
		keys = append(keys, fmt.Sprintf("notify-%d.bin", k))
	}
	return keys
}

// TestProbeConditionalWrites proves that versitygw honours conditional
// writes, and that the probe leaves nothing behind.
func TestProbeConditionalWrites(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.st.ProbeConditionalWrites(t.Context()); err != nil {
		t.Fatalf("ProbeConditionalWrites: %v", err)
	}
	e.assertBucket()
}

// TestNew checks that a missing bucket and wrong credentials are clear
// errors that name the bucket.
func TestNew(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.cfg
	cfg.Bucket = "no-such-bucket"
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), `"no-such-bucket" does not exist`) {
		t.Errorf("New with a missing bucket: %v", err)
	}
	cfg = e.cfg
	cfg.SecretKey = "wrong"
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), `"bits-test" denied`) {
		t.Errorf("New with wrong credentials: %v", err)
	}
	cfg = e.cfg
	cfg.PartSize = 1 << 20
	if _, err := New(t.Context(), cfg); err == nil {
		t.Error("New accepted a part size of 1 MiB")
	}
	cfg = e.cfg
	cfg.TailDir = "relative"
	if _, err := New(t.Context(), cfg); err == nil {
		t.Error("New accepted a relative tail directory")
	}
}

// TestCheckDestination checks the destinations Create-Session accepts.
func TestCheckDestination(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Prefix = "up/" })
	e.putObject("up/there.bin", []byte("x"))
	for _, c := range []struct {
		path      string
		overwrite bool
		want      error
	}{
		{"new.bin", false, nil},
		{"there.bin", false, session.ErrDestinationExists},
		{"there.bin", true, nil},
		{".bits/staging/x", true, session.ErrInvalidDestination},
		{strings.Repeat("a", 1100), false, session.ErrInvalidName},
	} {
		err := e.st.CheckDestination(t.Context(), session.Destination{Root: "/", Path: c.path}, c.overwrite)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("CheckDestination(%.20s, %v) = %v, want %v", c.path, c.overwrite, err, c.want)
		}
	}
	e.srv.Stop()
	err := e.st.CheckDestination(t.Context(), session.Destination{Root: "/", Path: "new.bin"}, false)
	if !errors.Is(err, session.ErrStorageUnavailable) {
		t.Errorf("CheckDestination with the store down = %v, want ErrStorageUnavailable", err)
	}
}

// TestPlaceAgain places an upload, forgets that it did (a crash before the
// session recorded it), and places it again: that succeeds, for a
// multipart upload and a single part, and the object stays exact.
func TestPlaceAgain(t *testing.T) {
	e := newEnv(t, nil)
	const P = testPart
	for i, size := range []int64{100, 2*P + 1} {
		content := testutil.RandomBytes(uint64(60+i), int(size))
		key := fmt.Sprintf("again-%d.bin", i)
		id := e.create(e.store, key, false).ID()
		e.writeAll(e.store, id, content, 0, P)
		if _, err := e.settle(e.store, id, session.SettleOptions{}); err != nil {
			t.Fatalf("Settle: %v", err)
		}
		tail, dir := t.TempDir(), t.TempDir()
		copyDir(t, e.cfg.TailDir, tail)
		copyDir(t, e.dir, dir)
		cfg := e.cfg
		cfg.TailDir = tail
		st := newStorage(t, cfg)
		v, _ := e.st.open.Load(id)
		rec := v.(*data).rec
		d, err := st.openData(session.DataRef{ID: id, Total: size, Dest: session.Destination{Root: "/", Path: key}, Record: mustJSON(t, rec), Journal: nopJournal{}})
		if err != nil {
			t.Fatal(err)
		}
		if !d.Placed(session.Destination{Root: "/", Path: key}) {
			t.Errorf("%s: not recognised as placed", key)
		}
		if err := d.Place(t.Context(), session.Destination{Root: "/", Path: key}, false); err != nil {
			t.Errorf("placing %s again: %v", key, err)
		}
		e.assertObject(key, content)
	}
}
