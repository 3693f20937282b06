package session

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/caddy-bits/caddy-bits/protocol"
)

func TestReapInterval(t *testing.T) {
	tests := []struct {
		timeout, want time.Duration
	}{
		{0, 250 * time.Millisecond},
		{time.Millisecond, 250 * time.Millisecond},
		{time.Second, 250 * time.Millisecond},
		{2 * time.Second, 500 * time.Millisecond},
		{8 * time.Minute, 2 * time.Minute},
		{20 * time.Minute, 5 * time.Minute},
		{21 * time.Minute, 5 * time.Minute},
		{time.Hour, 5 * time.Minute},
		{DefaultTimeout, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := reapInterval(tt.timeout); got != tt.want {
			t.Errorf("reapInterval(%v) = %v, want %v", tt.timeout, got, tt.want)
		}
	}
}

// mustBeStored fails the test unless Stored lists session id in the
// store directory dir.
func mustBeStored(t testing.TB, dir string, id protocol.SessionID) {
	t.Helper()
	if !isStored(t, dir, id) {
		t.Fatalf("session %s is not on disk", id)
	}
}

// mustNotBeStored fails the test if Stored lists session id in dir, or
// any file of it is left.
func mustNotBeStored(t testing.TB, dir string, id protocol.SessionID) {
	t.Helper()
	if isStored(t, dir, id) {
		t.Fatalf("session %s is still on disk", id)
	}
	mustHaveNoFiles(t, dir, id)
}

// isStored reports whether Stored lists session id in dir.
func isStored(t testing.TB, dir string, id protocol.SessionID) bool {
	t.Helper()
	ids, err := Stored(dir)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ids, id)
}

func TestReap(t *testing.T) {
	clock := newFakeClock()
	var rec removals
	root := t.TempDir()
	// Several of these sessions hold no byte: an empty-session timeout
	// as long as the timeout keeps this test about the timeout alone.
	store := openStore(t, "", Options{Now: clock.Now, Timeout: time.Hour, EmptyTimeout: time.Hour, OnRemove: rec.hook})
	dir := store.Dir()
	content := randBytes(40, 3000)

	idle := create(t, store, root, "idle.bin")
	mustWrite(t, idle, content, 0, 999)
	active := create(t, store, root, "active.bin")
	locked := createHeld(t, store, root, "locked.bin")
	finished := completed(t, store, root, "finished.bin", content)
	if err := commit(t, finished, false); err != nil {
		t.Fatal(err)
	}
	boundary := createHeld(t, store, root, "boundary.bin")

	clock.Advance(50 * time.Minute)
	mustWrite(t, active, content, 0, 99) // activity 10 min before the check
	// The boundary session is touched so that it is idle for exactly the
	// timeout at the check: not reaped yet.
	boundary.Touch()
	clock.Advance(10 * time.Minute)
	if n := store.Reap(); n != 0 {
		t.Fatalf("Reap at exactly the timeout removed %d sessions", n)
	}

	clock.Advance(10 * time.Minute) // idle, locked and finished: 70 min; active: 20; boundary: 20
	held := lease(t, locked)
	if n := store.Reap(); n != 2 {
		t.Fatalf("Reap removed %d sessions, want 2 (idle and finished)", n)
	}
	mustNotBeStored(t, dir, idle.ID())
	mustNotBeStored(t, dir, finished.ID())
	mustExist(t, statePath(active))
	mustBeStored(t, dir, active.ID())
	mustBeStored(t, dir, locked.ID())
	mustBeStored(t, dir, boundary.ID())
	if _, err := store.Get(idle.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("reaped unfinished session: Get = %v, want ErrNotFound", err)
	}
	if _, err := store.Get(finished.ID()); !errors.Is(err, ErrClosed) {
		t.Errorf("reaped finished session: Get = %v, want ErrClosed", err)
	}
	if got := fileSum(t, filepath.Join(root, "finished.bin")); got != sum(content) {
		t.Errorf("committed destination damaged by reaping")
	}
	calls := rec.get()
	if len(calls) != 2 {
		t.Fatalf("OnRemove called %d times, want 2", len(calls))
	}
	for _, c := range calls {
		if c.reason != RemovedReaped {
			t.Errorf("OnRemove reason %v for %s, want reaped", c.reason, c.st.Path)
		}
		if c.st.ID != idle.ID() && c.st.ID != finished.ID() {
			t.Errorf("OnRemove for unexpected session %s", c.st.Path)
		}
	}

	// Once its request ends, the locked session is reaped too.
	held.Release()
	if n := store.Reap(); n != 1 {
		t.Fatalf("Reap after unlock removed %d sessions, want 1", n)
	}
	mustNotBeStored(t, dir, locked.ID())
	if store.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (active, boundary)", store.Len())
	}

	clock.Advance(time.Hour)
	if n := store.Reap(); n != 2 {
		t.Fatalf("final Reap removed %d, want 2", n)
	}
	if store.Len() != 0 {
		t.Fatalf("Len = %d", store.Len())
	}
}

