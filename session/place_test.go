package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// placeWrite writes the whole upload in one fragment, to be placed
// straight at its destination.
func placeWrite(t *testing.T, sess *Session, content []byte, body io.Reader, overwrite bool) (WriteResult, error) {
	t.Helper()
	n := int64(len(content))
	return writeOpts(t, sess, rng(0, n-1, n), body, WriteOptions{Place: true, Overwrite: overwrite})
}

// TestPlaceStraight: an upload that arrives in one fragment and is placed
// without a notification is written next to its destination and placed
// by Write itself. The session holds no file; its state, in the journal,
// names the placed file, so that a restart after a crash finds it
// finished and answers a retransmitted final fragment.
func TestPlaceStraight(t *testing.T) {
	if _, ok := Storage(NewLocalStorage(t.TempDir())).(StreamPlacer); !ok {
		t.Skip("the local storage stages no upload on this system")
	}
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(90, 5000)
	sess := create(t, store, root, "a/b/f.bin")
	dest := filepath.Join(root, "a", "b", "f.bin")

	res, err := placeWrite(t, sess, content, bytes.NewReader(content), false)
	if err != nil || !res.Complete || res.Written != 5000 || res.Received != 5000 {
		t.Fatalf("Write = %+v, %v", res, err)
	}
	testutil.AssertFile(t, dest, content)
	if es := entries(t, filepath.Dir(dest)); len(es) != 1 {
		t.Errorf("destination directory holds %v, want only f.bin", es)
	}
	st := sess.State()
	if !st.Committed || !st.DataDiscarded || st.Received != 5000 || st.Total != 5000 {
		t.Fatalf("state after placing straight: %+v", st)
	}
	mustNotExist(t, dataPath(sess))
	mustNotExist(t, statePath(sess))
	mustHaveNoFiles(t, dir, sess.ID())
	js := journalState(t, dir, store.key, sess.ID())
	if js == nil {
		t.Fatal("the journal holds no state of the placed session")
	}
	var rec localRecord
	if err := json.Unmarshal(js.Data, &rec); err != nil {
		t.Fatalf("the journal's record %s: %v", js.Data, err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if dev, ino := fileID(fi); rec.Dev != dev || rec.Ino != ino || ino == 0 {
		t.Errorf("the journal records file %d/%d, the destination is %d/%d", rec.Dev, rec.Ino, dev, ino)
	}
	if js.Total != 5000 {
		t.Errorf("journal state: total %d", js.Total)
	}

	// A process crash right now.
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	crashedCopy := filepath.Join(t.TempDir(), "crashed-copy")
	copyTree(t, dir, crashedCopy)

	set, err := settle(t, sess, SettleOptions{})
	if err != nil || !set.Placed || set.PlaceTime <= 0 || set.Cached || !set.Final.Commit {
		t.Fatalf("Settle = %+v, %v; want the placement Write did reported", set, err)
	}
	if set, err := settle(t, sess, SettleOptions{}); err != nil || !set.Cached || set.Placed {
		t.Fatalf("Settle again = %+v, %v; want the cached answer", set, err)
	}
	if res, err := placeWrite(t, sess, content, unreadable{t}, false); err != nil || res.Action != protocol.AlreadyHeld || !res.Complete {
		t.Fatalf("retransmitted fragment: %+v, %v", res, err)
	}

	store2 := openStore(t, crashed, Options{})
	s2, err := store2.Get(sess.ID())
	if err != nil {
		t.Fatalf("placed session after a crash: %v", err)
	}
	st = s2.State()
	if !st.Committed || !st.Finished || !st.DataDiscarded || st.Received != 5000 || st.Total != 5000 {
		t.Fatalf("placed session after a crash: %+v", st)
	}
	if res, err := placeWrite(t, s2, content, unreadable{t}, false); err != nil || res.Action != protocol.AlreadyHeld || !res.Complete {
		t.Fatalf("retransmitted fragment after a crash: %+v, %v", res, err)
	}
	if set, err := settle(t, s2, SettleOptions{}); err != nil || !set.Final.Commit {
		t.Fatalf("Settle after a crash = %+v, %v", set, err)
	}
	testutil.AssertFile(t, dest, content)
	mustHaveNoFiles(t, crashed, sess.ID())

	// The journal that Open rewrites compactly keeps the placement's
	// record: a start after a start finds the session placed again.
	again := filepath.Join(t.TempDir(), "again")
	copyTree(t, crashedCopy, again)
	if err := openStore(t, again, Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	store3 := openStore(t, again, Options{})
	s3, err := store3.Get(sess.ID())
	if err != nil {
		t.Fatalf("placed session after a second start: %v", err)
	}
	if st := s3.State(); !st.Committed || !st.Finished || st.Received != 5000 {
		t.Fatalf("placed session after a second start: %+v", st)
	}
}

// TestPlaceStraightOverwrite: with overwrite, an upload placed straight
// replaces an existing destination.
func TestPlaceStraightOverwrite(t *testing.T) {
	root := t.TempDir()
	store := openStore(t, "", Options{})
	content := randBytes(91, 3000)
	dest := filepath.Join(root, "f.bin")
	writeFile(t, dest, []byte("the old file"))
	sess := create(t, store, root, "f.bin")
	if res, err := placeWrite(t, sess, content, bytes.NewReader(content), true); err != nil || !res.Complete {
		t.Fatalf("Write = %+v, %v", res, err)
	}
	testutil.AssertFile(t, dest, content)
	if es := entries(t, root); len(es) != 1 {
		t.Errorf("root holds %v, want only f.bin", es)
	}
	if !sess.State().Committed {
		t.Error("not committed")
	}
	mustNotExist(t, dataPath(sess))
}

// TestPlaceStraightDestinationExists: when the destination exists and
// may not be overwritten, the upload Write staged is kept in the session,
// as an ordinary upload, for Settle to report the conflict, also after a
// crash, and to place it once allowed to.
func TestPlaceStraightDestinationExists(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(92, 5000)
	existing := []byte("somebody else's file")
	dest := filepath.Join(root, "f.bin")
	writeFile(t, dest, existing)
	sess := create(t, store, root, "f.bin")

	res, err := placeWrite(t, sess, content, bytes.NewReader(content), false)
	if err != nil || !res.Complete || res.Written != 5000 {
		t.Fatalf("Write = %+v, %v; want the upload held", res, err)
	}
	testutil.AssertFile(t, dest, existing)
	testutil.AssertFile(t, dataPath(sess), content)
	if es := entries(t, root); len(es) != 1 {
		t.Errorf("root holds %v, want only f.bin", es)
	}
	if st := sess.State(); st.Committed || st.DataDiscarded || st.Final != nil || st.Finished {
		t.Fatalf("state after a refused placement: %+v", st)
	}
	if _, err := settle(t, sess, SettleOptions{}); !errors.Is(err, ErrDestinationExists) {
		t.Fatalf("Settle = %v, want ErrDestinationExists", err)
	}
	testutil.AssertFile(t, dest, existing)

	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)
	store2 := openStore(t, crashed, Options{})
	s2, err := store2.Get(sess.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.State(); st.Received != 5000 || st.Committed || st.Finished {
		t.Fatalf("session after a crash: %+v", st)
	}
	if _, err := settle(t, s2, SettleOptions{}); !errors.Is(err, ErrDestinationExists) {
		t.Fatalf("Settle after a crash = %v, want ErrDestinationExists", err)
	}
	testutil.AssertFile(t, dest, existing)

	if set, err := settle(t, sess, SettleOptions{Overwrite: true}); err != nil || !set.Placed {
		t.Fatalf("Settle with overwrite = %+v, %v", set, err)
	}
	testutil.AssertFile(t, dest, content)
}

// TestPlaceStraightShortBody: when the only fragment's body ends early,
// nothing is placed, the bytes that arrived are kept in the session, and
// the upload completes as an ordinary one.
func TestPlaceStraightShortBody(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(93, 5000)
	sess := create(t, store, root, "a/f.bin")
	dest := filepath.Join(root, "a", "f.bin")

	res, err := placeWrite(t, sess, content, errAfter(content[:2000], io.ErrUnexpectedEOF), false)
	if !errors.Is(err, ErrBodyIncomplete) || res.Written != 2000 || res.Received != 2000 || res.Complete {
		t.Fatalf("Write = %+v, %v; want 2000 bytes kept and ErrBodyIncomplete", res, err)
	}
	mustNotExist(t, dest)
	if es, _ := os.ReadDir(filepath.Dir(dest)); len(es) != 0 {
		t.Errorf("destination directory holds %d entries", len(es))
	}
	testutil.AssertFile(t, dataPath(sess), content[:2000])
	if d := diskState(t, sess); d.Received != 2000 || d.Total != 5000 || len(d.Data) != 0 || d.Final != nil {
		t.Fatalf("state file: received %d total %d data %s final %+v", d.Received, d.Total, d.Data, d.Final)
	}
	if st := sess.State(); st.Committed || st.DataDiscarded {
		t.Fatalf("state: %+v", st)
	}

	res, err = writeOpts(t, sess, rng(2000, 4999, 5000), bytes.NewReader(content[2000:]), WriteOptions{Place: true})
	if err != nil || !res.Complete {
		t.Fatalf("resumed Write = %+v, %v", res, err)
	}
	mustNotExist(t, dest)
	if set, err := settle(t, sess, SettleOptions{}); err != nil || !set.Placed {
		t.Fatalf("Settle = %+v, %v", set, err)
	}
	testutil.AssertFile(t, dest, content)
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}

// TestPlaceStraightOnlyWhenAllowed: an upload that is not to be placed
// without a notification (Place false), or that arrives in several
// fragments, is held in the session until Settle.
func TestPlaceStraightOnlyWhenAllowed(t *testing.T) {
	root := t.TempDir()
	store := openStore(t, "", Options{})
	content := randBytes(94, 3000)

	notify := create(t, store, root, "notify.bin")
	if res, err := placeWriteOpts(t, notify, content, WriteOptions{}); err != nil || !res.Complete {
		t.Fatalf("Write = %+v, %v", res, err)
	}
	mustNotExist(t, filepath.Join(root, "notify.bin"))
	testutil.AssertFile(t, dataPath(notify), content)

	multi := create(t, store, root, "multi.bin")
	mustWriteOpts(t, multi, content, 0, 999, WriteOptions{Place: true})
	mustWriteOpts(t, multi, content, 1000, 2999, WriteOptions{Place: true})
	mustNotExist(t, filepath.Join(root, "multi.bin"))
	testutil.AssertFile(t, dataPath(multi), content)

	empty := create(t, store, root, "empty.bin")
	if res, err := writeOpts(t, empty, rng(0, -1, 0), bytes.NewReader(nil), WriteOptions{Place: true}); err != nil || !res.Complete {
		t.Fatalf("empty Write = %+v, %v", res, err)
	}
	mustNotExist(t, filepath.Join(root, "empty.bin"))

	for _, s := range []*Session{notify, multi, empty} {
		if set, err := settle(t, s, SettleOptions{}); err != nil || !set.Placed {
			t.Fatalf("Settle of %s = %+v, %v", s.State().Path, set, err)
		}
	}
	testutil.AssertFile(t, filepath.Join(root, "notify.bin"), content)
	testutil.AssertFile(t, filepath.Join(root, "multi.bin"), content)
	testutil.AssertFile(t, filepath.Join(root, "empty.bin"), nil)
}

// placeWriteOpts writes the whole upload in one fragment with opts.
func placeWriteOpts(t *testing.T, sess *Session, content []byte, opts WriteOptions) (WriteResult, error) {
	t.Helper()
	n := int64(len(content))
	return writeOpts(t, sess, rng(0, n-1, n), bytes.NewReader(content), opts)
}

// mustWriteOpts writes content[first:last+1] as a fragment with opts,
// failing the test on error.
func mustWriteOpts(t *testing.T, sess *Session, content []byte, first, last int64, opts WriteOptions) {
	t.Helper()
	if _, err := writeOpts(t, sess, rng(first, last, int64(len(content))), bytes.NewReader(content[first:last+1]), opts); err != nil {
		t.Fatalf("Write %d-%d: %v", first, last, err)
	}
}

// TestPlaceCopyAfterCrash: an upload placed by copying it to another file
// system is recognised after a process crash, so that the client's
// retransmitted final fragment is answered and not refused because the
// destination exists.
func TestPlaceCopyAfterCrash(t *testing.T) {
	root := testutil.MountTmpfs(t, "8m")
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(95, 300<<10)
	sess := completed(t, store, root, "f.bin", content)
	if err := commit(t, sess, false); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyTree(t, dir, crashed)

	store2 := openStore(t, crashed, Options{})
	s2, err := store2.Get(sess.ID())
	if err != nil {
		t.Fatal(err)
	}
	if set, err := settle(t, s2, SettleOptions{}); err != nil {
		t.Fatalf("Settle after a crash = %+v, %v; want the upload recognised at its destination", set, err)
	}
	testutil.AssertFile(t, filepath.Join(root, "f.bin"), content)
}
