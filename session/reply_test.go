package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// delivery returns the Delivery a notification of the leased session
// gets, for the reply storage it offers.
func delivery(l *Lease) *Delivery { return &Delivery{l: l} }

// TestReplySetFinal: Settle records a notification's outcome before it
// does what the outcome asks for, so that an outcome whose placement
// failed is kept, across a restart, and the application is not asked
// again.
func TestReplySetFinal(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(80, 1000)
	sess := create(t, store, root, "f.bin")
	info := FinalInfo{ReplyURL: "https://example.com/r", ReplySize: 42, Commit: true}
	calls := 0
	opts := SettleOptions{Notify: notifyWith(info, &calls)}

	if _, err := settle(t, sess, opts); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Settle before completion = %v, want ErrIncomplete", err)
	}
	if _, ok := sess.final(); ok || calls != 0 {
		t.Fatalf("outcome recorded (%d notifications) by a failed Settle", calls)
	}
	upload(t, sess, content, 300)
	existing := []byte("somebody else's file")
	writeFile(t, filepath.Join(root, "f.bin"), existing)
	if _, err := settle(t, sess, opts); !errors.Is(err, ErrDestinationExists) {
		t.Fatalf("Settle onto an existing file = %v, want ErrDestinationExists", err)
	}
	if got, ok := sess.final(); !ok || got != info || calls != 1 {
		t.Fatalf("final = %+v, %v after %d notifications; want %+v after one", got, ok, calls, info)
	}
	if d := diskState(t, sess); d.Final == nil || *d.Final != info {
		t.Fatalf("state file final = %+v, want %+v", d.Final, info)
	}
	// Decided but not finished yet.
	if _, ok := sess.Finished(); ok {
		t.Fatal("a Settle that could not place the upload marked the session finished")
	}
	testutil.AssertFile(t, filepath.Join(root, "f.bin"), existing)

	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := sess.final(); !ok || got != info {
		t.Fatalf("final after reopen = %+v, %v; want %+v", got, ok, info)
	}
	if _, ok := sess.Finished(); ok {
		t.Fatal("finished after reopen, although the upload was never placed")
	}
	// Once the destination is free, Settle places the upload without
	// asking the application again.
	if err := os.Remove(filepath.Join(root, "f.bin")); err != nil {
		t.Fatal(err)
	}
	res, err := settle(t, sess, opts)
	if err != nil || res.Notified || !res.Placed || calls != 1 || res.Final != info {
		t.Fatalf("Settle after reopen = %+v, %v after %d notifications; want placed, not notified again", res, err, calls)
	}
	testutil.AssertFile(t, filepath.Join(root, "f.bin"), content)
}

func TestReplyStore(t *testing.T) {
	const max = 1000
	tests := []struct {
		name    string
		body    io.Reader
		want    []byte // nil: ErrReplyTooLarge, no reply stored
		wantErr error
	}{
		{name: "empty", body: bytes.NewReader(nil), want: []byte{}},
		{name: "small", body: bytes.NewReader([]byte("hello reply")), want: []byte("hello reply")},
		{name: "exactly max", body: bytes.NewReader(fill('x', max)), want: fill('x', max)},
		{name: "max plus one", body: bytes.NewReader(fill('x', max+1)), wantErr: ErrReplyTooLarge},
		{name: "much larger", body: bytes.NewReader(fill('x', 10*max)), wantErr: ErrReplyTooLarge},
		{name: "reader fails", body: errAfter([]byte("partial"), errors.New("backend hung up")), wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t, "", Options{})
			sess := create(t, store, "", "f.bin")
			// A previous reply must survive a failed replacement.
			prev := []byte("previous reply")
			locked(t, sess, func(l *Lease) {
				if _, err := delivery(l).StoreReply(bytes.NewReader(prev), max); err != nil {
					t.Fatal(err)
				}
			})
			var n int64
			var err error
			locked(t, sess, func(l *Lease) { n, err = delivery(l).StoreReply(tt.body, max) })
			mustNotExist(t, sess.ReplyPath()+".tmp")
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("StoreReply = %d, %v; want %v", n, err, tt.wantErr)
				}
				if got := fileSum(t, sess.ReplyPath()); got != sum(prev) {
					t.Fatal("failed StoreReply replaced the previous reply")
				}
				return
			}
			if err != nil || n != int64(len(tt.want)) {
				t.Fatalf("StoreReply = %d, %v; want %d", n, err, len(tt.want))
			}
			if got := fileSum(t, sess.ReplyPath()); got != sum(tt.want) {
				t.Fatal("stored reply differs")
			}
			f, err := sess.OpenReply()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if !bytes.Equal(b, tt.want) {
				t.Fatal("OpenReply content differs")
			}
		})
	}
}

