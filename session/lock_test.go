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

func TestLockExcludes(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	if err := sess.Lock(t.Context()); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if sess.tryLock() {
		t.Fatal("tryLock succeeded while the lock is held")
	}
	var held atomic.Bool
	held.Store(true)
	acquired := make(chan error, 1)
	go func() {
		err := sess.Lock(context.Background())
		if err == nil && held.Load() {
			err = errors.New("second Lock returned while the first holder still held the lock")
		}
		acquired <- err
	}()
	select {
	case err := <-acquired:
		t.Fatalf("second Lock returned while the lock was held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	held.Store(false)
	sess.Unlock()
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock did not acquire the released lock")
	}
	sess.Unlock()
	if !sess.tryLock() {
		t.Fatal("tryLock failed on a free lock")
	}
	sess.Unlock()
}

func TestLockContext(t *testing.T) {
	store := openStore(t, "", Options{})
	sess := create(t, store, "", "f.bin")
	if err := sess.Lock(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer sess.Unlock()

	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		err := sess.Lock(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock = %v, want an error wrapping context.Canceled", err)
		}
		if time.Since(start) < 40*time.Millisecond {
			t.Errorf("Lock gave up after %v, before the context was cancelled", time.Since(start))
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := sess.Lock(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := sess.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("Acquire", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := store.Acquire(ctx, sess.ID()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("Remove waits for the lock", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := store.Remove(ctx, sess.ID(), RemovedCancelled); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Remove = %v, want context.DeadlineExceeded", err)
		}
		mustExist(t, sess.dir)
		if _, err := store.Get(sess.ID()); err != nil {
			t.Fatalf("Get after a Remove that timed out: %v", err)
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
			holder, err := store.Acquire(t.Context(), sess.ID())
			if err != nil || holder != sess {
				t.Fatalf("Acquire = %v, %v", holder, err)
			}
			done := make(chan error, 1)
			go func() {
				got, err := store.Acquire(context.Background(), sess.ID())
				if err == nil {
					got.Unlock()
				}
				done <- err
			}()
			time.Sleep(50 * time.Millisecond) // let the waiter block on the lock
			if _, err := store.remove(sess, RemovedClosed, tc.tombstone); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if !sess.Gone() {
				t.Fatal("Gone() is false after remove")
			}
			sess.Unlock()
			select {
			case err := <-done:
				if !errors.Is(err, tc.want) {
					t.Fatalf("waiting Acquire = %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waiting Acquire did not return")
			}
			// The lock was released by the waiter.
			if !sess.tryLock() {
				t.Fatal("the waiter kept the lock of a removed session")
			}
			sess.Unlock()
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
				s, err := store.Acquire(context.Background(), sess.ID())
				if err != nil {
					errs <- err
					return
				}
				last := min(pos+int64(frag), size) - 1
				r := rng(pos, last, size)
				res, err := s.Write(r, &slowReader{r: bytes.NewReader(content[pos : last+1]), n: 1 + g*517})
				s.Unlock()
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
	if got := fileSum(t, sess.DataPath()); got != sum(content) {
		t.Fatalf("data file SHA-256 %s, want %s (writes interleaved or rewrote held bytes)", got, sum(content))
	}
	if !bytes.Equal(sess.Digest(), sha(content)) {
		t.Fatalf("Digest %x, want %x", sess.Digest(), sha(content))
	}
}
