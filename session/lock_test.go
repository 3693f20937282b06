package session

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

// signalOnWaiter marks the holder of the session's request lock as
// interruptible, as a request reading its body is, and returns a channel
// that is closed when a request that takes sessions over arrives at the
// lock and is about to wait for it, and the function that ends the mark.
func signalOnWaiter(sess *Session) (<-chan struct{}, func()) {
	waiting := make(chan struct{})
	done := sess.lock.interruptible(func() { close(waiting) })
	return waiting, done
}

func TestLockExcludes(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	l := lease(t, sess)
	if sess.lock.tryLock() {
		t.Fatal("tryLock succeeded while the lock is held")
	}
	waiting, stop := signalOnWaiter(sess)
	var held atomic.Bool
	held.Store(true)
	acquired := make(chan error, 1)
	go func() {
		err := sess.lock.lock(context.Background(), true)
		if err == nil && held.Load() {
			err = errors.New("second lock returned while the first holder still held the lock")
		}
		acquired <- err
	}()
	within(t, waiting, "the second lock's arrival")
	stop()
	select {
	case err := <-acquired:
		t.Fatalf("second lock returned while the lock was held: %v", err)
	default:
	}
	held.Store(false)
	l.Release()
	if err := within(t, acquired, "the second lock's acquisition of the released lock"); err != nil {
		t.Fatal(err)
	}
	sess.lock.unlock()
	if !sess.lock.tryLock() {
		t.Fatal("tryLock failed on a free lock")
	}
	sess.lock.unlock()
}

func TestLockContext(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, randBytes(79, 100), 0, 49)
	l := lease(t, sess)
	defer l.Release()

	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The context is cancelled by the waiter's own arrival at the
		// lock, so the lock must have been waiting when it ended.
		var cancelled atomic.Bool
		stop := sess.lock.interruptible(func() {
			cancelled.Store(true)
			cancel()
		})
		defer stop()
		err := sess.lock.lock(ctx, true)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("lock = %v, want an error wrapping context.Canceled", err)
		}
		if !cancelled.Load() {
			t.Errorf("lock gave up before the context was cancelled")
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sess.lock.lock(ctx, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("lock = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := sess.lock.lock(ctx, false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lock = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("Acquire", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := store.Acquire(ctx, sess.ID(), nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("Remove waits for the lock", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := store.Remove(ctx, sess.ID(), RemovedCancelled); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Remove = %v, want context.DeadlineExceeded", err)
		}
		mustExist(t, statePath(sess))
		mustExist(t, dataPath(sess))
		if _, err := store.Get(sess.ID()); err != nil {
			t.Fatalf("Get after a Remove that timed out: %v", err)
		}
		if _, ok := diskJournal(t, store.Dir()).tombs[sess.ID()]; ok {
			t.Fatal("a Remove that timed out recorded a tombstone")
		}
	})
}

// TestAcquireRemovedWhileWaiting removes a session while another request
// waits for its lock: the waiter must learn that it is gone.
func TestAcquireRemovedWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tombstone bool
		want      error
	}{
		{"closed", true, ErrClosed},
		{"reaped unfinished", false, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t, "", Options{})
			sess := create(t, store, "", "f.bin")
			holder, err := store.Acquire(t.Context(), sess.ID(), nil)
			if err != nil || holder.Session() != sess {
				t.Fatalf("Acquire = %v, %v", holder, err)
			}
			waiting, stop := signalOnWaiter(sess)
			done := make(chan error, 1)
			go func() {
				got, err := store.Acquire(context.Background(), sess.ID(), nil)
				if err == nil {
					got.Release()
				}
				done <- err
			}()
			within(t, waiting, "the waiter's arrival at the lock")
			stop()
			if _, err := store.remove(sess, RemovedClosed, tc.tombstone); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if !sess.Gone() {
				t.Fatal("Gone() is false after remove")
			}
			holder.Release()
			if err := within(t, done, "the waiting Acquire's return"); !errors.Is(err, tc.want) {
				t.Fatalf("waiting Acquire = %v, want %v", err, tc.want)
			}
			// The lock was released by the waiter.
			if !sess.lock.tryLock() {
				t.Fatal("the waiter kept the lock of a removed session")
			}
			sess.lock.unlock()
		})
	}
}

// slowReader returns at most n bytes per Read and yields in between, to
// give concurrent writers every chance to interleave.
type slowReader struct {
	r io.Reader
	n int
}

func (s *slowReader) Read(p []byte) (int, error) {
	runtime.Gosched()
	if len(p) > s.n {
		p = p[:s.n]
	}
	return s.r.Read(p)
}

// TestConcurrentRetransmissions has many clients send the same upload to
// one session at once, each with its own fragment size, so that their
// fragments overlap in every possible way. With the request lock held per
// fragment, the data file must be exactly the upload.
func TestConcurrentRetransmissions(t *testing.T) {
	const size = 256 << 10
	content := randBytes(77, size)
	store := openStore(t, "", Options{CheckpointBytes: 50 << 10})
	sess := create(t, store, "", "f.bin")
	fragSizes := []int{4093, 1000, 2048, 1 << 10, 7777, 3000, 6007, 5000, 999, 2047, 3331, 8192}

	var wg sync.WaitGroup
	errs := make(chan error, len(fragSizes))
	var appends, overlaps, held, gaps atomic.Int64
	for g, frag := range fragSizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half the clients start somewhere in the middle, as a client
			// that lost track would; they get gaps and resync.
			pos := int64(0)
			if g%2 == 1 {
				pos = int64(g * 9973 % size)
			}
			for pos < size {
				l, err := store.Acquire(context.Background(), sess.ID(), nil)
				if err != nil {
					errs <- err
					return
				}
				last := min(pos+int64(frag), size) - 1
				r := rng(pos, last, size)
				res, err := l.Write(r, &slowReader{r: bytes.NewReader(content[pos : last+1]), n: 1 + g*517}, WriteOptions{})
				l.Release()
				runtime.Gosched()
				if err != nil {
					errs <- err
					return
				}
				switch res.Action {
				case protocol.Append:
					appends.Add(1)
					if res.Written < r.Len() {
						overlaps.Add(1)
					}
					if res.Received != last+1 {
						errs <- errors.New("append did not reach the fragment's end")
						return
					}
					pos = last + 1
				case protocol.AlreadyHeld:
					held.Add(1)
					// Some clients plod on; most adopt the Ack's offset, as
					// Windows does, and so race the others at the front.
					if g%3 == 0 {
						pos = last + 1
					} else {
						pos = res.Received
					}
				case protocol.Gap:
					gaps.Add(1)
					pos = res.Received // resync to the Ack
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d appends (%d overlapping), %d already held, %d gaps", appends.Load(), overlaps.Load(), held.Load(), gaps.Load())
	st := sess.State()
	if !st.Complete() || st.Received != size {
		t.Fatalf("State = %+v", st)
	}
	if got := fileSum(t, dataPath(sess)); got != sum(content) {
		t.Fatalf("data file SHA-256 %s, want %s (writes interleaved or rewrote held bytes)", got, sum(content))
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}