var errAny = errors.New("any error")

func TestReplyAdopt(t *testing.T) {
	const max = 100
	store := openStore(t, "", Options{})

	t.Run("written by the application", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		writeFile(t, sess.ReplyPath(), []byte("app reply"))
		var n int64
		var err error
		locked(t, sess, func(l *Lease) {
			if got := delivery(l).ReplyPath(); got != sess.ReplyPath() {
				t.Errorf("Delivery.ReplyPath = %s, want %s", got, sess.ReplyPath())
			}
			n, err = delivery(l).AdoptReply(max)
		})
		if err != nil || n != 9 {
			t.Fatalf("AdoptReply = %d, %v", n, err)
		}
		if got := fileSum(t, sess.ReplyPath()); got != sum([]byte("app reply")) {
			t.Fatal("adopted reply changed")
		}
	})
	t.Run("none written", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		var n int64
		var err error
		locked(t, sess, func(l *Lease) { n, err = delivery(l).AdoptReply(max) })
		if err != nil || n != 0 || fileSize(t, sess.ReplyPath()) != 0 {
			t.Fatalf("AdoptReply without a file = %d, %v", n, err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		writeFile(t, sess.ReplyPath(), fill('r', max+1))
		var err error
		locked(t, sess, func(l *Lease) { _, err = delivery(l).AdoptReply(max) })
		if !errors.Is(err, ErrReplyTooLarge) {
			t.Fatalf("AdoptReply = %v, want ErrReplyTooLarge", err)
		}
		mustNotExist(t, sess.ReplyPath())
	})
	t.Run("not a regular file", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		mkdir(t, sess.ReplyPath())
		var err error
		locked(t, sess, func(l *Lease) { _, err = delivery(l).AdoptReply(max) })
		if err == nil {
			t.Fatal("AdoptReply of a directory succeeded")
		}
	})
	t.Run("discard", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		writeFile(t, sess.ReplyPath(), []byte("x"))
		locked(t, sess, func(l *Lease) {
			for i := 0; i < 2; i++ { // idempotent
				if err := delivery(l).DiscardReply(); err != nil {
					t.Fatalf("DiscardReply #%d: %v", i, err)
				}
			}
		})
		mustNotExist(t, sess.ReplyPath())
	})
}

func TestReplyOpenAfterRemove(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	reply := randBytes(81, 5000)
	locked(t, sess, func(l *Lease) {
		if _, err := delivery(l).StoreReply(bytes.NewReader(reply), 1<<20); err != nil {
			t.Fatal(err)
		}
	})
	f, err := sess.OpenReply()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := store.Remove(t.Context(), sess.ID(), RemovedClosed); err != nil {
		t.Fatal(err)
	}
	mustHaveNoFiles(t, store.Dir(), sess.ID())
	// A download in progress completes from the open file.
	b, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(b, reply) {
		t.Fatalf("reading an open reply after Remove: %d bytes, %v", len(b), err)
	}
	if _, err := sess.OpenReply(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenReply after Remove = %v, want ErrNotFound", err)
	}
}