// TestReapAfterReopen: LastActivity survives a restart, so a session idle
// before the restart is reaped after it.
func TestReapAfterReopen(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	opts := Options{Now: clock.Now, Timeout: time.Hour}
	store := openStore(t, dir, opts)
	sess := createHeld(t, store, "", "f.bin")
	id := sess.ID()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)
	store = openStore(t, dir, opts)
	if n := store.Reap(); n != 1 {
		t.Fatalf("Reap after reopen removed %d, want 1", n)
	}
	if _, err := store.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
}

// removalSignal returns an OnRemove hook that sends every removal on the
// returned channel.
func removalSignal() (func(State, RemoveReason), <-chan removal) {
	ch := make(chan removal, 16)
	return func(st State, reason RemoveReason) { ch <- removal{st, reason} }, ch
}

// TestReaperRealTime runs the background reaper with a real clock.
func TestReaperRealTime(t *testing.T) {
	hook, removed := removalSignal()
	store := openStore(t, "", Options{Timeout: time.Second, OnRemove: hook})
	start := time.Now()
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, randBytes(43, 100), 0, 49)
	c := within(t, removed, "reaping")
	// A session is idle for its whole timeout before it is reaped.
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Fatalf("session reaped after %v, before its 1 s timeout", elapsed)
	}
	// OnRemove runs once the store has forgotten the session.
	if c.reason != RemovedReaped || c.st.ID != sess.ID() {
		t.Fatalf("OnRemove call %+v", c)
	}
	mustNotBeStored(t, store.Dir(), sess.ID())
	if _, err := store.Get(sess.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
}

// TestReaperSetTimeout: lowering the timeout of a running store wakes the
// reaper, which then checks at the new, shorter interval.
func TestReaperSetTimeout(t *testing.T) {
	hook, removed := removalSignal()
	store := openStore(t, "", Options{OnRemove: hook}) // 14 days: checks every 2.5 minutes
	sess := create(t, store, "", "f.bin")
	mustWrite(t, sess, randBytes(44, 100), 0, 49)
	store.SetTimeout(500 * time.Millisecond)
	if c := within(t, removed, "reaping"); c.st.ID != sess.ID() || c.reason != RemovedReaped {
		t.Fatalf("OnRemove call %+v", c)
	}
	mustNotBeStored(t, store.Dir(), sess.ID())
	if store.Len() != 0 {
		t.Fatalf("Len = %d", store.Len())
	}
}

// TestReaperStopsOnClose: after Close the reaper no longer runs, and the
// sessions stay on disk for the next Open.
func TestReaperStopsOnClose(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	store := openStore(t, dir, Options{Timeout: 200 * time.Millisecond, Now: clock.Now})
	sess := createHeld(t, store, "", "f.bin")
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.reaperDone:
	default:
		t.Fatal("the reaper still runs after Close")
	}
	clock.Advance(time.Hour)
	mustBeStored(t, dir, sess.ID())
	again := openStore(t, dir, Options{})
	if _, err := again.Get(sess.ID()); err != nil {
		t.Fatalf("session lost after Close: %v", err)
	}
}
