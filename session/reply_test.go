package session

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// locked runs f with the session's request lock held.
func locked(t *testing.T, sess *Session, f func()) {
	t.Helper()
	if err := sess.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer sess.Unlock()
	f()
}

func TestReplySetFinal(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(80, 1000)
	sess := create(t, store, "", "f.bin")
	info := FinalInfo{ReplyURL: "https://example.com/r", ReplySize: 42, Commit: true}

	locked(t, sess, func() {
		if err := sess.SetFinal(info); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("SetFinal before completion = %v, want ErrIncomplete", err)
		}
	})
	if _, ok := sess.Final(); ok {
		t.Fatal("Final set by a failed SetFinal")
	}
	upload(t, sess, content, 300)
	locked(t, sess, func() {
		if err := sess.SetFinal(info); err != nil {
			t.Fatal(err)
		}
	})
	if got, ok := sess.Final(); !ok || got != info {
		t.Fatalf("Final = %+v, %v; want %+v", got, ok, info)
	}
	// Decided but not finished yet.
	if _, ok := sess.Finished(); ok {
		t.Fatal("SetFinal marked the session finished")
	}
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openStore(t, dir, Options{})
	sess, err := store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := sess.Final(); !ok || got != info {
		t.Fatalf("Final after reopen = %+v, %v; want %+v", got, ok, info)
	}
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
			locked(t, sess, func() {
				if _, err := sess.StoreReply(bytes.NewReader(prev), max); err != nil {
					t.Fatal(err)
				}
			})
			var n int64
			var err error
			locked(t, sess, func() { n, err = sess.StoreReply(tt.body, max) })
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
		locked(t, sess, func() { n, err = sess.AdoptReply(max) })
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
		locked(t, sess, func() { n, err = sess.AdoptReply(max) })
		if err != nil || n != 0 || fileSize(t, sess.ReplyPath()) != 0 {
			t.Fatalf("AdoptReply without a file = %d, %v", n, err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		writeFile(t, sess.ReplyPath(), fill('r', max+1))
		var err error
		locked(t, sess, func() { _, err = sess.AdoptReply(max) })
		if !errors.Is(err, ErrReplyTooLarge) {
			t.Fatalf("AdoptReply = %v, want ErrReplyTooLarge", err)
		}
		mustNotExist(t, sess.ReplyPath())
	})
	t.Run("not a regular file", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		mkdir(t, sess.ReplyPath())
		var err error
		locked(t, sess, func() { _, err = sess.AdoptReply(max) })
		if err == nil {
			t.Fatal("AdoptReply of a directory succeeded")
		}
	})
	t.Run("discard", func(t *testing.T) {
		sess := create(t, store, "", "f.bin")
		writeFile(t, sess.ReplyPath(), []byte("x"))
		for i := 0; i < 2; i++ { // idempotent
			if err := sess.DiscardReply(); err != nil {
				t.Fatalf("DiscardReply #%d: %v", i, err)
			}
		}
		mustNotExist(t, sess.ReplyPath())
	})
}

func TestReplyOpenAfterRemove(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	reply := randBytes(81, 5000)
	locked(t, sess, func() {
		if _, err := sess.StoreReply(bytes.NewReader(reply), 1<<20); err != nil {
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
	mustNotExist(t, sess.dir)
	// A download in progress completes from the open file.
	b, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(b, reply) {
		t.Fatalf("reading an open reply after Remove: %d bytes, %v", len(b), err)
	}
	if _, err := sess.OpenReply(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenReply after Remove = %v, want ErrNotFound", err)
	}
}

func TestDiscardData(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	store := openStore(t, dir, Options{})
	content := randBytes(82, 3000)
	sess := completed(t, store, root, "f.bin", content)

	locked(t, sess, func() {
		if err := sess.DiscardData(); err == nil {
			t.Fatal("DiscardData of an unfinished session succeeded")
		}
	})
	mustExist(t, sess.DataPath())
	locked(t, sess, func() {
		if err := sess.Commit(false); err != nil {
			t.Fatal(err)
		}
		if err := sess.Finish(FinalInfo{ReplyURL: "u", Commit: true}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := sess.DiscardData(); err != nil {
				t.Fatalf("DiscardData #%d: %v", i, err)
			}
		}
	})
	mustNotExist(t, sess.DataPath())
	if st := sess.State(); st.Received != 3000 || !st.Complete() || !st.DataDiscarded {
		t.Fatalf("after DiscardData: %+v", st)
	}
	if got := fileSum(t, filepath.Join(root, "f.bin")); got != sum(content) {
		t.Fatal("committed destination damaged by DiscardData")
	}
	// A retransmitted final fragment still gets the final answer.
	res, err := writeBody(t, sess, rng(2000, 2999, 3000), unreadable{t})
	if err != nil || !res.Complete || res.Action != protocol.AlreadyHeld || res.Received != 3000 {
		t.Fatalf("final fragment after DiscardData: %+v, %v", res, err)
	}
	mustNotExist(t, sess.DataPath())

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
	mustNotExist(t, sess.DataPath())
}

// TestCommitAfterDiscardData: once the data file is gone, Commit must not
// place anything at the destination (least of all an empty file standing
// in for the upload).
func TestCommitAfterDiscardData(t *testing.T) {
	root := t.TempDir()
	store := openStore(t, "", Options{})
	content := randBytes(83, 3000)
	sess := completed(t, store, root, "f.bin", content)
	var err error
	locked(t, sess, func() {
		if err := sess.Finish(FinalInfo{}); err != nil { // delivered by notification, not committed
			t.Fatal(err)
		}
		if err := sess.DiscardData(); err != nil {
			t.Fatal(err)
		}
		err = sess.Commit(false)
	})
	dest := filepath.Join(root, "f.bin")
	if err == nil {
		if fi, serr := os.Stat(dest); serr == nil && fi.Size() != int64(len(content)) {
			t.Fatalf("Commit after DiscardData succeeds and places a %d-byte file (the upload has %d bytes): "+
				"Commit opens the data file with O_CREATE", fi.Size(), len(content))
		}
	}
	if err == nil {
		t.Fatal("Commit after DiscardData succeeded")
	}
	mustNotExist(t, dest)
}