// TestDiscardData: Settle deletes a delivered upload's bytes once its
// outcome is recorded, and only then; the session still answers as
// complete, before and after a restart.
func TestDiscardData(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(82, 3000)
	sess := completed(t, store, root, "f.bin", content)

	failing := errors.New("the application is down")
	_, err := settle(t, sess, SettleOptions{Notify: func(context.Context, *Delivery) (FinalInfo, error) {
		return FinalInfo{}, failing
	}})
	if !errors.Is(err, failing) {
		t.Fatalf("Settle with a failing notification = %v, want its error", err)
	}
	testutil.AssertFile(t, dataPath(sess), content)
	calls := 0
	info := FinalInfo{ReplyURL: "u", Commit: true}
	for i := 0; i < 2; i++ {
		res, err := settle(t, sess, SettleOptions{Notify: notifyWith(info, &calls)})
		if err != nil || res.DiscardError != nil {
			t.Fatalf("Settle #%d: %+v, %v", i, res, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d notifications, want 1", calls)
	}
	mustNotExist(t, dataPath(sess))
	if st := sess.State(); st.Received != 3000 || !st.Complete() || !st.DataDiscarded {
		t.Fatalf("after discarding the data: %+v", st)
	}
	if d := diskState(t, sess); !d.DataDiscarded {
		t.Fatal("data deleted before the state file says so")
	}
	if got := fileSum(t, filepath.Join(root, "f.bin")); got != sum(content) {
		t.Fatal("committed destination damaged by discarding the data")
	}
	// A retransmitted final fragment still gets the final answer.
	res, err := writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t})
	if err != nil || !res.Complete || res.Action != protocol.AlreadyHeld || res.Received != 3000 {
		t.Fatalf("final fragment after discarding the data: %+v, %v", res, err)
	}
	mustNotExist(t, dataPath(sess))

	// So does a restarted server.
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{})
	sess, err = store.Get(id)
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if st := sess.State(); st.Received != 3000 || !st.Complete() || !st.Finished || !bytes.Equal(st.Digest, sha(content)) {
		t.Fatalf("after reopen: %+v", st)
	}
	if info, ok := sess.Finished(); !ok || info.ReplyURL != "u" {
		t.Fatalf("Finished after reopen = %+v, %v", info, ok)
	}
	res, err = writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t})
	if err != nil || !res.Complete || res.Received != 3000 {
		t.Fatalf("final fragment after reopen: %+v, %v", res, err)
	}
	mustNotExist(t, dataPath(sess))
}

// TestCommitAfterDiscardData: once the data file is gone, placing must
// not put anything at the destination (least of all an empty file
// standing in for the upload).
func TestCommitAfterDiscardData(t *testing.T) {
	root := t.TempDir()
	store := openStore(t, "", Options{})
	content := randBytes(83, 3000)
	sess := completed(t, store, root, "f.bin", content)
	calls := 0
	// Delivered by notification, not committed.
	if _, err := settle(t, sess, SettleOptions{Notify: notifyWith(FinalInfo{}, &calls)}); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, dataPath(sess))
	if res, err := settle(t, sess, SettleOptions{}); err != nil || !res.Cached || res.Placed {
		t.Fatalf("Settle after the data was discarded = %+v, %v; want the cached answer", res, err)
	}
	var err error
	locked(t, sess, func(l *Lease) { err = l.s.place(t.Context(), false) })
	dest := filepath.Join(root, "f.bin")
	if err == nil {
		if fi, serr := os.Stat(dest); serr == nil && fi.Size() != int64(len(content)) {
			t.Fatalf("placing after the data was discarded succeeds and places a %d-byte file (the upload has %d bytes)",
				fi.Size(), len(content))
		}
		t.Fatal("placing after the data was discarded succeeded")
	}
	mustNotExist(t, dest)
	mustNotExist(t, dataPath(sess))
}
