package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/internal/testutil"
	"github.com/caddy-bits/caddy-bits/protocol"
)

// waitWaiters waits until n requests wait for the session's request lock
// to take the session over.
func waitWaiters(t *testing.T, sess *Session, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sess.lock.mu.Lock()
		got := sess.lock.waiters
		sess.lock.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests wait for the lock, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// blockingBody is a request body that yields what the test writes into
// it and blocks in between, like a connection that stalled; the
// interrupt function of the request reading it ends it with errStalled.
type blockingBody struct {
	r           *io.PipeReader
	w           *io.PipeWriter
	interrupted atomic.Int32
}

var errStalled = errors.New("body read interrupted")

// newBlockingBody returns a body that yields nothing yet.
func newBlockingBody() *blockingBody {
	b := &blockingBody{}
	b.r, b.w = io.Pipe()
	return b
}

// interrupt is the interrupt function of the request reading b.
func (b *blockingBody) interrupt() {
	b.interrupted.Add(1)
	b.r.CloseWithError(errStalled)
}

// send writes p into the body; it returns once the reader has taken every
// byte.
func (b *blockingBody) send(t *testing.T, p []byte) {
	t.Helper()
	if _, err := b.w.Write(p); err != nil {
		t.Fatalf("sending %d bytes of the body: %v", len(p), err)
	}
}

type writeOutcome struct {
	res WriteResult
	err error
}

// writeInBackground writes a fragment with l from body in a goroutine and
// releases l after, returning the outcome on the channel.
func writeInBackground(l *Lease, r protocol.Range, body io.Reader) <-chan writeOutcome {
	out := make(chan writeOutcome, 1)
	go func() {
		res, err := l.Write(r, body, WriteOptions{})
		out <- writeOutcome{res, err}
		l.Release()
	}()
	return out
}

// TestTakeOverInterruptsABodyRead: a newer request for a session
// interrupts the request that holds it while it reads its body. The
// interrupted Write reports ErrInterrupted and ErrBodyIncomplete, the
// bytes it had written stay, and the newer request goes on from them.
func TestTakeOverInterruptsABodyRead(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	content := randBytes(78, 1000)
	body := newBlockingBody()
	a, err := store.Acquire(t.Context(), sess.ID(), body.interrupt)
	if err != nil {
		t.Fatal(err)
	}
	out := writeInBackground(a, rng(0, 999, 1000), body.r)
	body.send(t, content[:400])
	if n := body.interrupted.Load(); n != 0 {
		t.Fatalf("interrupted %d times before a newer request arrived", n)
	}

	type acquired struct {
		l   *Lease
		err error
	}
	newer := make(chan acquired, 1)
	go func() {
		l, err := store.Acquire(context.Background(), sess.ID(), nil)
		newer <- acquired{l, err}
	}()
	got := within(t, out, "the interrupted Write's return")
	nb := within(t, newer, "the newer Acquire")
	if nb.err != nil {
		t.Fatalf("the newer Acquire: %v", nb.err)
	}
	b := nb.l
	defer b.Release()
	if n := body.interrupted.Load(); n != 1 {
		t.Fatalf("the holder's interrupt function was called %d times, want once", n)
	}
	if !errors.Is(got.err, ErrInterrupted) || !errors.Is(got.err, ErrBodyIncomplete) {
		t.Fatalf("interrupted Write = %v, want an error wrapping ErrInterrupted and ErrBodyIncomplete", got.err)
	}
	if got.res.Written != 400 || got.res.Received != 400 || got.res.Complete {
		t.Fatalf("interrupted Write = %+v, want 400 bytes written and held", got.res)
	}
	if st := b.State(); st.Received != 400 {
		t.Fatalf("the newer request finds %d bytes held, want 400", st.Received)
	}
	testutil.AssertFile(t, dataPath(sess), content[:400])

	res, err := b.Write(rng(400, 999, 1000), bytes.NewReader(content[400:]), WriteOptions{})
	if err != nil || !res.Complete || res.Written != 600 {
		t.Fatalf("the newer request's Write = %+v, %v", res, err)
	}
	testutil.AssertFile(t, dataPath(sess), content)
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}

// TestTakeOverBeforeTheBodyRead: a newer request that already waits when
// the holder starts to read its body interrupts it at once; nothing is
// written.
func TestTakeOverBeforeTheBodyRead(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	body := newBlockingBody()
	a, err := store.Acquire(t.Context(), sess.ID(), body.interrupt)
	if err != nil {
		t.Fatal(err)
	}
	acquired := make(chan error, 1)
	go func() {
		b, err := store.Acquire(context.Background(), sess.ID(), nil)
		if err == nil {
			b.Release()
		}
		acquired <- err
	}()
	waitWaiters(t, sess, 1)
	got := within(t, writeInBackground(a, rng(0, 999, 1000), body.r), "the interrupted Write's return")
	if !errors.Is(got.err, ErrInterrupted) || !errors.Is(got.err, ErrBodyIncomplete) || got.res.Written != 0 {
		t.Fatalf("Write with a newer request waiting = %+v, %v; want nothing written, ErrInterrupted", got.res, got.err)
	}
	if n := body.interrupted.Load(); n != 1 {
		t.Fatalf("interrupt function called %d times, want once", n)
	}
	if err := within(t, acquired, "the newer Acquire"); err != nil {
		t.Fatal(err)
	}
	if st := sess.State(); st.Received != 0 {
		t.Fatalf("%d bytes held after an interrupted Write that read none", st.Received)
	}
	if fi, err := os.Stat(dataPath(sess)); err == nil && fi.Size() != 0 {
		t.Fatalf("data file holds %d bytes after an interrupted Write that read none", fi.Size())
	}
}

// TestRemoveWaitsWithoutInterrupting: Store.Remove, on behalf of an
// operator, waits for the request that holds the session, however long
// its body takes, and never interrupts it.
func TestRemoveWaitsWithoutInterrupting(t *testing.T) {
	var rec removals
	store := openStore(t, "", Options{OnRemove: rec.hook})
	sess := create(t, store, "", "f.bin")
	content := randBytes(80, 1000)
	body := newBlockingBody()
	a, err := store.Acquire(t.Context(), sess.ID(), body.interrupt)
	if err != nil {
		t.Fatal(err)
	}
	out := writeInBackground(a, rng(0, 999, 1000), body.r)
	body.send(t, content[:400])

	// Had Remove interrupted the holder, it would have done so on arrival,
	// before it gave up.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := store.Remove(ctx, sess.ID(), RemovedCancelled); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Remove while the body is read = %v, want context.DeadlineExceeded", err)
	}
	if n := body.interrupted.Load(); n != 0 {
		t.Fatalf("Remove interrupted the request reading its body (%d calls)", n)
	}

	removed := make(chan error, 1)
	go func() {
		_, err := store.Remove(context.Background(), sess.ID(), RemovedCancelled)
		removed <- err
	}()
	body.send(t, content[400:])
	got := within(t, out, "the Write's return")
	if got.err != nil || !got.res.Complete || got.res.Written != 1000 {
		t.Fatalf("Write during Remove = %+v, %v; want the whole body written", got.res, got.err)
	}
	if err := within(t, removed, "Remove's return"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if n := body.interrupted.Load(); n != 0 {
		t.Fatalf("Remove interrupted the request reading its body (%d calls)", n)
	}
	if calls := rec.get(); len(calls) != 1 || calls[0].st.Received != 1000 {
		t.Fatalf("OnRemove calls %+v, want one with the 1000 bytes the request wrote", calls)
	}
	mustHaveNoFiles(t, store.Dir(), sess.ID())
	if _, err := store.Get(sess.ID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Remove = %v, want ErrClosed", err)
	}
}
