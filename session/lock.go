package session

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// requestLock serialises the requests of one session, so that a client's
// retry that overlaps a request still in flight waits instead of
// interleaving writes. A holder that is reading a request body can be
// interrupted: a BITS client has one request in flight per session, so a
// newer request for the same session means the older one is stale (its
// connection stalled, or the client gave up on it), and waiting for it
// would hold the session hostage to a connection trickling at a byte a
// second. Interrupting it stops its body read; every byte it already
// wrote stays.
type requestLock struct {
	ch chan struct{} // holds a token while locked

	mu        sync.Mutex
	waiters   int    // waiting requests that take the lock over
	interrupt func() // set while the holder may be interrupted
}

func newRequestLock() *requestLock {
	return &requestLock{ch: make(chan struct{}, 1)}
}

// TakeOverAfter is how long a request waits for its session before it
// interrupts an older request that is still reading a body: long enough
// for a healthy request to finish (a client's duplicate sent a moment
// late waits for it), short enough that a retry or a Cancel-Session behind
// a stalled connection is answered well within a second.
const TakeOverAfter = 200 * time.Millisecond

// lock waits for the lock until ctx ends. With takeOver, after waiting
// TakeOverAfter, a holder that is interruptible is interrupted, and so is
// one that becomes interruptible while this waits.
func (l *requestLock) lock(ctx context.Context, takeOver bool) error {
	select {
	case l.ch <- struct{}{}:
		return nil
	default:
	}
	if takeOver {
		grace := time.NewTimer(TakeOverAfter)
		select {
		case l.ch <- struct{}{}:
			grace.Stop()
			return nil
		case <-ctx.Done():
			grace.Stop()
			return ctx.Err()
		case <-grace.C:
		}
		l.mu.Lock()
		l.waiters++
		l.interruptLocked()
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.waiters--
			l.mu.Unlock()
		}()
	}
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryLock takes the lock only if it is free.
func (l *requestLock) tryLock() bool {
	select {
	case l.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *requestLock) unlock() {
	l.mu.Lock()
	l.interrupt = nil
	l.mu.Unlock()
	<-l.ch
}

// interruptible marks the holder as interruptible by f until the returned
// function is called. If a request is already waiting, f is called at
// once.
func (l *requestLock) interruptible(f func()) (done func()) {
	if f == nil {
		return func() {}
	}
	l.mu.Lock()
	l.interrupt = f
	if l.waiters > 0 {
		l.interruptLocked()
	}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.interrupt = nil
		l.mu.Unlock()
	}
}

// interruptLocked calls the holder's interrupt function, once. The caller
// holds l.mu.
func (l *requestLock) interruptLocked() {
	if f := l.interrupt; f != nil {
		l.interrupt = nil
		f()
	}
}

// lockError describes a wait for a session that ended with its context.
func lockError(s *Session, err error) error {
	return fmt.Errorf("waiting for session %s: %w", s.id, err)
}
